"""Correlated step models on a shared grid: statistics, reproducibility, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from feedsim.market import (
    BLOCK_TICKS,
    GarchParams,
    GarchTSteps,
    GbmParams,
    GbmSteps,
    GroupMember,
    Jumps,
    MarketGroup,
    OuParams,
    StepModel,
)

BOUNDS = (math.log(1e-6), math.log(1e9))


def group(models: list[StepModel | OuParams], prices: list[float], rho: float = 0.0,
          rate: float = 1.0, step_s: float = 3600.0, seed: int = 1) -> MarketGroup:
    k = len(models)
    corr = np.full((k, k), rho)
    np.fill_diagonal(corr, 1.0)
    return MarketGroup(models, prices, corr, rate, round(rate * step_s),
                       np.random.SeedSequence(seed), [BOUNDS] * k)


def annualised(returns: np.ndarray, seconds: float) -> np.ndarray:
    return returns.std(axis=0) * math.sqrt(365.25 * 86_400 / seconds)  # type: ignore[no-any-return]


def test_gbm_pair_has_its_volatility_and_correlation_at_every_scale() -> None:
    g = group([GbmSteps(GbmParams(0.6), 3600, None), GbmSteps(GbmParams(0.8), 3600, None)],
              [65_000, 3_200], rho=0.8)
    x = g.advance(3600 * 24 * 60)
    ticks, hours = np.diff(x, axis=0), np.diff(x[3599::3600], axis=0)
    assert annualised(ticks, 1) == pytest.approx([0.6, 0.8], rel=0.02)
    assert annualised(hours, 3600) == pytest.approx([0.6, 0.8], rel=0.1)
    assert np.corrcoef(ticks.T)[0, 1] == pytest.approx(0.8, abs=0.01)
    assert np.corrcoef(hours.T)[0, 1] == pytest.approx(0.8, abs=0.05)


def test_garch_t_hourly_returns_have_fat_tails_and_volatility_clustering() -> None:
    params = GarchParams(mu=0.0, omega=2e-6, alpha=0.1, beta=0.85, nu=4.0)
    x = group([GarchTSteps(params, None)], [65_000], seed=3).advance(3600 * 24 * 365)[:, 0]
    hours = np.diff(x[3599::3600])
    assert annualised(hours, 3600) == pytest.approx(params.annualised_volatility, rel=0.15)
    assert stats.kurtosis(hours) > 5
    absolute = np.abs(hours)
    assert np.corrcoef(absolute[:-1], absolute[1:])[0, 1] > 0.05
    assert abs(np.corrcoef(hours[:-1], hours[1:])[0, 1]) < 0.05


def test_a_jump_lands_at_one_instant_inside_its_step() -> None:
    jumps = Jumps(rate_per_day=5 * 1440, mean=0.02, sd=1e-12)  # ~5 jumps of 2% per 60 s step
    x = group([GbmSteps(GbmParams(1e-6), 60, jumps)], [100.0], step_s=60).advance(60)[:, 0]
    big = np.diff(np.concatenate(([math.log(100.0)], x)))
    jumped = big[np.abs(big) > 0.01]
    assert 1 == len(jumped)
    assert jumped[0] / 0.02 == pytest.approx(round(jumped[0] / 0.02), abs=1e-6)


def test_ou_reverts_to_its_mean() -> None:
    params = OuParams(mean=1.0, kappa_per_day=48.0, sigma_per_sqrt_day=0.002)
    x = np.exp(group([params], [1.01]).advance(86_400 * 20)[:, 0])
    assert abs(x[-86_400 * 10:].mean() - 1.0) < 2e-4
    theory = params.sigma_per_sqrt_day / math.sqrt(2 * params.kappa_per_day)
    assert x[-86_400 * 10:].std() == pytest.approx(theory, rel=0.2)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 3 * BLOCK_TICKS), min_size=1, max_size=6))
def test_paths_do_not_depend_on_batching(chunks: list[int]) -> None:
    def make() -> MarketGroup:
        return group([GarchTSteps(GarchParams(0.0, 2e-6, 0.1, 0.85, 4.0, 600.0),
                                  Jumps(50, 0.0, 0.01)),
                      OuParams(1.0, 24.0, 0.001)], [65_000, 1.0], rho=0.3, step_s=600, seed=5)

    total = sum(chunks)
    whole = make().advance(total)
    parts = make()
    assert np.array_equal(whole, np.concatenate([parts.advance(n) for n in chunks]))


def test_members_take_their_own_columns_in_their_own_time() -> None:
    def make() -> MarketGroup:
        return group([GbmSteps(GbmParams(0.5), 3600, None)] * 2, [10.0, 20.0], rho=0.5, seed=9)

    reference = np.exp(make().advance(300))
    shared = make()
    pending: list[list[np.ndarray]] = [[], []]
    a, b = GroupMember(shared, 0, pending), GroupMember(shared, 1, pending)
    got_a = np.concatenate([a.advance(100), a.advance(200)])
    got_b = np.concatenate([b.advance(250), b.advance(50)])
    assert np.allclose(reference[:, 0], got_a) and np.allclose(reference[:, 1], got_b)


def test_a_correlation_matrix_that_is_not_positive_definite_is_refused() -> None:
    with pytest.raises(np.linalg.LinAlgError):
        MarketGroup([GbmSteps(GbmParams(0.5), 3600, None)] * 3, [1.0] * 3,
                    np.array([[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]]), 1.0, 3600,
                    np.random.SeedSequence(0), [BOUNDS] * 3)
