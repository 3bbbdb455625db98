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
JOBS    ?= auto
# where the runs go: local (this machine), ray (a local Ray, or the cluster at RAY_ADDRESS), slurm (submitit)
EXECUTOR ?=
BACKEND ?= $(if $(filter ray slurm,$(EXECUTOR)),$(EXECUTOR),local)
RAY_ADDRESS ?=
DATA_ROOT  ?=
NOISE_ROOT ?=
PYTEST_ARGS ?=
MUTATION_ARGS ?=

.PHONY: all install hooks git-hooks test test-extended test-browser mutation reproduce tables notebooks clean-venv \
	gpu-check gpu-check-dry

all: test

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[all]"
	@$(MAKE) --no-print-directory git-hooks
	touch $@

install: $(STAMP)

# Set up by every install in a git checkout: git ignores the outputs JupyterLab saves into notebooks (nbstripout's
# filter), and commits run the local hooks of .pre-commit-config.yaml (no outputs staged, notebook pairs in sync),
# which need no network.
STRIP := $(abspath $(PY)) -m nbstripout --keep-id --extra-keys 'metadata.language_info metadata.widgets metadata.papermill cell.metadata.execution cell.metadata.papermill'
hooks: $(STAMP)
	@$(MAKE) --no-print-directory git-hooks

git-hooks:
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git config filter.nbstripout.clean "$(STRIP)" && \
		git config filter.nbstripout.smudge cat && \
		git config diff.ipynb.textconv "$(STRIP) -t" && \
		$(VENV)/bin/pre-commit install >/dev/null && echo "git hooks set up (notebook outputs stripped, pairs in sync)"; \
	fi
	@mkdir -p $(VENV)/etc/jupyter
	@printf '{"FileContentsManager": {"post_save_hook": "nlkit.labhooks.refresh_git_index"}}\n' \
		> $(VENV)/etc/jupyter/jupyter_server_config.json

test: $(STAMP)
	$(PY) -m pytest -q -m "not extended" $(PYTEST_ARGS)

# The longest end-to-end checks (an installed wheel's notebook, the GPU check's dry run, Ray and SLURM runs,
# time limits, each paper's smoke cell through `nlkit run`), kept out of `make test` so that it stays under 10 minutes on 2 cores; CI runs both.
test-extended: $(STAMP)
	$(PY) -m pytest -q -m extended $(PYTEST_ARGS)

# Plants the one-line bugs listed in tests/mutation/*.yaml one at a time in a copy of the project and checks the
# tests catch them (tests/mutation/README.md); not part of `make test`. E.g. MUTATION_ARGS='--method sln --jobs 4'.
mutation: $(STAMP)
	$(PY) tests/mutation/run_mutations.py $(MUTATION_ARGS)

# JupyterLab driven by the system's Chromium (Debian's `chromium` package; Playwright never downloads a browser).
# Skips, without failing, where Chromium cannot be installed. Also runs every notebook from the kit installed as a
# wheel, alone in an empty folder, as from its Colab badge (browser_tests/test_installed_notebooks.py; no browser).
test-browser: $(STAMP)
	command -v chromium >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; } \
		|| echo "chromium could not be installed: the browser test will skip"
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[all,browser]"
	$(PY) -m pytest -q -s browser_tests $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(PY) -m nlkit reproduce --profile $(PROFILE) --jobs $(JOBS) $(if $(PAPER),--paper $(PAPER)) $(if $(ONLY),--only '$(ONLY)') \
		$(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(NOISE_ROOT),--noise-root $(NOISE_ROOT)) \
		--backend $(BACKEND) $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS))

tables: $(STAMP)
	$(PY) -m nlkit tables --profile $(PROFILE)

# Re-create the committed .ipynb files from their paired jupytext scripts (outputs stripped).
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --update --to ipynb notebooks/*.py

# The prepared GPU check (benchmarks/README.md): needs only torch and the scientific stack, so it runs with the
# project's .venv Python where `make install` made one, else with the system Python of a bare GPU image;
# GPU_DATA holds the CIFAR-10 archive and noise/sln/cifar10/sym0.4.csv.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_DATA   ?= .gpu-data
OUT        ?= gpu-check-out

gpu-check:
	PYTHONPATH=. $(GPU_PYTHON) benchmarks/gpu_check.py --data-root $(GPU_DATA) --out $(OUT)

gpu-check-dry:
	PYTHONPATH=. $(GPU_PYTHON) benchmarks/gpu_check.py --dry-run --out $(OUT)

clean-venv:
	rm -rf $(VENV)
