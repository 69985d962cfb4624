"""Import OHLCV CSV text into :class:`Bars`, repairing or dropping bad rows and saying which.

Layouts, detected from the text (never from the file name):

* CryptoDataDownload, e.g. Bitstamp ``unix,date,symbol,open,high,low,close,Volume BTC,Volume USD``
  and Binance ``Unix Timestamp,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USDT``: banner
  line(s), then a header, rows newest first; columns are found by header name, the first
  ``Volume`` column is the base volume, the second the quote volume.
* Binance's public kline CSV: 12 columns (open time, open, high, low, close, volume, close time,
  quote volume, trade count, taker buy base, taker buy quote, ignore), with or without a header.

Timestamps may be seconds (``1600498800`` or ``1600498800.0``), milliseconds (13 digits),
microseconds (16 digits) or nanoseconds; the unit is told by magnitude, row by row.

Every data line ends as a bar or as an :class:`Issue` whose action is ``dropped``; repairs are
issues too. What is checked, in order:

1. malformed rows, dropped: wrong column count, a field that is not a finite decimal number, a time
   that is not a plausible epoch time (1980 to 2100), a non-positive price, a negative volume,
   high below max(open, close) or low above min(open, close);
2. duplicated times: the first row in the file is kept, the later ones dropped;
3. the interval: the most common step between consecutive times; rows off that grid are dropped;
4. bad prints, judged against the centred rolling median ``m`` of closes (`median_window` bars):
   a price more than `price_factor` times above or below ``m`` (real hourly bars stay within 1.5x
   of it even in the March 2020 crash; the default factor 2 catches Binance's 3.7x first BTC bar),
   or a close that jumps more than `spike_sigmas` robust standard deviations (1.4826 x MAD of the
   log returns) away and comes back on the next bar (the largest such real hourly spike is about
   28). A bad close cannot be rebuilt, so the bar is dropped; a bad open, high or low is repaired:
   open := previous close (or its own close for the first bar), high := max(open, close) and low
   := min(open, close) when they were the bad ones;
5. volumes: one missing volume is filled from the other and the close; a volume-weighted price
   ``volume_quote / volume_base`` outside [low / 1.05, high x 1.05] whose inverse is inside means
   the two columns are swapped (Bitstamp before 2020-10-12): they are swapped back; neither way
   round, or a zero volume, is kept and reported;
6. gaps: missing intervals between consecutive bars, reported with how many and where.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from calibration.bars import NS_PER_S, Bars, Floats, Ints
from calibration.errors import DataFormatError

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TIME = re.compile(r"[0-9]+(?:\.[0-9]*)?")
_PREAMBLE_LINES = 20
_EARLIEST_NS = int(dt.datetime(1980, 1, 1, tzinfo=dt.UTC).timestamp()) * NS_PER_S
_LATEST_NS = int(dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp()) * NS_PER_S
_VWAP_SLACK = 1.05
_MAD_TO_SD = 1.4826
_KLINE_COLUMNS = 12
_TIME_NAMES = ("unix", "unix timestamp", "timestamp", "open_time", "open time", "opentime",
               "time")
_KLINE_QUOTE_NAMES = ("quote_volume", "quote asset volume", "quote_asset_volume", "quote volume")


class IssueKind(StrEnum):
    """What was wrong with a row or between rows."""

    COLUMN_COUNT = "column_count"
    NOT_A_NUMBER = "not_a_number"
    BAD_TIME = "bad_time"
    NON_POSITIVE_PRICE = "non_positive_price"
    NEGATIVE_VOLUME = "negative_volume"
    INCONSISTENT_OHLC = "inconsistent_ohlc"
    DUPLICATE = "duplicate"
    OFF_GRID = "off_grid"
    BAD_PRINT = "bad_print"
    MISSING_VOLUME = "missing_volume"
    SWAPPED_VOLUME = "swapped_volume"
    INCONSISTENT_VOLUME = "inconsistent_volume"
    ZERO_VOLUME = "zero_volume"
    GAP = "gap"


MALFORMED = frozenset({
    IssueKind.COLUMN_COUNT, IssueKind.NOT_A_NUMBER, IssueKind.BAD_TIME,
    IssueKind.NON_POSITIVE_PRICE, IssueKind.NEGATIVE_VOLUME, IssueKind.INCONSISTENT_OHLC,
})


class Action(StrEnum):
    """What the importer did about an issue."""

    DROPPED = "dropped"
    REPAIRED = "repaired"
    KEPT = "kept"


@dataclass(frozen=True)
class Issue:
    """One problem at one line of the input (1-based), what was done, and how many bars it concerns.

    `count` is 1 except for gaps, where it is the number of missing bars before `line`.
    """

    kind: IssueKind
    action: Action
    line: int
    detail: str
    count: int = 1


@dataclass(frozen=True)
class ImportReport:
    """What the importer read, what it made of it, and every problem it met."""

    source: str
    layout: str
    header_line: int          # 1-based; 0 when there is no header
    banner_lines: int
    data_lines: int           # non-blank lines after the header
    bars: int
    interval_ns: int
    time_units: tuple[str, ...]
    first_ns: int
    last_ns: int
    issues: tuple[Issue, ...]

    def count(self, kind: IssueKind) -> int:
        """Return how many issues of `kind` there are (gaps count once each)."""
        return sum(1 for issue in self.issues if issue.kind is kind)

    @property
    def dropped(self) -> int:
        """Return how many data lines were dropped; `data_lines == bars + dropped` always holds."""
        return sum(1 for issue in self.issues if issue.action is Action.DROPPED)

    @property
    def repaired(self) -> int:
        """Return how many repairs were made (a bar may be repaired for two reasons)."""
        return sum(1 for issue in self.issues if issue.action is Action.REPAIRED)

    @property
    def malformed(self) -> int:
        """Return how many lines were dropped as malformed."""
        return sum(1 for issue in self.issues if issue.kind in MALFORMED)

    @property
    def missing_bars(self) -> int:
        """Return how many bars are missing in the gaps."""
        return sum(issue.count for issue in self.issues if issue.kind is IssueKind.GAP)

    def render(self, max_details: int | None = 10) -> str:
        """Return the report as text: a summary, then each kind with its lines and examples.

        `max_details` limits the example lines shown per kind (None shows every one); the line
        numbers of every issue are always listed, as ranges.
        """
        header = (f"header on line {self.header_line}" if self.header_line
                  else "no header")
        out = [
            f"source:   {self.source}",
            f"layout:   {self.layout} ({header}, {self.banner_lines} banner line(s)), "
            f"time unit {'/'.join(self.time_units)}",
            f"interval: {_duration(self.interval_ns)}",
            f"bars:     {self.bars} from {self.data_lines} data lines, "
            f"{_iso(self.first_ns)} to {_iso(self.last_ns)}",
            f"dropped:  {self.dropped} line(s) ({self.malformed} malformed); "
            f"repaired: {self.repaired}; gaps: {self.count(IssueKind.GAP)} "
            f"({self.missing_bars} missing bars)",
        ]
        by_kind: dict[IssueKind, list[Issue]] = {}
        for issue in self.issues:
            by_kind.setdefault(issue.kind, []).append(issue)
        if not by_kind:
            out.append("problems: none")
            return "\n".join(out)
        out.append("problems:")
        for kind in IssueKind:
            issues = by_kind.get(kind)
            if not issues:
                continue
            actions = Counter(issue.action.value for issue in issues)
            done = ", ".join(f"{n} {action}" for action, n in sorted(actions.items()))
            out.append(f"  {kind.value}: {len(issues)} ({done})")
            out.append(f"    lines {_ranges(sorted(issue.line for issue in issues))}")
            shown = issues if max_details is None else issues[:max_details]
            out.extend(f"    line {issue.line}: {issue.detail} [{issue.action.value}]"
                       for issue in shown)
            if len(shown) < len(issues):
                out.append(f"    ... and {len(issues) - len(shown)} more")
        return "\n".join(out)


@dataclass(frozen=True)
class _Layout:
    """Where the columns of one CSV layout are."""

    name: str
    header_line: int          # 0-based index of the header line, -1 without one
    first_data: int           # 0-based index of the first line that may hold data
    banner_lines: int
    columns: int
    time: int
    open: int
    high: int
    low: int
    close: int
    volume_base: int
    volume_quote: int


@dataclass
class _Rows:
    """Valid parsed rows, column by column (mutable while importing, never returned)."""

    line: Ints
    time: Ints
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    vbase: Floats
    vquote: Floats

    def take(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> _Rows:
        """Return the rows selected by a mask or index array."""
        return _Rows(self.line[keep], self.time[keep], self.open[keep], self.high[keep],
                     self.low[keep], self.close[keep], self.vbase[keep], self.vquote[keep])


def parse_ohlcv(text: str, source: str = "<text>", *, price_factor: float = 2.0,
                spike_sigmas: float = 40.0, median_window: int = 25) -> tuple[Bars, ImportReport]:
    """Parse OHLCV CSV `text` into clean bars and a report of every problem; never fail on a row.

    Raises :class:`DataFormatError` only for a hopeless text: no recognisable header or kline row,
    or fewer than two valid bars (no interval can be told).
    """
    if price_factor <= 1.0 or spike_sigmas <= 0 or median_window < 3:
        raise ValueError("price_factor must exceed 1, spike_sigmas be positive, median_window >= 3")
    lines = [line.rstrip("\r") for line in text.removeprefix("\ufeff").split("\n")]
    layout = _detect_layout(lines, source)
    issues: list[Issue] = []
    rows, data_lines, units = _parse_rows(lines, layout, issues)
    if rows.line.size < 2:
        raise DataFormatError(f"{source}: only {rows.line.size} valid row(s) among {data_lines} "
                              "data lines; cannot tell the bar interval")
    rows = _drop_duplicates(rows, issues)
    interval = _interval(rows.time, source)
    rows = _drop_off_grid(rows, interval, issues)
    rows = _bad_prints(rows, price_factor, spike_sigmas, median_window, issues)
    _volumes(rows, issues)
    _gaps(rows, interval, issues)
    if rows.line.size < 2:
        raise DataFormatError(f"{source}: fewer than two bars survive the checks")
    rank = {kind: i for i, kind in enumerate(IssueKind)}
    issues.sort(key=lambda issue: (issue.line, rank[issue.kind]))
    bars = Bars(rows.time, rows.open, rows.high, rows.low, rows.close, rows.vbase, rows.vquote,
                interval, rows.line)
    report = ImportReport(
        source=source, layout=layout.name, header_line=layout.header_line + 1,
        banner_lines=layout.banner_lines, data_lines=data_lines, bars=len(bars),
        interval_ns=interval, time_units=units, first_ns=int(bars.time_ns[0]),
        last_ns=int(bars.time_ns[-1]), issues=tuple(issues))
    log.info("imported %s: %d bars, %d dropped, %d repaired", source, len(bars), report.dropped,
             report.repaired)
    return bars, report


def _split(line: str) -> list[str]:
    """Split a CSV line into stripped, unquoted fields (these files never quote a comma)."""
    return [field.strip().strip('"').strip() for field in line.split(",")]


def _detect_layout(lines: list[str], source: str) -> _Layout:
    """Find the header (or the first headerless kline row) and map the columns."""
    banner = 0
    for index, line in enumerate(lines[:_PREAMBLE_LINES]):
        if not line.strip():
            continue
        fields = _split(line)
        names = [field.lower() for field in fields]
        if {"open", "high", "low", "close"} <= set(names):
            return _header_layout(names, index, banner, source)
        if len(fields) == _KLINE_COLUMNS and _TIME.fullmatch(fields[0]):
            return _Layout("binance-kline", -1, index, banner, _KLINE_COLUMNS,
                           0, 1, 2, 3, 4, 5, 7)
        banner += 1
    raise DataFormatError(f"{source}: no OHLCV header and no 12-column kline row in the first "
                          f"{_PREAMBLE_LINES} lines")


def _header_layout(names: list[str], index: int, banner: int, source: str) -> _Layout:
    """Map a header's column names to the columns the importer needs."""
    time = next((names.index(name) for name in _TIME_NAMES if name in names), None)
    if time is None:
        raise DataFormatError(f"{source}: header on line {index + 1} has no time column "
                              f"(one of {', '.join(_TIME_NAMES)})")
    quote = next((names.index(name) for name in _KLINE_QUOTE_NAMES if name in names), None)
    if quote is not None and "volume" in names:
        name, base = "binance-kline", names.index("volume")
    else:
        volumes = [i for i, name in enumerate(names) if name.startswith("volume")]
        if len(volumes) < 2:
            raise DataFormatError(f"{source}: header on line {index + 1} needs a base and a quote "
                                  "volume column")
        name, base, quote = "cryptodatadownload", volumes[0], volumes[1]
    return _Layout(name, index, index + 1, banner, len(names), time, names.index("open"),
                   names.index("high"), names.index("low"), names.index("close"), base, quote)


def _parse_time(field: str) -> tuple[int, str] | None:
    """Return (nanoseconds, unit) for an epoch time in s, ms, us or ns, or None if implausible."""
    if len(field) > 40 or not _TIME.fullmatch(field):
        return None
    whole = int(field.split(".", 1)[0])
    for limit, scale, unit in ((10**11, NS_PER_S, "s"), (10**14, 10**6, "ms"),
                               (10**17, 10**3, "us"), (10**20, 1, "ns")):
        if whole < limit:
            try:
                ns = int(Decimal(field) * scale)
            except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
                return None
            return (ns, unit) if _EARLIEST_NS <= ns < _LATEST_NS else None
    return None


def _number(field: str) -> float | None:
    """Return a finite decimal number, or None for anything else (text, nan, inf, overflow)."""
    if not _NUMBER.fullmatch(field):
        return None
    value = float(field)
    return value if math.isfinite(value) else None


def _parse_rows(lines: list[str], layout: _Layout,
                issues: list[Issue]) -> tuple[_Rows, int, tuple[str, ...]]:
    """Parse every data line, recording malformed ones; return the valid rows and the unit(s)."""
    columns: list[list[float]] = [[] for _ in range(6)]
    kept_lines: list[int] = []
    times: list[int] = []
    units: set[str] = set()
    data_lines = 0
    price_names = ("open", "high", "low", "close")
    for index in range(layout.first_data, len(lines)):
        line = lines[index]
        if not line.strip():
            continue
        data_lines += 1
        number = index + 1

        def drop(kind: IssueKind, detail: str, number: int = number) -> None:
            issues.append(Issue(kind, Action.DROPPED, number, detail))

        fields = _split(line)
        if len(fields) != layout.columns:
            drop(IssueKind.COLUMN_COUNT, f"{len(fields)} fields, expected {layout.columns}")
            continue
        when = _parse_time(fields[layout.time])
        if when is None:
            drop(IssueKind.BAD_TIME, f"time {fields[layout.time][:40]!r} is not an epoch time "
                 "in s, ms, us or ns between 1980 and 2100")
            continue
        prices = [_number(fields[i]) for i in
                  (layout.open, layout.high, layout.low, layout.close)]
        bad = [f"{name} {fields[i][:40]!r}" for name, i, value in
               zip(price_names, (layout.open, layout.high, layout.low, layout.close), prices,
                   strict=True) if value is None]
        if bad:
            drop(IssueKind.NOT_A_NUMBER, "not a number: " + ", ".join(bad))
            continue
        o, h, lo, c = (float(value) for value in prices if value is not None)
        volumes = [_volume(fields[layout.volume_base]), _volume(fields[layout.volume_quote])]
        if any(v is None for v in volumes) or all(np.isnan(v) for v in volumes if v is not None):
            drop(IssueKind.NOT_A_NUMBER, f"volumes {fields[layout.volume_base][:40]!r}, "
                 f"{fields[layout.volume_quote][:40]!r} are not numbers")
            continue
        vb, vq = (float(v) for v in volumes if v is not None)
        if min(o, h, lo, c) <= 0:
            drop(IssueKind.NON_POSITIVE_PRICE, f"prices {o:g}, {h:g}, {lo:g}, {c:g}")
            continue
        if vb < 0 or vq < 0:
            drop(IssueKind.NEGATIVE_VOLUME, f"volumes {vb:g}, {vq:g}")
            continue
        if h < max(o, c) or lo > min(o, c):
            drop(IssueKind.INCONSISTENT_OHLC, f"open {o:g} high {h:g} low {lo:g} close {c:g}: "
                 "high below max(open, close) or low above min(open, close)")
            continue
        ns, unit = when
        units.add(unit)
        kept_lines.append(number)
        times.append(ns)
        for column, value in zip(columns, (o, h, lo, c, vb, vq), strict=True):
            column.append(value)
    order = ("s", "ms", "us", "ns")
    rows = _Rows(np.array(kept_lines, dtype=np.int64), np.array(times, dtype=np.int64),
                 *(np.array(column, dtype=np.float64) for column in columns))
    return rows, data_lines, tuple(unit for unit in order if unit in units)


def _volume(field: str) -> float | None:
    """Return a volume, NaN when the field is empty (to be filled), None when it is not a number."""
    if not field:
        return float("nan")
    return _number(field)


def _drop_duplicates(rows: _Rows, issues: list[Issue]) -> _Rows:
    """Sort by time and keep the first row in the file of each time, reporting the others."""
    order = np.lexsort((rows.line, rows.time))
    rows = rows.take(order)
    repeat = np.zeros(rows.time.size, dtype=bool)
    repeat[1:] = rows.time[1:] == rows.time[:-1]
    first = 0
    for i in range(rows.time.size):
        if not repeat[i]:
            first = i
            continue
        same = all(float(column[i]) == float(column[first]) for column in
                   (rows.open, rows.high, rows.low, rows.close, rows.vbase, rows.vquote))
        issues.append(Issue(IssueKind.DUPLICATE, Action.DROPPED, int(rows.line[i]),
                            f"time {_iso(int(rows.time[i]))} repeats line {int(rows.line[first])}"
                            f" ({'identical' if same else 'different values'}); first kept"))
    return rows.take(~repeat)


def _interval(times: Ints, source: str) -> int:
    """Return the most common step between consecutive times (the smallest on a tie)."""
    steps = np.diff(times)
    if steps.size == 0:
        raise DataFormatError(f"{source}: every valid row has the same time")
    values, counts = np.unique(steps, return_counts=True)
    return int(values[int(np.argmax(counts))])


def _drop_off_grid(rows: _Rows, interval: int, issues: list[Issue]) -> _Rows:
    """Drop rows whose time is not on the common grid of the interval."""
    phase = rows.time % interval
    values, counts = np.unique(phase, return_counts=True)
    grid = values[int(np.argmax(counts))]
    off = phase != grid
    issues.extend(Issue(IssueKind.OFF_GRID, Action.DROPPED, int(line),
                        f"time {_iso(int(t))} is off the {_duration(interval)} grid")
                  for line, t in zip(rows.line[off], rows.time[off], strict=True))
    return rows.take(~off)


def _rolling_median(values: Floats, window: int) -> Floats:
    """Return the centred rolling median of `values`, the window clipped at both ends."""
    half = window // 2
    padded = np.concatenate([np.full(half, np.nan), values, np.full(half, np.nan)])
    return np.asarray(np.nanmedian(sliding_window_view(padded, 2 * half + 1), axis=1),
                      dtype=np.float64)


def _bad_prints(rows: _Rows, factor: float, sigmas: float, window: int,
                issues: list[Issue]) -> _Rows:
    """Drop bars with a bad close and repair bad opens, highs and lows (module docstring, 4)."""
    median = _rolling_median(rows.close, window)
    limit = np.log(factor)
    far = {name: np.abs(np.log(getattr(rows, name) / median)) > limit
           for name in ("open", "high", "low", "close")}
    log_close = np.log(rows.close)
    steps = np.diff(log_close)
    spike = np.zeros(rows.close.size, dtype=bool)
    if steps.size >= 2:
        scale = _MAD_TO_SD * float(np.median(np.abs(steps - np.median(steps))))
        if scale > 0:
            into, out = steps[:-1], steps[1:]
            smaller = np.minimum(np.abs(into), np.abs(out))
            spike[1:-1] = ((smaller > sigmas * scale) & (into * out < 0)
                           & (np.abs(into + out) < 0.5 * smaller))
    bad_close = far["close"] | spike
    for i in np.flatnonzero(bad_close):
        why = (f"{rows.close[i] / median[i]:.3g}x the local median close {median[i]:.6g}"
               if far["close"][i] else f"out and back by more than {sigmas:g} robust sigmas")
        issues.append(Issue(IssueKind.BAD_PRINT, Action.DROPPED, int(rows.line[i]),
                            f"close {rows.close[i]:.10g} is {why}; bar dropped"))
    rows = rows.take(~bad_close)
    median = median[~bad_close]
    repair = (far["open"] | far["high"] | far["low"])[~bad_close]
    for i in np.flatnonzero(repair):
        old = (float(rows.open[i]), float(rows.high[i]), float(rows.low[i]))
        o, h, lo, c = (*old, float(rows.close[i]))
        ratio = max(abs(np.log(p / median[i])) for p in (o, h, lo))
        if abs(np.log(o / median[i])) > limit:
            o = float(rows.close[i - 1]) if i > 0 else c
        h = max(o, c) if abs(np.log(h / median[i])) > limit else max(h, o)
        lo = min(o, c) if abs(np.log(lo / median[i])) > limit else min(lo, o)
        rows.open[i], rows.high[i], rows.low[i] = o, h, lo
        changes = ", ".join(f"{name} {before:.10g} -> {after:.10g}" for name, before, after in
                            zip(("open", "high", "low"), old, (o, h, lo), strict=True)
                            if before != after)
        issues.append(Issue(IssueKind.BAD_PRINT, Action.REPAIRED, int(rows.line[i]),
                            f"{changes} (was {np.exp(ratio):.3g}x away from the local median "
                            f"close {median[i]:.6g})"))
    return rows


def _volumes(rows: _Rows, issues: list[Issue]) -> None:
    """Fill a missing volume, swap back swapped volume columns, report zero and odd volumes."""
    for i in np.flatnonzero(np.isnan(rows.vbase) | np.isnan(rows.vquote)):
        if np.isnan(rows.vquote[i]):
            rows.vquote[i] = rows.vbase[i] * rows.close[i]
            what = f"volume_quote filled as volume_base x close = {rows.vquote[i]:.10g}"
        else:
            rows.vbase[i] = rows.vquote[i] / rows.close[i]
            what = f"volume_base filled as volume_quote / close = {rows.vbase[i]:.10g}"
        issues.append(Issue(IssueKind.MISSING_VOLUME, Action.REPAIRED, int(rows.line[i]), what))
    zero = (rows.vbase == 0) | (rows.vquote == 0)
    issues.extend(Issue(IssueKind.ZERO_VOLUME, Action.KEPT, int(line),
                        f"volumes {vb:g}, {vq:g}; consistency not checked")
                  for line, vb, vq in zip(rows.line[zero], rows.vbase[zero], rows.vquote[zero],
                                          strict=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = rows.vquote / rows.vbase
        inverse = rows.vbase / rows.vquote
    low, high = rows.low / _VWAP_SLACK, rows.high * _VWAP_SLACK
    fits = (vwap >= low) & (vwap <= high)
    swapped = ~zero & ~fits & (inverse >= low) & (inverse <= high)
    odd = ~zero & ~fits & ~swapped
    for i in np.flatnonzero(swapped):
        issues.append(Issue(IssueKind.SWAPPED_VOLUME, Action.REPAIRED, int(rows.line[i]),
                            f"volume_base {rows.vbase[i]:.10g} and volume_quote "
                            f"{rows.vquote[i]:.10g} swapped back (base x close matches quote)"))
    rows.vbase[swapped], rows.vquote[swapped] = rows.vquote[swapped], rows.vbase[swapped]
    issues.extend(Issue(IssueKind.INCONSISTENT_VOLUME, Action.KEPT, int(rows.line[i]),
                        f"volume_quote / volume_base = {vwap[i]:.6g} is outside the bar's range "
                        f"[{rows.low[i]:.6g}, {rows.high[i]:.6g}] either way round")
                  for i in np.flatnonzero(odd))


def _gaps(rows: _Rows, interval: int, issues: list[Issue]) -> None:
    """Report every run of missing intervals between consecutive bars."""
    steps = np.diff(rows.time)
    for i in np.flatnonzero(steps > interval):
        missing = int(steps[i] // interval) - 1
        issues.append(Issue(IssueKind.GAP, Action.KEPT, int(rows.line[i + 1]),
                            f"{missing} missing bar(s) between {_iso(int(rows.time[i]))} and "
                            f"{_iso(int(rows.time[i + 1]))}", count=missing))


def _iso(ns: int) -> str:
    """Return a UTC time as ``YYYY-MM-DD HH:MM:SS``."""
    return dt.datetime.fromtimestamp(ns / NS_PER_S, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(ns: int) -> str:
    """Return an interval as text, e.g. ``1h (3600 s)``."""
    seconds = ns / NS_PER_S
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit} ({seconds:g} s)"
    return f"{seconds:g} s"


def _ranges(lines: list[int]) -> str:
    """Return sorted line numbers as compact ranges, e.g. ``3-7, 9, 12-13``."""
    parts: list[str] = []
    start = prev = lines[0]
    for line in [*lines[1:], -1]:
        if line == prev + 1:
            prev = line
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = line
    return ", ".join(parts)
