"""The data layer: dataset loaders, the face pipeline, datasets for training, balancing, splits and reports.

- :mod:`~agecurriculum.data.records`: the :class:`FaceRecord` every loader returns, and its cleaning report.
- :mod:`~agecurriculum.data.sources`: one loader per dataset (UTKFace, Adience, MORPH-II, FairFace, your CSV).
- :mod:`~agecurriculum.data.images`, :mod:`~agecurriculum.data.faces`, :mod:`~agecurriculum.data.cache`: robust
  decoding, detection + 5-point alignment, and the on-disk crop cache.
- :mod:`~agecurriculum.data.datasets`: :class:`FaceDataset`, :class:`FilteredDataset` and the age-bin rule.
- :mod:`~agecurriculum.data.balance`, :mod:`~agecurriculum.data.splits`: the paper's balancing; splits.
- :mod:`~agecurriculum.data.distribution`: the age distribution of records that the bin optimizer fits.
- :mod:`~agecurriculum.data.summary`, :mod:`~agecurriculum.data.plots`: counts, the bins over datasets, plots.
- :mod:`~agecurriculum.data.sample`: :func:`write_sample_data`, a tiny data root of generated faces for trying the API.

The names are imported on first use (PEP 562), as in :mod:`agecurriculum`: ``import agecurriculum.data.sources``
loads the loaders alone, not torch or dlib.
"""

from __future__ import annotations

from agecurriculum._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("BalancedDataset", "BalancePlan", "balance_plan", "balanced_weights", "weighted_sampler"),
        "agecurriculum.data.balance",
    ),
    **dict.fromkeys(
        ("CachedCrops", "CropCache", "NoFaceError", "PreprocessResult", "preprocess"), "agecurriculum.data.cache"
    ),
    **dict.fromkeys(
        (
            "FaceDataset",
            "FilteredDataset",
            "TensorFaceDataset",
            "age_bins_of",
            "assign_age_bin",
        ),
        "agecurriculum.data.datasets",
    ),
    **dict.fromkeys(("AlignConfig", "DetectedFace", "FaceAligner"), "agecurriculum.data.faces"),
    **dict.fromkeys(("ImageLoadError", "load_image"), "agecurriculum.data.images"),
    **dict.fromkeys(
        ("IGNORE", "FEMALE", "MALE", "STRADDLE_RULES", "CleaningReport", "FaceRecord", "LoadResult"),
        "agecurriculum.data.records",
    ),
    **dict.fromkeys(("Split", "split_records"), "agecurriculum.data.splits"),
    **dict.fromkeys(("age_distribution", "fit_age_bins"), "agecurriculum.data.distribution"),
    **dict.fromkeys(("DataReport", "build_data_report"), "agecurriculum.data.summary"),
    "write_sample_data": "agecurriculum.data.sample",
    **dict.fromkeys(("eval_transform", "normalise_crops", "train_transform"), "agecurriculum.data.transforms"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
