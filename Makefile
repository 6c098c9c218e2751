# Two entry points: `make demo` (the main job) and `make test`. Both build .venv on their own.
# `make board-test` runs the board agent in a board-like environment (.venv-board: Python 3.7
# with numpy 1.21 and tflite-runtime 2.11 when a 3.7 exists, else python3 with numpy<2 and
# tflite-runtime 2.14), driven over a pseudo-terminal; CI runs it after `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BOARD_VENV := .venv-board
BOARD_STAMP := $(BOARD_VENV)/.installed-stamp
BOARD_TEST_DIR := build/board-test
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

.PHONY: install system-deps demo test test-slow test-onednn board-test board-arm64 test-arm64 board-armhf test-armhf lint bench clean

# Debian packages the kit's optional parts need (run as root; CI calls it first).
SYSTEM_PACKAGES := mmdebstrap qemu-user-static
# The corpus's music engines: fluidsynth and General MIDI sound fonts, TiMidity++ and the
# freepats patch set, Festival and its voices, eSpeak NG, Flite.
SYSTEM_PACKAGES += fluidsynth fluid-soundfont-gm timgm6mb-soundfont \
  musescore-general-soundfont-small csound-soundfont opl3-soundfont timidity freepats \
  festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k festvox-itapc16k \
  festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph festvox-ru \
  festvox-suopuhe-lj festvox-ca-ona-hts espeak-ng flite
# The recorded engine's collections: free game soundtracks (instrumental recordings);
# hedgewars-data also holds the speech engine's voice packs.
SYSTEM_PACKAGES += warzone2100-music supertux-data hedgewars-data freedroidrpg-data \
  openclonk-data lincity-ng-data xmoto-data
# The speech engine's other voices: letters and syllables (KLettres) and words (KTuberling)
# read aloud by native speakers.
SYSTEM_PACKAGES += klettres-data ktuberling-data

system-deps:
	@if [ -n "$(strip $(SYSTEM_PACKAGES))" ]; then \
	  echo "installing Debian packages: $(SYSTEM_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

# One line per step: the last one downloads and unpacks ~85 packages (about 2.8 GB
# installed, TensorFlow alone ~1.5 GB) and prints nothing for one to several minutes
# (PYTHONWARNINGS: setuptools' notice about editable installs would break that silence).
$(STAMP): pyproject.toml
	@echo "install 1/3: virtual environment $(VENV) ($(PYTHON))"
	@$(PYTHON) -m venv $(VENV)
	@echo "install 2/3: upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "install 3/3: tinysep and its pinned dependencies (TensorFlow, tf-keras, LiteRT, TFLite Micro, ...: ~85 packages, ~2.8 GB; quiet for 1-5 minutes while pip downloads and unpacks)"
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)
	@echo "installed: $(BIN)/tinysep ($$($(BIN)/python -m pip list --format=freeze 2>/dev/null | wc -l) packages)"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tinysep demo

# Test files run side by side on up to four cores (one file per worker, so a file's shared
# fixtures are built once); TEST_WORKERS=1 runs them one after another.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

$(BOARD_STAMP):
	rm -rf $(BOARD_VENV)
	@py37=""; for c in python3.7 $$HOME/.pyenv/versions/3.7*/bin/python; do \
	  if $$c -c 'import sys; assert sys.version_info[:2] == (3, 7)' 2>/dev/null; then \
	    py37=$$c; break; fi; done; \
	if [ -n "$$py37" ]; then \
	  echo "board environment: $$py37 + numpy 1.21.6 + tflite-runtime 2.11.0"; \
	  $$py37 -m venv $(BOARD_VENV) && \
	  $(BOARD_VENV)/bin/python -m pip install --quiet 'numpy==1.21.6' 'tflite-runtime==2.11.0'; \
	else \
	  echo "board environment: no Python 3.7; $(PYTHON) + numpy<2 + tflite-runtime 2.14.0"; \
	  $(PYTHON) -m venv $(BOARD_VENV) && \
	  $(BOARD_VENV)/bin/python -m pip install --quiet 'numpy<2' 'tflite-runtime==2.14.0'; \
	fi
	touch $(BOARD_STAMP)

board-test: $(STAMP) $(BOARD_STAMP)
	$(BIN)/python tests/make_board_reference.py $(BOARD_TEST_DIR)
	$(BOARD_VENV)/bin/python tests/board_env_check.py $(BOARD_TEST_DIR)

# The checks that take a minute or more each (whole CLI runs: bench, ablation, sweep, ...).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -n $(TEST_WORKERS) --dist loadfile

# The model tests once with TensorFlow's oneDNN kernels forced off and once forced on: the
# graphs must not depend on which CPU kernels a machine picks.
test-onednn: $(STAMP)
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/python -m pytest -q tests/test_models_layers.py tests/test_models_streaming.py tests/test_models_tflite.py tests/test_models_reframing.py
	TF_ENABLE_ONEDNN_OPTS=1 $(BIN)/python -m pytest -q tests/test_models_layers.py tests/test_models_streaming.py tests/test_models_tflite.py tests/test_models_reframing.py

# The emulated ARM64 board: a Debian arm64 root (Debian's packages unpacked, no foreign code
# run) plus the aarch64 LiteRT wheel, built once under build/; the agent runs in it under
# qemu-user. `make test-arm64` streams a short HIL through it (CI runs it after `make test`).
# `make board-armhf` / `test-armhf` do the same for a 32-bit armhf board (Debian bullseye,
# tflite-runtime: no ai-edge-litert wheel exists for 32-bit ARM).
ARM64_RUNTIME := ai-edge-litert==1.4.0
ARMHF_RUNTIME := tflite-runtime==2.11.0

board-arm64: $(STAMP)
	$(BIN)/python -m hil.emulated_arm build --arch arm64 --wheel $(ARM64_RUNTIME)

test-arm64: $(STAMP) board-arm64
	$(BIN)/python -m pytest -q -m arm64 tests/test_board_arm64.py

board-armhf: $(STAMP)
	$(BIN)/python -m hil.emulated_arm build --arch armhf --wheel $(ARMHF_RUNTIME)

test-armhf: $(STAMP) board-armhf
	$(BIN)/python -m pytest -q -m armhf tests/test_board_arm64.py

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/tinysep bench

clean:
	rm -rf $(VENV) $(BOARD_VENV) build *.egg-info
