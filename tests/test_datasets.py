import pytest
import torch

from agecurriculum.data import FilteredDataset, TensorFaceDataset, age_bins_of


def make_dataset(n=20):
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 4, 4).clone()
    return TensorFaceDataset(images, torch.arange(n) % 8, torch.arange(n) % 2)


def test_filtered_dataset_keeps_only_the_stage_bins_in_order():
    ds = make_dataset()
    view = FilteredDataset(ds, {3, 4, 5})
    assert view.indices == [3, 4, 5, 11, 12, 13, 19]
    assert len(view) == 7
    for k in range(len(view)):
        image, age_bin, gender = view[k]
        assert age_bin in {3, 4, 5}
        assert image[0, 0, 0].item() == view.indices[k]  # the item really is the original one
    assert view.class_counts(8).tolist() == [0, 0, 0, 3, 2, 2, 0, 0]


def test_filtered_dataset_of_filtered_dataset_and_empty_result():
    view = FilteredDataset(FilteredDataset(make_dataset(), range(4)), {0, 7})
    assert [view[k][1] for k in range(len(view))] == [0, 0, 0]
    assert len(FilteredDataset(make_dataset(), set())) == 0


def test_age_bins_of_falls_back_to_reading_items():
    ds = make_dataset(5)
    as_list = [ds[i] for i in range(len(ds))]  # a plain list has no age_bins attribute
    assert age_bins_of(as_list) == [0, 1, 2, 3, 4]


def test_tensor_dataset_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="age_bins must have shape"):
        TensorFaceDataset(torch.zeros(3, 3, 4, 4), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="images must be"):
        TensorFaceDataset(torch.zeros(3, 4, 4), torch.zeros(3), torch.zeros(3))


# --- FaceDataset and age-bin assignment -----------------------------------------------------------------------

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from agecurriculum.bins import PAPER_BINS, AgeBins  # noqa: E402
from agecurriculum.data.datasets import (  # noqa: E402
    IGNORE,
    FaceDataset,
    assign_age_bin,
    to_float_tensor,
)
from agecurriculum.data.records import FaceRecord  # noqa: E402

BINS = AgeBins.from_groups([(0, 2), (3, 6), (7, 14), (15, 100)])


def rec(lo, hi=None, gender=0, name="a.jpg", subject=None, dataset="test"):
    return FaceRecord(f"/data/{name}", dataset, lo, lo if hi is None else hi, gender, subject=subject)


@pytest.mark.parametrize("straddle", ["ignore", "overlap", "drop", "error"])
def test_exact_age_and_range_inside_one_bin_get_that_bin_under_every_rule(straddle):
    assert assign_age_bin(rec(0), BINS, straddle) == 0
    assert assign_age_bin(rec(5), BINS, straddle) == 1
    assert assign_age_bin(rec(8, 13), BINS, straddle) == 2  # Adience 8-13 inside 7-14
    assert assign_age_bin(rec(60, 120), BINS, straddle) == 3  # beyond max_age still the last bin


def test_fairface_3_9_straddles_3_6_and_7_14():
    r = rec(3, 9, name="fairface/train/1.jpg")
    assert assign_age_bin(r, BINS) == IGNORE
    assert assign_age_bin(r, BINS, "ignore") == IGNORE
    assert assign_age_bin(r, BINS, "overlap") == 1  # 4 years in 3-6 against 3 years in 7-14
    assert assign_age_bin(r, BINS, "drop") is None
    with pytest.raises(ValueError, match=r"fairface/train/1.jpg: age range 3-9 straddles the bins 3-6, 7-14"):
        assign_age_bin(r, BINS, "error")


def test_overlap_rule_tie_and_multi_bin_ranges():
    assert assign_age_bin(rec(1, 4), BINS, "overlap") == IGNORE  # 2 years each in 0-2 and 3-6: a tie
    assert assign_age_bin(rec(2, 15), BINS, "overlap") == 2  # 1 + 4 + 8 + 1 years: 7-14 wins
    assert assign_age_bin(rec(12, 30), BINS, "overlap") == 3
    # The last bin counts ages beyond max_age: 95-120 vs bins ..., 50-99, 100
    assert assign_age_bin(rec(95, 120), AgeBins((49, 99), 100), "overlap") == 2
    with pytest.raises(ValueError, match="straddle must be one of"):
        assign_age_bin(rec(3), BINS, "nearest")


def synthetic_source(calls):
    def source(record):
        calls.append(record.path.name)
        value = int(record.path.stem[1:])  # "i7.jpg" -> 7: every image is distinguishable
        return np.full((4, 5, 3), value, dtype=np.uint8)

    return source


def test_face_dataset_labels_without_loading_and_items():
    records = [
        rec(1, name="i1.jpg", subject="s1"),
        rec(3, 9, gender=1, name="i2.jpg"),  # straddles: age IGNORE, gender kept
        rec(20, gender=None, name="i3.jpg", dataset="other"),
        rec(10, 12, gender=1, name="i4.jpg"),
    ]
    calls = []
    ds = FaceDataset(records, BINS, synthetic_source(calls))
    assert ds.age_bins == [0, IGNORE, 3, 2]
    assert ds.genders == [0, 1, IGNORE, 1]
    assert ds.datasets == ["test", "test", "other", "test"]
    assert ds.subjects == ["s1", None, None, None]
    view = FilteredDataset(ds, {2, 3})
    assert view.indices == [2, 3] and calls == []  # filtering decoded nothing
    image, age_bin, gender = view[1]
    assert calls == ["i4.jpg"] and (age_bin, gender) == (2, 1)
    assert image.shape == (3, 4, 5) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full((3, 4, 5), 4 / 255))


def test_face_dataset_drop_and_error_rules():
    records = [rec(1, name="i1.jpg"), rec(3, 9, name="i2.jpg"), rec(30, name="i3.jpg")]
    ds = FaceDataset(records, BINS, synthetic_source([]), straddle="drop")
    assert [r.path.name for r in ds.records] == ["i1.jpg", "i3.jpg"] and ds.age_bins == [0, 3]
    assert [r.path.name for r in ds.dropped] == ["i2.jpg"]
    assert FaceDataset(records, BINS, synthetic_source([]), straddle="overlap").age_bins == [0, 1, 3]
    with pytest.raises(ValueError, match="i2.jpg: age range 3-9"):
        FaceDataset(records, BINS, synthetic_source([]), straddle="error")


def test_face_dataset_with_pil_loader_transform_and_bad_image(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "i1.png")
    record = FaceRecord(tmp_path / "i1.png", "test", 40, 40, 1)
    ds = FaceDataset([record], PAPER_BINS, lambda r: np.asarray(Image.open(r.path).convert("RGB")))
    image, age_bin, gender = ds[0]
    assert (age_bin, gender) == (5, 1)
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert torch.equal(image, to_float_tensor(pixels))
    flipped = FaceDataset([record], PAPER_BINS, lambda r: pixels, transform=lambda a: to_float_tensor(a).flip(2))
    assert torch.equal(flipped[0][0], image.flip(2))
    gray = FaceDataset([record], PAPER_BINS, lambda r: pixels[..., 0])
    with pytest.raises(ValueError, match=r"i1.png: image_source must return an \(H, W, 3\) uint8"):
        gray[0]


def test_train_and_eval_transforms_resize_and_normalise():
    from agecurriculum.data.transforms import eval_transform, train_transform

    pixels = np.full((30, 20, 3), 255, dtype=np.uint8)
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 1.0)
    out = eval_transform((16, 12), mean, std)(pixels)
    assert type(out) is torch.Tensor and out.shape == (3, 16, 12)
    assert torch.allclose(out, torch.tensor([1.0, 3.0, 1.0]).view(3, 1, 1).expand(3, 16, 12))
    assert train_transform(8, mean, std)(pixels).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="size must be"):
        eval_transform(0, mean, std)


def test_normalise_crops_is_eval_transform_for_a_batch():
    from agecurriculum.data.transforms import eval_transform, normalise_crops

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(5)]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    batch = normalise_crops(crops, mean, std)
    expected = np.stack([eval_transform(24, mean, std)(c).numpy() for c in crops])
    assert batch.dtype == np.float32 and batch.shape == (5, 3, 24, 24) and batch.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-6)
    for bad in ([], [crops[0], crops[1][:20]], [crops[0].astype(np.float32)], [crops[0][..., 0]]):
        with pytest.raises(ValueError, match="crop"):
            normalise_crops(bad, mean, std)
