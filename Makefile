# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv from pyproject.toml (editable install with the dev group).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

demo: $(STAMP)
	cd example && ../$(BIN)/python manage.py migrate --noinput --verbosity 0
	cd example && exec ../$(BIN)/python -m uvicorn demo.asgi:application --host 127.0.0.1 --port $(PORT) --lifespan off

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Branch coverage of the core modules must stay at 100%.
CORE := protocol encoding registry dispatch consumers main message handlers \
	changefeed mixins publisher conf checks limits subscriptions control auth
comma := ,
CORE_FILES := $(subst $() ,$(comma),$(foreach m,$(CORE),*/rohrpost/$(m).py))

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term
	$(BIN)/coverage report --fail-under=100 --include='$(CORE_FILES)'

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage example/db.sqlite3
