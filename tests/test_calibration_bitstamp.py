"""The whole pipeline on the full Bitstamp BTC/USD hourly file, against the issue's criteria.

The file is the project's shared ``bitstamp_btcusd_1h.csv``, bundled whole and gzipped in
tests/data (see its README) so that a clone alone runs this test.

The calibrated generator must pass the issue's five criteria, and not for one lucky seed: seed
0 and each of the seeds 0 to 9 are scored (about 93% of seeds pass, measured over 200).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from calibration import (
    IssueKind,
    Scorecard,
    evaluate,
    parse_ohlcv,
    render_comparison,
    scorecard,
    simulate_garch_t,
)
from calibration.garch import TAIL_FRACTION, fit_garch_t, tail_index

FILE = "bitstamp_btcusd_1h.csv"
BUNDLED = Path(__file__).parent / "data" / f"{FILE}.gz"
SEED = 0
SEEDS = range(10)
CRITERIA = ("annualised volatility", "excess kurtosis", "Hill index, top 2.5%",
            "Hill index, top 5.0%", "ACF r lag 1", "ACF |r| lag 10")


def failed_criteria(card: Scorecard) -> list[str]:
    """Return the issue's criteria that `card` fails, with the generated values."""
    return [f"{name} {card.row(name).generated:.3f}" for name in CRITERIA
            if not card.row(name).passed]


def test_full_bitstamp_file_calibrates_and_scores() -> None:
    text = gzip.decompress(BUNDLED.read_bytes()).decode()
    bars, report = parse_ohlcv(text, source=FILE)
    result = evaluate(bars, seed=SEED)
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
    assert 3.0 < params.nu < 5.0 and 0.98 < params.alpha + params.beta < 1.0

    # the real side matches the data README's reference figures
    assert real("excess kurtosis") == pytest.approx(42.6, abs=0.5)
    assert 2.3 <= real("Hill index, top 5.0%") <= 2.8
    assert 2.3 <= real("Hill index, top 2.5%") <= 2.8
    assert real("ACF |r| lag 1") == pytest.approx(0.28, abs=0.03)
    assert 0.10 <= real("ACF |r| lag 100") <= 0.17

    # the plain maximum likelihood fit's tail (2 kappa ~ 2.2) is fatter than the data's; the
    # fit is held at the data's Hill index, which is what lets one path show the real volatility
    plain = fit_garch_t(result.real, params.interval_s, bound_tail=False)
    assert tail_index(plain) < 2.3
    assert tail_index(params) == pytest.approx(real("Hill index, top 2.5%"), abs=1e-3)
    assert TAIL_FRACTION == 0.025

    # the issue's criteria, every one, on seed 0 ...
    assert failed_criteria(card) == []
    assert 0.8 * real_vol <= card.row("annualised volatility").generated <= 1.2 * real_vol

    # ... and on each of ten seeds, so the pass is not one lucky draw
    for seed in SEEDS:
        generated = simulate_garch_t(params, result.real.size, np.random.default_rng(seed))
        other = scorecard(result.real, generated, params.interval_s, seed=seed)
        assert failed_criteria(other) == [], f"seed {seed}"

    assert 20_000 < len(png) and png[:8] == b"\x89PNG\r\n\x1a\n"
