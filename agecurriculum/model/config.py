"""The ``model`` section of a run: :class:`ModelConfig`, a plain dataclass without torch.

It is :class:`~agecurriculum.model.classifier.DualClassifier`'s own settings (``DualClassifier.from_model_config``
builds one), re-exported by :mod:`agecurriculum.model.classifier`, :mod:`agecurriculum.model` and
:mod:`agecurriculum.config`; it sits in a module of its own so that reading a run configuration (and every
``agecurriculum`` command's start) does not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ModelConfig", "member_configs"]


@dataclass
class ModelConfig:
    """A run's ``model`` section: the DualClassifier to build (:meth:`DualClassifier.from_model_config`) and where
    its first weights come from."""

    backbone: str = "efficientnet-lite0"  # any name from agecurriculum.list_backbones()
    pretrained: bool = True  # start from ImageNet weights (offline for Lite0-2, downloaded for B0-B7)
    bottleneck_dim: int = 512  # width of the shared bottleneck layer
    dropout: float = 0.3  # dropout after the bottleneck
    conditioning: str = "soft"  # how the age head sees the gender: hard (the paper's: one-hot of the predicted
    # gender, no gradient into the gender head from the age loss) | soft (the gender softmax, as the shipped model)
    init_from: str | None = None  # fine-tune: start from a release folder or a run's checkpoint.pt/best.pt
    freeze_blocks: int | None = None  # fine-tune: keep the backbone's stem and first N blocks frozen (their
    # BatchNorm statistics too): fewer weights to train, 1.5-2x the images/s (docs/benchmarks.md); None trains all
    gender_branch: int | None = None  # the gender head's own copy of the backbone after its stem and first N
    # blocks, and its own bottleneck (None: the paper's one backbone and shared bottleneck); init_from a release
    # without one grows it, the branch starting as a copy of the age path
    train_only_gender: bool = False  # fine-tune the gender branch alone: the backbone, the shared bottleneck and
    # the age classifier stay as init_from has them (needs gender_branch)


def member_configs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The configs of the single networks in a model config (as a release's ``config.json`` stores it under
    ``model``): an ensemble's members, else ``[cfg]`` itself."""
    return cfg.get("members", [cfg])
