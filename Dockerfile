# The whole system in one container: supervisord runs feedsim, bridge and the API (and a
# private Redis when REDIS_URL points at none), exactly as `make run` does on a host.
#   docker build -t mds .
#   docker run --rm --stop-timeout 45 -p 8080:8080 -p 50051:50051 -p 5555:5555 -p 5556:5556 mds
# For a separate Redis: -e REDIS_URL=redis://redis-host:6379/0 (it must answer when the
# container starts: with none reachable, scripts/run.sh starts the private one instead, and logs
# which Redis it uses).
# --stop-timeout: on SIGTERM supervisord stops the programs one after another (api, bridge,
# feedsim), giving each up to its stopwaitsecs (15 + 15 + 10 s) to finish its streams and
# history; docker's default 10 s would kill them half way. They take a second or two in all
# unless something hangs.
# 5556 is feedsim's control socket: read-only requests (ping, status, snapshot, book), which a
# ZeroMQ order-book subscriber needs to resync after a gap.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HTTP_HOST=0.0.0.0 \
    GRPC_HOST=0.0.0.0 \
    FEED_PUB_ENDPOINT=tcp://0.0.0.0:5555 \
    FEED_CONTROL_ENDPOINT=tcp://0.0.0.0:5556

RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml ./
RUN python -m venv .venv \
    && .venv/bin/pip install --quiet grpcio-tools $(python -c 'import tomllib; \
print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')

COPY . .
# Generate the gRPC code from proto/ (never committed), then install the package itself.
RUN .venv/bin/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
        proto/marketdata/marketdata.proto \
    && .venv/bin/pip install --quiet --no-deps -e . \
    && useradd --system --home /app mds && mkdir -p var && chown -R mds /app/var

USER mds
EXPOSE 8080 50051 5555 5556
# Healthy = serving fresh prices (/ready: Redis answers and ticks are recent), not merely up.
# A replay of old data needs READY_MAX_TICK_AGE_S above the data's age (see README).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/api/v1/ready', timeout=2).status != 200)"
# scripts/run.sh picks the Redis, then execs supervisord in the foreground (PID 1's child).
ENTRYPOINT ["scripts/run.sh"]
