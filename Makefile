# Two commands set everything up on a fresh machine:
#   make demo   venv + install, built-in corpus, tokenizer, model, translation, BLEU
#   (make demo-transformer: the same with a Transformer, in runs/demo-transformer)
#   make test   venv + install, lint, the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned: a bare `torch` requirement can pull a multi-GB CUDA build
TORCH ?= torch==2.13.0

.PHONY: install web demo demo-transformer test lint format clean

install: $(VENV)/.installed web

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# the script of the page `nmt export --format web` writes: the toolchain and libraries
# pinned by package-lock.json (npm ci), bundled by esbuild into nmt/runs/web_page/dist
WEB := nmt/runs/web_page
web: $(WEB)/dist/.built

# npm ci again only when the lock file changes (npm writes node_modules/.package-lock.json)
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json $(WEB)/package.json
	@command -v npm >/dev/null || { echo "make web: npm not found: install Node.js 18 or later (it builds the web page's script)" >&2; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB)/dist/.built: $(WEB)/node_modules/.package-lock.json $(WEB)/build.mjs $(WEB)/tsconfig.json $(WEB)/index.html $(wildcard $(WEB)/src/*.ts)
	cd $(WEB) && npm run --silent build

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

# the lectures' notebooks (recipes/lectures/notebooks/*.py, jupytext percent format) as .ipynb
notebooks: install
	mkdir -p build/notebooks
	for nb in recipes/lectures/notebooks/*.py; do \
	  $(VENV)/bin/jupytext --to ipynb -o build/notebooks/$$(basename $$nb .py).ipynb $$nb; done

clean:
	rm -rf runs/demo runs/demo-transformer .pytest_cache .ruff_cache
