# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use and install the pinned environment (constraints.txt).
# The workstation environment also runs the edge and dashboard code: its onnxruntime-gpu
# provides the `onnxruntime` module the edge extra would otherwise bring.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO ?= demo

.PHONY: demo test install clean-demo dashboard-vendor

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[workstation,dashboard,dev,federated]'
	touch $(STAMP)

# Main job on the built-in default: the paper-size synthetic cohort (written once, validated and
# re-labelled), the whole study on it (report: $(DEMO)/study/report.html), then one recording
# replayed through the edge app with the selected bundle.
demo: $(STAMP)
	test -f $(DEMO)/cohort/synth.json || $(BIN)/sarco synth $(DEMO)/cohort --size paper --seed 1
	$(BIN)/sarco validate $(DEMO)/cohort
	$(BIN)/sarco label $(DEMO)/cohort --standard awgs2019 --out $(DEMO)/labels-awgs2019.csv --check
	$(BIN)/sarco demo --out $(DEMO) --seed 1

# Two workers (pytest-xdist), a test file each at a time (its module fixtures are built once):
# most of the suite's time is waiting on brokers, browsers and subprocesses. TEST_WORKERS=0 runs
# it in one process. The slowest tests are listed at the end: CI must stay under 20 minutes.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

clean-demo:
	rm -rf $(DEMO)

# The dashboard's charting library (uPlot, MIT), pinned in dashboard/vendor/package-lock.json and
# copied into dashboard/static with its licence; the copies are committed, so running the
# dashboard needs neither node nor the network. Rerun after changing the pinned version.
VENDOR_BUILD := build/dashboard-vendor
dashboard-vendor:
	rm -rf $(VENDOR_BUILD) && mkdir -p $(VENDOR_BUILD)
	cp dashboard/vendor/package.json dashboard/vendor/package-lock.json $(VENDOR_BUILD)/
	cd $(VENDOR_BUILD) && npm ci --ignore-scripts --no-audit --no-fund
	cp $(VENDOR_BUILD)/node_modules/uplot/dist/uPlot.iife.min.js \
	   $(VENDOR_BUILD)/node_modules/uplot/dist/uPlot.min.css dashboard/static/
	cp $(VENDOR_BUILD)/node_modules/uplot/LICENSE dashboard/static/uPlot.LICENSE.txt
