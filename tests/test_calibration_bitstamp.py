"""The whole pipeline on the full Bitstamp BTC/USD hourly file, against the issue's criteria.

The file lives in the project's shared data (read-only), beside the repository:
``<repo>/../shared/data`` or wherever ``MDS_SHARED_DATA`` points. A missing file fails the test.

Plain GARCH(1,1)-t does not meet every criterion; each assertion below says which it meets and,
for the one it misses, asserts what it does achieve (see the comments and the package report).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from calibration import IssueKind, evaluate, parse_ohlcv, render_comparison

FILE = "bitstamp_btcusd_1h.csv"
SEED = 0


def shared_data() -> Path:
    """Return the shared data folder, or fail the test with where it was looked for."""
    candidates = [Path(value) for value in [os.environ.get("MDS_SHARED_DATA")] if value]
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for folder in candidates:
        if (folder / FILE).is_file():
            return folder
    pytest.fail(f"{FILE} not found in {', '.join(map(str, candidates))}; set MDS_SHARED_DATA to "
                "the folder holding the shared market data", pytrace=False)


def test_full_bitstamp_file_calibrates_and_scores() -> None:
    text = (shared_data() / FILE).read_text()
    started = time.perf_counter()
    bars, report = parse_ohlcv(text, source=FILE)
    imported = time.perf_counter()
    result = evaluate(bars, seed=SEED)
    scored = time.perf_counter()
    png = render_comparison(result.real_close, result.real, result.generated)
    card = result.scorecard

    def real(name: str) -> float:
        """Return the real value of a row that has one."""
        value = card.row(name).real
        assert value is not None
        return value

    # import: every row kept; the swapped volume columns fixed (a 1,000-row block from
    # 2019-03-03 to 2019-04-13 was not swapped, and is left alone)
    assert report.bars == len(bars) == 37_387 and report.dropped == 0
    assert report.count(IssueKind.SWAPPED_VOLUME) == 20_143
    assert report.missing_bars == 0 and bars.interval_s == 3600.0

    # fit: variance targeting reproduces the real volatility in the model; tails and clustering
    params = result.params
    real_vol = real("annualised volatility")
    assert real_vol == pytest.approx(0.758, abs=0.005)           # the data README's ~76%
    assert params.annualised_volatility == pytest.approx(real_vol, rel=1e-6)
    assert 2.0 < params.nu < 5.0 and 0.95 < params.alpha + params.beta < 1.0

    # the real side matches the data README's reference figures
    assert real("excess kurtosis") == pytest.approx(42.6, abs=0.5)
    assert 2.3 <= real("Hill index, top 5.0%") <= 2.8
    assert 2.3 <= real("Hill index, top 2.5%") <= 2.8
    assert real("ACF |r| lag 1") == pytest.approx(0.28, abs=0.03)
    assert 0.10 <= real("ACF |r| lag 100") <= 0.17

    # the issue's criteria that the simulated GARCH(1,1)-t path meets
    assert card.row("excess kurtosis").passed                     # > 5
    assert card.row("Hill index, top 2.5%").passed                # 2 to 5
    assert card.row("Hill index, top 5.0%").passed
    assert card.row("ACF |r| lag 10").passed                      # > 0.1
    assert card.row("ACF r lag 1").passed                         # within +-0.05

    # the criterion it misses: volatility within 20% of real. The fit is near-integrated
    # (alpha + beta ~ 0.998) with nu ~ 3.2, so a path's sample variance is dominated by rare
    # bursts: its median is about 45% of the model's (and the real) variance, and seed 0 gives
    # 0.51 against 0.76. What it does achieve: within 35% of real, and below it.
    vol = card.row("annualised volatility")
    assert not vol.passed
    assert 0.65 * real_vol <= vol.generated < real_vol

    assert 20_000 < len(png) and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert imported - started < 5.0 and scored - imported < 10.0
