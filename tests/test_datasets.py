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
