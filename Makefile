# The two commands of the README: `make up` and `make test`. Both set everything up first.
SHELL := /bin/bash
PY := .venv/bin/python
# The store: $EASGD_DB_URL, else SQLite in $EASGD_HOME (default ~/.easgd), the same rule a plain
# shell's `easgd runs list` follows. Set either one to use another.

.PHONY: setup up demo test test-fast lint docs bench bench-tune bench-store bench-ui bench-fidelity bench-asynchronous bench-startup

setup:
	@bash scripts/bootstrap.sh

up: setup
	@.venv/bin/easgd up $(UP_ARGS)

demo: setup
	@bash scripts/demo.sh

# Two pytest-xdist workers, each taking whole files (their module fixtures share one horovodrun
# launch or one service), in the order tests/conftest.py sets; TEST_WORKERS=0 runs one process.
# A third worker measured no faster on 2 cores: the suite is bound by the ranks' CPU.
# A run that hangs is interrupted after TEST_MINUTES, so that pytest still prints its summary
# (which tests failed, which worker crashed) before a CI limit kills everything silently.
TEST_WORKERS ?= 2
TEST_MINUTES ?= 70

test: setup
	@eval "$$(bash scripts/test-services.sh)"; \
	timeout -s INT -k 120 $(TEST_MINUTES)m \
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: setup
	@$(PY) -m pytest -m "not horovod and not postgres and not service and not browser and not slow and not slurm" $(PYTEST_ARGS)

lint: setup
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

docs: setup
	@NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict $(DOCS_ARGS)

bench: setup
	@$(PY) -m bench.run $(BENCH_ARGS)

bench-tune: setup
	@$(PY) -m bench.tune $(BENCH_ARGS)

bench-fidelity: setup
	@$(PY) -m bench.fidelity $(BENCH_ARGS)

bench-asynchronous: setup
	@$(PY) -m bench.asynchronous $(BENCH_ARGS)

bench-compression: setup
	@$(PY) -m bench.compression $(BENCH_ARGS)

bench-startup: setup
	@$(PY) -m bench.startup $(BENCH_ARGS)

bench-store: setup
	@$(PY) -m bench.store $(BENCH_ARGS)

bench-ui: setup
	@$(PY) -m bench.ui $(BENCH_ARGS)
