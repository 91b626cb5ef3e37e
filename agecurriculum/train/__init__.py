"""Training: the curriculum trainer, its checkpoints and released weights, and distributed helpers.

:func:`save_release` and :func:`load_release` belong to the release format (:mod:`agecurriculum.release`), which
inference reads too; they are re-exported here because training is what writes releases.
"""

from agecurriculum.release import load_release, save_release
from agecurriculum.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agecurriculum.train.distributed import init_distributed, is_main_process
from agecurriculum.train.trainer import (
    CurriculumTrainer,
    EpochRecord,
    EvalResult,
    SchedulePosition,
    TrainerConfig,
)

__all__ = [
    "CurriculumTrainer",
    "EpochRecord",
    "EvalResult",
    "SchedulePosition",
    "TrainerConfig",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "load_release",
    "save_release",
    "init_distributed",
    "is_main_process",
]
