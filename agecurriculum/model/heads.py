"""GenderConditionedHead: the age classifier sees the predicted gender.

Two ways to show it the gender (``conditioning``):

- ``"hard"``, the paper's ("hard conditioning, post-prediction"): the one-hot vector of the predicted class
  (``argmax`` of the gender logits). The age loss sends no gradient into the gender head through it; only the gender
  loss trains that head.
- ``"soft"``: the gender softmax. The age loss also trains the gender head through the probabilities (unless
  ``detach_gender``). The shipped default model was trained so, and releases that do not name their conditioning
  are soft.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

CONDITIONINGS = ("hard", "soft")  # what GenderConditionedHead's conditioning may be


class HeadOutput(NamedTuple):
    """Logits of both tasks; a NamedTuple so ``torch.jit.trace`` and ONNX export see a plain tuple."""

    age_logits: torch.Tensor  # (N, age_classes)
    gender_logits: torch.Tensor  # (N, gender_classes)


class GenderConditionedHead(nn.Module):
    """Shared bottleneck, then a gender head whose prediction is appended to the features of the age head.

    ``features -> Linear -> BatchNorm1d -> ReLU -> Dropout -> shared``;
    ``gender_logits = Linear(shared)``;
    ``age_logits = Linear(concat(shared, g))`` with ``g = one_hot(argmax(gender_logits))`` (``"hard"``) or
    ``g = softmax(gender_logits)`` (``"soft"``).
    Works on the pooled features of any backbone, including a user's own.

    Args:
        in_features: Length of the input feature vector (a backbone's ``num_features``).
        age_classes: Number of age groups.
        gender_classes: Number of gender classes.
        bottleneck_dim: Width of the shared layer.
        dropout: Dropout probability after the shared layer.
        detach_gender: Stop the age loss's gradient through the gender probabilities of soft conditioning, so only
            the gender loss trains the gender head (hard conditioning passes no gradient there anyway).
        conditioning: ``"hard"`` (the paper's: the one-hot predicted gender) or ``"soft"`` (the gender softmax; the
            default, so that releases written before this choice existed load as they were trained).
        gender_in_features: Give the gender head features of its own, of this length (a second head-end of the
            backbone: :class:`~agecurriculum.model.DualClassifier`'s ``gender_branch``), through its own bottleneck
            (``gender_bottleneck``, as ``bottleneck``); ``None``: it reads the shared layer.

    Input: ``(N, in_features)`` float features (and ``(N, gender_in_features)`` gender features when that is set).
    Output: :class:`HeadOutput` of ``(N, age_classes)`` and ``(N, gender_classes)`` logits. BatchNorm1d needs
    ``N > 1`` in train mode.
    """

    def __init__(
        self,
        in_features: int,
        age_classes: int = 8,
        gender_classes: int = 2,
        bottleneck_dim: int = 512,
        dropout: float = 0.3,
        detach_gender: bool = False,
        conditioning: str = "soft",
        gender_in_features: int | None = None,
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
        for field, value in [
            ("in_features", in_features),
            ("age_classes", age_classes),
            ("gender_classes", gender_classes),
            ("bottleneck_dim", bottleneck_dim),
            *([("gender_in_features", gender_in_features)] if gender_in_features is not None else []),
        ]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_features = in_features
        self.detach_gender = detach_gender
        self.conditioning = conditioning
        self.gender_in_features = gender_in_features
        self.bottleneck = _bottleneck(in_features, bottleneck_dim, dropout)
        if gender_in_features is not None:
            self.gender_bottleneck = _bottleneck(gender_in_features, bottleneck_dim, dropout)
        self.gender = nn.Linear(bottleneck_dim, gender_classes)
        self.age = nn.Linear(bottleneck_dim + gender_classes, age_classes)

    def forward(self, features: torch.Tensor, gender_features: torch.Tensor | None = None) -> HeadOutput:
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"expected features of shape (N, {self.in_features}), got {tuple(features.shape)}")
        shared = self.bottleneck(features)
        if self.gender_in_features is None:
            if gender_features is not None:
                raise ValueError("this head has no gender features of its own (gender_in_features is None)")
            gender_logits = self.gender(shared)
        else:
            if gender_features is None or gender_features.shape != (features.shape[0], self.gender_in_features):
                got = None if gender_features is None else tuple(gender_features.shape)
                raise ValueError(f"expected gender features of shape (N, {self.gender_in_features}), got {got}")
            gender_logits = self.gender(self.gender_bottleneck(gender_features))
        if self.conditioning == "hard":
            # argmax has no gradient: the age loss cannot move the gender head through this input.
            gender_input = nn.functional.one_hot(gender_logits.argmax(dim=1), gender_logits.shape[1])
            gender_input = gender_input.to(shared.dtype)
        else:
            gender_input = gender_logits.softmax(dim=1)
            if self.detach_gender:
                gender_input = gender_input.detach()
        age_logits = self.age(torch.cat([shared, gender_input], dim=1))
        return HeadOutput(age_logits, gender_logits)


def _bottleneck(in_features: int, bottleneck_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, bottleneck_dim, bias=False),  # no bias: BatchNorm's shift replaces it
        nn.BatchNorm1d(bottleneck_dim),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )
