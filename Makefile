# Two commands set everything up on a fresh machine:
#   make demo   venv + install, built-in corpus, tokenizer, model, translation, BLEU
#   (make demo-transformer: the same with a Transformer, in runs/demo-transformer)
#   make test   venv + install, lint, the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned: a bare `torch` requirement can pull a multi-GB CUDA build
TORCH ?= torch==2.13.0

.PHONY: install demo demo-transformer test lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash recipes/toy/run.sh

demo-transformer: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash recipes/toy/run.sh runs/demo-transformer recipes/toy/transformer.yaml

lint: install
	$(VENV)/bin/ruff check nmt tests tools
	$(VENV)/bin/ruff format --check nmt tests tools
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format nmt tests tools
	$(VENV)/bin/ruff check --fix nmt tests tools

test: lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/pytest -q

clean:
	rm -rf runs/demo runs/demo-transformer .pytest_cache .ruff_cache
