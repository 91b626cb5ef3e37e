"""The worked examples of docs/add_dataset.rst and docs/add_backbone.rst: each runs and prints what the page says."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"add_dataset.py": "add_dataset.rst", "add_backbone.py": "add_backbone.rst"}


def run_example(name: str, out: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"examples/{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def printed_on_page(page: str) -> list[str]:
    """The lines of the page's "It prints::" block."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    block = re.search(r"It prints::\n\n((?:    .*\n)+)", text)
    assert block, f"docs/{page} has no 'It prints::' block"
    return [line.strip() for line in block.group(1).splitlines()]


@pytest.mark.parametrize("example", sorted(PAGES))
def test_the_page_includes_its_example(example):
    page = (ROOT / "docs" / PAGES[example]).read_text(encoding="utf-8")
    assert f".. literalinclude:: ../examples/{example}" in page
    assert PAGES[example].removesuffix(".rst") in (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")


@pytest.mark.slow
def test_add_dataset_example_trains_on_the_new_dataset_by_its_traits(tmp_path):
    out = run_example("add_dataset.py", tmp_path)
    assert out.splitlines() == printed_on_page("add_dataset.rst")
    assert (tmp_path / "run" / "release" / "model.safetensors").is_file()


@pytest.mark.slow
def test_add_backbone_example_trains_and_predicts_with_the_new_backbone(tmp_path):
    out = run_example("add_backbone.py", tmp_path)
    # The prediction of a network trained for two steps may change with the machine: only its form is checked.
    expected = printed_on_page("add_backbone.rst")
    lines = out.splitlines()
    assert lines[:-1] == expected[:-1]
    assert re.fullmatch(r"prediction: (female|male), \d+-\d+ years", lines[-1]), lines[-1]
