# `make demo` and `make test` both install first (idempotent: a stamp file skips pip when nothing changed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.seqvision-installed

.PHONY: install demo test test-fast bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/seqvision demo

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(VENV)/bin/seqvision bench seq-len --quick
	$(VENV)/bin/seqvision bench decode --quick
	$(VENV)/bin/seqvision bench pipeline --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
