# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package (editable, with the test, docs, serve and dev extras) when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The demo photo ships with scikit-image (a dependency): NASA's portrait of astronaut Eileen Collins.
DEMO_PHOTO = $$($(PY) -c "import pathlib, skimage; print(pathlib.Path(skimage.__file__).parent / 'data' / 'astronaut.png')")

.PHONY: demo example serve test lint docs model clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,docs,serve,dev]"
	touch $(STAMP)

# The main job: the shipped model on a photo; prints every face and writes the annotated photo to demo-output/.
demo: $(STAMP)
	$(PY) -m agecurriculum predict --draw demo-output "$(DEMO_PHOTO)"
	@echo "annotated photo: demo-output/astronaut.png"

# The building blocks end to end: bins -> curriculum -> a few training steps on generated faces.
example: $(STAMP)
	$(PY) examples/end_to_end.py

# The web page and HTTP API on this machine (http://127.0.0.1:8000/; Ctrl-C stops): see docs/serve.rst.
serve: $(STAMP)
	$(PY) -m agecurriculum serve

# The shipped model's recipe (docs/gate.rst): a candidate in runs/release, warm-started from the shipped release,
# trained on DATA in about 100 minutes on 2 CPU cores (RESUME=--resume continues a killed run); the network WEIGHT of
# the way from the shipped release to it (runs/release-wise; chosen on validation for each release: 0.7 for the
# first of 2026-12-06, 0.5 for the second and the third, shipped), its bin ages and temperatures fitted on
# validation; then the release gate against the shipped model
# (exit status 1 when a metric fell). Replacing agecurriculum/weights/default stays a deliberate step.
DATA ?= ../shared/data
RESUME ?=
WEIGHT ?= 0.5
model: $(STAMP)
	nice $(PY) -m agecurriculum train --config examples/configs/release.yaml --set data.root=$(DATA) $(RESUME)
	$(PY) -m agecurriculum interpolate agecurriculum/weights/default runs/release/release --weight $(WEIGHT) \
		--out runs/release-wise --config runs/release/run_config.yaml
	$(PY) -m agecurriculum evaluate --compare runs/release-wise --config runs/release/run_config.yaml

test: $(STAMP)
	$(PY) -m pytest

# Style: ruff's linter and its formatter's check (pyproject.toml [tool.ruff]); `ruff format` and `ruff check --fix`
# mend most of what they report.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build build dist *.egg-info agecurriculum.egg-info demo-output test-artifacts
