# Two commands on a fresh machine:
#   make demo   - virtual environment + package, then the flagship study (posterior) into runs/posterior
#   make test   - the same set-up, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch, installed first so that the package's torch range is already met
# (a bare "torch" requirement can pull a multi-GB CUDA build).
TORCH  ?= torch==2.13.0
OUT    ?= runs/posterior

.PHONY: demo test venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,arviz]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/sgworld run posterior --out $(OUT)

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs

# make bench - peers (BlackJAX with JAX, posteriors) in their own environment, then W1-W3 side by side
#              into benchmarks/RESULTS.md (BENCH_FLAGS=--quick for a smoke run)
BENCH_VENV := benchmarks/.venv
BENCH_FLAGS ?=

$(BENCH_VENV)/.installed: pyproject.toml benchmarks/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(BENCH_VENV)/bin/python -m pip install --quiet -e .
	$(BENCH_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements.txt
	touch $@

.PHONY: bench
bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/run_all.py $(BENCH_FLAGS)

# make peer-moments - BlackJAX's and posteriors' SGLD / SGHMC / SGNHT at the converted parameters of
#                     docs/concepts.md against sgworld's exact moments (benchmarks/results/peer_moments.md)
.PHONY: peer-moments
peer-moments: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/peer_moments.py $(BENCH_FLAGS)
