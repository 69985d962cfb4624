"""Score generated returns against real ones at the same bar interval, row by row.

Each row compares one statistic of the real one-bar log returns with the same statistic of the
generated ones, and passes when the generated value is within the row's tolerance. The tolerances
(the first five are the acceptance criteria of the "Realistic markets" issue):

=================================  ==================================  ============================
row                                statistic                           passes when generated is
=================================  ==================================  ============================
annualised volatility              sqrt(bars per 365.25 d) x sd        within 20% of real
excess kurtosis                    m4 / m2^2 - 3                       above 5
Hill index, top 2.5% / top 5%      tail index of |r| (stats module)    between 2 and 5
ACF r lag 1                        autocorrelation of r at lag 1       within +-0.05 of zero
ACF |r| lag 10                     autocorrelation of |r| at lag 10    above 0.1
ACF |r| lag 1                      ... at lag 1                        within +-0.10 of real
ACF |r| lag 100                    ... at lag 100                      within +-0.05 of real
ACF |r| mean distance, lags 1-100  mean |real - generated| over lags   at most 0.05
KS distance, z-scored              sup |F_real - F_gen|                at most 0.05
Wasserstein distance, z-scored     integral |F_real - F_gen|, in sd    at most 0.10
return correlation (two symbols)   Pearson, common timestamps          within +-0.10 of real
=================================  ==================================  ============================

The last five are this package's own: lag 1 and lag 100 bracket the volatility clustering the
issue describes (|r| ACF about 0.3 at lag 1, still 0.12 to 0.17 at lag 100); 0.05 of KS means no
more than 5% of probability mass misplaced; 0.1 sd of Wasserstein is a tenth of a typical move.
Distance rows have no real value of their own (it would be zero).

The generated side is drawn from the parameters fitted on the real side with a seed, so the same
bars and seed give the same scorecard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration import stats
from calibration.bars import Bars, Floats, log_returns
from calibration.errors import InsufficientData
from calibration.garch import (
    Pair,
    correlate,
    fit_garch_t,
    fit_pair,
    simulate_garch_t,
    simulate_pair,
)
from feedsim.market import GarchParams

log = logging.getLogger(__name__)

MAX_LAG = 100
HILL_FRACTIONS = (0.025, 0.05)


@dataclass(frozen=True)
class ScoreRow:
    """One statistic, real and generated, the tolerance in words and whether it passed."""

    name: str
    real: float | None
    generated: float
    tolerance: str
    passed: bool


@dataclass(frozen=True)
class Scorecard:
    """Rows comparing generated with real returns at one interval, and how it was drawn."""

    rows: tuple[ScoreRow, ...]
    interval_s: float
    n_real: int
    n_generated: int
    seed: int | None

    @property
    def passed(self) -> bool:
        """Return True when every row passes."""
        return all(row.passed for row in self.rows)

    def row(self, name: str) -> ScoreRow:
        """Return the row called `name`."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def render(self) -> str:
        """Return the scorecard as a fixed-width text table."""
        width = max(len(row.name) for row in self.rows)
        head = (f"{'statistic':<{width}}  {'real':>10}  {'generated':>10}  "
                f"{'tolerance':<24}  pass")
        out = [f"{self.n_generated} generated vs {self.n_real} real returns per "
               f"{self.interval_s:g} s bar, seed {self.seed}", head, "-" * len(head)]
        for row in self.rows:
            real = "-" if row.real is None else f"{row.real:10.4f}"
            out.append(f"{row.name:<{width}}  {real:>10}  {row.generated:10.4f}  "
                       f"{row.tolerance:<24}  {'PASS' if row.passed else 'FAIL'}")
        out.append(f"overall: {'PASS' if self.passed else 'FAIL'} "
                   f"({sum(r.passed for r in self.rows)}/{len(self.rows)} rows)")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """Return the scorecard as plain JSON-ready data."""
        return {
            "interval_s": self.interval_s,
            "n_real": self.n_real,
            "n_generated": self.n_generated,
            "seed": self.seed,
            "passed": self.passed,
            "rows": [{"name": r.name, "real": r.real, "generated": r.generated,
                      "tolerance": r.tolerance, "passed": r.passed} for r in self.rows],
        }


def _within_relative(fraction: float) -> Callable[[float, float], bool]:
    """Return a check that generated is within `fraction` of real, relatively."""
    return lambda real, gen: abs(gen / real - 1.0) <= fraction


def _within(width: float) -> Callable[[float, float], bool]:
    """Return a check that generated is within `width` of real."""
    return lambda real, gen: abs(gen - real) <= width


def _row(name: str, real: float | None, gen: float, tolerance: str,
         check: Callable[[float, float], bool]) -> ScoreRow:
    """Return a row, judged by `check(real, generated)` (real is 0 for distance rows)."""
    return ScoreRow(name, real, gen, tolerance, bool(check(0.0 if real is None else real, gen)))


def scorecard(real: Floats, generated: Floats, interval_s: float, *,
              correlations: tuple[float, float] | None = None,
              seed: int | None = None) -> Scorecard:
    """Compare the statistics of generated returns with real ones (tolerances: module docstring).

    `correlations` is (real, generated) cross-asset return correlation, when two symbols are
    scored; `seed` is only recorded.
    """
    r = np.asarray(real, dtype=np.float64)
    g = np.asarray(generated, dtype=np.float64)
    acf_real = stats.autocorrelation(np.abs(r), MAX_LAG)
    acf_gen = stats.autocorrelation(np.abs(g), MAX_LAG)
    rows = [
        _row("annualised volatility", stats.annualised_volatility(r, interval_s),
             stats.annualised_volatility(g, interval_s), "within 20% of real",
             _within_relative(0.20)),
        _row("excess kurtosis", stats.excess_kurtosis(r), stats.excess_kurtosis(g), "> 5",
             lambda _, gen: gen > 5.0),
    ]
    for fraction in HILL_FRACTIONS:
        rows.append(_row(f"Hill index, top {fraction:.1%}", stats.hill_index(r, fraction),
                         stats.hill_index(g, fraction), "between 2 and 5",
                         lambda _, gen: 2.0 <= gen <= 5.0))
    rows += [
        _row("ACF r lag 1", float(stats.autocorrelation(r, 1)[0]),
             float(stats.autocorrelation(g, 1)[0]), "within +-0.05 of 0",
             lambda _, gen: abs(gen) <= 0.05),
        _row("ACF |r| lag 10", float(acf_real[9]), float(acf_gen[9]), "> 0.1",
             lambda _, gen: gen > 0.1),
        _row("ACF |r| lag 1", float(acf_real[0]), float(acf_gen[0]), "within +-0.10 of real",
             _within(0.10)),
        _row("ACF |r| lag 100", float(acf_real[99]), float(acf_gen[99]),
             "within +-0.05 of real", _within(0.05)),
        _row("ACF |r| mean distance 1-100", None, float(np.mean(np.abs(acf_real - acf_gen))),
             "<= 0.05", lambda _, gen: gen <= 0.05),
        _row("KS distance, z-scored", None, stats.ks_distance(r, g), "<= 0.05",
             lambda _, gen: gen <= 0.05),
        _row("Wasserstein, z-scored", None, stats.wasserstein(r, g), "<= 0.10 sd",
             lambda _, gen: gen <= 0.10),
    ]
    if correlations is not None:
        rows.append(_row("return correlation", correlations[0], correlations[1],
                         "within +-0.10 of real", _within(0.10)))
    return Scorecard(tuple(rows), float(interval_s), int(r.size), int(g.size), seed)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A fit on real bars, the returns it generated with a seed, and their scorecard."""

    params: GarchParams
    pair: Pair | None
    real: Floats
    generated: Floats
    real_close: Floats
    scorecard: Scorecard


def evaluate(bars: Bars, seed: int, *, n: int | None = None,
             other: Bars | None = None) -> Evaluation:
    """Fit GARCH-t on `bars`, simulate `n` returns (default: as many as real) and score them.

    With `other` bars of a second symbol at the same interval, both are fitted, drawn together
    through their innovation correlation, and the scorecard gains the return-correlation row;
    the other rows are about `bars`.
    """
    _, real = log_returns(bars)
    count = real.size if n is None else n
    need = f"scoring needs at least {MAX_LAG + 2} (its autocorrelations reach lag {MAX_LAG})"
    if real.size < MAX_LAG + 2:
        raise InsufficientData(f"the file gives {real.size} returns ({len(bars)} bars); {need}")
    if count < MAX_LAG + 2:
        raise InsufficientData(f"{count} generated returns were asked for; {need}")
    rng = np.random.default_rng(seed)
    if other is None:
        params = fit_garch_t(real, bars.interval_s)
        pair = None
        generated = simulate_garch_t(params, count, rng)
        correlations = None
    else:
        pair = fit_pair(bars, other)
        params = pair.a
        generated, generated_other = simulate_pair(pair, count, rng)
        correlations = (correlate(bars, other).rho,
                        stats.correlation(generated, generated_other))
    card = scorecard(real, generated, bars.interval_s, correlations=correlations, seed=seed)
    log.info("scored seed %d: %s", seed, "pass" if card.passed else "fail")
    return Evaluation(params, pair, real, generated, np.asarray(bars.close), card)
