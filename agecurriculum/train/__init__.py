"""Training: the curriculum trainer and its configuration."""

from agecurriculum.train.trainer import CurriculumTrainer, EpochRecord, EvalResult, TrainerConfig

__all__ = ["CurriculumTrainer", "EpochRecord", "EvalResult", "TrainerConfig"]
