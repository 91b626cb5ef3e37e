"""The command line answers at once (issue 29): ``agecurriculum --help`` and ``agecurriculum bins`` load no torch.

Each command runs in a fresh interpreter, as ``python -m agecurriculum`` would, which then says which heavy modules
it loaded. ``benchmarks/cli_startup.py`` measures the time and memory this saves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from agecurriculum.cli.main import COMMANDS, _command_of, build_parser

# What no help text and no `bins` run needs: the network, its export runtime, the face detector, the plots.
HEAVY = ("torch", "torchvision", "onnxruntime", "dlib", "matplotlib")

_PROBE = """
import json, runpy, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["agecurriculum", *json.loads(sys.argv[1])]
try:
    runpy.run_module("agecurriculum", run_name="__main__")
except SystemExit as exit:
    status = exit.code
print("\\nLOADED", json.dumps({"status": status, "heavy": [m for m in heavy if m in sys.modules]}))
"""


def loaded_by(*argv: str) -> tuple[int, list[str], str]:
    """Runs ``agecurriculum ARGV`` in a fresh interpreter: its exit status, the HEAVY modules it loaded, its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(HEAVY)], capture_output=True, text=True
    )
    out, _, last = done.stdout.rpartition("\nLOADED ")
    assert last, f"agecurriculum {' '.join(argv)} did not finish: {done.stderr[-2000:]}"
    result = json.loads(last)
    return result["status"], result["heavy"], out


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A data folder holding a small UTKFace (the labels are the file names; the files need no content) and a CSV."""
    root = tmp_path_factory.mktemp("tiny-data")
    images = root / "utkface" / "UTKFace"
    images.mkdir(parents=True)
    for i, age in enumerate(list(range(0, 100, 3)) * 2):
        (images / f"{age}_{i % 2}_0_20170109150557335{i % 10}.jpg.chip.jpg").write_bytes(b"")
    table = root / "labels.csv"
    table.write_text("age\n" + "".join(f"{age}\n" for age in range(0, 90, 2)), encoding="utf-8")
    return root


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["bins", "--help"], ["no-such-command"]])
def test_help_loads_nothing_heavy(argv):
    status, heavy, _ = loaded_by(*argv)
    assert status in (0, 2)  # --help and --version exit 0, an unknown command 2 (argparse's usage error)
    assert heavy == [], f"agecurriculum {' '.join(argv)} loads {heavy}"


# What a command's help may not load: the slow ones. (dlib itself loads in about 30 ms, and `data preprocess --help`
# reads the crop settings' defaults from dlib's module.)
SLOW = ("torch", "torchvision", "onnxruntime", "matplotlib")


def _help_argvs() -> list[list[str]]:
    argvs = [[name, "--help"] for name in COMMANDS]
    return argvs + [["data", "report", "--help"], ["data", "preprocess", "--help"], ["protocol", "adience", "--help"]]


@pytest.mark.parametrize("argv", _help_argvs(), ids=lambda argv: "-".join(argv[:-1]))
def test_every_commands_help_loads_no_torch(argv):
    # Each command's module parses; what it runs is imported when it runs (agecurriculum.cli.Runner).
    status, heavy, out = loaded_by(*argv)
    assert status == 0 and f"usage: agecurriculum {' '.join(argv[:-1])}" in out
    assert [m for m in heavy if m in SLOW] == [], f"agecurriculum {' '.join(argv)} loads {heavy}"


def test_a_command_still_runs_through_its_runner(tmp_path):
    # The parse stays light, and the run is the real one: predict on a missing file fails in one line from the runner.
    done = subprocess.run(
        [sys.executable, "-m", "agecurriculum", "predict", str(tmp_path / "missing.jpg")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr == f"agecurriculum predict: error: no input matches {tmp_path / 'missing.jpg'}\n"


def test_predict_with_onnx_runtime_loads_no_torch(tmp_path):
    # The default backend on a CPU: an exported model (or the release's cached export) runs without torch.
    from inference_helpers import astronaut, make_release
    from PIL import Image

    from agecurriculum.inference import export_onnx

    model = export_onnx(make_release(tmp_path / "release"), tmp_path / "model.onnx")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    status, heavy, out = loaded_by("predict", "--json", "--model", str(model), str(photo))
    assert status == 0 and json.loads(out.splitlines()[-1])["faces"], out
    assert [m for m in heavy if m in ("torch", "torchvision", "matplotlib")] == [], f"predict loads {heavy}"
    assert "onnxruntime" in heavy  # the test would pass vacuously if predict ran nothing


def test_bins_loads_nothing_heavy(tiny_data):
    for argv in (["--csv", str(tiny_data / "labels.csv"), "--json"], ["--data", str(tiny_data), "--json"]):
        status, heavy, out = loaded_by("bins", *argv)
        assert status == 0 and heavy == [], f"agecurriculum bins {' '.join(argv)}: exit {status}, loads {heavy}"
        assert len(json.loads(out)["sizes"]) == 8  # Adience's eight constraint groups


def test_a_command_loads_its_own_module_only():
    code = (
        "import sys\nfrom agecurriculum.cli.main import main\ntry:\n    main(['bins', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('agecurriculum.cli.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert loaded == str(["agecurriculum.cli.bins", "agecurriculum.cli.main", "agecurriculum.cli.sources"])


@pytest.mark.parametrize(
    "module",
    ["agecurriculum.config", "agecurriculum.data", "agecurriculum.model", "agecurriculum.data.distribution"],
)
def test_reading_settings_and_labels_loads_no_torch(module):
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"import {module} also imports {out}"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_the_command_table_agrees_with_the_modules():
    # Every command's module registers it with the help line of COMMANDS, in the order of COMMANDS.
    full = _subparsers(build_parser())
    assert list(full.choices) == list(COMMANDS)
    assert {a.dest: a.help for a in full._choices_actions} == {name: line for name, (_, line) in COMMANDS.items()}
    # So `agecurriculum --help` reads the same from the table alone.
    assert build_parser([]).format_help() == build_parser().format_help()


def test_build_parser_registers_the_named_commands_in_full():
    parser = build_parser(["evaluate"])  # cli/train registers train and evaluate: both in full, the rest stubs
    choices = _subparsers(parser).choices
    assert list(choices) == list(COMMANDS)
    assert {name for name, sub in choices.items() if len(sub._actions) > 1} == {"train", "evaluate"}
    assert parser.parse_args(["evaluate", "--run", "somewhere"]).func is not None


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([], None),
        (["--version"], None),
        (["-h", "bins"], "bins"),
        (["bins", "--data", "x"], "bins"),
        (["--", "predict", "a.jpg"], "predict"),
        (["--"], None),
    ],
)
def test_command_of(argv, command):
    assert _command_of(argv) == command
