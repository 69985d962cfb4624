"""GARCH(1,1)-t: parameter checks, simulation, maximum-likelihood recovery, TOML, correlation."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from calibration import (
    DataFormatError,
    GarchParams,
    InsufficientData,
    Pair,
    correlate,
    fit_garch_t,
    fit_pair,
    garch_t_nll,
    log_returns,
    params_from_toml,
    params_to_toml,
    parse_ohlcv,
    simulate_garch_t,
    simulate_pair,
    stats,
)
from calibration.bars import Floats
from calibration.garch import (
    TAIL_FRACTION,
    conditional_variance,
    power_moment,
    standardised_residuals,
    tail_index,
)

DATA = Path(__file__).parent / "data"
HOUR = 3600.0


def garch(alpha: float = 0.08, beta: float = 0.90, nu: float = 6.0, variance: float = 1e-4,
          mu: float = 1e-4) -> GarchParams:
    """Return hourly parameters with the given unconditional variance."""
    return GarchParams(mu=mu, omega=(1 - alpha - beta) * variance, alpha=alpha, beta=beta, nu=nu,
                  interval_s=HOUR)


def test_annualised_volatility_by_hand() -> None:
    params = GarchParams(mu=0.0, omega=0.1e-4, alpha=0.05, beta=0.85, nu=5.0, interval_s=HOUR)
    assert params.unconditional_variance == pytest.approx(1e-4)
    assert params.bars_per_year == pytest.approx(8766.0)
    assert params.annualised_volatility == pytest.approx(math.sqrt(1e-4 * 8766.0))
    daily = GarchParams(mu=0.0, omega=0.1e-4, alpha=0.05, beta=0.85, nu=5.0, interval_s=86400.0)
    assert daily.annualised_volatility == pytest.approx(math.sqrt(1e-4 * 365.25))


@pytest.mark.parametrize("bad", [
    {"omega": 0.0}, {"omega": -1e-6}, {"alpha": -0.01}, {"beta": -0.01},
    {"alpha": 0.5, "beta": 0.5}, {"nu": 2.0}, {"nu": 1.5}, {"interval_s": 0.0},
    {"mu": math.nan}, {"nu": math.inf},
])
def test_inadmissible_parameters_are_rejected(bad: dict[str, float]) -> None:
    values = {"mu": 0.0, "omega": 1e-6, "alpha": 0.1, "beta": 0.8, "nu": 5.0,
              "interval_s": HOUR} | bad
    with pytest.raises(ValueError, match=r"need|finite"):
        GarchParams(**values)


def test_simulation_is_seeded_and_matches_the_model_moments() -> None:
    params = garch()
    first = simulate_garch_t(params, 50_000, np.random.default_rng(3))
    again = simulate_garch_t(params, 50_000, np.random.default_rng(3))
    other = simulate_garch_t(params, 50_000, np.random.default_rng(4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.shape == (50_000,)
    assert np.mean(first) == pytest.approx(params.mu, abs=2e-4)
    # nu = 6 has a finite fourth moment, so the sample variance settles near the model's
    assert np.var(first) == pytest.approx(params.unconditional_variance, rel=0.1)


def test_simulate_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        simulate_garch_t(garch(), -1, np.random.default_rng(0))
    assert simulate_garch_t(garch(), 0, np.random.default_rng(0)).size == 0


def test_conditional_variance_follows_the_recursion_by_hand() -> None:
    params = GarchParams(mu=0.0, omega=0.1, alpha=0.2, beta=0.5, nu=5.0, interval_s=1.0)
    r = np.array([1.0, -2.0, 0.5])
    h0 = 0.1 / 0.3
    h1 = 0.1 + 0.2 * 1.0 + 0.5 * h0
    h2 = 0.1 + 0.2 * 4.0 + 0.5 * h1
    assert conditional_variance(params, r) == pytest.approx([h0, h1, h2])
    assert standardised_residuals(params, r) == pytest.approx(r / np.sqrt([h0, h1, h2]))


@pytest.mark.parametrize(("truth", "n", "seed"), [
    pytest.param(garch(alpha=0.08, beta=0.90, nu=6.0), 40_000, 11, id="moderate-tails"),
    pytest.param(garch(alpha=0.15, beta=0.80, nu=4.0, mu=0.0), 40_000, 12, id="fat-tails"),
    pytest.param(garch(alpha=0.04, beta=0.95, nu=10.0, variance=4e-6), 40_000, 13,
                 id="persistent"),
])
def test_fit_recovers_known_parameters(truth: GarchParams, n: int, seed: int) -> None:
    returns = simulate_garch_t(truth, n, np.random.default_rng(seed))
    fitted = fit_garch_t(returns, HOUR)
    assert fitted.alpha == pytest.approx(truth.alpha, abs=0.02)
    assert fitted.beta == pytest.approx(truth.beta, abs=0.03)
    assert fitted.nu == pytest.approx(truth.nu, rel=0.25)
    assert fitted.annualised_volatility == pytest.approx(truth.annualised_volatility,
                                                           rel=0.1)
    assert fitted.interval_s == HOUR
    # the maximum is at least as likely as the truth, and variance targeting holds exactly
    assert garch_t_nll(fitted, returns) <= garch_t_nll(truth, returns)
    assert fitted.unconditional_variance == pytest.approx(float(np.var(returns)))


@pytest.mark.parametrize(("alpha", "beta", "nu"), [(0.05, 0.9, 5.0), (0.2, 0.7, 10.0),
                                                   (0.04, 0.95, 3.6)])
def test_power_moments_by_hand(alpha: float, beta: float, nu: float) -> None:
    # E[beta + alpha z^2] = alpha + beta; E[(beta + alpha z^2)^2] needs E[z^4] = 3 (nu-2)/(nu-4)
    assert power_moment(alpha, beta, nu, 0.0) == pytest.approx(1.0, rel=1e-10)
    assert power_moment(alpha, beta, nu, 1.0) == pytest.approx(alpha + beta, rel=1e-10)
    if nu > 4:
        kurtosis = 3 * (nu - 2) / (nu - 4)
        assert power_moment(alpha, beta, nu, 2.0) == pytest.approx(
            beta**2 + 2 * alpha * beta + alpha**2 * kurtosis, rel=1e-10)
    assert power_moment(alpha, beta, nu, nu / 2) == math.inf


def test_tail_index_by_hand() -> None:
    # the fourth moment of e is finite exactly when 2 kappa > 4: at equality the index is 4
    nu, alpha = 8.0, 0.2
    kurtosis = 3 * (nu - 2) / (nu - 4)
    beta = -alpha + math.sqrt(alpha**2 - alpha**2 * kurtosis + 1)  # b^2 + 2ab + a^2 k = 1
    assert tail_index(garch(alpha=alpha, beta=beta, nu=nu)) == pytest.approx(4.0, abs=1e-6)
    assert tail_index(garch(alpha=0.0, beta=0.9, nu=7.0)) == 7.0
    # fatter innovations or a stronger reaction to them fatten the returns' tail
    assert tail_index(garch(alpha=0.05, beta=0.9, nu=5.0)) > tail_index(
        garch(alpha=0.1, beta=0.85, nu=5.0)) > tail_index(garch(alpha=0.1, beta=0.85, nu=4.0))


def test_fit_bounds_the_tail_by_the_data() -> None:
    # volatility regimes: the plain maximum reads the level shifts as a near-integrated GARCH
    # with a tail fatter than the data's; the default fit stops at the data's Hill index
    rng = np.random.default_rng(3)
    returns = np.concatenate([s * rng.standard_t(5, 3000) for s in (0.01, 0.03, 0.01, 0.02)])
    hill = stats.hill_index(returns, TAIL_FRACTION)
    plain = fit_garch_t(returns, HOUR, bound_tail=False)
    bounded = fit_garch_t(returns, HOUR)
    assert tail_index(plain) < hill - 0.2
    assert tail_index(bounded) == pytest.approx(hill, abs=1e-3)
    assert garch_t_nll(plain, returns) < garch_t_nll(bounded, returns)
    assert bounded.unconditional_variance == pytest.approx(float(np.var(returns)))


def test_fit_is_deterministic() -> None:
    returns = simulate_garch_t(garch(), 5_000, np.random.default_rng(5))
    assert fit_garch_t(returns, HOUR) == fit_garch_t(returns, HOUR)


@pytest.mark.parametrize("returns", [
    pytest.param(np.zeros(10), id="too-short"),
    pytest.param(np.zeros(1000), id="constant"),
    pytest.param(np.array([0.01, math.nan] * 100), id="nan"),
])
def test_fit_refuses_unusable_returns(returns: Floats) -> None:
    with pytest.raises(InsufficientData):
        fit_garch_t(returns, HOUR)


def test_toml_round_trip() -> None:
    params = garch()
    text = params_to_toml(params, comment="fitted on a test\nsecond line")
    table = tomllib.loads(text)["garch"]
    assert set(table) == {"mu", "omega", "alpha", "beta", "nu", "interval_s",
                          "annualised_volatility"}
    assert table["annualised_volatility"] == params.annualised_volatility
    assert params_from_toml(text) == params
    assert text.startswith("# fitted on a test\n# second line\n")


@pytest.mark.parametrize("text", ["", "[garch]\nmu = 1\n", "not toml at all [",
                                  "[garch]\nmu=0\nomega=-1\nalpha=0\nbeta=0\nnu=5\n"
                                  "interval_s=60\n"])
def test_bad_toml_is_a_data_format_error(text: str) -> None:
    with pytest.raises(DataFormatError):
        params_from_toml(text)


def test_correlation_of_the_binance_slices() -> None:
    btc, _ = parse_ohlcv((DATA / "binance_btcusdt_1h_slice.csv").read_text())
    eth, _ = parse_ohlcv((DATA / "binance_ethusdt_1h_slice.csv").read_text())
    result = correlate(btc, eth)
    _, ra = log_returns(btc)
    assert result.n == ra.size == 994  # 995 steps between 996 bars, one of them across the gap
    assert result.interval_s == HOUR
    assert 0.6 < result.rho < 0.95
    assert correlate(eth, btc).rho == pytest.approx(result.rho)
    pair = fit_pair(btc, eth)
    assert 0.5 < pair.rho < 0.95


def test_correlation_needs_the_same_interval() -> None:
    btc, _ = parse_ohlcv((DATA / "binance_btcusdt_1h_slice.csv").read_text())
    text = (DATA / "binance_btcusdt_1h_slice.csv").read_text().splitlines()
    every_other = "\n".join(text[:2] + text[2::2])
    two_hourly, _ = parse_ohlcv(every_other)
    assert two_hourly.interval_s == 2 * HOUR
    with pytest.raises(InsufficientData, match="intervals differ"):
        correlate(btc, two_hourly)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_simulated_pairs_are_ordered_by_their_correlation(rho: float) -> None:
    pair = Pair(garch(nu=8.0), garch(alpha=0.05, beta=0.9, nu=6.0), rho)
    a, b = simulate_pair(pair, 20_000, np.random.default_rng(9))
    again = simulate_pair(pair, 20_000, np.random.default_rng(9))
    assert np.array_equal(a, again[0]) and np.array_equal(b, again[1])
    measured = float(np.corrcoef(a, b)[0, 1])
    assert measured == pytest.approx(rho, abs=0.12)
    # each margin keeps its own scale
    assert np.var(a) == pytest.approx(pair.a.unconditional_variance, rel=0.2)
