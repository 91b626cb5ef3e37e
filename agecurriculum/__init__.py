"""agecurriculum: age-group and gender estimation with multi-task and curriculum learning.

Every building block is importable from here and works on its own in a user's training code:

- :class:`AgeBinOptimizer`: unified age bins that balance several datasets (OR-Tools CP-SAT).
- :class:`MultiDatasetSample`, :class:`TrainingSchedule`: a curriculum validated against the paper's Eq. 7.
- :class:`UncertaintyLoss`: learned task weighting of the age and gender losses (Eq. 5); ablations beside it.
- :class:`GenderConditionedHead`, :class:`DualClassifier`: the age head conditioned on the predicted gender.
- :class:`EnsembleClassifier`: several trained classifiers, their probabilities averaged.
- :class:`CurriculumTrainer`: Algorithm 1 over a schedule.
"""

__version__ = "0.1.0"

from agecurriculum.bins import (
    ADIENCE_GROUPS,
    PAPER_BINS,
    AgeBinOptimizer,
    AgeBins,
    BinSolution,
    histogram_from_ages,
)
from agecurriculum.data import (
    AlignConfig,
    FaceAligner,
    FaceDataset,
    FaceRecord,
    FilteredDataset,
    TensorFaceDataset,
    balance_plan,
    split_records,
)
from agecurriculum.data.sources import discover, load_csv
from agecurriculum.inference import Predictor, export_onnx
from agecurriculum.losses import (
    FixedWeightLoss,
    LossParts,
    MultiTaskLoss,
    SumLoss,
    UncertaintyLoss,
    create_loss,
)
from agecurriculum.model import (
    DualClassifier,
    EnsembleClassifier,
    GenderConditionedHead,
    HeadOutput,
    create_backbone,
    list_backbones,
)
from agecurriculum.schedule import (
    DatasetStats,
    MultiDatasetSample,
    ScheduleError,
    ScheduleWarning,
    TrainingSchedule,
    preset,
    score,
)
from agecurriculum.train import (
    CurriculumTrainer,
    EpochRecord,
    EvalResult,
    TrainerConfig,
)

__all__ = [
    "__version__",
    "ADIENCE_GROUPS",
    "PAPER_BINS",
    "AgeBinOptimizer",
    "AgeBins",
    "BinSolution",
    "histogram_from_ages",
    "AlignConfig",
    "FaceAligner",
    "FaceDataset",
    "FaceRecord",
    "FilteredDataset",
    "TensorFaceDataset",
    "balance_plan",
    "split_records",
    "discover",
    "load_csv",
    "FixedWeightLoss",
    "LossParts",
    "MultiTaskLoss",
    "SumLoss",
    "UncertaintyLoss",
    "create_loss",
    "DualClassifier",
    "EnsembleClassifier",
    "GenderConditionedHead",
    "HeadOutput",
    "create_backbone",
    "list_backbones",
    "DatasetStats",
    "MultiDatasetSample",
    "ScheduleError",
    "ScheduleWarning",
    "TrainingSchedule",
    "preset",
    "score",
    "CurriculumTrainer",
    "EpochRecord",
    "EvalResult",
    "TrainerConfig",
    "Predictor",
    "export_onnx",
]
