"""Scorecard statistics on hand-checkable cases, determinism, the PNG, and the command line."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from calibration import (
    InsufficientData,
    evaluate,
    parse_ohlcv,
    render_comparison,
    scorecard,
    stats,
)
from calibration.bars import Floats
from calibration.cli import main

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
BITSTAMP = DATA / "bitstamp_btcusd_1h_slice.csv"
BTC = DATA / "binance_btcusdt_1h_slice.csv"
ETH = DATA / "binance_ethusdt_1h_slice.csv"
ALTERNATING = np.array([0.01, -0.01] * 500)


# --- statistics by hand ----------------------------------------------------------------------

def test_annualised_volatility_by_hand() -> None:
    assert stats.annualised_volatility(ALTERNATING, 3600.0) == pytest.approx(
        0.01 * math.sqrt(8766.0))
    assert stats.annualised_volatility(ALTERNATING, 86400.0) == pytest.approx(
        0.01 * math.sqrt(365.25))


@pytest.mark.parametrize(("values", "expected"), [
    pytest.param(ALTERNATING, -2.0, id="two-point"),          # m4 / m2^2 = 1
    pytest.param(np.array([0.0] * 8 + [1.0, -1.0]), 5.0 - 3.0, id="sparse"),  # 0.2/0.04 - 3
    pytest.param(np.linspace(-1.0, 1.0, 100_001), 1.8 - 3.0, id="uniform"),
])
def test_excess_kurtosis_by_hand(values: Floats, expected: float) -> None:
    assert stats.excess_kurtosis(values) == pytest.approx(expected, abs=1e-3)


def test_excess_kurtosis_of_a_normal_sample_is_near_zero() -> None:
    sample = np.random.default_rng(1).standard_normal(200_000)
    assert stats.excess_kurtosis(sample) == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.5])
@pytest.mark.parametrize("fraction", [0.025, 0.05])
def test_hill_index_of_exact_pareto_quantiles(alpha: float, fraction: float) -> None:
    n = 40_000
    quantiles = (n / np.arange(1, n + 1)) ** (1.0 / alpha)   # P(X > x) = x^-alpha exactly
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    assert stats.hill_index(quantiles * signs, fraction) == pytest.approx(alpha, rel=0.01)


def test_hill_index_needs_enough_tail() -> None:
    with pytest.raises(InsufficientData):
        stats.hill_index(np.arange(1.0, 21.0), 0.025)
    with pytest.raises(InsufficientData):
        stats.hill_index(np.array([0.0] * 990 + [1.0] * 10), 0.05)


def test_autocorrelation_by_hand() -> None:
    n = ALTERNATING.size
    acf = stats.autocorrelation(ALTERNATING, 3)
    assert acf == pytest.approx([-(n - 1) / n, (n - 2) / n, -(n - 3) / n])
    ramp = np.arange(5.0)   # mean 2, deviations -2..2, sum of squares 10
    assert stats.autocorrelation(ramp, 1)[0] == pytest.approx((-2 * -1 + -1 * 0 + 0 + 1 * 2) / 10)
    with pytest.raises(InsufficientData):
        stats.autocorrelation(np.ones(50), 1)


def test_distances_by_hand() -> None:
    x = np.random.default_rng(2).standard_normal(5000)
    assert stats.ks_distance(x, 3 * x + 7) <= 1.01 / x.size  # z-scored: equal up to rounding
    assert stats.wasserstein(x, 3 * x + 7) == pytest.approx(0.0, abs=1e-9)
    # the +-1 coin against U(-sqrt 3, sqrt 3), both with mean 0 and sd 1: the CDFs differ most
    # just inside +-1, by 1/2 - F_U(-1) = 1 / (2 sqrt 3); W1 = integral |F_U - F_coin| =
    # (1 + (sqrt 3 - 1)^2) / (2 sqrt 3) = 5 / (2 sqrt 3) - 1
    uniform = np.linspace(-1.0, 1.0, 100_001)
    assert stats.ks_distance(ALTERNATING, uniform) == pytest.approx(1 / (2 * math.sqrt(3)),
                                                                    abs=1e-3)
    assert stats.wasserstein(ALTERNATING, uniform) == pytest.approx(5 / (2 * math.sqrt(3)) - 1,
                                                                    abs=1e-3)
    assert stats.correlation(x, 2 * x + 1) == pytest.approx(1.0)
    assert stats.correlation(x, -x) == pytest.approx(-1.0)


# --- scorecard -------------------------------------------------------------------------------

ROWS = ["annualised volatility", "excess kurtosis", "Hill index, top 2.5%",
        "Hill index, top 5.0%", "ACF r lag 1", "ACF |r| lag 10", "ACF |r| lag 1",
        "ACF |r| lag 100", "ACF |r| mean distance 1-100", "KS distance, z-scored",
        "Wasserstein, z-scored"]


def test_scorecard_of_a_series_against_itself() -> None:
    real = np.random.default_rng(3).standard_t(4, 5000) * 0.01
    card = scorecard(real, real, 3600.0, correlations=(0.8, 0.8), seed=None)
    assert [row.name for row in card.rows] == [*ROWS, "return correlation"]
    for row in card.rows:
        if row.real is not None:
            assert row.generated == row.real
    distances = [row for row in card.rows if row.real is None]
    assert [row.generated for row in distances] == [0.0, 0.0, 0.0]
    for name in ("annualised volatility", "ACF |r| lag 1", "ACF |r| lag 100",
                 "ACF |r| mean distance 1-100", "KS distance, z-scored",
                 "Wasserstein, z-scored", "return correlation"):
        assert card.row(name).passed
    with pytest.raises(KeyError):
        card.row("nope")


@pytest.mark.parametrize(("name", "scale", "passed"), [
    ("annualised volatility", 1.19, True),
    ("annualised volatility", 0.81, True),
    ("annualised volatility", 1.21, False),
    ("annualised volatility", 0.79, False),
])
def test_volatility_tolerance_is_twenty_percent(name: str, scale: float, passed: bool) -> None:
    real = np.random.default_rng(4).standard_normal(2000) * 0.01
    assert scorecard(real, real * scale, 3600.0).row(name).passed is passed


def test_normal_returns_fail_the_fat_tail_rows() -> None:
    rng = np.random.default_rng(5)
    real = rng.standard_t(3, 20_000) * 0.01
    card = scorecard(real, rng.standard_normal(20_000) * 0.01, 3600.0)
    assert not card.row("excess kurtosis").passed
    assert not card.row("Hill index, top 5.0%").generated < 5.0
    assert not card.row("ACF |r| lag 10").passed       # no volatility clustering
    assert card.row("ACF r lag 1").passed
    assert not card.passed
    text = card.render()
    assert "FAIL" in text and "excess kurtosis" in text
    assert json.loads(json.dumps(card.to_dict()))["passed"] is False


def test_evaluation_is_deterministic_per_seed() -> None:
    bars, _ = parse_ohlcv(BITSTAMP.read_text())
    first = evaluate(bars, seed=42)
    again = evaluate(bars, seed=42)
    other = evaluate(bars, seed=43)
    assert first.scorecard == again.scorecard
    assert np.array_equal(first.generated, again.generated)
    assert first.scorecard != other.scorecard
    assert first.scorecard.n_generated == first.scorecard.n_real == 499
    assert evaluate(bars, seed=42, n=300).generated.size == 300


def test_evaluation_with_two_symbols_adds_the_correlation_row() -> None:
    btc, _ = parse_ohlcv(BTC.read_text())
    eth, _ = parse_ohlcv(ETH.read_text())
    result = evaluate(btc, seed=1, other=eth)
    row = result.scorecard.row("return correlation")
    assert row.real == pytest.approx(0.753, abs=0.01)
    assert 0.0 < row.generated < 1.0
    assert result.pair is not None and result.params == result.pair.a
    assert evaluate(btc, seed=1, other=eth).scorecard == result.scorecard


def test_evaluation_needs_enough_bars() -> None:
    bars, _ = parse_ohlcv(BITSTAMP.read_text())
    with pytest.raises(InsufficientData):
        evaluate(bars, seed=0, n=50)


# --- PNG -------------------------------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) from a PNG's IHDR chunk, checking the signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_render_comparison_is_a_png_of_reasonable_size() -> None:
    bars, _ = parse_ohlcv(BITSTAMP.read_text())
    result = evaluate(bars, seed=0)
    png = render_comparison(result.real_close, result.real, result.generated, title="test")
    assert png_size(png) == (1000, 1100)
    assert 20_000 < len(png) < 2_000_000
    assert png.endswith(b"IEND\xaeB`\x82")


# --- command line ----------------------------------------------------------------------------

def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; return (status, stdout, stderr)."""
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_import_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["import", str(BITSTAMP)], capsys)
    assert status == 0
    assert "swapped_volume: 258 (258 repaired)" in out and "lines 245-502" in out
    assert "... and 248 more" in out
    status, out, _ = run(["import", "--all", str(BITSTAMP)], capsys)
    assert status == 0 and "... and" not in out and out.count("line ") > 258


def test_cli_fit_writes_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "params.toml"
    status, out, _ = run(["fit", str(BTC), "--out", str(out_file)], capsys)
    assert status == 0 and out.startswith(f"wrote {out_file}") and ", tail index " in out
    assert "; return tail index " in out_file.read_text().splitlines()[0]
    table = tomllib.loads(out_file.read_text())["garch"]
    assert table["interval_s"] == 3600.0 and 2.0 < table["nu"]
    assert table["alpha"] + table["beta"] < 1.0
    status, printed, _ = run(["fit", str(BTC)], capsys)
    assert status == 0 and tomllib.loads(printed) == tomllib.loads(out_file.read_text())


def test_cli_score_json_png_and_exit_status(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "chart.png"
    status, out, _ = run(["score", str(BITSTAMP), "--seed", "3", "--json", "--png", str(png),
                          "--bars", "400"], capsys)
    data = json.loads(out)
    assert status == (0 if data["passed"] else 1)
    assert data["seed"] == 3 and data["n_generated"] == 400 and len(data["rows"]) == 11
    assert set(data["params"]) >= {"mu", "omega", "alpha", "beta", "nu", "interval_s",
                                   "tail_index"}
    assert 2.0 < data["params"]["tail_index"] <= data["params"]["nu"]
    assert png_size(png.read_bytes()) == (1000, 1100)
    status_again, table, _ = run(["score", str(BITSTAMP), "--seed", "3", "--bars", "400"],
                                 capsys)
    assert status_again == status
    assert "statistic" in table and "tolerance" in table and "overall:" in table


def test_cli_score_two_symbols_and_correlate(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["score", str(BTC), str(ETH), "--json"], capsys)
    assert status in (0, 1)
    assert json.loads(out)["rows"][-1]["name"] == "return correlation"
    status, out, _ = run(["correlate", str(BTC), str(ETH)], capsys)
    assert status == 0 and out.startswith("correlation 0.75") and "994 common" in out


@pytest.mark.parametrize("argv", [
    pytest.param([], id="no-command"),
    pytest.param(["frobnicate"], id="unknown-command"),
    pytest.param(["score", str(BITSTAMP), "--bars", "0"], id="zero-bars"),
    pytest.param(["score", str(BITSTAMP), "--seed", "x"], id="text-seed"),
    pytest.param(["score", str(BITSTAMP), "--seed", "-1"], id="negative-seed"),
    pytest.param(["correlate", str(BTC)], id="one-file"),
    pytest.param(["import", "/nonexistent/file.csv"], id="missing-file"),
    pytest.param(["import", str(DATA)], id="directory"),
    pytest.param(["fit", str(Path(__file__))], id="not-ohlcv"),
    pytest.param(["score", str(BITSTAMP), "--bars", "20"], id="too-few-bars"),
    pytest.param(["fit", str(BTC), "--out", "/nonexistent/dir/p.toml"], id="unwritable"),
    # Refused before the fit and the simulation, not after the table was printed.
    pytest.param(["score", str(BITSTAMP), "--png", "/nonexistent/dir/c.png"],
                 id="unwritable-png"),
    pytest.param(["score", str(BITSTAMP), "--png", str(DATA)], id="png-is-a-directory"),
    pytest.param(["correlate", str(BTC), str(BITSTAMP)], id="no-common-returns"),
])
def test_cli_errors_are_one_line_and_exit_2(argv: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("calibration: error: ")
    assert "Traceback" not in err


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "calibration", "import", "/nonexistent.csv"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("calibration: error: cannot read /nonexistent.csv")
    assert done.stderr.count("\n") == 1


BLOCK_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None; "  # its import then fails


@pytest.mark.parametrize("argv", [
    pytest.param(["import", "BITSTAMP"], id="import"),
    pytest.param(["fit", "BTC"], id="fit"),
    pytest.param(["correlate", "BTC", "ETH"], id="correlate"),
    pytest.param(["score", "BITSTAMP", "--bars", "200", "--json"], id="score"),
])
def test_the_cli_runs_without_matplotlib(argv: list[str]) -> None:
    """matplotlib is an optional extra (the Docker image has none): only --png needs it."""
    files = {"BITSTAMP": str(BITSTAMP), "BTC": str(BTC), "ETH": str(ETH)}
    code = (BLOCK_MATPLOTLIB + "from calibration.cli import main; "
            f"sys.exit(main({[files.get(a, a) for a in argv]!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr
    assert done.stdout and "Traceback" not in done.stderr


def test_png_without_matplotlib_is_one_line_before_any_work(tmp_path: Path) -> None:
    code = (BLOCK_MATPLOTLIB + "from calibration.cli import main; "
            f"sys.exit(main(['score', {str(BITSTAMP)!r}, '--png', "
            f"{str(tmp_path / 'c.png')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("calibration: error: --png needs matplotlib")
    assert "pip install '.[calibration]'" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize(("rows", "extra", "says"), [
    (3, [], "the file gives 2 returns (3 bars); scoring needs at least 102"),
    (68, ["--bars", "500"], "the file gives 67 returns (68 bars); scoring needs at least 102"),
    (500, ["--bars", "20"], "20 generated returns were asked for; scoring needs at least 102"),
])
def test_score_says_which_side_is_too_short(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            rows: int, extra: list[str], says: str) -> None:
    short = tmp_path / "short.csv"
    short.write_text("".join(BITSTAMP.read_text().splitlines(keepends=True)[:rows + 2]))
    status, out, err = run(["score", str(short), *extra], capsys)
    assert status == 2 and out == ""
    assert err == f"calibration: error: {says} (its autocorrelations reach lag 100)\n"
