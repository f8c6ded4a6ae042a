# tomstream: `make demo` runs the main job, `make test` the tests. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test lint unit integration stack-up stack-down clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install tomstream with its dev tools

demo: install ## Bring up the local stack and run the main job
	$(BIN)/tomstream demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint ## Lint, then every test (starts the local stack for the integration tests)
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

stack-up: install
	$(BIN)/tomstream stack up

stack-down: install
	$(BIN)/tomstream stack down

clean: ## Stop the stack and remove its state (.stack) and the virtualenv
	-$(BIN)/tomstream stack down
	rm -rf .stack $(VENV)
