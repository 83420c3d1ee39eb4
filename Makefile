# Two commands do all the set-up on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test lint bench clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build on disk; an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

browser:  ## Debian's chromium and its driver, for the review page's browser test (apt; nothing else is downloaded)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver; }

demo: $(STAMP)  ## deduplicate the bundled Febrl3 sample, then score it against its labels
	$(BIN)/dedup run data/febrl3.parquet --config data/febrl3.yaml --output out/febrl3
	$(BIN)/dedup evaluate out/febrl3 --truth data/febrl3.parquet --label-column cluster

test: $(STAMP) browser  ## the whole test suite (CI runs exactly this)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile  # a file's tests on one of two workers: module fixtures start once

bench: $(STAMP)  ## label-free accuracy on real sets, Febrl1-3 and fake_1000, beside Splink 5
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/realdata.py

clean:
	rm -rf out .pytest_cache .ruff_cache
