"""Tests of agecurriculum.inference: Predictor, FaceVerifier, ReleaseInfo and the default release path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from inference_helpers import ASTRONAUT_FACE, ASTRONAUT_PATCH, REP_AGES, astronaut, iou, make_release
from PIL import Image
from skimage import data as skdata

from agecurriculum.bins import PAPER_BINS
from agecurriculum.data.records import FEMALE, MALE
from agecurriculum.inference import FaceVerifier, Predictor, ReleaseInfo, read_release_config, release

FACE_KEYS = ["box", "score", "gender", "gender_prob", "age_bin", "age_range", "age_probs", "age"]


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def predictor(release_dir):
    return Predictor.from_release(release_dir, batch_size=4)


@pytest.fixture(scope="module")
def astronaut_result(predictor):
    return predictor.predict([astronaut()])[0]


def check_face(face, image_shape):
    assert list(face) == FACE_KEYS
    x0, y0, x1, y1 = face["box"]
    assert all(isinstance(v, int) for v in face["box"])
    assert 0 <= x0 < x1 <= image_shape[1] and 0 <= y0 < y1 <= image_shape[0]
    assert face["gender"] in ("female", "male") and 0.5 <= face["gender_prob"] <= 1
    probs = np.array(face["age_probs"])
    assert probs.shape == (len(PAPER_BINS),) and (probs >= 0).all() and probs.sum() == pytest.approx(1, abs=1e-5)
    assert face["age_bin"] == int(probs.argmax())
    assert face["age_range"] == list(PAPER_BINS.groups[face["age_bin"]])
    assert face["age"] == pytest.approx(float(probs @ np.array(REP_AGES)), abs=0.01)
    json.dumps(face, allow_nan=False)  # plain JSON types only


def test_astronaut_gives_the_face_not_the_mission_patch(predictor, astronaut_result):
    # Without the CNN check the HOG detector's boxes include the patch: the verification is what removes it.
    hog_boxes = [f.box for f in predictor.aligner.detect(astronaut())]
    assert any(iou(box, ASTRONAUT_PATCH) > 0.5 for box in hog_boxes)
    assert astronaut_result["error"] is None
    [face] = astronaut_result["faces"]
    check_face(face, astronaut().shape)
    assert iou(face["box"], ASTRONAUT_FACE) > 0.7
    assert iou(face["box"], ASTRONAUT_PATCH) == 0
    assert face["score"] > 0


def test_verifier_confirms_the_face_and_rejects_the_patch():
    verifier = FaceVerifier()
    assert verifier.confidence(astronaut(), ASTRONAUT_FACE) > 0
    assert verifier.confidence(astronaut(), ASTRONAUT_PATCH) is None
    assert not verifier.is_face(astronaut(), ASTRONAUT_PATCH)


def test_bad_inputs_become_errors_and_the_rest_goes_on(predictor, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>not an image</html>")
    gray = tmp_path / "gray.png"
    Image.new("RGB", (160, 120), (128, 128, 128)).save(gray)
    inputs = [broken, tmp_path / "missing.jpg", gray, np.zeros((5, 5), np.uint8), skdata.coffee()]
    results = predictor.predict(inputs)
    assert [r["path"] for r in results] == [str(broken), str(tmp_path / "missing.jpg"), str(gray), None, None]
    assert "broken.jpg: not an image" in results[0]["error"]
    assert "missing.jpg: file not found" in results[1]["error"]
    assert results[3]["error"].startswith("input 3: ")
    for r in (results[2], results[4]):  # a plain gray image and a cup of coffee: readable, no face
        assert r == {"path": r["path"], "faces": [], "error": None}
    assert all(r["faces"] == [] for r in results)


def test_aligned_inputs_give_one_face_each(predictor):
    crops = [astronaut()[76:167, 175:266], skdata.coffee(), np.full((50, 80, 3), 200, np.uint8)]
    results = predictor.predict(crops, aligned=True)
    for crop, r in zip(crops, results):
        [face] = r["faces"]
        check_face(face, crop.shape)
        assert face["box"] == [0, 0, crop.shape[1], crop.shape[0]] and face["score"] is None
    # Different images, different predictions: the model's output depends on its input.
    assert results[0]["faces"][0]["age_probs"] != results[1]["faces"][0]["age_probs"]


def test_batches_do_not_change_results(release_dir):
    crops = [astronaut()[60 + 7 * i:180 + 7 * i, 160:280] for i in range(5)]
    one = Predictor.from_release(release_dir, batch_size=1, verify=False).predict(crops, aligned=True)
    many = Predictor.from_release(release_dir, batch_size=3, verify=False).predict(crops, aligned=True)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a["faces"][0]["age_probs"], b["faces"][0]["age_probs"], atol=1e-5)
        assert a["faces"][0]["gender"] == b["faces"][0]["gender"]


class FixedBackend:
    """Always the same probabilities: makes the mapping from class index to name and age checkable by hand."""

    def __init__(self, config, age_probs, gender_probs):
        self.config, self.age, self.gender = config, np.array(age_probs, float), np.array(gender_probs, float)

    def __call__(self, images):
        n = len(images)
        return np.tile(self.age, (n, 1)), np.tile(self.gender, (n, 1))


@pytest.mark.parametrize("index, name", [(FEMALE, "female"), (MALE, "male")])
def test_gender_index_and_expected_age(release_dir, index, name):
    gender = np.full(2, 0.1)
    gender[index] = 0.9
    age = np.zeros(8)
    age[[2, 3]] = 0.5
    backend = FixedBackend(read_release_config(release_dir), age, gender)
    [face] = Predictor(backend, verify=False).predict([np.zeros((40, 40, 3), np.uint8)], aligned=True)[0]["faces"]
    assert face["gender"] == name and face["gender_prob"] == pytest.approx(0.9)
    assert face["age_bin"] == 2 and face["age_range"] == [7, 14]
    assert face["age"] == pytest.approx(0.5 * REP_AGES[2] + 0.5 * REP_AGES[3])


def test_release_info(release_dir):
    config = read_release_config(release_dir)
    info = ReleaseInfo.from_config(config)
    assert info.bins == PAPER_BINS and info.image_size == 64 and info.padding == 0.25
    np.testing.assert_array_equal(info.rep_ages, REP_AGES)
    del config["extra"]["rep_ages"]  # an older release: bin midpoints, the open last bin at its lower end + 10
    np.testing.assert_array_equal(ReleaseInfo.from_config(config).rep_ages[[0, -1]], [1.0, 70.0])
    del config["preprocessing"]["mean"]
    with pytest.raises(ValueError, match="my.json: preprocessing needs image_size, mean and std"):
        ReleaseInfo.from_config(config, "my.json")


def test_missing_default_release_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(release, "DEFAULT_RELEASE_DIR", tmp_path / "weights" / "default")
    with pytest.raises(FileNotFoundError, match="no default model is installed"):
        Predictor.from_release()
    with pytest.raises(FileNotFoundError, match="model not found"):
        Predictor.from_release(tmp_path / "nothing")


def test_unknown_backend_is_named(release_dir):
    with pytest.raises(ValueError, match="unknown backend"):
        Predictor.from_release(release_dir, backend="tflite")
