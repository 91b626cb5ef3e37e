"""The package as a user gets it: the wheel, the public API and the example scripts (the docs: test_api_docs.py)."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from agecurriculum.bins import AgeBins

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_NAMES = [
    "AgeBinOptimizer",
    "MultiDatasetSample",
    "TrainingSchedule",
    "UncertaintyLoss",
    "GenderConditionedHead",
    "DualClassifier",
    "CurriculumTrainer",
]


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_wheel_contains_every_module_and_imports_outside_the_source_tree(tmp_path):
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)])
    wheel = next((tmp_path / "dist").glob("agecurriculum-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    source_modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "agecurriculum").rglob("*.py")}
    assert source_modules <= set(names), f"missing from wheel: {source_modules - set(names)}"
    # `agecurriculum serve` serves its page from the package (no CDN): every asset must travel in the wheel.
    assets = {p.relative_to(ROOT).as_posix() for p in (ROOT / "agecurriculum" / "serve" / "static").iterdir()}
    assert assets and assets <= set(names), f"page assets missing from wheel: {assets - set(names)}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "agecurriculum = agecurriculum.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)])
    code = f"import agecurriculum; from agecurriculum import {', '.join(PUBLIC_NAMES)}; print(agecurriculum.__file__)"
    out = run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip().startswith(str(target)), "imported the source tree, not the installed wheel"

    # The shipped model travels in the wheel and predicts offline: a full photo (detect, align) and an aligned crop.
    for name in ("config.json", "model.safetensors", "MODEL_CARD.md"):
        assert f"agecurriculum/weights/default/{name}" in names, name
    weights = zipfile.ZipFile(wheel).getinfo("agecurriculum/weights/default/model.safetensors")
    assert weights.file_size <= 25 * 2**20, f"the shipped weights grew to {weights.file_size / 2**20:.1f} MiB"
    photo, crop = tmp_path / "astronaut.png", tmp_path / "crops" / "face.png"
    crop.parent.mkdir()
    Image.fromarray(skdata.astronaut()).save(photo)
    Image.fromarray(skdata.astronaut()[30:230, 120:320]).resize((128, 128)).save(crop)
    shipped = json.loads(zipfile.ZipFile(wheel).read("agecurriculum/weights/default/config.json"))
    shipped["age_bins"] = [list(g) for g in AgeBins.from_dict(shipped["age_bins"]).groups]
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for args in ([str(photo)], ["--aligned", str(crop.parent)]):
        out = run([sys.executable, "-m", "agecurriculum", "predict", "--json", *args], cwd=tmp_path, env=env)
        [line] = out.stdout.splitlines()
        [face] = json.loads(line)["faces"]  # her face, not the mission patch that dlib's HOG detector also finds
        if args[0] == str(photo):
            x0, y0, x1, y1 = face["box"]
            assert 150 <= (x0 + x1) / 2 <= 290 and 50 <= (y0 + y1) / 2 <= 190, line
        assert face["gender"] in ("female", "male") and 0.5 <= face["gender_prob"] <= 1, line
        assert sum(face["age_probs"]) == pytest.approx(1, abs=1e-3) and len(face["age_probs"]) == 8, line
        assert 0 <= face["age"] <= 100 and face["age_range"] == shipped["age_bins"][face["age_bin"]], line


def test_public_api_is_importable_from_the_top_level():
    import agecurriculum

    for name in PUBLIC_NAMES:
        assert hasattr(agecurriculum, name), name
    assert sorted(agecurriculum.__all__) == sorted(set(agecurriculum.__all__))
    for name in agecurriculum.__all__:
        assert getattr(agecurriculum, name) is not None


def test_the_evaluation_package_exports_every_name_of_its_modules():
    # agecurriculum.evaluation lists its names to import them on first use; they must stay each module's __all__,
    # as when the package star-imported its modules (a name added to a module is exported without more ado).
    import importlib

    import agecurriculum.evaluation as evaluation

    modules = sorted(set(evaluation._EXPORTS.values()))
    expected = {name: m for m in modules for name in importlib.import_module(m).__all__}
    assert evaluation._EXPORTS == expected
    assert set(modules) == {
        f"agecurriculum.evaluation.{path.stem}" for path in Path(evaluation.__file__).parent.glob("[!_]*.py")
    }


def test_console_script_runs():
    out = run([sys.executable, "-m", "agecurriculum.cli.main", "--version"])
    assert out.stdout.strip() == f"agecurriculum {__import__('agecurriculum').__version__}"


@pytest.mark.slow
def test_end_to_end_example_trains_through_the_original_curriculum():
    out = run(
        [sys.executable, str(ROOT / "examples" / "end_to_end.py"), "--image-size", "32", "--images-per-dataset", "16"]
    )
    assert "unified age bins: 0-" in out.stdout
    assert out.stdout.count("stage 5") >= 3  # the last stage trains on all three datasets
    assert "done: 15 epochs over 6 stages" in out.stdout


@pytest.mark.slow
def test_own_training_script_example_runs_and_resumes(tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "own_training_script.py"), "--run-dir", str(tmp_path)]
    first = run(cmd).stdout
    assert "1. own loop: last loss" in first
    assert first.count("2. stage bins") == 3
    assert "3. fit: 3 epochs" in first and (tmp_path / "checkpoint.pt").is_file()
    before = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    assert "3. fit: 3 epochs" in run(cmd).stdout  # resumed after the last epoch: nothing left to train
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == before
