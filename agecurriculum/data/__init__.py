"""Datasets: face records, in-memory tensors, and the bin filter the curriculum trains on."""

from agecurriculum.data.datasets import FilteredDataset, TensorFaceDataset, age_bins_of

__all__ = ["FilteredDataset", "TensorFaceDataset", "age_bins_of"]
