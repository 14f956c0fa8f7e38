# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz bench docs clean graphviz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's graphviz gives the `dot` binary that lays out the diagrams.
graphviz:
	@if command -v dot >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's graphviz (for the dot binary)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	else \
		echo "graphlstm needs Graphviz's 'dot' binary: install it with 'sudo apt-get install graphviz'"; \
		echo "(or 'brew install graphviz' on macOS), then run make again."; exit 1; \
	fi

demo: $(STAMP) graphviz
	$(BIN)/graphlstm demo

test: $(STAMP) graphviz
	$(BIN)/python -m pytest -q -n 2

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q -m slow tests/test_fuzz.py  # ~10 minutes

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_rnn.py

clean:
	rm -rf $(VENV) build *.egg-info graphlstm_demo
