#!/usr/bin/env bash
# `make run`: start the whole system under supervisord, in the foreground; Ctrl-C stops it.
# Uses the Redis at REDIS_URL when one answers, else starts a private one on MDS_PRIVATE_REDIS_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VENV=$(cd "$VENV" && pwd)
. scripts/lib.sh

# Refused here, before anything starts: a bad port only showed later, as a private Redis that
# could not start and a bridge and API looping on connection errors.
private_port=${MDS_PRIVATE_REDIS_PORT:-6390}
if ! [[ $private_port =~ ^[0-9]{1,5}$ ]] || ((10#$private_port < 1 || 10#$private_port > 65535)); then
    echo "MDS_PRIVATE_REDIS_PORT='$private_port' is not a port number from 1 to 65535" >&2
    exit 2
fi

export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
# A REDIS_URL that redis-py refuses is refused here in the bridge's and API's words: else it
# looked like a Redis that does not answer, and a private one silently took its place.
"$VENV/bin/python" - <<'PY' || exit 2
import sys
from marketdata.errors import ConfigError
from marketdata.settings import env_redis_url, environ
try:
    env_redis_url(environ(), "")
except ConfigError as exc:
    sys.exit(str(exc))
PY

# A second `make run` in this checkout must stop here, before it clears var/ under the running
# system (its API's metrics files), rather than after, when supervisord finds its socket taken.
# Asking this checkout's supervisord (its socket is under var/) cannot be fooled by a stale
# pidfile whose pid another process now has.
if "$VENV/bin/supervisorctl" -c supervisord.conf pid >/dev/null 2>&1; then
    echo "the system is already running from this checkout:" \
         "$VENV/bin/supervisorctl -c supervisord.conf status; stop it first" >&2
    exit 1
fi

mkdir -p var/supervisord.d
rm -f var/supervisord.d/*.conf
if redis_reachable "$REDIS_URL"; then
    echo "using Redis at $REDIS_URL"
else
    port=$((10#$private_port))
    server=$(redis_server_binary)
    echo "no Redis at $REDIS_URL; starting a private one ($server) on 127.0.0.1:$port"
    cat > var/supervisord.d/redis.conf <<CONF
[program:redis]
command=$server --bind 127.0.0.1 --port $port --save "" --appendonly no --dir $PWD/var
priority=1
autorestart=true
startsecs=1
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true
CONF
    export REDIS_URL="redis://127.0.0.1:$port/0"
fi

# gunicorn workers share their metrics through this directory; stale files from a previous run
# would be counted again.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/prometheus}
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

echo "REST http://127.0.0.1:${HTTP_PORT:-8080}/api/v1/prices  gRPC 127.0.0.1:${GRPC_PORT:-50051}  ZeroMQ ${FEED_PUB_ENDPOINT:-tcp://127.0.0.1:5555}"
echo "status: $VENV/bin/supervisorctl -c supervisord.conf status"
# Tied to make: when make is stopped with SIGTERM (which it does not pass on), supervisord gets
# SIGTERM too and stops every program (scripts/tied_to_parent.py).
exec "$VENV/bin/python" scripts/tied_to_parent.py "$VENV/bin/supervisord" -n -c supervisord.conf
