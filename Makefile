# Two commands a fresh clone needs: `make demo` (playground) and `make test`; `make check` is the fast inner loop.
# bash, not dash: on Ctrl-C a recipe shell waits for the program's clean exit instead of dying with it,
# so make prints no "Interrupt" line of its own.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel by default; on a GPU machine: make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128" demo
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo run test check bench screenshot tour clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test,playground]"
	touch $@

# Exit status 75 = another instance already runs on this data folder: the program said so in one
# line, so make adds no "Error" line of its own. Ctrl-C stops the program cleanly with status 0.
demo: $(VENV)/.installed
	@$(PY) -m playground; status=$$?; [ $$status -eq 75 ] || exit $$status

run: $(VENV)/.installed
	@test -n "$$DISCORD_TOKEN" || grep -qE '^DISCORD_TOKEN=.+' .env 2>/dev/null || \
		(echo "DISCORD_TOKEN is not set in the environment or .env (see .env.example)"; exit 1)
	@$(PY) -m bot; status=$$?; [ $$status -eq 75 ] || exit $$status

# Everything (CI runs exactly this): types, import contracts, every test tier; the 15 slowest tests of each
# run last. In-process tests on two pytest workers (one per core); process and PostgreSQL tests (`system`)
# one at a time, since they start servers and kill processes of their own.
test: $(VENV)/.installed
	$(PY) -m mypy && $(VENV)/bin/lint-imports
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 -m "not system" --durations=15
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m system --durations=15

# The inner loop: unit tests with fakes; no subprocesses or PostgreSQL (`system`), no long renders (`slow`);
# two pytest workers (pytest-xdist), one per core.
check: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 -m "not system and not slow"

# Figures for the README's Benchmarks table (prints them; nothing is timed in the tests).
bench: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m training.tinyshapes.bench
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.generation_bench --threads 1
	$(PY) -m benchmarks.storage_bench

# Headless Debian chromium (apt-get install chromium) drives the playground page.
screenshot: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m playground.screenshot --out docs/playground.png

tour: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m playground.tour --out docs

clean:
	rm -rf $(VENV)
