# The README's commands. Each target creates .venv/ when it is missing and installs the
# package (editable, with every extra) into it, so a fresh clone needs nothing but python3.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv system-deps runners demo test test-fast bench bench-runners soak lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

venv: $(STAMP)

# PostgreSQL server binaries (Debian packages) for the metadata-store tests.
system-deps:
	@bash .ci/system-deps

# Beam's Flink job-server jar (Maven Central) and Prism (Go module proxy), cached under
# ~/.cache/streamhouse-beam/ between runs on the same machine.
runners: venv
	@bash .ci/fetch-runners

demo: venv
	$(PY) examples/demo.py

# Everything (tests/ and integration/): PostgreSQL, the S3/GCS emulators, Flink and Prism.
test: venv system-deps runners
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

# The unit tests without servers or runners, each property test at a tenth of its examples
# (the hypothesis profile "fast", conftest.py): under 2 minutes on 2 cores.
test-fast: venv
	$(PY) -m pytest -q -ra -m "not slow and not postgres" --hypothesis-profile=fast tests $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/run_all.py

# Throughput on Flink and Prism with long-lived job services (5M records; LOOPBACK, then SDK
# worker processes and a session cluster), tailing freshness on both (Flink with and without
# checkpoints), and a checkpointed streaming read's catch-up and idle cost on Flink (about an
# hour on 2 cores); reports in benchmarks/results/. Smoke runs: each script's --quick.
BENCH_RUNNERS_ARGS ?=
bench-runners: venv runners
	$(PY) benchmarks/bench_flink.py --runners flink,prism --profile --name flink-loopback $(BENCH_RUNNERS_ARGS)
	$(PY) benchmarks/bench_flink.py --runners flink,cluster --environment external \
		--cases "records,batches,avro,trivial,batches mpr=50000" --name flink-external $(BENCH_RUNNERS_ARGS)
	$(PY) benchmarks/bench_freshness.py --flink-checkpointing-ms 1000 $(BENCH_RUNNERS_ARGS)
	$(PY) benchmarks/bench_flink_streaming.py $(BENCH_RUNNERS_ARGS)

# A tailing read on Flink for SOAK_MINUTES (8 partitions, a trickle of appends): the latest
# checkpoint must keep its size, the output and the commits must be exact (docs/flink.md).
SOAK_MINUTES ?= 30
soak: venv runners
	$(PY) integration/soak_flink_state.py --minutes $(SOAK_MINUTES) \
		--report docs/results/flink-soak.md --json docs/results/flink-soak.json

lint: venv
	$(VENV)/bin/ruff check streamhouse_beam tests integration benchmarks examples
	$(VENV)/bin/ruff format --check streamhouse_beam tests integration benchmarks examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info demo-data
	find streamhouse_beam \( -name "*.so" -o -name "*.pyd" \) -delete
