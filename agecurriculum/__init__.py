"""agecurriculum: age-group and gender estimation with multi-task and curriculum learning."""

__version__ = "0.1.0"
