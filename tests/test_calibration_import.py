"""The OHLCV importer: every quirk of the real files, kline formats, and parser properties."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibration import Action, Bars, DataFormatError, ImportReport, IssueKind, parse_ohlcv

DATA = Path(__file__).parent / "data"
BANNER = "https://www.CryptoDataDownload.com"
HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD"
T0 = 1_600_000_000 - 1_600_000_000 % 3600
N_BARS = 60


def slice_text(name: str) -> str:
    """Return one of the real data slices as text."""
    return (DATA / name).read_text()


def clean_rows(n: int = N_BARS, seed: int = 7) -> list[list[str]]:
    """Return `n` consistent hourly Bitstamp-style rows, oldest first, from a seeded walk."""
    rng = np.random.default_rng(seed)
    close = 10_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    rows = []
    previous = 10_000.0
    for i, c in enumerate(close):
        o = previous
        h = max(o, c) * 1.002
        lo = min(o, c) * 0.998
        vb = 10.0 + i
        rows.append([str(T0 + 3600 * i), "2020-09-13 12:00:00", "BTC/USD", f"{o:.2f}",
                     f"{h:.2f}", f"{lo:.2f}", f"{c:.2f}", f"{vb:.8f}", f"{vb * c:.6f}"])
        previous = float(f"{c:.2f}")
    return rows


def to_text(rows: list[list[str]], newest_first: bool = True) -> str:
    """Return rows as a CryptoDataDownload file: banner, header, rows newest first."""
    ordered = rows[::-1] if newest_first else rows
    return "\n".join([BANNER, HEADER, *(",".join(row) for row in ordered)]) + "\n"


def line_of(index: int, n: int = N_BARS) -> int:
    """Return the file line of oldest-first row `index` in a newest-first file."""
    return 3 + (n - 1 - index)


def parse(rows: list[list[str]]) -> tuple[Bars, ImportReport]:
    """Parse rows laid out as a CryptoDataDownload file."""
    return parse_ohlcv(to_text(rows), source="test")


# --- clean input -----------------------------------------------------------------------------

def test_clean_file_has_no_issues_and_is_sorted_oldest_first() -> None:
    rows = clean_rows()
    bars, report = parse(rows)
    assert len(bars) == N_BARS == report.bars == report.data_lines
    assert report.issues == ()
    assert bars.interval_ns == 3600 * 10**9 and bars.interval_s == 3600.0
    assert bars.time_ns[0] == T0 * 10**9 and np.all(np.diff(bars.time_ns) == 3600 * 10**9)
    assert bars.close[0] == float(rows[0][6]) and bars.close[-1] == float(rows[-1][6])
    assert report.layout == "cryptodatadownload" and report.banner_lines == 1
    assert report.header_line == 2 and report.time_units == ("s",)
    assert "problems: none" in report.render()


def test_bars_are_read_only() -> None:
    bars, _ = parse(clean_rows())
    with pytest.raises(ValueError, match="read-only"):
        bars.close[0] = 1.0


# --- one quirk at a time ---------------------------------------------------------------------

Mutation = Callable[[list[list[str]]], None]


def set_field(index: int, column: int, value: str) -> Mutation:
    """Return a mutation that sets one field of oldest-first row `index`."""
    def mutate(rows: list[list[str]]) -> None:
        rows[index][column] = value
    return mutate


def scale_field(index: int, column: int, factor: float) -> Mutation:
    """Return a mutation that multiplies one numeric field."""
    def mutate(rows: list[list[str]]) -> None:
        rows[index][column] = f"{float(rows[index][column]) * factor:.2f}"
    return mutate


def bad_high(rows: list[list[str]]) -> None:
    """Put the high of row 20 below its close."""
    rows[20][4] = f"{float(rows[20][6]) * 0.9:.2f}"


def bad_low(rows: list[list[str]]) -> None:
    """Put the low of row 20 above its open."""
    rows[20][5] = f"{float(rows[20][3]) * 1.1:.2f}"


def wick(rows: list[list[str]]) -> None:
    """Give row 20 a high three times the price (a bad print of the high only)."""
    rows[20][4] = f"{float(rows[20][4]) * 3:.2f}"


def bad_open(rows: list[list[str]]) -> None:
    """Make row 20's open (and so its high) ten times too big."""
    rows[20][3] = f"{float(rows[20][3]) * 10:.2f}"
    rows[20][4] = rows[20][3]


def bad_close(rows: list[list[str]]) -> None:
    """Make row 20's close (and its high) five times too big."""
    rows[20][6] = f"{float(rows[20][6]) * 5:.2f}"
    rows[20][4] = rows[20][6]
    rows[20][8] = f"{float(rows[20][7]) * float(rows[20][6]):.6f}"


def spike(rows: list[list[str]]) -> None:
    """Make row 20's close 30% higher than its neighbours: < 2x, but out and back far."""
    close = float(rows[19][6]) * 1.3
    rows[20][3] = rows[19][6]
    rows[20][4] = f"{close:.2f}"
    rows[20][6] = f"{close:.2f}"
    rows[20][8] = f"{float(rows[20][7]) * close:.6f}"
    rows[21][3] = f"{close:.2f}"
    rows[21][4] = f"{max(close, float(rows[21][6])):.2f}"


def swap_volumes(rows: list[list[str]]) -> None:
    """Swap the volume columns of rows 10 to 14, as Bitstamp did before 2020-10-12."""
    for row in rows[10:15]:
        row[7], row[8] = row[8], row[7]


def duplicate(rows: list[list[str]]) -> None:
    """Repeat row 20's time on a different row placed after it in the (newest-first) file."""
    rows.insert(20, [*rows[20][:3], *(f"{float(v) * 1.001:.2f}" for v in rows[20][3:7]),
                     *rows[20][7:]])


def drop_rows(start: int, count: int) -> Mutation:
    """Return a mutation deleting `count` rows from `start`."""
    def mutate(rows: list[list[str]]) -> None:
        del rows[start:start + count]
    return mutate


def off_grid(rows: list[list[str]]) -> None:
    """Insert a row half an interval after row 20."""
    rows.insert(21, [str(int(rows[20][0]) + 1800), *rows[20][1:]])


def extra_field(rows: list[list[str]]) -> None:
    """Append a field to row 20."""
    rows[20].append("7")


def truncate(rows: list[list[str]]) -> None:
    """Cut row 20 after its open."""
    del rows[20][4:]


QUIRKS = [
    # (id, mutation, kind, action, issues of the kind, bars left)
    ("extra column", extra_field, IssueKind.COLUMN_COUNT, Action.DROPPED, 1, N_BARS - 1),
    ("truncated row", truncate, IssueKind.COLUMN_COUNT, Action.DROPPED, 1, N_BARS - 1),
    ("text price", set_field(20, 4, "abc"), IssueKind.NOT_A_NUMBER, Action.DROPPED, 1,
     N_BARS - 1),
    ("nan price", set_field(20, 6, "nan"), IssueKind.NOT_A_NUMBER, Action.DROPPED, 1,
     N_BARS - 1),
    ("inf price", set_field(20, 3, "inf"), IssueKind.NOT_A_NUMBER, Action.DROPPED, 1,
     N_BARS - 1),
    ("text volume", set_field(20, 7, "n/a"), IssueKind.NOT_A_NUMBER, Action.DROPPED, 1,
     N_BARS - 1),
    ("both volumes empty", lambda rows: rows[20].__setitem__(slice(7, 9), ["", ""]),
     IssueKind.NOT_A_NUMBER, Action.DROPPED, 1, N_BARS - 1),
    ("text time", set_field(20, 0, "yesterday"), IssueKind.BAD_TIME, Action.DROPPED, 1,
     N_BARS - 1),
    ("time in 1970", set_field(20, 0, "5"), IssueKind.BAD_TIME, Action.DROPPED, 1, N_BARS - 1),
    ("negative time", set_field(20, 0, "-1600000000"), IssueKind.BAD_TIME, Action.DROPPED, 1,
     N_BARS - 1),
    ("zero price", set_field(20, 5, "0"), IssueKind.NON_POSITIVE_PRICE, Action.DROPPED, 1,
     N_BARS - 1),
    ("negative price", set_field(20, 5, "-3"), IssueKind.NON_POSITIVE_PRICE, Action.DROPPED, 1,
     N_BARS - 1),
    ("negative volume", set_field(20, 7, "-1"), IssueKind.NEGATIVE_VOLUME, Action.DROPPED, 1,
     N_BARS - 1),
    ("high below close", bad_high, IssueKind.INCONSISTENT_OHLC, Action.DROPPED, 1, N_BARS - 1),
    ("low above open", bad_low, IssueKind.INCONSISTENT_OHLC, Action.DROPPED, 1, N_BARS - 1),
    ("duplicate time", duplicate, IssueKind.DUPLICATE, Action.DROPPED, 1, N_BARS),
    ("off-grid time", off_grid, IssueKind.OFF_GRID, Action.DROPPED, 1, N_BARS),
    ("one missing bar", drop_rows(30, 1), IssueKind.GAP, Action.KEPT, 1, N_BARS - 1),
    ("three missing bars", drop_rows(30, 3), IssueKind.GAP, Action.KEPT, 1, N_BARS - 3),
    ("bad open", bad_open, IssueKind.BAD_PRINT, Action.REPAIRED, 1, N_BARS),
    ("bad high wick", wick, IssueKind.BAD_PRINT, Action.REPAIRED, 1, N_BARS),
    ("bad close", bad_close, IssueKind.BAD_PRINT, Action.DROPPED, 1, N_BARS - 1),
    ("spike out and back", spike, IssueKind.BAD_PRINT, Action.DROPPED, 1, N_BARS - 1),
    ("swapped volumes", swap_volumes, IssueKind.SWAPPED_VOLUME, Action.REPAIRED, 5, N_BARS),
    ("empty quote volume", set_field(20, 8, ""), IssueKind.MISSING_VOLUME, Action.REPAIRED, 1,
     N_BARS),
    ("empty base volume", set_field(20, 7, ""), IssueKind.MISSING_VOLUME, Action.REPAIRED, 1,
     N_BARS),
    ("zero volume", lambda rows: rows[20].__setitem__(slice(7, 9), ["0", "0"]),
     IssueKind.ZERO_VOLUME, Action.KEPT, 1, N_BARS),
    ("quote volume 10x off", scale_field(20, 8, 10.0), IssueKind.INCONSISTENT_VOLUME,
     Action.KEPT, 1, N_BARS),
]


@pytest.mark.parametrize(("mutate", "kind", "action", "count", "left"),
                         [pytest.param(*case[1:], id=case[0]) for case in QUIRKS])
def test_each_quirk_is_handled_and_reported(mutate: Mutation, kind: IssueKind, action: Action,
                                            count: int, left: int) -> None:
    rows = clean_rows()
    mutate(rows)
    bars, report = parse(rows)
    found = [issue for issue in report.issues if issue.kind is kind]
    assert len(found) == count, report.render()
    assert all(issue.action is action for issue in found)
    assert len(bars) == left == report.bars
    assert report.data_lines == report.bars + report.dropped
    assert kind.value in report.render()
    # whatever was kept is usable: finite, positive, consistent, strictly increasing in time
    assert np.all(np.diff(bars.time_ns) > 0)
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(np.isfinite(bars.volume_quote)) and np.all(bars.volume_base >= 0)


def test_malformed_rows_are_reported_with_their_line_numbers() -> None:
    rows = clean_rows()
    rows[20][6] = "abc"
    rows[40][4] = "1e999"
    _, report = parse(rows)
    dropped = sorted(issue.line for issue in report.issues if issue.action is Action.DROPPED)
    assert dropped == sorted([line_of(20), line_of(40)])
    assert report.malformed == 2 == report.dropped
    assert report.count(IssueKind.GAP) == 2  # each dropped bar leaves a one-bar gap


def test_a_duplicate_keeps_the_first_row_in_the_file() -> None:
    rows = clean_rows()
    duplicate(rows)                       # the copy is at oldest-first index 20 ...
    bars, report = parse(rows)            # ... so it is later in the newest-first file
    (issue,) = report.issues
    kept_close = float(rows[21][6])       # the original, earlier in the file
    index = int(np.searchsorted(bars.time_ns, int(rows[21][0]) * 10**9))
    assert bars.close[index] == kept_close
    assert "different values" in issue.detail


def test_gap_counts_the_missing_bars_and_says_where() -> None:
    rows = clean_rows()
    del rows[30:33]
    _, report = parse(rows)
    (gap,) = report.issues
    assert gap.count == 3 == report.missing_bars
    assert gap.line == 3 + (N_BARS - 3 - 1 - 30)  # the first bar after the gap
    assert "3 missing bar(s) between" in gap.detail


def test_swapped_volumes_are_swapped_back() -> None:
    rows = clean_rows()
    expected = [(float(row[7]), float(row[8])) for row in rows[10:15]]
    swap_volumes(rows)
    bars, _ = parse(rows)
    assert list(zip(bars.volume_base[10:15], bars.volume_quote[10:15], strict=True)) == expected


def test_bad_open_is_repaired_from_the_previous_close() -> None:
    rows = clean_rows()
    bad_open(rows)
    bars, report = parse(rows)
    assert bars.open[20] == bars.close[19]
    assert bars.high[20] == max(bars.open[20], bars.close[20])
    assert "open" in report.issues[0].detail and "-> " in report.issues[0].detail


def test_missing_quote_volume_is_filled_from_base_times_close() -> None:
    rows = clean_rows()
    rows[20][8] = ""
    bars, _ = parse(rows)
    assert bars.volume_quote[20] == pytest.approx(bars.volume_base[20] * bars.close[20])


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param(BANNER + "\n", id="banner only"),
    pytest.param(f"{BANNER}\n{HEADER}\n", id="header only"),
    pytest.param(f"{BANNER}\n{HEADER}\n1600000000,d,BTC/USD,1,1,1,1,1,1\n", id="one row"),
    pytest.param("\x00\x01\x02garbage\n" * 30, id="binary"),
    pytest.param("date,open,high,low,close,Volume BTC,Volume USD\n", id="no time column"),
    pytest.param("unix,open,high,low,close\n1600000000,1,1,1,1\n", id="no volume columns"),
    pytest.param(f"{BANNER}\n{HEADER}\n" + "1600000000,d,BTC/USD,1,1,1,1,1,1\n" * 3,
                 id="one time only"),
    pytest.param(f"{BANNER}\n{HEADER}\n" + "x,y,z\n" * 20, id="only bad rows"),
])
def test_hopeless_files_raise_the_package_error(text: str) -> None:
    with pytest.raises(DataFormatError):
        parse_ohlcv(text)


@pytest.mark.parametrize("bad", [{"price_factor": 1.0}, {"spike_sigmas": 0.0},
                                 {"median_window": 2}])
def test_nonsense_thresholds_are_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="price_factor"):
        parse_ohlcv(to_text(clean_rows()), **bad)  # type: ignore[arg-type]


def test_crlf_bom_and_oldest_first_order_are_accepted() -> None:
    rows = clean_rows()
    text = "\ufeff" + to_text(rows, newest_first=False).replace("\n", "\r\n")
    bars, report = parse_ohlcv(text)
    reference, _ = parse(rows)
    assert report.issues == ()
    assert np.array_equal(bars.close, reference.close)


# --- the real slices -------------------------------------------------------------------------

def test_bitstamp_slice_swapped_volume_boundary() -> None:
    bars, report = parse_ohlcv(slice_text("bitstamp_btcusd_1h_slice.csv"))
    swapped = [issue.line for issue in report.issues if issue.kind is IssueKind.SWAPPED_VOLUME]
    assert report.bars == len(bars) == 500 and report.dropped == 0
    assert swapped == list(range(245, 503))  # 2020-10-12 08:00 and everything older
    assert report.count(IssueKind.GAP) == 0 and bars.interval_s == 3600.0
    vwap = bars.volume_quote / bars.volume_base
    assert np.all((vwap >= bars.low / 1.05) & (vwap <= bars.high * 1.05))


@pytest.mark.parametrize(("name", "bad_open", "kept_open"), [
    ("binance_btcusdt_1h_slice.csv", "16199.91", "4308.83"),
    ("binance_ethusdt_1h_slice.csv", "652.74", "300.79"),
])
def test_binance_slice_duplicates_gap_and_bad_first_bar(name: str, bad_open: str,
                                                        kept_open: str) -> None:
    bars, report = parse_ohlcv(slice_text(name))
    duplicates = [i.line for i in report.issues if i.kind is IssueKind.DUPLICATE]
    gaps = [i for i in report.issues if i.kind is IssueKind.GAP]
    first = [i for i in report.issues if i.line == 1002 and i.kind is IssueKind.BAD_PRINT]
    assert duplicates == [25, 27, 29, 31]
    assert [(g.line, g.count) for g in gaps] == [(122, 4)]
    assert len(first) == 1 and first[0].action is Action.REPAIRED
    assert f"open {bad_open} -> {kept_open}" in first[0].detail
    assert bars.open[0] == float(kept_open) == bars.close[0] == bars.high[0]
    assert report.bars == 996 and report.data_lines == 1000 and report.dropped == 4
    assert report.count(IssueKind.ZERO_VOLUME) > 0


def test_eth_slice_flash_low_is_repaired() -> None:
    bars, report = parse_ohlcv(slice_text("binance_ethusdt_1h_slice.csv"))
    (issue,) = [i for i in report.issues if i.line == 882]
    assert issue.kind is IssueKind.BAD_PRINT and "low 144.21 -> 280" in issue.detail
    assert 144.21 not in bars.low


# --- Binance kline CSV -----------------------------------------------------------------------

KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                "taker_buy_volume,taker_buy_quote_volume,ignore")


def kline_text(bars: Bars, unit: str, header: bool) -> str:
    """Return `bars` as Binance kline CSV with times in `unit` ("ms" or "us")."""
    per_ns = {"ms": 10**6, "us": 10**3}[unit]
    lines = [KLINE_HEADER] if header else []
    step = bars.interval_ns // per_ns
    for i in range(len(bars)):
        start = int(bars.time_ns[i]) // per_ns
        lines.append(",".join([
            str(start), f"{bars.open[i]:.8f}", f"{bars.high[i]:.8f}", f"{bars.low[i]:.8f}",
            f"{bars.close[i]:.8f}", f"{bars.volume_base[i]:.8f}", str(start + step - 1),
            f"{bars.volume_quote[i]:.8f}", "100", "1.0", "2.0", "0"]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("unit", ["ms", "us"])
@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_binance_kline_ms_and_us_with_and_without_header(unit: str, header: bool) -> None:
    reference, _ = parse_ohlcv(slice_text("binance_btcusdt_1h_slice.csv"))
    bars, report = parse_ohlcv(kline_text(reference, unit, header))
    assert report.layout == "binance-kline" and report.time_units == (unit,)
    assert report.header_line == (1 if header else 0) and report.banner_lines == 0
    assert report.issues == tuple(i for i in report.issues if i.kind is IssueKind.GAP
                                  or i.kind is IssueKind.ZERO_VOLUME)
    assert np.array_equal(bars.time_ns, reference.time_ns)
    assert np.allclose(bars.close, reference.close) and np.allclose(bars.volume_quote,
                                                                    reference.volume_quote)
    assert bars.interval_ns == 3600 * 10**9


def test_kline_switching_from_ms_to_us_mid_file_stays_continuous() -> None:
    reference, _ = parse_ohlcv(slice_text("binance_btcusdt_1h_slice.csv"))
    ms = kline_text(reference, "ms", header=False).splitlines()
    us = kline_text(reference, "us", header=False).splitlines()
    bars, report = parse_ohlcv("\n".join(ms[:500] + us[500:]))
    assert report.time_units == ("ms", "us")
    assert np.array_equal(bars.time_ns, reference.time_ns)


@pytest.mark.parametrize("unit", [
    pytest.param(str, id="seconds"),
    pytest.param(lambda s: f"{s}.0", id="seconds-float"),
    pytest.param(lambda s: str(s * 1000), id="milliseconds"),
    pytest.param(lambda s: str(s * 10**6), id="microseconds"),
    pytest.param(lambda s: str(s * 10**9), id="nanoseconds"),
])
def test_time_units_are_told_by_magnitude(unit: Callable[[int], str]) -> None:
    rows = clean_rows(5)
    for row in rows:
        row[0] = unit(int(row[0]))
    bars, report = parse(rows)
    assert bars.time_ns.tolist() == [(T0 + 3600 * i) * 10**9 for i in range(5)]
    assert report.issues == ()


def test_fractional_seconds_are_kept_exactly() -> None:
    rows = clean_rows(5)
    for row in rows:
        row[0] = f"{row[0]}.5"
    bars, _ = parse(rows)
    assert int(bars.time_ns[0]) == T0 * 10**9 + 500_000_000


# --- properties ------------------------------------------------------------------------------

CLEAN = to_text(clean_rows(40))
CLEAN_LINES = CLEAN.splitlines()


def check_accounting(text: str) -> ImportReport | None:
    """Parse `text`; return the report, or None for a hopeless text; check the invariants."""
    try:
        bars, report = parse_ohlcv(text)
    except DataFormatError:
        return None
    assert report.data_lines == report.bars + report.dropped == len(bars) + report.dropped
    assert all(1 <= issue.line <= len(text.split("\n")) for issue in report.issues)
    assert np.all(np.diff(bars.time_ns) > 0)
    for column in (bars.open, bars.high, bars.low, bars.close):
        assert np.all(np.isfinite(column)) and np.all(column > 0)
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    report.render(max_details=None)
    return report


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises_anything_but_data_format_error(text: str) -> None:
    check_accounting(text)


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(CLEAN)))
def test_truncated_files_are_parsed_or_hopeless(cut: int) -> None:
    text = CLEAN[:cut]
    report = check_accounting(text)
    data = [line for line in text.split("\n")[2:] if line.strip()]
    if report is not None:
        assert report.data_lines == len(data)
        assert report.bars >= len(data) - 1  # at most the cut last line is lost
    else:
        assert len(data) <= 2  # hopeless only when almost nothing is left


ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Garbage inside one field: no line breaks (of any kind str.splitlines knows), which would make
# new lines rather than corrupt this one.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
garbage_field = st.one_of(st.text(st.characters(exclude_characters=LINE_BREAKS), max_size=8),
                          st.sampled_from(
    ["", "nan", "-inf", "1e999", "-1", "0", "1,2", "\x00", "\uff11\uff12", "1_000"]))


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(2, len(CLEAN_LINES) - 1), st.integers(0, 9),
                                garbage_field), min_size=1, max_size=6))
def test_corrupted_rows_are_counted_never_kept_silently(
        edits: list[tuple[int, int, str]]) -> None:
    lines = list(CLEAN_LINES)
    for index, column, value in edits:
        fields = lines[index].split(",")
        if column < len(fields):
            fields[column] = value
        else:
            fields.append(value)
        lines[index] = ",".join(fields)
    report = check_accounting("\n".join(lines) + "\n")
    assert report is not None  # most rows are intact: never hopeless
    dropped = {issue.line for issue in report.issues if issue.action is Action.DROPPED}
    assert len(dropped) == report.dropped  # one drop per line
    flagged = {issue.line for issue in report.issues}
    for number in range(3, len(lines) + 1):
        if lines[number - 1] == CLEAN_LINES[number - 1] or number in flagged:
            continue
        # a changed line kept without a word must still be a well-formed row (the date and
        # symbol columns are not used, so garbage there is harmless)
        fields = [field.strip() for field in lines[number - 1].split(",")]
        assert len(fields) == 9
        assert fields[0].isascii() and fields[0].replace(".", "", 1).isdigit()
        assert all(ASCII_NUMBER.fullmatch(f) and math.isfinite(float(f)) for f in fields[3:9])
    # every untouched line is kept unless another line took its time first or it was judged
    # against a corrupted neighbour
    untouched = sum(1 for number in range(3, len(lines) + 1)
                    if lines[number - 1] == CLEAN_LINES[number - 1])
    assert report.bars >= untouched - report.count(IssueKind.DUPLICATE) - report.count(
        IssueKind.BAD_PRINT) - report.count(IssueKind.OFF_GRID)


@settings(max_examples=100, deadline=None)
@given(seconds=st.integers(min_value=315_532_800, max_value=4_102_444_799 - 7200),
       digits=st.sampled_from([1, 10**3, 10**6, 10**9]))
def test_every_unit_round_trips_through_the_importer(seconds: int, digits: int) -> None:
    rows = clean_rows(3)
    for i, row in enumerate(rows):
        row[0] = str((seconds + 3600 * i) * digits)
    bars, _ = parse(rows)
    assert int(bars.time_ns[0]) == seconds * 10**9
