"""scripts/run.sh (`make run`) refuses a bad setting of its own before it starts anything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system import ROOT

pytestmark = pytest.mark.integration


def run_sh(workdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a copy of scripts/run.sh in `workdir` (beside a link to this venv) with `env`."""
    shutil.copytree(ROOT / "scripts", workdir / "scripts")
    (workdir / ".venv").symlink_to(Path(sys.executable).parents[1])
    return subprocess.run(["bash", str(workdir / "scripts" / "run.sh")], cwd=workdir,
                          env={"PATH": "/usr/bin:/bin", "VENV": str(workdir / ".venv"), **env},
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "6390x", "123456"])
def test_a_bad_private_redis_port_is_refused_before_anything_starts(tmp_path: Path,
                                                                    port: str) -> None:
    """With no Redis at REDIS_URL, run.sh used to start a private Redis on port 'abc' (which
    failed) and the bridge and API looped on tracebacks."""
    done = run_sh(tmp_path, REDIS_URL="redis://127.0.0.1:1/0", MDS_PRIVATE_REDIS_PORT=port)
    assert 2 == done.returncode, done.stdout + done.stderr
    assert f"MDS_PRIVATE_REDIS_PORT='{port}' is not a port number" in done.stderr
    assert "" == done.stdout
    assert not (tmp_path / "var").exists()  # nothing was prepared, let alone started


def test_a_redis_url_redis_py_refuses_is_refused_not_replaced_by_a_private_redis(
        tmp_path: Path) -> None:
    """It used to look like a Redis that does not answer: a traceback, then a private Redis."""
    done = run_sh(tmp_path, REDIS_URL="redis://[bad")
    assert 2 == done.returncode, done.stdout + done.stderr
    assert done.stderr.strip().startswith("REDIS_URL is not a URL redis-py accepts (ValueError)")
    assert "" == done.stdout
    assert not (tmp_path / "var").exists()
