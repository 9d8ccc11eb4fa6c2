# Two set-up commands on a fresh machine: `make demo` and `make test`.
# Both create .venv if absent and install into it: the CPU torch wheel first (a bare `torch`
# requirement would pull a multi-GB CUDA build), then the project with its dev extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test lint demo demo-model bench clean

$(STAMP): pyproject.toml | node_modules/.package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	@# rembg imports pymatting, whose numba kernels compile on first import (~30 s) and are cached in the
	@# venv: pay that here, once, not in the first photo of the first batch
	$(PY) -c "import rembg.sessions"
	touch $(STAMP)

# the Node tools (gltf-validator) pinned in package-lock.json; reinstalled when the lock changes
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

demo: $(STAMP)
	$(VENV)/bin/asset3d demo

# Train the bundled demo model from scratch (docs/training.md): 1,000 synthetic objects of seed 1, then
# triposr/demo/train.yaml; the weights land in triposr/demo/model.safetensors. About 75 minutes on 2 cores.
DEMO_WORK ?= .asset3d/demo-model
demo-model: $(STAMP)
	$(VENV)/bin/asset3d dataset make --seed 1 --count 1000 --out $(DEMO_WORK)/train --quiet
	$(VENV)/bin/asset3d train --config triposr/demo/train.yaml --dataset $(DEMO_WORK)/train --out $(DEMO_WORK)/run --device cpu
	cp $(DEMO_WORK)/run/model.safetensors triposr/demo/model.safetensors
	$(VENV)/bin/asset3d dataset make --seed 2 --count 50 --out $(DEMO_WORK)/heldout --quiet
	$(VENV)/bin/asset3d eval --model demo --dataset $(DEMO_WORK)/heldout --json $(DEMO_WORK)/eval.json

bench: $(STAMP)
	$(PY) bench/model.py --json bench/out/model.json

clean:
	rm -rf $(VENV) build *.egg-info
