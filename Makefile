# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use and install the pinned environment (constraints.txt).
# The workstation environment also runs the edge and dashboard code: its onnxruntime-gpu
# provides the `onnxruntime` module the edge extra would otherwise bring.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO ?= demo

.PHONY: demo test install clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[workstation,dashboard,dev]'
	touch $(STAMP)

# Main job on the built-in default: the paper-size synthetic cohort (written once, validated and
# re-labelled), the whole study on it (report: $(DEMO)/study/report.html), then one recording
# replayed through the edge app with the selected bundle.
demo: $(STAMP)
	test -f $(DEMO)/cohort/synth.json || $(BIN)/sarco synth $(DEMO)/cohort --size paper --seed 1
	$(BIN)/sarco validate $(DEMO)/cohort
	$(BIN)/sarco label $(DEMO)/cohort --standard awgs2019 --out $(DEMO)/labels-awgs2019.csv --check
	$(BIN)/sarco demo --out $(DEMO) --seed 1

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf $(DEMO)
