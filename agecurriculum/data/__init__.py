"""The data layer: dataset loaders, the face pipeline, datasets for training, balancing, splits and reports.

- :mod:`~agecurriculum.data.records`: the :class:`FaceRecord` every loader returns, and its cleaning report.
- :mod:`~agecurriculum.data.sources`: one loader per dataset (UTKFace, Adience, MORPH-II, FairFace, your CSV).
- :mod:`~agecurriculum.data.images`, :mod:`~agecurriculum.data.faces`, :mod:`~agecurriculum.data.cache`: robust
  decoding, detection + 5-point alignment, and the on-disk crop cache.
- :mod:`~agecurriculum.data.datasets`: :class:`FaceDataset`, :class:`FilteredDataset` and the age-bin rule.
- :mod:`~agecurriculum.data.balance`, :mod:`~agecurriculum.data.splits`: the paper's balancing; splits.
- :mod:`~agecurriculum.data.summary`, :mod:`~agecurriculum.data.plots`: counts, the bins over datasets, plots.
"""

from agecurriculum.data.balance import (
    BalancedDataset,
    BalancePlan,
    balance_plan,
    balanced_weights,
    weighted_sampler,
)
from agecurriculum.data.cache import (
    CachedCrops,
    CropCache,
    NoFaceError,
    PreprocessResult,
    preprocess,
)
from agecurriculum.data.datasets import (
    IGNORE,
    STRADDLE_RULES,
    FaceDataset,
    FilteredDataset,
    TensorFaceDataset,
    age_bins_of,
    assign_age_bin,
)
from agecurriculum.data.faces import AlignConfig, DetectedFace, FaceAligner
from agecurriculum.data.images import ImageLoadError, load_image
from agecurriculum.data.records import (
    FEMALE,
    MALE,
    CleaningReport,
    FaceRecord,
    LoadResult,
)
from agecurriculum.data.splits import Split, split_records
from agecurriculum.data.summary import (
    DataReport,
    age_distribution,
    build_data_report,
    fit_age_bins,
)
from agecurriculum.data.transforms import eval_transform, normalise_crops, train_transform

__all__ = [
    "BalancedDataset",
    "BalancePlan",
    "balance_plan",
    "balanced_weights",
    "weighted_sampler",
    "CachedCrops",
    "CropCache",
    "NoFaceError",
    "PreprocessResult",
    "preprocess",
    "IGNORE",
    "STRADDLE_RULES",
    "FaceDataset",
    "FilteredDataset",
    "TensorFaceDataset",
    "age_bins_of",
    "assign_age_bin",
    "AlignConfig",
    "DetectedFace",
    "FaceAligner",
    "ImageLoadError",
    "load_image",
    "FEMALE",
    "MALE",
    "CleaningReport",
    "FaceRecord",
    "LoadResult",
    "Split",
    "split_records",
    "DataReport",
    "age_distribution",
    "build_data_report",
    "fit_age_bins",
    "eval_transform",
    "normalise_crops",
    "train_transform",
]
