PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := data/online-retail-orders.jsonl.gz

.PHONY: venv demo replay-demo test test-unit test-pure test-chaos lint bench clean

# setup.py compiles these with mypyc: an edit recompiles them (until then the engine runs them
# interpreted, and warns: stream_app/engine/compiled.py)
ENGINE_SRC := $(filter-out %/__init__.py %/compiled.py,$(wildcard stream_app/engine/*.py))

$(BIN)/engagement: pyproject.toml setup.py $(ENGINE_SRC)
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -c constraints.txt
	touch $(BIN)/engagement

venv: $(BIN)/engagement

demo: venv
	$(BIN)/engagement demo

replay-demo: venv
	$(BIN)/engagement replay $(DATA) --summary

test: venv
	$(BIN)/python -m pytest -q

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

# the unit tests again with the engine interpreted (what runs where it could not be compiled)
test-pure: venv
	ENGAGEMENT_PURE_PYTHON=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

# kill -9 anywhere, a worker taken over, a hung broker, SIGTERM: outputs and state against the
# oracle (docs/RELIABILITY.md). CHAOS_SEED=<n> replays a printed seed.
test-chaos: venv
	$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/chaos

# ruff (style, imports, bugbear, pyupgrade) and mypy over stream_app (pyproject.toml has both configs)
lint: venv
	$(BIN)/ruff check stream_app tests bench
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m bench.run --out bench-results.json

clean:
	rm -rf $(VENV) bench-results.json .pytest_cache .hypothesis build stream_app/engine/_compiled.json
	find . -path ./$(VENV) -prune -o -name '*.so' -print -exec rm -f {} +

.PHONY: test-ops
PROMTOOL ?= promtool

# Deployment artifacts: Prometheus config, alert rules and their unit tests (promtool), then the
# Dockerfile / compose / Grafana / Kubernetes cross-checks. Needs promtool (Debian: apt-get install prometheus).
test-ops: venv
	$(PROMTOOL) check config deploy/prometheus/prometheus.yml
	$(PROMTOOL) check rules deploy/prometheus/rules.yml
	$(PROMTOOL) test rules deploy/prometheus/rules_test.yml
	$(BIN)/python -m pytest -q tests/ops
