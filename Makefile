# The two commands a new user needs: `make demo` and `make test`.
# Each creates .venv and installs what it needs, system packages included.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs format system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Distribution packages (etcd, PostgreSQL, iproute2) when missing.
system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP) system-deps
	bash scripts/demo.sh

# The demo topology in the lab: every host its own network namespace (root only).
.PHONY: demo-lab
demo-lab:
	@if [ "$$(id -u)" != 0 ]; then echo "make demo-lab makes a network namespace per host: run it as root (sudo make demo-lab); make demo needs no root" >&2; exit 2; fi
	$(MAKE) $(STAMP) system-deps
	bash scripts/demo_lab.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# The documentation site (mkdocs.yml, docs/) into build/site. --strict: a broken
# link or anchor, or a page left out of nav, fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Two workers: most integration tests wait on processes, not the CPU; each test file
# runs whole on one worker, in order. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(STAMP) system-deps lint docs
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build/site
