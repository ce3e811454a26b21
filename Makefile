# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
# Each installs what is missing (Debian packages, then a .venv with the
# project installed editable) and is fast when nothing is.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sparsewave-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: serve test install system-deps clean-venv docker-check

install: system-deps $(STAMP)

system-deps:
	@bash scripts/install-system.sh

# Re-runs when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

serve: install
	$(VENV)/bin/sparsewave serve --host $(HOST) --port $(PORT)

# The web page test drives Debian's chromium (kept out of the Docker image).
test: install
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium; }
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

# builds the Dockerfile with buildah and runs it with podman (root, ~10 GB disk, ~15 min; docs/service.md)
docker-check:
	bash scripts/check-docker-build.sh
