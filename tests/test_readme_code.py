"""The Python code of README.md and of the docs pages runs as written (issue 29).

Every ```` ```python ```` block of README.md and every ``.. code-block:: python`` block of ``docs/*.rst`` and
``docs/commands/*.rst`` runs, on the data the blocks make themselves (the generated faces of
:func:`agecurriculum.data.write_sample_data`, scikit-image's bundled astronaut photo, random tensors) or the
shipped model. A page's blocks run in order in one namespace, in a fresh Python process whose working folder is an
empty temporary folder, so a block may use what an earlier block of the same page defined (the tutorial's model,
the README's ``data``), never what another page did. A failure names the file and the line of the failing block,
and the traceback's lines are the file's lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs the blocks given as JSON [[page, its path, first line, code], ...] in order, in one namespace; exit status 3
# and the failing block's place on stderr when one raises. Each block is compiled as its file, its code starting on
# its own line, so tracebacks show the page's lines.
RUNNER = r"""
import json, sys, traceback
namespace = {"__name__": "__main__"}
for page, path, line, code in json.load(sys.stdin):
    print(f"--- {page}:{line}", flush=True)
    try:
        exec(compile("\n" * (line - 1) + code, path, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: the block at {page}:{line}", file=sys.stderr)
        sys.exit(3)
"""

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
CODE_BLOCK = re.compile(r"^\.\. code-block:: python[ \t]*\n((?:[ \t]+:[\w-]+:.*\n)*)", re.M)


def markdown_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the first code line, code) of every ```` ```python ```` block of a markdown text."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def rst_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the first code line, dedented code) of every ``.. code-block:: python`` of a reStructuredText text:
    the indented lines after the directive and its options, blank lines inside included."""
    lines = text.splitlines()
    blocks = []
    for m in CODE_BLOCK.finditer(text):
        start = text.count("\n", 0, m.end())  # index of the first line after the directive and its options
        while start < len(lines) and not lines[start].strip():
            start += 1
        end = start
        while end < len(lines) and (not lines[end].strip() or lines[end][:1] in " \t"):
            end += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if end > start:
            blocks.append((start + 1, textwrap.dedent("\n".join(lines[start:end])) + "\n"))
    return blocks


def pages() -> dict[str, list[tuple[int, str]]]:
    """Relative path -> its Python blocks, for every page that has any."""
    found = {"README.md": markdown_blocks((ROOT / "README.md").read_text(encoding="utf-8"))}
    for path in sorted([*(ROOT / "docs").glob("*.rst"), *(ROOT / "docs" / "commands").glob("*.rst")]):
        found[path.relative_to(ROOT).as_posix()] = rst_blocks(path.read_text(encoding="utf-8"))
    return {page: blocks for page, blocks in found.items() if blocks}


def test_the_block_readers_find_the_code_and_its_line():
    markdown = "# t\n\n```python\nx = 1\n\ny = 2\n```\n\n```bash\nls\n```\n```python\nz = 3\n```\n"
    assert markdown_blocks(markdown) == [(4, "x = 1\n\ny = 2\n"), (13, "z = 3\n")]
    rst = (
        "Title\n=====\n\n.. code-block:: python\n   :caption: c\n\n    import os\n\n    if os:\n        pass\n\n"
        "Text.\n\n.. code-block:: bash\n\n    ls\n\n.. code-block:: python\n\n    last = 1\n"
    )
    assert rst_blocks(rst) == [(7, "import os\n\nif os:\n    pass\n"), (20, "last = 1\n")]


def test_the_pages_with_code_are_all_found():
    found = pages()
    assert len(found["README.md"]) >= 2
    for page in ("docs/tutorial.rst", "docs/commands/predict.rst", "docs/adaptive.rst"):
        assert page in found, page
    assert len(found["docs/tutorial.rst"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted(pages()))
def test_the_python_blocks_of_the_page_run_as_written(page, tmp_path):
    blocks = [[page, str(ROOT / page), line, code] for line, code in pages()[page]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    run = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(blocks),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    failed = re.search(r"FAILED: the block at (\S+)", run.stderr)
    where = failed.group(1) if failed else page
    assert run.returncode == 0, f"{where} does not run as written:\n{run.stderr[-4000:]}\n{run.stdout[-2000:]}"
