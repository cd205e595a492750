# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv from pyproject.toml as an editable install: `make test` with
# the dev group, `make demo` with only the runtime extras the demo uses (no test tools,
# no browser driver), so the first page comes up fast.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
# What the demo runs: uvicorn, the Python client (`manage.py board`), channels_redis
# (REDIS_URL=...), orjson and pydantic (its handlers are typed).
DEMO_EXTRAS := server,client,redis,fast,pydantic
PORT ?= 8000
# The WebSocket limits uvicorn runs the demo with, as docs/deployment.md recommends:
# no message over rohrpost's MAX_FRAME_BYTES (256 KiB) is buffered, and a peer that
# does not answer a ping within 20 s of it being sent (every 20 s) is closed.
# tests/demo_server.py and clients/js/test/server.js start the demo with the same.
UVICORN_WS := --ws-max-size 262144 --ws-ping-interval 20 --ws-ping-timeout 20

JS := clients/js
# npm ci writes this file; it is newer than the lock file once the install is done.
JS_STAMP := $(JS)/node_modules/.package-lock.json

.PHONY: demo test lint typecheck docs pytest jstest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

# A venv that already has the dev group has the demo's extras too.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if [ ! $(STAMP) -nt pyproject.toml ]; then \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$(DEMO_EXTRAS)]"; \
	fi
	touch $(DEMO_STAMP)

# WORKERS=2 (with REDIS_URL) serves the demo in two uvicorn processes, on PORT and
# PORT+1: open one page on each (example/demo/serve.py says why two ports).
WORKERS ?= 1

demo: $(DEMO_STAMP)
ifeq ($(WORKERS),1)
	cd example && ../$(BIN)/python manage.py migrate --noinput --verbosity 0
	cd example && exec ../$(BIN)/python -m uvicorn demo.asgi:application --host 127.0.0.1 --port $(PORT) --lifespan off $(UVICORN_WS)
else
	cd example && exec ../$(BIN)/python -m demo.serve --workers $(WORKERS) --port $(PORT) $(UVICORN_WS)
endif

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, into site/ (open site/index.html). --strict: a broken
# link, anchor or API reference fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Branch coverage of the core modules must stay at 100%.
CORE := protocol encoding registry dispatch consumers main message handlers \
	changefeed mixins publisher conf checks limits subscriptions control auth connection outbox \
	hub access workers metrics delivery history upkeep layersend \
	startup apps
comma := ,
CORE_FILES := $(subst $() ,$(comma),$(foreach m,$(CORE),*/rohrpost/$(m).py))

# tests/test_bench_history_js.py runs the JavaScript client in Node: it needs its packages.
pytest: $(STAMP) $(JS_STAMP)
	$(BIN)/pytest --cov --cov-report=term
	$(BIN)/coverage report --fail-under=100 --include='$(CORE_FILES)'

# The JavaScript client's tests (node --test) against a real demo server.
$(JS_STAMP): $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error

jstest: $(STAMP) $(JS_STAMP)
	cd $(JS) && ROHRPOST_PYTHON=$(CURDIR)/$(BIN)/python npm test

test: lint typecheck docs pytest jstest

# bench.history_js runs the JavaScript client in Node: it needs clients/js's packages.
bench: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage example/db.sqlite3 site \
		$(JS)/node_modules test-artifacts
