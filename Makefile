# Entry points. `make test` is what CI runs (.ci/run) and works on a fresh Debian machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
APT_PACKAGES := nginx libnginx-mod-http-lua lua-cjson lua-busted luajit2 wrk prometheus chromium

.PHONY: test deps deps-system deps-python demo render up

test: deps
	$(PYTHON) -m pytest

deps: deps-system deps-python

# Debian's nginx + Lua module run the router in tests; an `openresty` on PATH is used instead when present.
deps-system:
	@$(PYTHON) scripts/check_system.py --install

# torch first, pinned: any other torch spec pulls several GB of CUDA wheels (docs/dev-env.md).
deps-python:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,build]'

render:
	$(PYTHON) -m configs.render

# Router + two fake trtllm-serve backends on http://localhost:8000/v1, no GPU needed.
demo:
	$(PIP) install -q -e '.[test]'
	@$(PYTHON) scripts/check_system.py --install
	$(PYTHON) scripts/demo.py

up:
	docker compose --profile multi up
