"""Calibrate the simulator on real OHLCV history and score generated series against it.

Four steps, each a pure function of its inputs (and of a seed where it draws):

* import: :func:`parse_ohlcv` reads CryptoDataDownload (Bitstamp, Binance) and Binance kline CSV
  text into :class:`Bars`, listing every repaired or dropped row in an :class:`ImportReport`;
* fit: :func:`fit_garch_t` estimates GARCH(1,1) with Student-t innovations (the feed's own
  :class:`feedsim.market.GarchParams`), its tail index (:func:`tail_index`) bounded by the data's,
  and
  :func:`correlate` the return correlation of two symbols;
* simulate: :func:`simulate_garch_t` draws returns from fitted parameters;
* score: :func:`evaluate` fits, simulates and compares in a :class:`Scorecard`;
  :func:`render_comparison` draws the comparison as a PNG.

``python -m calibration`` is the command-line edge, the only place that reads or writes files.

Exceptions raised here::

    marketdata.MarketDataError
     +-- CalibrationError
          +-- DataFormatError   a hopeless file: no known OHLCV layout or too few valid bars
          +-- InsufficientData  too few or degenerate returns, or series that do not line up
          +-- FitError          the optimiser found no admissible GARCH(1,1)-t parameters

The package imports without matplotlib (feedsim's replay uses the importer); only
``render_comparison`` needs it, and imports it when first used.
"""

from typing import TYPE_CHECKING, Any

from calibration.bars import Bars, log_returns
from calibration.errors import CalibrationError, DataFormatError, FitError, InsufficientData
from calibration.garch import (
    Correlation,
    Pair,
    correlate,
    fit_garch_t,
    fit_pair,
    garch_t_nll,
    params_from_toml,
    params_to_toml,
    simulate_garch_t,
    simulate_pair,
    tail_index,
)
from calibration.importer import Action, ImportReport, Issue, IssueKind, parse_ohlcv
from calibration.score import Evaluation, Scorecard, ScoreRow, evaluate, scorecard
from feedsim.market import GarchParams

if TYPE_CHECKING:
    from calibration.render import render_comparison


def __getattr__(name: str) -> Any:
    """Import the renderer (and matplotlib, an optional extra) only when it is asked for."""
    if name == "render_comparison":
        from calibration.render import render_comparison  # noqa: PLC0415

        return render_comparison
    raise AttributeError(f"module 'calibration' has no attribute {name!r}")

__all__ = [
    "Action",
    "Bars",
    "CalibrationError",
    "Correlation",
    "DataFormatError",
    "Evaluation",
    "FitError",
    "GarchParams",
    "ImportReport",
    "InsufficientData",
    "Issue",
    "IssueKind",
    "Pair",
    "ScoreRow",
    "Scorecard",
    "correlate",
    "evaluate",
    "fit_garch_t",
    "fit_pair",
    "garch_t_nll",
    "log_returns",
    "params_from_toml",
    "params_to_toml",
    "parse_ohlcv",
    "render_comparison",
    "scorecard",
    "simulate_garch_t",
    "simulate_pair",
    "tail_index",
]
