# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Each creates .venv on first use and installs torch first (CPU build where available), then
# the project with its extras.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run compare test lint format notebook html clean

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[offline,notebook,dev]"
	touch $(STAMP)

run: $(STAMP)  ## baseline + LoRA; results in runs/latest (LFT_MODEL / LFT_DATA / LFT_PRESET apply)
	$(PY) -m lft_helpers run $(ARGS)

compare: $(STAMP)  ## baseline, head only, LoRA and full fine-tuning
	$(PY) -m lft_helpers compare $(ARGS)

test: $(STAMP)  ## the whole suite, offline
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

notebook: $(STAMP)  ## Restart & Run All, outputs written into the notebook
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=-1 LightweightFineTuning.ipynb

html: $(STAMP)  ## the notebook as GitHub shows it
	$(VENV)/bin/jupyter nbconvert --to html LightweightFineTuning.ipynb --output-dir build

clean:
	rm -rf $(VENV) build runs .pytest_cache .ruff_cache
