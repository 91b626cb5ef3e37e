"""Tests of the default face finding (FaceFinder) and of the Predictor's thread pool and default backend."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import skimage
from inference_helpers import ASTRONAUT_FACE, ASTRONAUT_PATCH, astronaut, iou, make_release
from PIL import Image

from agecurriculum.data import AlignConfig, FaceAligner
from agecurriculum.data.images import ImageLoadError, load_image
from agecurriculum.inference import (
    RETRY_SCALE,
    UPSAMPLE_MIN_SIDE,
    VERIFY_BELOW,
    FaceFinder,
    FaceVerifier,
    Predictor,
    default_backend,
    read_release_config,
)

SAMPLES = Path(skimage.__file__).parent / "data"


class CountingVerifier(FaceVerifier):
    """A FaceVerifier that records the HOG score of every box it is asked about (shared by its thread copies)."""

    asked: list[tuple[int, int, int, int]] = []

    def is_face(self, image, box):
        CountingVerifier.asked.append(tuple(box))
        return super().is_face(image, box)


def scaled(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), Image.Resampling.BICUBIC))


def sample_photos() -> dict[str, np.ndarray]:
    """scikit-image's sample photos (the astronaut is the only one with a face a detector should report)."""
    photos = {}
    for path in sorted(SAMPLES.iterdir()):
        try:
            image = load_image(path)
        except ImageLoadError:
            continue  # not an image (its data registry, text files)
        if min(image.shape[:2]) >= 16:
            photos[path.name] = image
    return photos


def test_default_finds_the_astronaut_once_and_no_face_in_the_other_sample_photos():
    photos = sample_photos()
    assert "astronaut.png" in photos and len(photos) > 15
    finder = FaceFinder()
    found = {name: [f.box for f in finder.find(image)] for name, image in photos.items()}
    [face] = found.pop("astronaut.png")
    assert iou(face, ASTRONAUT_FACE) > 0.7
    assert {name: boxes for name, boxes in found.items() if boxes} == {}


def test_only_doubtful_boxes_are_checked_and_the_patch_is_dropped():
    # At upsample 1 the HOG detector finds her face (score 1.16) and the patch (0.12): only the patch is doubtful.
    # At 0.8x and upsample 0 the patch scores 0.31 (higher than many real faces), and is dropped too.
    CountingVerifier.asked = []
    faces = FaceFinder(upsample=1, verify=CountingVerifier()).find(astronaut())
    assert [iou(f.box, ASTRONAUT_FACE) > 0.7 for f in faces] == [True]
    assert [iou(box, ASTRONAUT_PATCH) > 0.5 for box in CountingVerifier.asked] == [True]
    CountingVerifier.asked = []
    FaceFinder(upsample=1, verify=CountingVerifier(), verify_below=math.inf).find(astronaut())
    assert len(CountingVerifier.asked) == 2  # every box
    unchecked = FaceFinder(upsample=1, verify=False).find(astronaut())
    assert sorted(iou(f.box, ASTRONAUT_PATCH) > 0.5 for f in unchecked) == [False, True]
    smaller = scaled(astronaut(), 0.8)
    assert sorted(round(f.score, 2) for f in FaceFinder(upsample=0, verify=False).find(smaller)) == [0.31, 1.28]
    assert len(FaceFinder().find(smaller)) == 1


def test_a_lone_doubtful_box_is_kept_unless_verify_lone():
    # A crop of her suit around the mission patch: the HOG search finds the patch alone (score about 0.28). By
    # default a lone box is not re-checked (the documented risk of the default); verify_lone=True has the CNN drop it.
    x0, y0, x1, y1 = ASTRONAUT_PATCH
    suit = np.ascontiguousarray(astronaut()[y0 - 80 : y1 + 80, x0 - 80 : x1 + 80])
    CountingVerifier.asked = []
    [lone] = FaceFinder(verify=CountingVerifier()).find(suit)
    assert lone.score < VERIFY_BELOW and CountingVerifier.asked == []
    assert FaceFinder(verify_lone=True).find(suit) == []
    # Beside a confident face the same doubtful pattern is re-checked: see the astronaut tests above.


def test_a_face_between_the_searched_sizes_is_found_by_the_retry():
    # At 0.6x (307 px) upsample 0 finds no face: hers falls between two of the sizes dlib's pyramid looks at. The
    # retry on the photo enlarged by RETRY_SCALE looks at the sizes in between and finds her, box in the photo's
    # own coordinates.
    photo = scaled(astronaut(), 0.6)
    assert FaceFinder(upsample=0).find(photo) == []
    [face] = FaceFinder().find(photo)
    assert iou(face.box, [round(v * 0.6) for v in ASTRONAUT_FACE]) > 0.6
    assert face.crop.shape == (AlignConfig().size, AlignConfig().size, 3)


def test_a_small_photo_whose_only_face_is_tiny_needs_upsample_1():
    # At 0.5x (256 px, face about 45 px) the default gives up: the documented price of the cheap retry; upsample=1
    # finds her.
    photo = scaled(astronaut(), 0.5)
    assert FaceFinder().find(photo) == []
    [face] = FaceFinder(upsample=1).find(photo)
    assert iou(face.box, [round(v * 0.5) for v in ASTRONAUT_FACE]) > 0.6


def test_a_large_photo_is_searched_for_small_faces_beside_a_big_one():
    # A photo of UPSAMPLE_MIN_SIDE px with her at 1x (face about 90 px) and at 0.55x (about 50 px): upsample 0 finds
    # the big face only; the default searches such a photo at upsample 1 from the start and finds both.
    photo = np.full((UPSAMPLE_MIN_SIDE, UPSAMPLE_MIN_SIDE, 3), 120, np.uint8)
    photo[:512, :512] = astronaut()
    small = scaled(astronaut(), 0.55)
    photo[-small.shape[0] :, -small.shape[1] :] = small
    big_face = [ASTRONAUT_FACE]
    offset = UPSAMPLE_MIN_SIDE - small.shape[0]
    small_face = [round(v * 0.55) + offset for v in ASTRONAUT_FACE]

    def matched(faces):
        return sorted(i for f in faces for i, box in enumerate(big_face + [small_face]) if iou(f.box, box) > 0.6)

    assert matched(FaceFinder(upsample=0).find(photo)) == [0]
    assert matched(FaceFinder().find(photo)) == [0, 1]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="upsample must be >= 0"):
        FaceFinder(upsample=-1)
    with pytest.raises(ValueError, match="verify_below must be a number"):
        FaceFinder(verify_below=math.nan)
    with pytest.raises(ValueError, match="scale must be > 0"):
        FaceAligner().detect(astronaut(), scale=0)
    assert VERIFY_BELOW == 0.5 and UPSAMPLE_MIN_SIDE == 800 and RETRY_SCALE == 1.1


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release"))


def test_threads_keep_input_order_and_per_input_errors(release_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    inputs = [
        astronaut(),
        broken,
        scaled(astronaut(), 0.55),
        np.zeros((8, 8, 3), np.uint8),
        astronaut()[:, ::-1],
        tmp_path / "missing.png",
        scaled(astronaut(), 0.8),
    ] * 2
    one = Predictor.from_release(release_dir, backend="torch", workers=1).predict(inputs)
    three = Predictor.from_release(release_dir, backend="torch", workers=3).predict(inputs)
    assert three == one
    assert [len(r["faces"]) for r in one[:7]] == [1, 0, 1, 0, 1, 0, 1]
    assert [r["error"] is not None for r in one[:7]] == [False, True, False, True, False, True, False]


def test_an_endless_input_stream_is_read_as_it_goes(release_dir):
    # iter_predict must not read the whole iterable first: with workers threads, a few inputs are in flight.
    read = itertools.count()

    def crops():
        while True:
            next(read)
            yield np.full((32, 32, 3), 90, np.uint8)

    predictor = Predictor.from_release(release_dir, backend="torch", workers=2, batch_size=2)
    results = list(itertools.islice(predictor.iter_predict(crops(), aligned=True), 3))
    assert len(results) == 3 and next(read) <= 3 + 4 * 2 + 2  # yielded, in flight (4 per worker), a batch


def test_workers_must_be_positive(release_dir):
    with pytest.raises(ValueError, match="workers must be >= 1"):
        Predictor.from_release(release_dir, backend="torch", workers=0)


def test_default_backend_is_onnx_runtime_on_a_cpu(release_dir, tmp_path, monkeypatch):
    assert importlib.util.find_spec("onnxruntime") is not None  # a dependency
    assert default_backend("cpu") == "onnx"
    assert default_backend("cuda") == "torch"
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    assert default_backend("cuda", model) == "onnx"  # an .onnx file can only run in ONNX Runtime
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a)
    )
    assert default_backend("cpu") == "torch"


def test_the_default_predictor_runs_onnx_with_the_torch_outputs(release_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AGECURRICULUM_CACHE", str(tmp_path / "cache"))
    crops = [astronaut()[76:167, 175:266], astronaut()[40:200, 150:300]]
    default = Predictor.from_release(release_dir)
    assert type(default.backend).__name__ == "OnnxBackend"
    assert default.backend.config == read_release_config(release_dir)
    torch_results = Predictor.from_release(release_dir, backend="torch").predict(crops, aligned=True)
    for got, expected in zip(default.predict(crops, aligned=True), torch_results):
        np.testing.assert_allclose(got["faces"][0]["age_probs"], expected["faces"][0]["age_probs"], atol=1e-4)
