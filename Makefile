# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo clean-demo test lint install clean messages screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo keeps its files in demo-out/ (hub and city databases, configs, logs) for the
# README's tour; the next `make demo` replaces them, `make clean-demo` deletes them.
# At the end it serves the hub's web console on 127.0.0.1:$(CONSOLE_PORT) with one demo user per
# role (it prints the URL, the users and their password) until Ctrl-C.
CONSOLE_PORT ?= 8080
demo: $(STAMP)
	$(BIN)/syncd demo --dir demo-out --console --console-port $(CONSOLE_PORT)

clean-demo:
	rm -rf demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --durations=15

# The console's screenshots in docs/img/console/, taken by the browser tests (Debian's chromium)
# on the demo's data; every shot of a run is in test-artifacts/screenshots/.
screenshots: $(STAMP)
	SYNCD_DOCS_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/browser

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The Chinese catalogue after adding or changing messages (N_/NP_ in code, _() in templates):
# extract, update syncd.po, list what is left to translate. See tools/po.py.
messages: $(STAMP)
	$(BIN)/python tools/po.py
