"""`python -m feedsim` with a bad setting or symbols file: exit status 2 and one JSON error line
naming what is wrong, before anything binds or ticks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SYMBOLS = ROOT / "feedsim" / "symbols.toml"

pytestmark = pytest.mark.integration  # starts feedsim (though it stops before binding)


@pytest.mark.parametrize(("env", "edit", "named"), [
    ({"FEED_TICK_RATE": "0"}, None, "FEED_TICK_RATE=0.0 is below the minimum"),
    ({"FEED_REPLAY_SYMBOL": "ETH-USD"}, None,
     "FEED_REPLAY_SYMBOL='ETH-USD' needs FEED_REPLAY_FILE"),
    ({}, ("trade_probability = 0.3", "trade_probabilty = 0.9"),
     "symbol #1 (BTC-USD): unknown key 'trade_probabilty'; did you mean 'trade_probability'?"),
    ({}, ("tick_size = 0.01", "tick_size = 1000000.0"),
     "symbol #1 (BTC-USD): 'tick_size' 1e+06 is too coarse for the starting price 65000"),
])
def test_a_bad_setting_or_symbols_file_stops_feedsim_with_one_line_naming_it(
        tmp_path: Path, env: dict[str, str], edit: tuple[str, str] | None, named: str) -> None:
    if edit is not None:
        text = DEFAULT_SYMBOLS.read_text()
        assert edit[0] in text
        (tmp_path / "symbols.toml").write_text(text.replace(*edit, 1))
        env = {**env, "SYMBOLS_FILE": str(tmp_path / "symbols.toml")}
    done = subprocess.run(
        [sys.executable, "-m", "feedsim"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False, env={**feedsim_env(), **env})
    output = done.stdout + done.stderr
    assert 2 == done.returncode, output
    lines = output.splitlines()
    assert 1 == len(lines), output
    line = orjson.loads(lines[0])
    assert ("error", "bad configuration") == (line["level"], line["event"])
    assert named in line["error"]
    assert ("feedsim", "feedsim-1") == (line["service"], line["instance"])  # as documented


def feedsim_env() -> dict[str, str]:
    """This environment without feedsim's settings, on ports of its own choosing."""
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("FEED_", "SERVICE_")) and k != "SYMBOLS_FILE"}
    return {**inherited, "FEED_PUB_ENDPOINT": "tcp://127.0.0.1:0",
            "FEED_CONTROL_ENDPOINT": "tcp://127.0.0.1:0", "FEED_METRICS_PORT": "0"}


def test_a_replay_speed_with_nothing_to_replay_is_said_to_be_ignored() -> None:
    process = subprocess.Popen([sys.executable, "-m", "feedsim"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**feedsim_env(), "FEED_REPLAY_SPEED": "max",
                                    "FEED_START_WAIT_S": "0"})
    try:
        assert process.stdout is not None
        events = []
        for raw in process.stdout:  # until it serves: the warning comes before that
            events.append(orjson.loads(raw))
            if events[-1]["event"] == "feedsim started":
                break
    finally:
        process.terminate()
        process.communicate(timeout=30)  # reads the rest and closes the pipe
    warned = [e for e in events if e["event"].startswith("FEED_REPLAY_SPEED is set but nothing")]
    assert len(warned) == 1 and warned[0]["level"] == "warning", events
    assert warned[0]["FEED_REPLAY_SPEED"] == "max"
