"""``python -m calibration``: import, fit, score and correlate OHLCV files from the shell.

The only module that touches files or prints. Exit status: 0 on success (for ``score``: every
row passed), 1 when ``score`` has a failing row, 2 for bad arguments, unreadable or hopeless
files, always with a one-line error on stderr and never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from calibration.bars import Bars, log_returns
from calibration.errors import CalibrationError
from calibration.garch import correlate, fit_garch_t, params_to_toml, tail_index
from calibration.importer import parse_ohlcv
from calibration.score import evaluate

PROG = "calibration"
log = logging.getLogger(__name__)


class UsageError(Exception):
    """A problem with the command line or the files it names, shown as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print `message` as one line and exit 2 (argparse would print the usage as well)."""
        sys.stderr.write(f"{PROG}: error: {message}\n")
        raise SystemExit(2)


def _positive(text: str) -> int:
    """Parse a positive integer argument."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _seed(text: str) -> int:
    """Parse a non-negative integer seed."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser with its four subcommands."""
    parser = _Parser(prog=PROG, description="Calibrate the market-data simulator on real "
                     "OHLCV history and score generated series against it.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    imp = commands.add_parser("import", help="read a file and print the import report")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--all", action="store_true", help="show every issue, not 10 per kind")

    fit = commands.add_parser("fit", help="fit GARCH(1,1)-t and print or write TOML")
    fit.add_argument("file", metavar="FILE")
    fit.add_argument("--out", metavar="PARAMS.toml", help="write the parameters here")

    score = commands.add_parser("score", help="fit, simulate with a seed and score; exit 1 "
                                "when a row fails")
    score.add_argument("file", metavar="FILE")
    score.add_argument("other", metavar="FILE_B", nargs="?",
                       help="a second symbol at the same interval: adds the correlation row")
    score.add_argument("--seed", type=_seed, default=0, help="simulation seed (default 0)")
    score.add_argument("--json", action="store_true", help="print the scorecard as JSON")
    score.add_argument("--png", metavar="OUT.png", help="write the comparison chart here")
    score.add_argument("--bars", type=_positive, metavar="N",
                       help="how many bars to generate (default: as many as real returns)")

    corr = commands.add_parser("correlate", help="correlation of two symbols' returns")
    corr.add_argument("file_a", metavar="FILE_A")
    corr.add_argument("file_b", metavar="FILE_B")
    return parser


def _load(path: str) -> Bars:
    """Read and import one file (undecodable bytes become bad rows, not errors)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    bars, report = parse_ohlcv(text, source=path)
    if report.issues:
        log.info("%s: %d dropped, %d repaired", path, report.dropped, report.repaired)
    return bars


def _write(path: str, data: bytes) -> None:
    """Write an output file, turning failures into a usage error."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_writable(path: str) -> None:
    """Refuse an output path that cannot be written, before any slow work is done."""
    target = Path(path)
    parent = target.parent
    if target.is_dir():
        raise UsageError(f"cannot write {path}: Is a directory")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: No such directory {parent}")
    if not os.access(target if target.exists() else parent, os.W_OK):
        raise UsageError(f"cannot write {path}: Permission denied")


def _renderer() -> Callable[..., bytes]:
    """Return the chart renderer, which needs matplotlib (the optional 'calibration' extra)."""
    try:
        from calibration.render import render_comparison  # noqa: PLC0415
    except ImportError as exc:
        raise UsageError(f"--png needs matplotlib, which is not installed ({exc}); install the "
                         "'calibration' extra: pip install '.[calibration]'") from None
    return render_comparison


def _import(args: argparse.Namespace) -> int:
    """Print the import report of one file."""
    try:
        text = Path(args.file).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    _, report = parse_ohlcv(text, source=args.file)
    sys.stdout.write(report.render(max_details=None if args.all else 10) + "\n")
    return 0


def _fit(args: argparse.Namespace) -> int:
    """Fit GARCH-t and print the TOML, or write it and print a summary line."""
    bars = _load(args.file)
    _, returns = log_returns(bars)
    params = fit_garch_t(returns, bars.interval_s)
    toml = params_to_toml(params, comment=f"fitted on {Path(args.file).name}, "
                          f"{returns.size} returns; return tail index "
                          f"{tail_index(params):.2f}")
    if args.out is None:
        sys.stdout.write(toml)
    else:
        _write(args.out, toml.encode())
        sys.stdout.write(f"wrote {args.out}: alpha {params.alpha:.4f} beta {params.beta:.4f} "
                         f"nu {params.nu:.3f}, tail index {tail_index(params):.2f}, annualised "
                         f"volatility "
                         f"{params.annualised_volatility:.1%}\n")
    return 0


def _score(args: argparse.Namespace) -> int:
    """Fit, simulate with the seed, print the scorecard and optionally draw it."""
    render = None
    if args.png is not None:  # what would fail at the end is checked before the work
        render = _renderer()
        _check_writable(args.png)
    bars = _load(args.file)
    other = None if args.other is None else _load(args.other)
    evaluation = evaluate(bars, args.seed, n=args.bars, other=other)
    card = evaluation.scorecard
    if args.json:
        data = card.to_dict()
        params = evaluation.params
        data["params"] = {"mu": params.mu, "omega": params.omega, "alpha": params.alpha,
                          "beta": params.beta, "nu": params.nu, "interval_s": params.interval_s,
                          "annualised_volatility": params.annualised_volatility,
                          "tail_index": tail_index(params)}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(card.render() + "\n")
    if render is not None:
        png = render(evaluation.real_close, evaluation.real, evaluation.generated,
                     title=f"{Path(args.file).name}: real vs GARCH(1,1)-t, seed {args.seed}")
        _write(args.png, png)
    return 0 if card.passed else 1


def _correlate(args: argparse.Namespace) -> int:
    """Print the return correlation of two files on their common timestamps."""
    result = correlate(_load(args.file_a), _load(args.file_b))
    sys.stdout.write(f"correlation {result.rho:.4f} over {result.n} common "
                     f"{result.interval_s:g} s returns\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handlers = {"import": _import, "fit": _fit, "score": _score, "correlate": _correlate}
    try:
        return handlers[args.command](args)
    except (UsageError, CalibrationError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
