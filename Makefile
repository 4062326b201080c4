# The two commands of the README: `make serve` (set up and run) and `make test` (set up and test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/dev.toml
# The suite runs on every core (pytest-xdist); a module's tests stay together on one worker, so a
# module's servers and fixtures are never shared across processes. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto

.PHONY: serve test bench lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

serve: $(BIN)/.installed
	$(BIN)/mailtrap-smtp -c $(CONFIG) dev-setup
	exec $(BIN)/mailtrap-smtp -c $(CONFIG) serve

test: $(BIN)/.installed
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python bench/smtp_frontend.py
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/dkim_sign.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/bdat.py

lint: $(BIN)/.installed
	$(BIN)/ruff check mailtrap_smtp tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
