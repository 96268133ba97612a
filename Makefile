# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo clean-demo test lint install clean messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo keeps its files in demo-out/ (hub and city databases, configs, logs) for the
# README's tour; the next `make demo` replaces them, `make clean-demo` deletes them.
demo: $(STAMP)
	$(BIN)/syncd demo --dir demo-out

clean-demo:
	rm -rf demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --durations=15

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
