"""Draw real against generated returns as a PNG, to see at a glance where the model falls short.

Three panels: the price paths (the real close, and a generated path from the same first price),
the return histograms on a log scale (the tails), and the autocorrelation of |r| by lag (the
volatility clustering). Rendering uses matplotlib's Agg canvas directly, with no global pyplot
state, and returns the PNG bytes; writing them is the caller's business.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from calibration import stats
from calibration.bars import Floats

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 11.0, 100
MAX_LAG = 100


def render_comparison(real_close: Floats, real_returns: Floats, generated_returns: Floats, *,
                      title: str = "") -> bytes:
    """Return a PNG comparing real and generated series (price, histogram, |r| ACF)."""
    close = np.asarray(real_close, dtype=np.float64)
    real = np.asarray(real_returns, dtype=np.float64)
    generated = np.asarray(generated_returns, dtype=np.float64)
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    prices, histogram, acf = figure.subplots(3, 1)
    if title:
        figure.suptitle(title)

    path = close[0] * np.exp(np.concatenate([[0.0], np.cumsum(generated)]))
    prices.plot(np.arange(close.size), close, lw=0.7, label="real close")
    prices.plot(np.arange(path.size), path, lw=0.7, label="generated", alpha=0.8)
    prices.set_yscale("log")
    prices.set_xlabel("bars")
    prices.set_ylabel("price")
    prices.legend(loc="upper left")
    prices.set_title("price paths from the same first price")

    edges = np.linspace(min(real.min(), generated.min()), max(real.max(), generated.max()), 121)
    histogram.hist(real, bins=edges, histtype="step", label="real", density=True)
    histogram.hist(generated, bins=edges, histtype="step", label="generated", density=True)
    histogram.set_yscale("log")
    histogram.set_xlabel("log return per bar")
    histogram.set_ylabel("density")
    histogram.legend(loc="upper right")
    histogram.set_title("return distributions (log scale)")

    lags = np.arange(1, MAX_LAG + 1)
    acf.plot(lags, stats.autocorrelation(np.abs(real), MAX_LAG), label="real |r|")
    acf.plot(lags, stats.autocorrelation(np.abs(generated), MAX_LAG), label="generated |r|")
    acf.axhline(0.0, color="grey", lw=0.5)
    acf.set_xlabel("lag (bars)")
    acf.set_ylabel("autocorrelation")
    acf.legend(loc="upper right")
    acf.set_title("volatility clustering: autocorrelation of |r|")

    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()
