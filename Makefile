# `make demo` and `make test` create .venv on first use (pinned CPU stack in requirements/cpu.lock).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Where pip finds torch==2.13.0's CPU build. This machine kind has it locally; elsewhere use
#   make TORCH_INDEX=https://download.pytorch.org/whl/cpu ...
TORCH_INDEX ?=
PIP_TORCH := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: demo demo-arc test test-fast venv clean

$(VENV)/.installed: requirements/cpu.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_TORCH) torch==2.13.0
	$(PY) -m pip install -q --no-deps $(PIP_TORCH) -r requirements/cpu.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# The demonstration: train the demo policy, then compare updates on held-out passages (prints the table).
DEMO_RUN := runs/demo-$(shell date +%Y-%m-%d_%H-%M-%S)
demo: venv
	$(VENV)/bin/seal-dist train experiment=demo_cpu hydra.run.dir=$(DEMO_RUN)
	$(VENV)/bin/seal-dist eval experiment=demo_cpu eval.run=$(DEMO_RUN) hydra.run.dir=$(DEMO_RUN)/eval

# The same for few-shot ARC on the synthetic grid world (prints the ARC table).
demo-arc: venv
	$(VENV)/bin/seal-dist train experiment=demo_arc hydra.run.dir=$(DEMO_RUN)-arc
	$(VENV)/bin/seal-dist eval experiment=demo_arc eval.run=$(DEMO_RUN)-arc hydra.run.dir=$(DEMO_RUN)-arc/eval

# Every test (CI runs this); test-fast: those that start no Ray, no vLLM and no whole run (see README, Testing).
test: venv
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not (ray or vllm or e2e or multinode)"

clean:
	rm -rf $(VENV) runs multirun grids outputs
