# Two commands do everything on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PB2 := marketdata/marketdata_pb2.py

.PHONY: run test lint unit proto install bench clean

run: proto
	exec env VENV=$(VENV) scripts/run.sh

test: proto
	VENV=$(VENV) scripts/test.sh

lint: proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: proto
	$(PY) -m pytest -m "not integration"

install: $(STAMP)

# The venv is (re)built when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,calibration]'
	touch $@

# The gRPC code is generated from proto/, never committed.
proto: $(PB2)

$(PB2): proto/marketdata/marketdata.proto $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/marketdata/marketdata.proto

bench: proto
	$(PY) bench/pipeline.py

clean:
	rm -rf $(VENV) var marketdata/marketdata_pb2*.py marketdata/marketdata_pb2*.pyi
