"""The shared request checks and the correlation of aligned returns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata import queries
from marketdata.candles import ONE_MINUTE, Candle
from marketdata.correlations import MIN_RETURNS, Grid, correlate
from marketdata.errors import InvalidParameter

NOW = 1_764_060_279_000_000_000


@given(start=st.none() | st.integers(-(2**64), 2**64),
       end=st.none() | st.integers(-(2**64), 2**64),
       limit=st.none() | st.integers(-5, 20_000))
def test_history_range_accepts_exactly_the_valid_requests(start: int | None, end: int | None,
                                                          limit: int | None) -> None:
    valid = ((start is None or 0 <= start <= queries.MAX_NS)
             and (end is None or 0 <= end <= queries.MAX_NS)
             and (start is None or start <= (NOW if end is None else end))
             and (limit is None or 1 <= limit <= queries.MAX_HISTORY_LIMIT))
    try:
        query = queries.history_range(start, end, limit, NOW, names=("start_ns", "end_ns"))
    except InvalidParameter as exc:
        assert not valid
        assert exc.parameter in ("start_ns", "end_ns", "limit")
        assert str(exc).startswith(f"{exc.parameter}: ")
        return
    assert valid
    assert query == queries.HistoryQuery(start, NOW if end is None else end,
                                         queries.DEFAULT_HISTORY_LIMIT if limit is None else limit)


@pytest.mark.parametrize(("depth", "held", "expected"), [
    (None, 20, 20), (None, 25, 20), (None, 4, 4), (1, 20, 1), (20, 20, 20), (25, 25, 25),
])
def test_book_depth(depth: int | None, held: int, expected: int) -> None:
    assert queries.book_depth(depth, held) == expected


@pytest.mark.parametrize(("depth", "held"), [(0, 20), (21, 20), (-1, 20), (2, 0)])
def test_book_depth_out_of_range(depth: int, held: int) -> None:
    with pytest.raises(InvalidParameter, match=r"^depth: "):
        queries.book_depth(depth, held)


@settings(max_examples=60)
@given(seed=st.integers(0, 10_000), symbols=st.integers(2, 5), points=st.integers(2, 40),
       missing=st.floats(0.0, 0.3))
def test_correlate_equals_numpy_on_the_rows_every_symbol_has(seed: int, symbols: int,
                                                             points: int,
                                                             missing: float) -> None:
    rng = np.random.default_rng(seed)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (symbols, points)), axis=1))
    closes[rng.random(closes.shape) < missing] = np.nan
    names = [f"S{i}-USD" for i in range(symbols)]
    result = correlate(names, closes)
    returns = np.diff(np.log(closes), axis=1)
    aligned = returns[:, ~np.isnan(returns).any(axis=0)]
    assert result.returns == aligned.shape[1]
    if aligned.shape[1] < MIN_RETURNS:
        assert result.reason is not None and all(v is None for r in result.matrix for v in r)
        return
    expected = np.corrcoef(aligned)
    got = np.array(result.matrix, dtype=float)
    assert np.allclose(got, expected, atol=1e-9)
    assert result.reason is None


def test_grid_places_candles_by_open_time() -> None:
    grid = Grid.ending_before(ONE_MINUTE, NOW + 30 * 10**9, 3)
    first = grid.first_open_ns

    def candle(open_ns: int, close: float) -> Candle:
        return Candle("A", ONE_MINUTE, open_ns, close, close, close, close, 1.0, close, 1, 1, 1,
                      1)

    closes = grid.closes([candle(first, 1.0), candle(first + 2 * ONE_MINUTE.ns, 3.0),
                          candle(first + 4 * ONE_MINUTE.ns, 5.0)])  # the last is past the grid
    assert np.isnan(closes[[1, 3]]).all()
    assert closes[[0, 2]].tolist() == [1.0, 3.0]
    assert grid.end_ns == ONE_MINUTE.open_ns(NOW + 30 * 10**9) - 1
