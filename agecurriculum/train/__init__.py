"""Training: the curriculum trainer, its checkpoints and released weights, and distributed helpers."""

from agecurriculum.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_release,
    save_checkpoint,
    save_release,
)
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
