# The two README commands: `make demo` and `make test`. Both create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-slow lint typecheck docs pytest clean bench system-deps fuzz

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

# System packages the suite uses (libsndfile for soundfile, PortAudio for sounddevice,
# espeak-ng/sox for spoken test audio). Installed only when missing and when root.
system-deps:
	@sh .ci/system-deps.sh

demo: $(STAMP)
	$(BIN)/millis-proto demo

lint: $(STAMP)
	$(BIN)/ruff check millis_proto transports audio_backends tests bench examples
	$(BIN)/ruff format --check millis_proto transports audio_backends tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

# The API reference (mkdocs.yml, docs/) into site/: offline, every warning an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

pytest: $(STAMP) system-deps
	$(BIN)/pytest --cov --cov-report=term -p no:cacheprovider

test: lint typecheck docs pytest

# The long soak/load runs the default suite leaves out.
test-slow: $(STAMP) system-deps
	$(BIN)/pytest -m slow -p no:cacheprovider

# Coverage-guided fuzzing of both connection objects (atheris), FUZZ_SECONDS per side, over a
# scratch corpus seeded from the saved one; inputs that break an invariant land in .fuzz/.
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	@for side in client server; do \
	    mkdir -p .fuzz/$$side && cp -n tests/fuzz/corpus/$$side/* .fuzz/$$side/ 2>/dev/null; \
	    $(BIN)/python tests/fuzz/run.py $$side -max_total_time=$(FUZZ_SECONDS) -max_len=131072 \
	        -timeout=20 -artifact_prefix=.fuzz/ .fuzz/$$side || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage site
