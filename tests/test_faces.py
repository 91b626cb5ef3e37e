"""Face detection and alignment on a real photo, and the content-keyed crop cache with its resumable preprocess pass."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import iou
from PIL import Image
from skimage import data
from torch import nn

from agecurriculum.data.cache import (
    NO_FACE,
    CachedCrops,
    CropCache,
    NoFaceError,
    preprocess,
)
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.images import ImageLoadError, load_image
from agecurriculum.data.records import FaceRecord
from agecurriculum.model import ResizedInput


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner()


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()  # Eileen Collins: face at about x 175-266, y 76-167 of 512 x 512


def _eyes(landmarks):
    """Centres of the eye on the image's left and on its right, from dlib's 5 points."""
    return landmarks[2:4].mean(axis=0), landmarks[0:2].mean(axis=0)


def test_detects_and_aligns_the_astronaut(aligner, astronaut):
    faces = aligner.detect(astronaut)
    # dlib scores: the face about 1.16, the mission patch (lower left) about 0.12
    assert len(faces) >= 1 and [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert 150 <= x0 < x1 <= 290 and 50 <= y0 < y1 <= 190 and face.score > 0.5
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float64
    assert np.all((face.landmarks >= [x0, y0]) & (face.landmarks <= [x1, y1]))
    assert face.crop.shape == (128, 128, 3) and face.crop.dtype == np.uint8

    best = aligner.align(astronaut)
    assert best.box == face.box
    np.testing.assert_array_equal(best.crop, face.crop)

    # alignment really aligns: in the crop the eyes are level and mirror each other about the centre line
    again = aligner.align(best.crop)
    assert again is not None
    left, right = _eyes(again.landmarks)
    assert abs(left[1] - right[1]) <= 3 and abs((left[0] + right[0]) / 2 - 64) <= 4


def test_config_changes_the_crop(astronaut):
    face = FaceAligner(AlignConfig(size=64, padding=0.5)).align(astronaut)
    assert face.crop.shape == (64, 64, 3)
    assert FaceAligner(AlignConfig(min_score=3.0)).align(astronaut) is None
    assert FaceAligner(AlignConfig(min_face_size=200)).align(astronaut) is None
    with pytest.raises(ValueError, match="size >= 1"):
        AlignConfig(size=0)


def test_no_face(aligner):
    assert aligner.detect(data.coffee()) == []
    assert aligner.align(data.coffee()) is None
    assert aligner.align(np.full((120, 160, 3), 128, np.uint8)) is None
    with pytest.raises(ValueError, match="uint8 RGB"):
        aligner.align(np.zeros((10, 10), np.uint8))


def test_known_box_skips_detection(aligner, astronaut):
    detected = aligner.align(astronaut)
    given = aligner.align(astronaut, box=detected.box)
    assert np.isnan(given.score) and given.box == detected.box
    assert np.abs(given.landmarks - detected.landmarks).max() <= 2
    with pytest.raises(ValueError, match="outside the 512x512 image"):
        aligner.align(astronaut, box=(400, 400, 600, 600))


def test_aligned_mode_square_and_not(aligner, astronaut):
    square = aligner.align_crop_only(astronaut)
    assert square.shape == (128, 128, 3) and square.dtype == np.uint8
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, :100] = wide[:, 200:] = [255, 0, 0]
    wide[:, 100:200] = [0, 0, 255]  # only the centre square is blue
    out = FaceAligner(AlignConfig(size=50)).align_crop_only(wide)
    assert out.shape == (50, 50, 3) and np.all(out == [0, 0, 255])
    tall = FaceAligner(AlignConfig(size=50)).align_crop_only(np.ascontiguousarray(wide.transpose(1, 0, 2)))
    assert tall.shape == (50, 50, 3) and np.all(tall == [0, 0, 255])


def test_aligner_pickles_without_dlib_objects(aligner, astronaut):
    aligner.align(astronaut)  # dlib models built
    clone = pickle.loads(pickle.dumps(aligner))
    assert clone.config == aligner.config
    np.testing.assert_array_equal(clone.align(astronaut).crop, aligner.align(astronaut).crop)
    assert pickle.loads(pickle.dumps(FaceAligner(max_detect_side=300))).max_detect_side == 300


def _paste(image, canvas_side, at):
    """``image`` on a grey ``canvas_side``-square canvas, its top-left corner at ``at = (x, y)``."""
    canvas = np.full((canvas_side, canvas_side, 3), 128, np.uint8)
    canvas[at[1] : at[1] + image.shape[0], at[0] : at[0] + image.shape[1]] = image
    return canvas


def test_large_photo_is_searched_shrunk_and_cropped_at_full_size(astronaut):
    # The astronaut at twice her size (face about 185 px) in a 3000 px photo; detection runs at 1000 px, where her
    # face is about 60 px: still found, its box scaled back to the photo, the crop cut from the full-size photo.
    face_2x = np.asarray(Image.fromarray(astronaut).resize((1024, 1024), Image.Resampling.BICUBIC))
    x, y = 1200, 900
    photo = _paste(face_2x, 3000, (x, y))
    expected = FaceAligner().align(face_2x)  # full-size detection of the same face, where it is affordable
    found = FaceAligner(max_detect_side=1000).detect(photo)[0]
    ex0, ey0, ex1, ey1 = expected.box
    shifted = (ex0 + x, ey0 + y, ex1 + x, ey1 + y)
    assert iou(found.box, shifted) > 0.8, (found.box, shifted)
    np.testing.assert_allclose(found.landmarks, expected.landmarks + [x, y], atol=4)
    assert found.crop.shape == expected.crop.shape
    assert np.abs(found.crop.astype(int) - expected.crop).mean() < 3  # same face, same detail
    assert FaceAligner(max_detect_side=1000).align(photo).box == found.box


def test_photos_within_max_detect_side_are_untouched(aligner, astronaut):
    # 512 px: no shrinking, so the very same boxes and crops as without the setting (crop caches stay valid).
    for got, want in zip(FaceAligner(max_detect_side=512).detect(astronaut), aligner.detect(astronaut), strict=True):
        assert got.box == want.box and got.score == want.score
        np.testing.assert_array_equal(got.crop, want.crop)
    with pytest.raises(ValueError, match="max_detect_side must be at least 1"):
        FaceAligner(max_detect_side=0)


# --- the crop cache --------------------------------------------------------------------------------------------


class CountingAligner(FaceAligner):
    """Counts detector runs; raises KeyboardInterrupt on run number ``interrupt_at`` to simulate a Ctrl-C."""

    def __init__(self, config=None, interrupt_at=None):
        super().__init__(config)
        self.calls, self.interrupt_at = 0, interrupt_at

    def detect(self, image):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return super().detect(image)


@pytest.fixture
def photos(tmp_path, astronaut):
    """Four photos with a face, one without, one truncated file and one missing file, as records."""
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256)))  # face about 45 px: fast, still found
    folder = tmp_path / "photos"
    folder.mkdir()
    faces = [small, small[:, ::-1], small[:200, 20:220], np.asarray(Image.fromarray(small).rotate(10))]
    for i, img in enumerate(faces):
        Image.fromarray(np.ascontiguousarray(img)).save(folder / f"face{i}.png")
    Image.fromarray(data.coffee()[::2, ::2]).save(folder / "coffee.jpg")
    jpeg = (folder / "coffee.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    names = [f"face{i}.png" for i in range(4)] + ["coffee.jpg", "cut.jpg", "missing.jpg"]
    return [FaceRecord(folder / n, "test", 20, 29) for n in names]


def _files(directory):
    return sorted(p.relative_to(directory) for p in Path(directory).rglob("*") if p.is_file())


def test_key_follows_content_and_parameters(tmp_path, photos):
    cache = CropCache(tmp_path / "cache")
    path, config = photos[0].path, AlignConfig()
    key = cache.key(path, config)
    renamed = path.rename(path.with_name("renamed.png"))
    assert cache.key(renamed, config) == key  # content, not name
    assert cache.key(renamed, AlignConfig(padding=0.3)) != key
    assert cache.key(renamed, config, "aligned") != key
    assert cache.key(renamed, config, "box", box=(1, 2, 3, 4)) != cache.key(renamed, config, "box", box=(1, 2, 3, 5))
    assert cache.key(renamed, config, "aligned") == cache.key(renamed, AlignConfig(upsample=0), "aligned")  # unused
    assert cache.key(photos[1].path, config) != key
    with pytest.raises(ValueError, match="mode"):
        cache.key(renamed, config, "fast")


def test_put_get_atomic_and_negative(tmp_path):
    cache = CropCache(tmp_path / "cache")
    crop = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    key = "ab12" + "0" * 36
    assert cache.get(key) is None and key not in cache
    cache.put(key, crop)
    np.testing.assert_array_equal(cache.get(key), crop)  # PNG: lossless
    cache.put_failure("cd34" + "0" * 36)
    assert cache.failure("cd34" + "0" * 36) == NO_FACE and cache.get("cd34" + "0" * 36) is None
    assert _files(cache.directory) == [Path("ab/12", key + ".png"), Path("cd/34", "cd34" + "0" * 36 + ".noface")]
    (cache.directory / "ab/12" / f"{key}.png").write_bytes(b"\x89PNG cut short")
    assert cache.get(key) is None  # a damaged entry is a miss


def test_preprocess_caches_crops_and_failures(tmp_path, photos):
    cache = CropCache(tmp_path / "cache")
    first = CountingAligner()
    result = preprocess(photos, first, cache, workers=0, progress=False)
    assert [r.path.name for r in result.succeeded] == [f"face{i}.png" for i in range(4)]
    assert [(p.name, reason) for p, reason in result.failed] == [
        ("coffee.jpg", NO_FACE),
        ("cut.jpg", "truncated file"),
        ("missing.jpg", "file not found"),
    ]
    assert result.failure_counts == {NO_FACE: 1, "truncated file": 1, "file not found": 1}
    assert first.calls == 5 and result.cached == 0
    assert not [p for p in _files(cache.directory) if p.name.endswith(".tmp")]

    second = CountingAligner()
    again = preprocess(photos, second, cache, workers=0, progress=False)
    assert second.calls == 0 and again.cached == 5  # crops and the "no face" entry: no detection at all
    assert again.succeeded == result.succeeded and again.failed == result.failed


def test_preprocess_resumes_after_interruption(tmp_path, photos):
    cache = CropCache(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        preprocess(photos, CountingAligner(interrupt_at=3), cache, workers=0, progress=False)
    assert len(_files(cache.directory)) == 2  # the two finished crops, no temporary files
    resumed = CountingAligner()
    result = preprocess(photos, resumed, cache, workers=0, progress=False)
    assert resumed.calls == 3 and result.cached == 2 and len(result.succeeded) == 4


def test_parallel_gives_the_same_crops(tmp_path, photos):
    serial, parallel = CropCache(tmp_path / "serial"), CropCache(tmp_path / "parallel")
    a = preprocess(photos, FaceAligner(), serial, workers=0, progress=False)
    b = preprocess(photos, FaceAligner(), parallel, workers=2, chunksize=1, progress=False)
    assert a.succeeded == b.succeeded and a.failed == b.failed
    assert _files(serial.directory) == _files(parallel.directory)
    for rel in _files(serial.directory):
        if rel.suffix == ".png":
            np.testing.assert_array_equal(load_image(serial.directory / rel), load_image(parallel.directory / rel))


def test_cached_crops(tmp_path, photos, astronaut):
    cache = CropCache(tmp_path / "cache")
    counting = CountingAligner()
    crops = CachedCrops(cache, counting)
    crop = crops(photos[0])  # a miss: computed and stored
    assert crop.shape == (128, 128, 3) and counting.calls == 1
    np.testing.assert_array_equal(crops(photos[0]), crop)
    assert counting.calls == 1
    with pytest.raises(NoFaceError, match="coffee.jpg: no face detected"):
        crops(photos[4])
    with pytest.raises(NoFaceError):
        crops(photos[4])
    assert counting.calls == 2  # the second "no face" came from the cache
    with pytest.raises(ImageLoadError, match="cut.jpg: truncated file"):
        crops(photos[5])

    aligned = CachedCrops(cache, FaceAligner(AlignConfig(size=64)), "aligned")(photos[4])  # no detection at all
    assert aligned.shape == (64, 64, 3)

    boxed = FaceRecord(photos[0].path, "test", 20, 29, box=(80, 30, 140, 90))
    by_box = CachedCrops(cache, counting, "box")(boxed)
    assert by_box.shape == (128, 128, 3) and counting.calls == 2  # landmarks in the given box, no detector run


@pytest.mark.shared_data
def test_real_datasets(shared_data, tmp_path):
    adience = sorted((shared_data / "adience" / "faces").glob("*/*.jpg"))[:3]
    utkface = sorted((shared_data / "utkface" / "UTKFace").glob("*.jpg"))[:2]
    records = [FaceRecord(p, "adience", 25, 32) for p in adience]
    cache = CropCache(tmp_path / "cache")
    result = preprocess(records, FaceAligner(), cache, workers=0, progress=False)
    assert len(result.succeeded) >= 2, result.failed  # in-the-wild crops: nearly all have a findable face
    crops = CachedCrops(cache, FaceAligner(), "aligned")
    for path in utkface:
        assert crops(FaceRecord(path, "utkface", 30, 30)).shape == (128, 128, 3)


def test_crops_at_two_sizes_show_the_same_region(astronaut):
    # What lets a teacher trained on 128-pixel crops read a student's 160-pixel batches (ResizedInput): the crop box
    # follows the landmarks and the padding, not the output size.
    big = FaceAligner(AlignConfig(size=160)).align(astronaut).crop
    small = FaceAligner(AlignConfig(size=128)).align(astronaut).crop
    shrink = ResizedInput(nn.Identity(), 128)
    resized = shrink(torch.from_numpy(big).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()
    assert resized.shape == small.shape
    difference = np.abs(resized - small).mean()
    two_pixels_off = np.abs(small.astype(float) - np.roll(small, 2, axis=1)).mean()
    assert difference < 3 and difference < two_pixels_off / 4, (difference, two_pixels_off)
