"""Exec a command that gets SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG).

`make run` execs supervisord through this, so supervisord is make's child. GNU make does not
pass a SIGTERM on to its recipe; when make dies of one (an orchestrator stopping `make run`),
the kernel now sends supervisord SIGTERM and it stops every program cleanly, instead of leaving
them running with the ports held. Elsewhere (no prctl) it simply execs the command.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

if len(sys.argv) < 2:
    sys.exit("usage: tied_to_parent.py COMMAND [ARG...]")
if sys.platform.startswith("linux"):
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit("parent exited before start-up")
os.execv(sys.argv[1], sys.argv[1:])
