# The two front doors:  make demo  (the main job on embedded defaults)  and  make test  (make test-fast: no slow tests).
# Both set up .venv first. torch is installed BEFORE the package: `torch==2.13.0` is a CPU build on
# machines that carry it locally; elsewhere set TORCH_INDEX to PyTorch's CPU index to avoid a CUDA build:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo lint test test-fast smoke bench-quality bench-speed clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/vectune demo

# Lint (ruff: pyflakes, pycodestyle, import order, pyupgrade) and the type check of the core types (mypy).
lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

test: lint
	@command -v docker-compose >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null 2>&1) || \
		echo "docker-compose not installed: the compose validation test will skip"; }
	@command -v chromedriver >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) || \
		echo "chromium/chromium-driver not installed: the browser tests will skip"; }
	$(PY) -m pytest -q

# The quick loop for development (< 2 minutes on 2 cores): every test except those marked slow.
test-fast: lint
	$(PY) -m pytest -q -m "not slow"

# Build the container image and run it for real (podman or docker; ~20 min on 2 cores). See deploy/README.md.
smoke:
	$(PYTHON) deploy/smoke

bench-quality: install
	$(PY) bench/quality.py --data ../shared/data/scifact --protocol all

bench-speed: install
	$(PY) bench/speed.py

clean:
	rm -rf $(VENV) .vectune
