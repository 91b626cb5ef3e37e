"""Sphinx configuration: the API reference is built from the package's docstrings (``make docs``)."""

import agecurriculum

project = "agecurriculum"
author = "agecurriculum developers"
release = agecurriculum.__version__
# myst_parser reads the markdown pages (benchmarks.md).
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "sphinx.ext.mathjax", "myst_parser"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
