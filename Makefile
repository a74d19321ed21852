# Quick start: `make train` then `make test`. Each one sets up .venv itself on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch to install when the venv has none. A machine that keeps a local torch wheel (pip's
# find-links) gets that one; otherwise the registry's. Override for a CUDA build, e.g.
#   make train TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH_INDEX ?=

.PHONY: train test bench clean

$(BIN)/rlplay: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(if $(TORCH_INDEX),$(BIN)/pip install torch --index-url $(TORCH_INDEX), \
	  $(BIN)/pip install --no-index --no-deps torch 2>/dev/null || $(BIN)/pip install "torch>=2.4")
	$(BIN)/pip install -e ".[dev]"
	touch $@

train: $(BIN)/rlplay
	$(BIN)/rlplay train dqn --env CartPole-v1 --target-return 475 --run-name cartpole-dqn-$$(date +%Y%m%d-%H%M%S)

test: $(BIN)/rlplay
	$(BIN)/python -m pytest -q

bench: $(BIN)/rlplay
	$(BIN)/pip install -e ".[dev,bench]"
	$(BIN)/rlplay bench dqn-cartpole

clean:
	rm -rf $(VENV) build *.egg-info
