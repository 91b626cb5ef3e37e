"""The docs' commands run as written on another machine, and their numbers name the commit they were measured at.

A reader copies a command from the README, the model card, docs/ or a script's docstring and runs it from the
repository root with the data at ``../shared/data``. So the docs name no absolute path of the machine they were
written on, the example configs and scripts they name exist, the configs load and pass ``check_config`` with the
``--set`` overrides the docs give them, and every table of docs/benchmarks.md comes with the commit (short hash) and
date it was measured at, a commit of this repository (issue 22). Failures name the file and line.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agecurriculum.config import apply_overrides, check_config, load_config

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "docs" / "benchmarks.md"

# Paths that exist on one machine only: the build machine's work tree, home folders, pytest's and macOS's temporary
# folders. Not after a word character, "." or "/" (URLs such as https://host/work/..., relative paths such as
# ../work/ or runs/home/), so only a path that starts there counts.
ABSOLUTE_PATH = re.compile(
    r"(?<![\w./~-])(?:/work/|/root/|/home/[^/\s`'\"]+/|/Users/[^/\s`'\"]+/|/tmp/pytest-|/private/var/folders/"
    r"|/var/folders/)"
    r"|(?<![\w])[A-Za-z]:\\+Users\\+"
)
# Example configs and scripts a doc names (also as ../examples/... from docs/).
REFERENCE = re.compile(
    r"(?:(?<=\.\./)|(?<![\w./-]))(examples/configs/[\w.-]+\.(?:ya?ml|toml)|(?:examples|benchmarks)/[\w-]+\.py)\b"
)
# A 7-character commit hash (short hashes in the docs are written that way), and one followed by its date.
SHORT_HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7}\b")
HASH_AND_DATE = re.compile(r"`{1,2}([0-9a-f]{7,40})`{1,2}(?:,| \()\s*(\d{4}-\d{2}-\d{2})")
MEASURED_AT = re.compile(r"[Mm]easured at commit `([0-9a-f]{7,40})` \((\d{4}-\d{2}-\d{2})")


def _docs() -> list[Path]:
    """The pages a reader runs commands from. CHANGELOG.md is history and is left as written."""
    pages = [
        ROOT / "README.md",
        ROOT / "DEVELOPERS.md",
        ROOT / "agecurriculum" / "weights" / "default" / "MODEL_CARD.md",
    ]
    pages += sorted(p for p in (ROOT / "docs").rglob("*") if p.suffix in (".md", ".rst") and "_build" not in p.parts)
    pages += sorted(p for p in (ROOT / "examples" / "configs").iterdir() if p.suffix in (".yaml", ".yml", ".toml"))
    return [p for p in pages if p.is_file()]


def _scripts() -> list[Path]:
    return sorted([*(ROOT / "examples").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")])


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of what a reader reads: a doc whole, a script's module docstring only (its code may hold
    defaults of its own)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if path.suffix != ".py":
        return list(enumerate(lines, 1))
    body = ast.parse(text).body
    if not (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return []
    first, last = body[0].lineno, body[0].end_lineno
    return [(n, lines[n - 1]) for n in range(first, last + 1)]


def _all_lines() -> list[tuple[Path, int, str]]:
    return [(path, n, line) for path in [*_docs(), *_scripts()] for n, line in _lines(path)]


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def absolute_paths(text: str) -> list[str]:
    return [m.group(0) for m in ABSOLUTE_PATH.finditer(text)]


def test_the_absolute_path_check_finds_machine_paths_and_spares_urls_and_relative_paths():
    assert absolute_paths("--set data.root=/work/shared/data") == ["/work/"]
    assert absolute_paths("python3 -m venv /work/peer-venv && /work/peer-venv/bin/pip") == ["/work/", "/work/"]
    assert absolute_paths("release `/root/runs/a` and '/home/alice/data' and (/Users/bob/x)") == [
        "/root/",
        "/home/alice/",
        "/Users/bob/",
    ]
    assert absolute_paths("tmp_path: /tmp/pytest-of-ci/pytest-3/test0") == ["/tmp/pytest-"]
    assert absolute_paths(r"C:\Users\carol\data") == ["C:\\Users\\"]
    for fine in (
        "https://github.com/work/x",
        "http://example.org/home/alice/",
        "--data ../shared/data",
        "--out runs/work/x",
        "~/.cache/agecurriculum",
        "--cache /tmp/agecurriculum-bench-cache",
        "--set data.root=DATA",
        "../peer-venv/bin/python",
        "`runs/home/x`",
    ):
        assert absolute_paths(fine) == [], fine


def test_docs_name_no_absolute_path_of_the_machine_they_were_written_on():
    found = [
        f"{_where(path, n)}: {', '.join(hits)} in: {line.strip()}"
        for path, n, line in _all_lines()
        if (hits := absolute_paths(line))
    ]
    assert not found, (
        "docs give commands or outputs with one machine's absolute paths; use ../shared/data, runs/..., "
        "../peer-venv or a placeholder (DATA):\n" + "\n".join(found)
    )


def _references() -> list[tuple[Path, int, str]]:
    return [(path, n, m.group(1)) for path, n, line in _all_lines() for m in REFERENCE.finditer(line)]


def test_the_example_configs_and_scripts_the_docs_name_exist():
    references = _references()
    assert any(ref == "examples/configs/cpu.yaml" for _, _, ref in references)  # the check sees references at all
    missing = [f"{_where(path, n)}: {ref}" for path, n, ref in references if not (ROOT / ref).is_file()]
    assert not missing, "docs name example configs or scripts that do not exist:\n" + "\n".join(missing)


def _commands() -> list[tuple[Path, int, str]]:
    """Every command line of the docs and docstrings, continuation lines (ending in \\) joined; in config files the
    commands sit in comments."""
    commands = []
    for path in [*_docs(), *_scripts()]:
        start, parts = None, []
        for n, line in _lines(path):
            if path.suffix in (".yaml", ".yml", ".toml"):
                line = line.lstrip().removeprefix("#")
            stripped = line.rstrip()
            if start is None:
                start = n
            parts.append(re.sub(r"\\+$", "", stripped).strip())
            if not stripped.endswith("\\"):
                commands.append((path, start, " ".join(parts)))
                start, parts = None, []
        if parts:
            commands.append((path, start, " ".join(parts)))
    return commands


def _script_config(script: str) -> str | None:
    # An example script that trains from an example config of its own (examples/distill_mixed.py) takes --set too.
    m = re.search(r'"configs"\s*/\s*"([\w.-]+)"', (ROOT / script).read_text(encoding="utf-8"))
    return f"examples/configs/{m.group(1)}" if m else None


def _configured_commands() -> list[tuple[str, str, list[str]]]:
    """(where, example config, its --set overrides) for every docs command that runs an example config."""
    found = []
    for path, n, command in _commands():
        if "examples/" not in command or "--" not in command:
            continue
        try:
            tokens = shlex.split(command, comments=True)
        except ValueError:  # prose with an apostrophe, not a command
            continue
        tokens = [token.strip("`") for token in tokens]  # a command in inline code
        config = None
        for i, token in enumerate(tokens):
            if token == "--config" and i + 1 < len(tokens) and tokens[i + 1].startswith("examples/configs/"):
                config = tokens[i + 1].rstrip(".,;:)")
            elif (
                re.fullmatch(r"examples/[\w-]+\.py", token)
                and (ROOT / token).is_file()
                and (i == 0 or re.search(r"python3?$", tokens[i - 1]))
            ):  # the script this command runs
                config = config or _script_config(token)
        if config is None or not (ROOT / config).is_file():
            continue  # a missing config is the reference test's failure
        overrides = [tokens[i + 1] for i, token in enumerate(tokens) if token == "--set" and i + 1 < len(tokens)]
        found.append((_where(path, n), config, overrides))
    return found


def test_every_config_the_docs_name_loads_and_passes_check_config():
    names = sorted({ref for _, _, ref in _references() if ref.startswith("examples/configs/")})
    assert names
    for name in names:
        try:
            check_config(load_config(ROOT / name))
        except ValueError as err:
            where = next(_where(path, n) for path, n, ref in _references() if ref == name)
            pytest.fail(f"{name} (named at {where}) does not load or pass check_config: {err}")


def test_the_docs_set_overrides_are_settings_of_their_config():
    commands = _configured_commands()
    assert commands, "no docs command with an example config found"
    failures = []
    for where, config, overrides in commands:
        try:
            check_config(apply_overrides(load_config(ROOT / config), overrides))
        except ValueError as err:
            failures.append(f"{where}: {config} with {' '.join('--set ' + o for o in overrides)}: {err}")
    assert not failures, "docs commands whose --set overrides the config refuses:\n" + "\n".join(failures)


def _sections(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, heading, lines) of each ``## `` section of a markdown page (headings inside code blocks ignored)."""
    sections, fenced = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append((n, line, []))
        elif sections:
            sections[-1][2].append(line)
    return sections


def test_every_benchmarks_section_with_a_table_names_the_commit_it_was_measured_at():
    unnamed = [
        f"{_where(BENCHMARKS, n)}: {heading}"
        for n, heading, lines in _sections(BENCHMARKS)
        if any(line.startswith("|---") for line in lines) and not MEASURED_AT.search("\n".join(lines))
    ]
    assert not unnamed, (
        'sections of docs/benchmarks.md with a table but no "Measured at commit `abc1234` '
        '(YYYY-MM-DD)":\n' + "\n".join(unnamed)
    )


def _git_input(*args: str, text: str = "") -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], input=text, capture_output=True, text=True, check=True
    ).stdout


def _git(*args: str) -> str:
    return _git_input(*args)


def test_the_commits_the_docs_name_exist_with_the_dates_they_give():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the commits cannot be looked up")
    if _git("rev-parse", "--is-shallow-repository").strip() == "true":
        pytest.skip("a shallow clone lacks the older commits the docs name")
    named: dict[str, list[tuple[str, str | None]]] = {}
    pages = [
        BENCHMARKS,
        ROOT / "README.md",
        ROOT / "agecurriculum" / "weights" / "default" / "MODEL_CARD.md",
        *sorted((ROOT / "docs").rglob("*.rst")),
    ]
    for path in pages:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            dated = {h: d for h, d in HASH_AND_DATE.findall(line)}
            for h in SHORT_HASH.findall(line):
                named.setdefault(h, []).append((_where(path, n), dated.get(h)))
    assert named, "no commit named in the docs"
    # One git call for all of them: "<hash> commit <size>" for a commit, "<name> missing" / "ambiguous" otherwise.
    answers = _git_input(
        "cat-file", "--batch-check=%(objectname) %(objecttype)", text="".join(f"{h}^{{commit}}\n" for h in named)
    ).splitlines()
    problems, dates = [], {}
    for h, answer in zip(named, answers):
        full, _, kind = answer.partition(" ")
        if kind != "commit":
            problems += [f"{where}: {h} is not a commit of this repository" for where, _ in named[h]]
        else:
            dates[h] = full
    if dates:
        date_of = dict(
            line.split() for line in _git("show", "-s", "--format=%H %ad", "--date=short", *dates.values()).splitlines()
        )
        problems += [
            f"{where}: {h} is dated {date} here, but its commit is of {date_of[dates[h]]}"
            for h in dates
            for where, date in named[h]
            if date is not None and date != date_of[dates[h]]
        ]
    assert not problems, "\n".join(problems)


def test_the_readme_quotes_what_make_demo_prints():
    # The demo paragraph quotes the line `make demo` prints for the astronaut; a change of the shipped model (or of
    # how predict frames, flips or calibrates) must update the README, or this fails.
    from skimage import data as skdata

    from agecurriculum.inference import DEFAULT_RELEASE_DIR

    if not (DEFAULT_RELEASE_DIR / "model.safetensors").is_file():
        pytest.skip("no shipped model")
    photo = Path(skdata.__file__).parent / "astronaut.png"
    run = subprocess.run(
        [sys.executable, "-m", "agecurriculum", "predict", str(photo)], capture_output=True, text=True, check=True
    )
    printed = [line.replace(str(photo), "astronaut.png") for line in run.stdout.splitlines() if line.strip()]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"`make demo` prints:\n\n```text\n(.*?)\n```", readme, re.S)
    assert block, "README.md: no ```text block after '`make demo` prints:'"
    assert block.group(1).splitlines() == printed
