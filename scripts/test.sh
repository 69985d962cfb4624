#!/usr/bin/env bash
# `make test`: lint, type-check and run every test against a real Redis.
# Uses the Redis at TEST_REDIS_URL (default: REDIS_URL, else 127.0.0.1:6379) when one answers,
# else starts a private one for the run and stops it afterwards. Tests never skip for lack of Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VENV=$(cd "$VENV" && pwd)
. scripts/lib.sh

export TEST_REDIS_URL=${TEST_REDIS_URL:-${REDIS_URL:-redis://127.0.0.1:6379/0}}
private_pid=""
cleanup() { if [ -n "$private_pid" ]; then kill "$private_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
if ! redis_reachable "$TEST_REDIS_URL"; then
    port=${MDS_TEST_REDIS_PORT:-6391}
    server=$(redis_server_binary)
    echo "no Redis at $TEST_REDIS_URL; starting a private one ($server) on 127.0.0.1:$port"
    mkdir -p var
    "$server" --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$PWD/var" \
        --logfile "$PWD/var/test-redis.log" &
    private_pid=$!
    export TEST_REDIS_URL="redis://127.0.0.1:$port/0"
    for _ in $(seq 50); do redis_reachable "$TEST_REDIS_URL" && break; sleep 0.1; done
fi

echo "== ruff"; "$VENV/bin/ruff" check .
echo "== mypy"; "$VENV/bin/mypy"
echo "== pytest (Redis: $TEST_REDIS_URL)"
"$VENV/bin/python" -m pytest "$@"
