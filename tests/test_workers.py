"""Tests of face finding in worker processes (agecurriculum.inference.workers) and of predict's --processes."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from inference_helpers import astronaut, make_release
from PIL import Image

import agecurriculum.inference.workers as workers
from agecurriculum.cli.main import main
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.inference import PROCESSES_FROM, FaceFinder, FaceJob, FacePool, FaceScorer, Predictor


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release"))


def scaled(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), Image.Resampling.BICUBIC))


def mixed_inputs(tmp_path):
    """Photos with a face, as arrays and files, mixed with inputs that are each one's own error."""
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    return [
        astronaut(),
        broken,
        photo,
        np.zeros((8, 8, 3), np.uint8),
        scaled(astronaut(), 0.6)[:, ::-1],
        tmp_path / "missing.png",
    ] * 2


def test_processes_give_the_threads_results_in_input_order(release_dir, tmp_path):
    inputs = mixed_inputs(tmp_path)
    expected = Predictor.from_release(release_dir, backend="torch", workers=1).predict(inputs)
    with Predictor.from_release(release_dir, backend="torch", workers=2, processes=True) as predictor:
        assert predictor.start_workers()
        assert predictor.predict(inputs) == expected
        assert predictor.predict(inputs[:5]) == expected[:5]  # the same workers, another call
    assert [len(r["faces"]) for r in expected[:6]] == [1, 0, 1, 0, 1, 0]
    assert [r["error"] is not None for r in expected[:6]] == [False, True, False, True, False, True]
    # Closed by the with block; the next call starts them again.
    assert predictor.predict(inputs[:3]) == expected[:3]
    predictor.close()


def test_aligned_crops_in_processes(release_dir):
    crops = [astronaut()[60:180, 160:280], np.full((40, 40, 3), 90, np.uint8)] * 3
    expected = Predictor.from_release(release_dir, backend="torch", workers=1).predict(crops, aligned=True)
    with Predictor.from_release(release_dir, backend="torch", workers=2, processes=True) as predictor:
        assert predictor.predict(crops, aligned=True) == expected


DYING_JOB = """
import os
from agecurriculum.inference.workers import FaceJob

class DyingJob(FaceJob):
    # Kills its worker process on an input named die*.png, as a crash inside dlib or the OOM killer would.
    def __call__(self, index, item, *args):
        if str(item).endswith(".png") and os.path.basename(str(item)).startswith("die"):
            os._exit(3)
        return super().__call__(index, item, *args)
"""


def test_a_worker_that_dies_costs_only_its_input(tmp_path, monkeypatch):
    # The job's class must be importable by the workers: a module on sys.path, which they inherit.
    (tmp_path / "dying_job.py").write_text(textwrap.dedent(DYING_JOB), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    from dying_job import DyingJob

    Image.fromarray(astronaut()).save(tmp_path / "face.png")
    Image.fromarray(astronaut()).save(tmp_path / "die.png")
    paths = [tmp_path / "face.png"] * 3 + [tmp_path / "die.png"] + [tmp_path / "face.png"] * 4
    align = AlignConfig(size=64)
    pool = FacePool(DyingJob(FaceFinder(align), FaceAligner(align), None), workers=2, processes=True)
    try:
        results = [found.result for found in pool.map(paths)]
    finally:
        pool.close()
    assert [r["path"] for r in results] == [str(p) for p in paths]
    assert [len(r["faces"]) for r in results] == [1, 1, 1, 0, 1, 1, 1, 1]
    assert (
        results[3]["error"]
        == f"{tmp_path / 'die.png'}: the face-finding process died on it (out of memory, or a crash in dlib)"
    )
    assert all(r["error"] is None for i, r in enumerate(results) if i != 3)


def test_processes_that_cannot_start_fall_back_to_threads(release_dir, tmp_path, monkeypatch):
    def no_processes():
        raise OSError("[Errno 38] Function not implemented")

    monkeypatch.setattr(workers, "_context", no_processes)
    inputs = mixed_inputs(tmp_path)[:6]
    expected = Predictor.from_release(release_dir, backend="torch", workers=1).predict(inputs)
    predictor = Predictor.from_release(release_dir, backend="torch", workers=2, processes=True)
    unavailable = r"worker processes unavailable \(\[Errno 38\] Function not implemented\): using threads"
    with pytest.warns(UserWarning, match=unavailable):
        assert not predictor.start_workers()
    assert predictor.predict(inputs) == expected


def test_predict_finds_faces_in_processes_from_processes_from_inputs(capsys, release_dir, tmp_path, monkeypatch):
    crops = [tmp_path / f"crop{i:02d}.png" for i in range(PROCESSES_FROM)]  # a file named twice is read once
    for i, crop in enumerate(crops):
        Image.fromarray(astronaut()[60 + i : 180 + i, 160:280]).save(crop)
    chosen = []
    from_release = Predictor.from_release.__func__

    def spy(cls, *args, **kwargs):
        chosen.append(kwargs["processes"])
        return from_release(cls, *args, **kwargs)

    monkeypatch.setattr(Predictor, "from_release", classmethod(spy))
    outputs = []
    for count, options in (
        (PROCESSES_FROM - 1, []),
        (PROCESSES_FROM, []),
        (PROCESSES_FROM, ["--no-processes"]),
        (1, ["--processes"]),
    ):
        argv = ["predict", *map(str, crops[:count]), "--aligned", "--json", "--model", str(release_dir), *options]
        assert main(argv) == 0
        outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    assert chosen == [False, True, False, True]
    assert outputs[1] == outputs[2] and outputs[1][: PROCESSES_FROM - 1] == outputs[0] and outputs[3] == outputs[0][:1]


def test_with_onnx_runtime_the_workers_run_the_network_too(release_dir, tmp_path):
    inputs = mixed_inputs(tmp_path)
    expected = Predictor.from_release(release_dir, backend="onnx", workers=1).predict(inputs)
    with Predictor.from_release(release_dir, backend="onnx", workers=2, processes=True) as predictor:
        got = predictor.predict(inputs)
        predictor.flip = False  # the workers hold a copy of the setting: they start again with the new one
        unflipped = predictor.predict(inputs)
    # Each worker runs a photo's faces as one batch, the calling process batches of several photos: the same
    # network, the same answers to float rounding.
    for results in (
        (got, expected),
        (unflipped, Predictor.from_release(release_dir, workers=1, flip=False).predict(inputs)),
    ):
        for ours, theirs in zip(*results, strict=True):
            assert [f["box"] for f in ours["faces"]] == [f["box"] for f in theirs["faces"]]
            assert ours["error"] == theirs["error"]
            for a, b in zip(ours["faces"], theirs["faces"]):
                assert a["gender"] == b["gender"] and a["age_bin"] == b["age_bin"] and a["warning"] == b["warning"]
                np.testing.assert_allclose(a["age_probs"], b["age_probs"], atol=2e-6)
                assert a["gender_prob"] == pytest.approx(b["gender_prob"], abs=2e-6)
    assert got != unflipped


def test_a_face_job_with_a_network_scores_the_faces_in_the_worker(release_dir, tmp_path):
    predictor = Predictor.from_release(release_dir, backend="onnx", workers=1)
    scorer = FaceScorer(predictor.backend, predictor.release)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    job = FaceJob(predictor.finder, predictor.aligner, None, network=scorer)
    pool = FacePool(job, workers=2, processes=True)
    try:
        scored = list(pool.map([photo, tmp_path / "missing.png"] * 2, score=True))
        plain = list(pool.map([photo], score=False))
    finally:
        pool.close()
    assert [len(f.crops) for f in scored] == [1, 0, 1, 0]
    assert scored[1].probabilities is None and plain[0].probabilities is None
    age, gender = scored[0].probabilities  # computed by the worker's own copy of the ONNX session
    expected_age, expected_gender = scorer(scored[0].crops)
    np.testing.assert_allclose(age, expected_age, atol=1e-6)
    np.testing.assert_allclose(gender, expected_gender, atol=1e-6)
    assert age.shape == (1, len(predictor.release.bins)) and gender.shape == (1, 2)
