"""The package's layers: what each part of ``agecurriculum`` may import, checked on every module's source.

Each top-level module or subpackage of ``agecurriculum`` belongs to one layer of :data:`LAYERS`, lowest first. A
module may import its own part and any part of a lower layer; parts that share a layer are siblings and never
import each other (inference and train both read releases through :mod:`agecurriculum.release`, neither through
the other). Imports inside functions count as well, and a function-level import of a package module is refused
unless :data:`LAZY_PACKAGE_IMPORTS` says why it must wait (an optional dependency), so no such import exists only to
dodge a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "agecurriculum"

# Lowest first. "__init__" is the package's own __init__.py (its lazy exports name every layer).
LAYERS: list[set[str]] = [
    # foundations: no package imports but each other's
    {"_version", "_lazy", "errors", "checks", "fileio", "devices", "bins"},
    {"model", "losses", "schedule"},  # the network, its losses, the curriculum: torch and the foundations only
    {"adaptive"},  # the adaptive curriculum's policy: on schedule, without torch
    {"data"},  # datasets, faces, crops
    {"config"},  # run settings (it validates data splits)
    {"evaluation", "release"},  # metrics and reports | the release format: siblings
    {"train", "inference"},  # training | prediction: siblings, both on release and evaluation
    {"serve"},  # the HTTP server and web page (optional extra), on inference
    {"cli"},  # the commands
    {"__init__", "__main__"},  # the package's entry points
]
# Inside the foundation layer a part may use the parts before it (bins uses checks).
_FOUNDATION_ORDER = ["_version", "_lazy", "errors", "checks", "fileio", "devices", "bins"]

# (importing module, imported module) -> why the import sits inside a function. Only for optional dependencies.
LAZY_PACKAGE_IMPORTS: dict[tuple[str, str], str] = {
    ("agecurriculum.cli.runners.serve", "agecurriculum.serve.app"): (
        "starlette and uvicorn are the optional serve extra"
    ),
    # torch is no optional dependency, but inference with ONNX Runtime never needs it (predict starts in 0.8 s and
    # 150 MB instead of 5 s and 950 MB): the release format reads configs without it, and loads torch to touch weights.
    ("agecurriculum.release", "agecurriculum.devices"): "torch: only writing a release's weights needs it",
    ("agecurriculum.release", "agecurriculum.model.ensemble"): "torch: only loading a release's weights needs it",
}


def _module_name(path: Path, package_dir: Path = PACKAGE) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """The layer part of a module: ``agecurriculum.train.run`` -> ``train``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(part: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if part in layer:
            return rank
    raise KeyError(part)


def _imports(path: Path, package_dir: Path = PACKAGE) -> list[tuple[int, str, bool]]:
    """``(line, imported module, inside a function)`` for every import of a package module in ``path``."""
    module = _module_name(path, package_dir)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str, bool]] = []

    def submodule(name: str) -> str:
        # "from agecurriculum import x": the submodule x if there is one, else a name of the package itself.
        is_module = (package_dir / f"{name}.py").is_file() or (package_dir / name / "__init__.py").is_file()
        return f"agecurriculum.{name}" if is_module else "agecurriculum"

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolved against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [submodule(alias.name) if base == "agecurriculum" else base for alias in child.names]
            found.extend(
                (child.lineno, t, in_function)
                for t in dict.fromkeys(targets)  # one per module
                if t.split(".")[0] == "agecurriculum"
            )
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _all_imports() -> dict[str, list[tuple[Path, int, str, bool]]]:
    result: dict[str, list[tuple[Path, int, str, bool]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        result[_module_name(path)] = [(path, *item) for item in _imports(path)]
    return result


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(module) for module in _all_imports()}
    unplaced = sorted(p for p in parts if not any(p in layer for layer in LAYERS))
    assert not unplaced, f"add these parts of agecurriculum to a layer in tests/test_layering.py LAYERS: {unplaced}"


def test_no_part_imports_a_higher_or_sibling_layer():
    problems = []
    for module, imports in _all_imports().items():
        own = _part(module)
        for path, line, target, _ in imports:
            theirs = _part(target)
            if theirs == own or (
                own in _FOUNDATION_ORDER
                and theirs in _FOUNDATION_ORDER
                and _FOUNDATION_ORDER.index(theirs) < _FOUNDATION_ORDER.index(own)
            ):
                continue
            mine, other = _rank(own), _rank(theirs)
            if other > mine:
                why = f"{theirs} is a higher layer ({other}) than {own} ({mine})"
            elif other == mine:
                why = f"{theirs} and {own} are sibling layers ({mine})"
            else:
                continue
            problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target}: {why}")
    assert not problems, "imports against the layering (see tests/test_layering.py):\n" + "\n".join(problems)


def test_inference_imports_nothing_from_train():
    problems = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target}"
        for module, imports in _all_imports().items()
        if _part(module) == "inference"
        for path, line, target, _ in imports
        if _part(target) == "train"
    ]
    assert not problems, "inference must not import train (use agecurriculum.release):\n" + "\n".join(problems)


def test_no_function_level_import_of_a_package_module():
    problems = []
    for module, imports in _all_imports().items():
        for path, line, target, in_function in imports:
            if in_function and (module, target) not in LAZY_PACKAGE_IMPORTS:
                problems.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target} inside a "
                    "function; import it at the top (a cycle means a layer is wrong), or, for an optional "
                    "dependency, add it with the reason to LAZY_PACKAGE_IMPORTS"
                )
    assert not problems, "\n".join(problems)
    stale = [
        key
        for key in LAZY_PACKAGE_IMPORTS
        if not any(t == key[1] and f for _, _, t, f in _all_imports().get(key[0], []))
    ]
    assert not stale, f"LAZY_PACKAGE_IMPORTS entries without such an import: {stale}"


def test_the_rules_catch_what_they_are_for(tmp_path):
    # The walker itself: a function-level, a relative and a "from agecurriculum import" import are all seen.
    package = tmp_path / "agecurriculum"
    source = package / "inference" / "probe.py"
    (package / "train").mkdir(parents=True)
    source.parent.mkdir()
    (package / "train" / "__init__.py").write_text("", encoding="utf-8")
    source.write_text(
        "from ..train import run\nfrom agecurriculum import train, __version__\n\ndef f():\n"
        "    import agecurriculum.train.checkpoint\n",
        encoding="utf-8",
    )
    assert _imports(source, package) == [
        (1, "agecurriculum.train", False),
        (2, "agecurriculum.train", False),
        (2, "agecurriculum", False),
        (5, "agecurriculum.train.checkpoint", True),
    ]


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("agecurriculum.bins", ["torch", "agecurriculum.train", "agecurriculum.data"]),
        ("agecurriculum.adaptive", ["torch", "agecurriculum.train", "agecurriculum.data"]),
        ("agecurriculum", ["torch", "agecurriculum.train", "agecurriculum.inference"]),
        ("agecurriculum.cli.main", ["starlette", "uvicorn", "agecurriculum.serve.app"]),
        ("agecurriculum.release", ["agecurriculum.train", "agecurriculum.inference", "agecurriculum.evaluation"]),
        ("agecurriculum.inference", ["agecurriculum.train"]),
        ("agecurriculum.data", ["agecurriculum.model", "agecurriculum.train", "agecurriculum.evaluation"]),
        ("agecurriculum.model", ["agecurriculum.data", "agecurriculum.train", "agecurriculum.evaluation"]),
    ],
)
def test_importing_a_layer_loads_nothing_above_it(module, absent):
    code = f"import sys, {module}; print(' '.join(m for m in {absent!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"import {module} also imports {out}"
