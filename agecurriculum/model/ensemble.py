"""EnsembleClassifier: several trained classifiers for the same bins, their probabilities averaged."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from agecurriculum.model.classifier import DualClassifier
from agecurriculum.model.heads import HeadOutput

__all__ = ["EnsembleClassifier", "classifier_from_config"]


class EnsembleClassifier(nn.Module):
    """Averages the softmax probabilities of several models that predict the same age bins and genders.

    Members trained apart (other seeds, other data orders) make different mistakes, so the mean of their
    probabilities is a better classifier than any one of them, at the cost of running each. The output is
    ``log(mean_m softmax(logits_m))`` for both tasks: logits whose softmax is the mean probability, so everything
    that takes a :class:`DualClassifier`'s output (evaluation, export, the predictor) takes this one unchanged.
    It is built for inference; train the members one by one.

    Args:
        members: at least one model returning :class:`HeadOutput` (e.g. :class:`DualClassifier`); all must have
            the same ``age_classes`` and ``gender_classes`` in their ``config()``.

    Raises:
        ValueError: no members, a member without ``config()``, or members with different class counts.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        configs = []
        for i, member in enumerate(members):
            if not callable(getattr(member, "config", None)):
                raise ValueError(f"member {i} ({type(member).__name__}) has no config(); use DualClassifier members")
            configs.append(member.config())
        for key in ("age_classes", "gender_classes"):
            values = [c.get(key) for c in configs]
            if len(set(values)) != 1:
                raise ValueError(f"ensemble members disagree on {key}: {values}")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> HeadOutput:
        outputs = [member(x) for member in self.members]
        log_n = math.log(len(outputs))
        # logsumexp of log-softmaxes = log of the summed probabilities, without underflow to log(0).
        age = torch.stack([o[0].log_softmax(1) for o in outputs]).logsumexp(0) - log_n
        gender = torch.stack([o[1].log_softmax(1) for o in outputs]).logsumexp(0) - log_n
        return HeadOutput(age, gender)

    def config(self) -> dict[str, Any]:
        """``{"members": [each member's config()]}``, JSON-able; :func:`classifier_from_config` rebuilds it."""
        return {"members": [member.config() for member in self.members]}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], **overrides: Any) -> EnsembleClassifier:
        """Rebuilds an ensemble of :class:`DualClassifier` members from :meth:`config` output; ``overrides`` go
        to every member's :meth:`DualClassifier.from_config`.

        Raises:
            ValueError: ``cfg`` has no non-empty ``members`` list, or a member's config is invalid.
        """
        members = cfg.get("members")
        if not isinstance(members, list) or not members or set(cfg) != {"members"}:
            raise ValueError(f"an ensemble config is {{'members': [member configs]}}, got keys {sorted(cfg)}")
        return cls([DualClassifier.from_config(member, **overrides) for member in members])


def classifier_from_config(cfg: dict[str, Any], **overrides: Any) -> DualClassifier | EnsembleClassifier:
    """A :class:`DualClassifier` or, for a config with ``members``, an :class:`EnsembleClassifier`, from the
    ``config()`` of either (as a release's ``config.json`` stores it under ``model``)."""
    if "members" in cfg:
        return EnsembleClassifier.from_config(cfg, **overrides)
    return DualClassifier.from_config(cfg, **overrides)
