"""Tests of agecurriculum.inference: Predictor, FaceVerifier, ReleaseInfo and the default release path."""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings

import numpy as np
import pytest
from inference_helpers import ASTRONAUT_FACE, ASTRONAUT_PATCH, REP_AGES, astronaut, iou, make_release
from PIL import Image
from skimage import data as skdata

from agecurriculum.bins import PAPER_BINS
from agecurriculum.data.faces import DEFAULT_MAX_DETECT_SIDE, AlignConfig, FaceAligner
from agecurriculum.data.images import DEFAULT_MAX_BYTES
from agecurriculum.data.records import FEMALE, MALE
from agecurriculum.evaluation import apply_temperature
from agecurriculum.inference import (
    VERIFY_BELOW,
    FaceVerifier,
    Predictor,
    ReleaseInfo,
    read_release_config,
    release,
)
from agecurriculum.inference.backends import OnnxBackend
from agecurriculum.inference.defaults import DEFAULT_RELEASE_DIR
from agecurriculum.inference.predictor import FEATURELESS_STD, MIN_FACE_PIXELS
from agecurriculum.release import write_release_temperature

FACE_KEYS = ["box", "score", "gender", "gender_prob", "age_bin", "age_range", "age_probs", "age", "warning"]
FLAT = f"featureless image (pixel std 0.0 < {FEATURELESS_STD}): the prediction is meaningless"


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
    assert astronaut_result["error"] is None
    [face] = astronaut_result["faces"]
    check_face(face, astronaut().shape)
    assert iou(face["box"], ASTRONAUT_FACE) > 0.7
    assert iou(face["box"], ASTRONAUT_PATCH) == 0
    assert face["score"] > 0


@pytest.mark.parametrize("verify_below", [VERIFY_BELOW, math.inf])
def test_the_cnn_check_drops_the_patch_among_the_hog_boxes(release_dir, verify_below):
    # At upsample 1 the HOG detector's boxes include the patch (score 0.12, doubtful): the CNN check removes it,
    # whether it checks the doubtful boxes only (the default) or every box.
    hog = FaceAligner(AlignConfig(upsample=1)).detect(astronaut())
    assert [round(f.score, 2) for f in hog if iou(f.box, ASTRONAUT_PATCH) > 0.5] == [0.12]
    faces = fixed_predictor(release_dir, upsample=1, verify=True, verify_below=verify_below).predict([astronaut()])[0][
        "faces"
    ]
    assert [iou(f["box"], ASTRONAUT_FACE) > 0.7 for f in faces] == [True]


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
    # A flat grey image still gets an answer, flagged as meaningless; real pictures are not flagged.
    assert [r["faces"][0]["warning"] for r in results] == [None, None, FLAT]


def test_batches_do_not_change_results(release_dir):
    crops = [astronaut()[60 + 7 * i : 180 + 7 * i, 160:280] for i in range(5)]
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


def fixed_predictor(release_dir, **kwargs):
    """A predictor whose network always gives the same answer: for tests of everything but the network."""
    backend = FixedBackend(read_release_config(release_dir), np.full(8, 1 / 8), [0.5, 0.5])
    return Predictor(backend, **{"verify": False, **kwargs})


def test_tiny_and_malformed_inputs_are_per_input_errors(release_dir, tmp_path):
    assert MIN_FACE_PIXELS == 16
    dot = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (90, 60, 40)).save(dot)
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    inputs = [
        dot,
        np.zeros((0, 0, 3), np.uint8),
        noise[:15],
        np.zeros((20, 20, 3)),
        np.zeros((20, 20), np.uint8),
        noise,
    ]
    expected = [
        f"{dot}: image too small (1x1; at least 16 px a side)",
        "input 1: image too small (0x0; at least 16 px a side)",
        "input 2: image too small (16x15; at least 16 px a side)",
        "input 3: expected an (H, W, 3) uint8 RGB image, got float64 array of shape (20, 20, 3)",
        "input 4: expected an (H, W, 3) uint8 RGB image, got uint8 array of shape (20, 20)",
        None,
    ]
    for aligned in (True, False):
        results = fixed_predictor(release_dir).predict(inputs, aligned=aligned)
        assert [r["error"] for r in results] == expected
        assert [len(r["faces"]) for r in results] == [0] * 5 + [1 if aligned else 0]


def test_featureless_crops_are_flagged(release_dir, tmp_path):
    flat_png, flat_jpeg = tmp_path / "flat.png", tmp_path / "flat.jpg"
    Image.new("RGB", (120, 90), (200, 30, 30)).save(flat_png)
    Image.new("RGB", (120, 90), (30, 120, 200)).save(flat_jpeg, quality=75)
    inputs = [flat_png, flat_jpeg, np.zeros((64, 64, 3), np.uint8), astronaut()[60:180, 160:280]]
    results = fixed_predictor(release_dir).predict(inputs, aligned=True)
    assert [r["error"] for r in results] == [None] * 4
    warnings = [r["faces"][0]["warning"] for r in results]
    assert warnings[0] == warnings[2] == FLAT
    assert warnings[1].startswith("featureless image (pixel std ")  # JPEG leaves a little noise, still flat
    assert warnings[3] is None
    json.dumps(results, allow_nan=False)


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_face_crops_are_never_flagged(shared_data, release_dir):
    # FairFace's validation set holds the least contrasted crops of ../shared/data (dark photos, grey-level std
    # down to 9); UTKFace and MORPH-II add other cameras and lighting.
    paths = sorted((shared_data / "fairface" / "val").glob("*.jpg"))
    paths += sorted((shared_data / "utkface" / "UTKFace").glob("*.jpg"))[::20]
    paths += sorted((shared_data / "morph2" / "images").glob("*"))[::5]
    results = fixed_predictor(release_dir).predict(paths, aligned=True)
    assert len(results) > 5000 and all(r["error"] is None for r in results)
    assert [r["path"] for r in results if r["faces"][0]["warning"] is not None] == []


def test_errors_are_never_empty(release_dir, tmp_path, monkeypatch):
    photo = tmp_path / "photo.png"
    Image.fromarray(astronaut()).save(photo)
    predictor = fixed_predictor(release_dir)

    def out_of_memory(image):
        raise MemoryError  # what numpy or dlib raise when an allocation fails: str() is ""

    monkeypatch.setattr(predictor.finder, "find", out_of_memory)
    results = predictor.predict([photo, astronaut()])
    assert [r["error"] for r in results] == [f"{photo}: out of memory", "input 1: out of memory"]

    def bare_error(image):
        raise RuntimeError

    monkeypatch.setattr(predictor.finder, "find", bare_error)
    assert predictor.predict([astronaut()])[0]["error"] == "input 0: RuntimeError"


def test_max_bytes_reaches_load_image(release_dir, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(astronaut()).save(photo)
    size = photo.stat().st_size
    inputs = [photo]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.jpg")  # would block the whole run if it were opened
        inputs.append(tmp_path / "fifo.jpg")
    results = Predictor.from_release(release_dir, verify=False, max_bytes=size - 1).predict(inputs, aligned=True)
    assert results[0]["error"] == f"{photo}: file too large ({size} bytes > limit of {size - 1} bytes)"
    if len(inputs) == 2:
        assert results[1]["error"] == f"{tmp_path / 'fifo.jpg'}: not a regular file (FIFO)"
    assert fixed_predictor(release_dir).max_bytes == DEFAULT_MAX_BYTES
    [face] = fixed_predictor(release_dir, max_bytes=size).predict([photo], aligned=True)[0]["faces"]
    assert face["box"] == [0, 0, 512, 512]


def test_large_photo_keeps_its_coordinates(predictor):
    # The astronaut at twice her size in a 4000 px photo: the default max_detect_side (2000) searches a copy at
    # half size, where her face is as large as in the original; the box comes back in the photo's pixels, and the
    # crop, cut from the full-size photo, gives the prediction the face alone gives (up to the pixel or so that
    # any two detections of one face differ by, which this untrained head's large weights magnify).
    face_2x = np.asarray(Image.fromarray(astronaut()).resize((1024, 1024), Image.Resampling.BICUBIC))
    x, y = 2500, 1700
    photo = np.full((4000, 4000, 3), 128, np.uint8)
    photo[y : y + 1024, x : x + 1024] = face_2x
    assert predictor.finder.max_detect_side == DEFAULT_MAX_DETECT_SIDE == 2000
    [face] = predictor.predict([photo])[0]["faces"]
    [alone] = predictor.predict([face_2x])[0]["faces"]
    x0, y0, x1, y1 = alone["box"]
    # HOG boxes move by a few pixels with the face's place in the photo: even full-size detection on this photo
    # gives a box at 0.75 IoU with the face-alone one.
    assert iou(face["box"], (x0 + x, y0 + y, x1 + x, y1 + y)) > 0.7
    assert iou(face["box"], [2 * v + offset for v, offset in zip(ASTRONAUT_FACE, (x, y, x, y))]) > 0.7
    assert face["age_bin"] == alone["age_bin"] and face["gender"] == alone["gender"]
    np.testing.assert_allclose(face["age_probs"], alone["age_probs"], atol=0.05)


class MirrorSensitiveBackend:
    """Says female with probability sigmoid(left half's mean - right half's mean): the mirror image swaps the two."""

    def __init__(self, config):
        self.config, self.batch_sizes = config, []

    def __call__(self, images):
        self.batch_sizes.append(len(images))
        half = images.shape[-1] // 2
        female = 1 / (1 + np.exp(-(images[..., :half].mean((1, 2, 3)) - images[..., -half:].mean((1, 2, 3)))))
        return np.full((len(images), 8), 1 / 8), np.stack([1 - female, female], 1)


def test_flip_averages_each_face_with_its_mirror(release_dir):
    crops = [np.zeros((40, 40, 3), np.uint8) for _ in range(3)]
    for i, crop in enumerate(crops):
        crop[:, :20] = 60 * (i + 1)  # the left half brighter
    backend = MirrorSensitiveBackend(read_release_config(release_dir))
    plain = Predictor(backend, batch_size=2, verify=False, flip=False).predict(crops, aligned=True)
    assert {r["faces"][0]["gender"] for r in plain} == {"female"} and plain[0]["faces"][0]["gender_prob"] > 0.6
    flipped = Predictor(backend, batch_size=2, verify=False).predict(crops, aligned=True)  # flip is the default
    assert backend.batch_sizes[-2:] == [4, 2]  # each batch of faces ran with its mirror images, as one batch
    # sigmoid(d) and sigmoid(-d) average to 1/2 exactly: the two views' probabilities were averaged.
    assert [r["faces"][0]["gender_prob"] for r in flipped] == [0.5] * 3
    assert [list(r) for r in flipped] == [list(r) for r in plain] and list(flipped[0]["faces"][0]) == FACE_KEYS


def test_flip_with_a_real_network(release_dir):
    # Crops at the network's input size: mirroring the crop and mirroring the network's input are the same.
    crops = [np.ascontiguousarray(astronaut()[70 + 9 * i : 134 + 9 * i, 180:244]) for i in range(3)]
    plain = Predictor.from_release(release_dir, verify=False, flip=False)
    faces = [r["faces"][0] for r in plain.predict(crops, aligned=True)]
    mirrored = [r["faces"][0] for r in plain.predict([c[:, ::-1] for c in crops], aligned=True)]
    flipped = Predictor.from_release(release_dir, verify=False, flip=True).predict(crops, aligned=True)
    for face, mirror, result in zip(faces, mirrored, flipped):
        np.testing.assert_allclose(
            result["faces"][0]["age_probs"], (np.array(face["age_probs"]) + mirror["age_probs"]) / 2, atol=2e-6
        )
        check_face(result["faces"][0], (64, 64))
    assert any(not np.allclose(f["age_probs"], m["age_probs"], atol=1e-3) for f, m in zip(faces, mirrored))


def test_release_temperature_is_read_and_checked(release_dir):
    config = read_release_config(release_dir)
    assert ReleaseInfo.from_config(config).temperature == {"gender": 1.0, "age": 1.0}  # none stored: no change
    config["extra"]["temperature"] = {"gender": 2}
    assert ReleaseInfo.from_config(config).temperature == {"gender": 2.0, "age": 1.0}
    for bad, field in (
        ({"gender": 1.5, "age": 0}, "age"),
        ({"gender": "1.5"}, "gender"),
        ({"gender": True}, "gender"),
        ({"age": float("nan")}, "age"),
    ):
        config["extra"]["temperature"] = bad
        with pytest.raises(ValueError, match=f"my.json: extra.temperature.{field} must be a positive finite number"):
            ReleaseInfo.from_config(config, "my.json")
    for bad in ({"race": 2.0}, [1.5, 1.2], 1.5):
        config["extra"]["temperature"] = bad
        with pytest.raises(ValueError, match="extra.temperature must be a mapping with keys among gender, age"):
            ReleaseInfo.from_config(config, "my.json")


def test_write_release_temperature(release_dir, tmp_path):
    copy = shutil.copytree(release_dir, tmp_path / "release")
    before = read_release_config(copy)
    weights = (copy / "model.safetensors").read_bytes()
    path = write_release_temperature(copy, {"gender": np.float32(1.5), "age": 0.8})
    after = read_release_config(copy)
    assert path == copy / "config.json" and after["extra"]["temperature"] == {"gender": 1.5, "age": 0.8}
    del after["extra"]["temperature"]
    assert after == before and (copy / "model.safetensors").read_bytes() == weights  # nothing else changed
    assert ReleaseInfo.from_config(read_release_config(copy)).temperature == {"gender": 1.5, "age": 0.8}
    write_release_temperature(copy, {"gender": 1.25})  # replaces the entry whole: age goes back to 1
    assert ReleaseInfo.from_config(read_release_config(copy)).temperature == {"gender": 1.25, "age": 1.0}
    text = (copy / "config.json").read_text()
    with pytest.raises(ValueError, match="extra.temperature.age must be a positive finite number"):
        write_release_temperature(copy, {"age": -1.0})
    assert (copy / "config.json").read_text() == text  # a refused temperature leaves the file as it was
    assert not list(copy.glob(".*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no model.onnx in the folder: nothing to warn about
        write_release_temperature(copy, {"gender": 1.25})
    (copy / "model.onnx").write_bytes(b"stale export")
    with pytest.warns(UserWarning, match="model.onnx holds the release config it was exported with"):
        write_release_temperature(copy, {"gender": 1.25})
    with pytest.raises(FileNotFoundError, match="release file not found"):
        write_release_temperature(tmp_path / "nothing", {"gender": 1.0})


def test_predictor_applies_the_release_temperature(release_dir, tmp_path):
    config = read_release_config(release_dir)
    config["extra"]["temperature"] = {"gender": 2.0, "age": 0.5}
    age = np.array([0.05, 0.1, 0.5, 0.2, 0.05, 0.05, 0.03, 0.02])
    backend = FixedBackend(config, age, [0.2, 0.8])
    [face] = Predictor(backend, verify=False, flip=False).predict([np.zeros((40, 40, 3), np.uint8)], aligned=True)[0][
        "faces"
    ]
    # T = 2 on (0.2, 0.8): sqrt-probabilities renormalised, 2 / 3 for female; T = 0.5 squares the age probabilities.
    assert face["gender"] == "female" and face["gender_prob"] == pytest.approx(2 / 3, abs=1e-6)
    np.testing.assert_allclose(face["age_probs"], age**2 / (age**2).sum(), atol=1e-6)
    # The torch backend: a copy of the release with temperatures stored in it.
    copy = shutil.copytree(release_dir, tmp_path / "release")
    write_release_temperature(copy, {"gender": 3.0, "age": 1.5})
    crops = [astronaut()[60 + 7 * i : 180 + 7 * i, 160:280] for i in range(3)]
    raw = Predictor.from_release(release_dir, verify=False, flip=False)
    tempered = Predictor.from_release(copy, verify=False, flip=False).predict(crops, aligned=True)
    images = np.stack(list(raw.network_inputs(crops, aligned=True)))
    age_probs, gender_probs = raw.backend(images)
    for result, a, g in zip(tempered, apply_temperature(age_probs, 1.5), apply_temperature(gender_probs, 3.0)):
        face = result["faces"][0]
        np.testing.assert_allclose(face["age_probs"], a, atol=1e-6)
        assert face["gender_prob"] == pytest.approx(g.max(), abs=1e-6)


def test_default_model_applies_its_shipped_temperatures():
    """The shipped model carries temperatures fitted on validation faces (issue 27): its answers are the network's
    probabilities scaled by them, through the default (ONNX) backend as through torch."""
    if not (DEFAULT_RELEASE_DIR / "config.json").is_file():
        pytest.skip(f"no default model installed in {DEFAULT_RELEASE_DIR}")
    predictor = Predictor.from_release(verify=False, flip=False)
    shipped = predictor.release.config["extra"]["temperature"]
    assert predictor.release.temperature == shipped and set(shipped) == {"gender", "age"}
    crops = [astronaut()[60 + 7 * i : 200 + 7 * i, 150:290] for i in range(3)]
    results = predictor.predict(crops, aligned=True)
    assert isinstance(predictor.backend, OnnxBackend)  # the default backend on a CPU
    age_probs, gender_probs = predictor.backend(np.stack(list(predictor.network_inputs(crops, aligned=True))))
    ages, genders = apply_temperature(age_probs, shipped["age"]), apply_temperature(gender_probs, shipped["gender"])
    for result, a, g in zip(results, ages, genders):
        np.testing.assert_allclose(result["faces"][0]["age_probs"], a, atol=1e-6)
        assert result["faces"][0]["gender_prob"] == pytest.approx(g.max(), abs=1e-6)
