# Two commands a fresh clone needs: `make demo` (playground) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel by default; on a GPU machine: make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128" demo
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo run test bench screenshot clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m bot

run: $(VENV)/.installed
	@test -n "$$DISCORD_TOKEN" || grep -qE '^DISCORD_TOKEN=.+' .env 2>/dev/null || \
		(echo "DISCORD_TOKEN is not set in the environment or .env (see .env.example)"; exit 1)
	$(PY) -m bot

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV)
