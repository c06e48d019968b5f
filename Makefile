# ds4h: the two commands a newcomer runs are `make demo` and `make test`.
# A fresh machine needs only Python 3.11 and make: uv is installed with pip if it is missing.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
export GX_ANALYTICS_ENABLED := False
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: install browser postgres demo test lint typecheck pytest test-all bench bench-million clean

# --compile-bytecode and compileall: commands start fast even where PYTHONDONTWRITEBYTECODE is set
# (without .pyc files every run recompiles Dagster, polars and the rest: ~0.5 s per command and more)
# chromium (Debian's) renders the reports in tests/test_report_browser.py; playwright drives it, no download
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
install:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet --compile-bytecode
	@$(UV) run python -m compileall -q pipelines transforms anonymisation schemas generator >/dev/null

demo: install
	$(UV) run ds4h demo

lint: install
	$(UV) run ruff check .

typecheck: install
	$(UV) run mypy transforms anonymisation schemas generator pipelines deploy

# only the tests need a browser: `make demo` does not install one
browser:
	@command -v chromium >/dev/null 2>&1 || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

# tests/test_dagster_postgres.py starts a PostgreSQL server (Debian's; initdb is not on PATH)
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends postgresql)

pytest: install browser postgres
	$(UV) run pytest -q -m "not slow"

test: lint typecheck pytest

test-all: install browser postgres
	$(UV) run pytest -q

bench: install
	$(UV) run python bench/run_bench.py --patients $(or $(PATIENTS),100000)
	$(UV) run python bench/bench_synthea.py 10000 100000
	$(UV) run python bench/run_bench.py --synthea 100000
	$(UV) run python bench/run_bench.py --products $(or $(PATIENTS),100000)
	$(UV) run python bench/bench_deid.py 5000 1500
	$(UV) run python bench/bench_notes_flow.py 20000
	$(UV) run python bench/bench_kanon.py
	$(UV) run python bench/bench_vocabulary.py

# issue 18: a million generated patients over 3 sites without notes, and Synthea replicated to
# 300,000 patients; fails when a stage of the flow peaks at 4 GB or more, or `ds4h verify` fails
bench-million: install
	$(UV) run python bench/run_bench.py --patients $(or $(PATIENTS),1000000) --no-notes --max-rss-mb 4096; a=$$?; \
	$(UV) run python bench/run_bench.py --synthea $(or $(SYNTHEA),300000) --max-rss-mb 4096; b=$$?; \
	test $$a -eq 0 && test $$b -eq 0

clean:
	rm -rf workspace .pytest_cache .mypy_cache .ruff_cache
