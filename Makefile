# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package (editable, with the test, docs and serve extras) when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The demo photo ships with scikit-image (a dependency): NASA's portrait of astronaut Eileen Collins.
DEMO_PHOTO = $$($(PY) -c "import pathlib, skimage; print(pathlib.Path(skimage.__file__).parent / 'data' / 'astronaut.png')")

.PHONY: demo example serve test docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,docs,serve]"
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

test: $(STAMP)
	$(PY) -m pytest

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build build *.egg-info demo-output test-artifacts
