# Two commands do all set-up on a fresh machine: `make reproduce` and `make test`.
# Each creates (or refreshes, when pyproject.toml or constraints.txt change) the
# project's virtual environment in $(VENV) and installs the kit with everything it needs.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.nlkit-installed
PROFILE ?= smoke
PAPER   ?=
ONLY    ?=
JOBS    ?= 1
# where the runs go: local (this machine), ray (a local Ray, or the cluster at RAY_ADDRESS), slurm (submitit)
EXECUTOR ?=
BACKEND ?= $(if $(filter ray slurm,$(EXECUTOR)),$(EXECUTOR),local)
RAY_ADDRESS ?=
DATA_ROOT  ?=
NOISE_ROOT ?=
PYTEST_ARGS ?=

.PHONY: all install test reproduce tables notebooks clean-venv

all: test

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[all]"
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(PY) -m nlkit reproduce --profile $(PROFILE) --jobs $(JOBS) $(if $(PAPER),--paper $(PAPER)) $(if $(ONLY),--only '$(ONLY)') \
		$(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(NOISE_ROOT),--noise-root $(NOISE_ROOT)) \
		--backend $(BACKEND) $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS))

tables: $(STAMP)
	$(PY) -m nlkit tables --profile $(PROFILE)

# Re-create the committed .ipynb files from their paired jupytext scripts (outputs stripped).
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --update --to ipynb notebooks/*.py

clean-venv:
	rm -rf $(VENV)
