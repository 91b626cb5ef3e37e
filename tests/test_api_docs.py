"""The HTML docs build without a warning, and the API reference documents every exported name (issue 29).

The docs are built once for the module, as ``make docs`` builds them (``sphinx -W --keep-going -b html``), into a
temporary folder. Every name in the ``__all__`` of ``agecurriculum``, ``agecurriculum.inference``,
``agecurriculum.train`` and ``agecurriculum.data`` must have an entry in the build's ``objects.inv``: a class or a
function under the module that defines it (``__module__`` + ``__qualname__``), or any object, constants included,
as ``module.NAME`` of a module whose ``NAME`` is that object (e.g. ``agecurriculum.bins.PAPER_BINS`` for
``agecurriculum.PAPER_BINS``). A constant gets its entry from a ``#:`` comment above it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_package import PUBLIC_NAMES  # the building blocks the README names: the API page shows each

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agecurriculum", "agecurriculum.inference", "agecurriculum.train", "agecurriculum.data")


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory) -> Path:
    pytest.importorskip("sphinx", reason="the docs extra is not installed")
    pytest.importorskip("myst_parser", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("docs")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(out / "doctrees")]
        + [str(ROOT / "docs"), str(out / "html")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert build.returncode == 0, f"the docs build warned or failed:\n{build.stderr[-6000:]}"
    return out / "html"


def inventory_names(html: Path) -> set[str]:
    """The Python objects of a build's ``objects.inv`` (modules, classes, functions, data, methods, ...)."""
    from sphinx.util.inventory import InventoryFile

    with open(html / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    entries = getattr(inventory, "data", inventory)  # a plain dict up to Sphinx 8.1
    return {name for domain, items in entries.items() if domain.startswith("py:") for name in items}


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def entries_of(obj: object, name: str, documented: set[str]) -> set[str]:
    """The entries of ``documented`` that document ``obj``, exported as ``name``."""
    found = set()
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and f"{module}.{qualname}" in documented:
        found.add(f"{module}.{qualname}")
    for entry in documented:
        owner, _, last = entry.rpartition(".")
        if last == name and owner and getattr(_module(owner), name, None) is obj:
            found.add(entry)
    return found


def test_the_entry_finder_accepts_the_defining_module_and_a_re_export_only():
    from agecurriculum.bins import PAPER_BINS, AgeBins

    documented = {"agecurriculum.bins.AgeBins", "agecurriculum.bins.PAPER_BINS", "agecurriculum.data.MALE"}
    assert entries_of(AgeBins, "AgeBins", documented) == {"agecurriculum.bins.AgeBins"}
    assert entries_of(PAPER_BINS, "PAPER_BINS", documented) == {"agecurriculum.bins.PAPER_BINS"}
    assert entries_of(AgeBins((1, 2)), "PAPER_BINS", documented) == set()  # another object of the same name
    assert entries_of(0, "MALE", documented) == {"agecurriculum.data.MALE"}
    assert entries_of(0, "MALE", {"agecurriculum.data.FEMALE"}) == set()


@pytest.mark.slow
def test_every_exported_name_has_an_entry_in_the_api_reference(built_docs):
    documented = inventory_names(built_docs)
    missing = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if not entries_of(obj, name, documented):
                defined = getattr(obj, "__module__", None) if hasattr(obj, "__qualname__") else None
                missing.append(f"{package}.{name}" + (f" (defined in {defined})" if defined else ""))
    assert not missing, (
        "exported but not in the API reference (add the module to docs/api.rst, or a #: comment above a constant):\n"
        + "\n".join(missing)
    )


@pytest.mark.slow
def test_the_api_page_shows_the_building_blocks_and_the_benchmarks_page_is_built(built_docs):
    api = (built_docs / "api.html").read_text(encoding="utf-8")
    for name in PUBLIC_NAMES:
        assert name in api, name
    benchmarks = (built_docs / "benchmarks.html").read_text(encoding="utf-8")
    assert "Photos per second" in benchmarks and "<table" in benchmarks
    assert 'href="benchmarks.html"' in (built_docs / "index.html").read_text(encoding="utf-8")
