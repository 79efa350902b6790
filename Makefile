# xdpmon: `make demo` and `make test` work on a fresh Debian 12 host, as root.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PYTHON := $(VENV)/bin/python
XDPMON := $(VENV)/bin/xdpmon

# Extra arguments for pytest, e.g.  make test PYTEST_ARGS='-k infra -x'
PYTEST_ARGS ?=
# Extra arguments for the benchmark runner (module-name substrings), e.g. make bench BENCH_ARGS=merge
BENCH_ARGS ?=
# The demo capture: benign traffic with a SYN flood, a port scan and DNS reflection,
# made by the project's own traffic generator (examples/traffic/generators.py).
DEMO_PCAP := build/demo.pcap
# What `make demo` runs as root: the live demo (a SYN flood detected on demand on a veth pair
# of its own; DEMO_ARGS e.g. '--enforce' or '--rate 500k'); without root, the replay demo.
DEMO_ARGS ?=
DEMO_CMD ?= $(XDPMON) demo $(DEMO_ARGS)
REPLAY_DEMO_CMD ?= $(XDPMON) check specs/*.mon && $(XDPMON) compile specs/*.mon --report && $(XDPMON) replay specs/*.mon --pcap $(DEMO_PCAP) --asl --engine $$([ "$$(id -u)" = 0 ] && echo kernel || echo reference)

# Extra arguments for the fleet demo, e.g.  make fleet-demo FLEET_ARGS='--hosts 6 --keep'
FLEET_ARGS ?=

.PHONY: help setup test quick demo replay-demo fleet-demo prometheus bench clean distclean

help:
	@echo "make setup      install system packages, kernel headers link, .venv (idempotent)"
	@echo "make demo       the live demo: a SYN flood detected on demand (root; DEMO_ARGS=--enforce)"
	@echo "make replay-demo  the same apps on a capture (build/demo.pcap), no root needed"
	@echo "make fleet-demo 4 hosts, a site and a global Prometheus, an alert for the host under attack"
	@echo "                (root; installs Debian's prometheus; FLEET_ARGS='--hosts 6 --keep')"
	@echo "make prometheus install Debian's prometheus and promtool, its system service left off (make test does)"
	@echo "make test       run the test suite (PYTEST_ARGS=...)"
	@echo "make quick      the suite without the tests marked slow (for iteration; make test is the gate)"
	@echo "make bench      run benchmarks/bench_*.py"
	@echo "make clean      remove build artefacts;  make distclean  also removes .venv"

setup:
	@bash tools/setup-host.sh

# The alert rules' tests and the fleet test need Debian's prometheus (promtool): installed
# first; where it cannot be, those tests fail saying why (without root: they are skipped).
PROMETHEUS_OR_SAY = bash tools/setup-prometheus.sh || echo "make $@: Prometheus is not installed (above): the tests that need it will say so"

test: setup
	@$(PROMETHEUS_OR_SAY)
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

quick: setup
	@$(PROMETHEUS_OR_SAY)
	$(PYTHON) -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: setup $(DEMO_PCAP)
	@if [ "$$(id -u)" = 0 ]; then $(DEMO_CMD); else \
		echo "make demo: not root: the replay demo (the live demo needs root: sudo make demo)"; $(REPLAY_DEMO_CMD); fi

fleet-demo: setup prometheus
	$(PYTHON) -m examples.fleet $(FLEET_ARGS)

prometheus:
	@bash tools/setup-prometheus.sh

replay-demo: setup $(DEMO_PCAP)
	$(REPLAY_DEMO_CMD)

$(DEMO_PCAP): examples/traffic/generators.py | setup
	@mkdir -p $(dir $@)
	$(PYTHON) -m examples.traffic demo $@

bench: setup
	@if [ -f benchmarks/__main__.py ]; then \
		$(PYTHON) -m benchmarks $(BENCH_ARGS); \
	else \
		echo "no benchmarks/__main__.py"; \
	fi

clean:
	rm -rf build dist out .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
		\( -name '__pycache__' -o -name '*.egg-info' \) -type d -print0 | xargs -0r rm -rf

distclean: clean
	rm -rf $(VENV)

# Rewrite the expected outputs of the golden-file tests (tests/golden/*.c, *.manifest.json,
# *.ir.txt) from the current compiler; review the result with `git diff tests/golden/`.
.PHONY: golden
golden: setup
	$(PYTHON) tools/update_golden.py
