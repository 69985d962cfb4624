"""The REST API: read-only prices and history from the bridge's Redis, served by gunicorn.

``gunicorn -c api/gunicorn_conf.py 'api.app:get_app()'`` builds one app (and one Redis client)
per worker after the fork. Exceptions raised here::

    MarketDataError
     +-- StoreError             reading history failed (answered as 500 internal)
     |    +-- StoreUnavailable  Redis is unreachable or timed out (503 unavailable)
     +-- InvalidParameter       a query parameter is malformed (400 invalid_parameter;
     |                          marketdata.errors, shared with gRPC)
     +-- ApiError
          +-- Unavailable       the data is not there yet (503 unavailable)
"""
