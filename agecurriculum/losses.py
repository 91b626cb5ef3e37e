"""Multi-task losses for joint age-group and gender classification (the paper's Algorithm 2).

Every loss here has the same interface, so the trainer, the ablation runner and a user's own loop can swap them:

    parts = loss_fn(age_logits, gender_logits, age_target, gender_target)
    parts.total.backward()

``parts`` is a :class:`LossParts` holding the total and each task's plain cross-entropy, which is what a log should
show: the weighted terms of :class:`UncertaintyLoss` go negative as the weights grow and say little on their own.

- :class:`UncertaintyLoss` (Eq. 5, after Kendall et al., 2018): each task's cross-entropy is scaled by a learnable
  precision ``exp(-p)`` and regularised by ``+p``, where ``p`` is that task's log-variance, initialised to 0.
- :class:`SumLoss`: the plain sum ``CE_age + CE_gender`` (ablation, Table VII).
- :class:`FixedWeightLoss`: fixed weights, by default ``0.6 * CE_age + 0.4 * CE_gender`` (ablation, Table VII).

Targets equal to ``ignore_index`` (default -100, PyTorch's convention) are left out of their task's loss, so images
with an unknown gender still train the age head and the other way round.

Every loss also takes ``age_label_sigma``: 0 (the paper) scores the age head against one-hot targets; a positive
value scores it against *ordinal soft targets* (SORD, Diaz & Marathe, CVPR 2019), a Gaussian over the bin indices
centred on the true bin, ``q_k ~ exp(-(k - y)^2 / (2 sigma^2))``. Age groups are ordered and their borders are
fuzzy (a face of 23 against one of 24 across the 15-23 / 24-34 border), so a neighbouring bin is a smaller error
than a distant one, and the soft targets say so.

Every loss also distils (Hinton et al., 2015) when the trainer passes a teacher's probabilities: each task's
cross-entropy becomes ``(1 - distill_weight) * CE(labels) + distill_weight * CE(teacher's probabilities)``. A
teacher (e.g. an ensemble) knows which wrong bins are near misses and has an answer for images with no age label,
so one network can learn most of what several networks know and run at the cost of one. ``distill_tasks`` names the
tasks that distil (both by default): with ``("age",)`` a fine-tuned model learns gender from the labels alone while its
age answers are held near those of its parent as teacher (learning without forgetting, Li & Hoiem, 2016).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ordinal_soft_targets",
    "LossParts",
    "MultiTaskLoss",
    "UncertaintyLoss",
    "SumLoss",
    "FixedWeightLoss",
    "DISTILL_TASKS",
    "LOSSES",
    "create_loss",
]


DISTILL_TASKS = ("age", "gender")  # the tasks a loss can distil, in its outputs' order


def ordinal_soft_targets(target: Tensor, num_classes: int, sigma: float) -> Tensor:
    """``(N, num_classes)`` target distributions: a Gaussian of width ``sigma`` (in bins) around each target bin.

    Example: ``sigma=0.5`` puts about 80% on the true bin of an inner bin and about 10% on each neighbour.
    """
    distance = torch.arange(num_classes, device=target.device).unsqueeze(0) - target.unsqueeze(1)
    return torch.softmax(-distance.float().square() / (2 * sigma * sigma), dim=1)


class LossParts(NamedTuple):
    """What every multi-task loss returns."""

    total: Tensor  #: the scalar to call ``backward()`` on
    age: Tensor  #: mean cross-entropy of the age head (unweighted; mixed with the teacher's when distilling)
    gender: Tensor  #: mean cross-entropy of the gender head (unweighted; mixed with the teacher's when distilling)


class MultiTaskLoss(nn.Module):
    """Base class: computes both cross-entropies; subclasses say how to combine them.

    Subclass it for a loss of your own: implement :meth:`combine` and :meth:`task_weights`.

    Args:
        ignore_index: target value that marks a missing label.
        age_label_sigma: width in bins of the ordinal soft age targets (:func:`ordinal_soft_targets`); 0 (the
            paper) for one-hot targets.
        distill_weight: share of each task's cross-entropy taken against a teacher's probabilities, in [0, 1],
            when :meth:`forward` is given them; the rest is against the labels.
        distill_tasks: the tasks that distil (a subset of :data:`DISTILL_TASKS`); the others learn from their
            labels alone even when given a teacher's probabilities.
    """

    def __init__(
        self,
        ignore_index: int = -100,
        age_label_sigma: float = 0.0,
        distill_weight: float = 0.5,
        distill_tasks: Sequence[str] = DISTILL_TASKS,
    ) -> None:
        super().__init__()
        if not (age_label_sigma >= 0 and math.isfinite(age_label_sigma)):
            raise ValueError(f"age_label_sigma must be a finite number >= 0, got {age_label_sigma}")
        if not 0 <= distill_weight <= 1:
            raise ValueError(f"distill_weight must be in [0, 1], got {distill_weight}")
        tasks = [distill_tasks] if isinstance(distill_tasks, str) else list(distill_tasks)  # "age" means ["age"]
        if not tasks or not set(tasks) <= set(DISTILL_TASKS):
            raise ValueError(f"distill_tasks must name some of {list(DISTILL_TASKS)}, got {tasks}")
        self.ignore_index = ignore_index
        self.age_label_sigma = float(age_label_sigma)
        self.distill_weight = float(distill_weight)
        self.distill_tasks = tuple(task for task in DISTILL_TASKS if task in tasks)

    def _cross_entropy(self, logits: Tensor, target: Tensor, sigma: float = 0.0) -> Tensor:
        # A batch in which every target of a task is ignored must add 0, not NaN (mean over zero elements).
        known = target != self.ignore_index
        if not bool(known.any()):
            return logits.sum() * 0.0
        if sigma == 0:
            return F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        # cross_entropy takes class probabilities as targets too; it has no ignore_index for them, hence the mask.
        return F.cross_entropy(logits[known], ordinal_soft_targets(target[known], logits.shape[1], sigma))

    def _distilled(self, label_ce: Tensor, logits: Tensor, teacher_probs: Tensor | None) -> Tensor:
        if teacher_probs is None:
            return label_ce
        if teacher_probs.shape != logits.shape:
            raise ValueError(
                f"teacher probabilities of shape {tuple(teacher_probs.shape)} do not match the model's "
                f"logits of shape {tuple(logits.shape)}: the teacher must predict the same classes"
            )
        # Every image has the teacher's answer, labelled or not.
        teacher_ce = F.cross_entropy(logits, teacher_probs.to(logits.dtype))
        return (1 - self.distill_weight) * label_ce + self.distill_weight * teacher_ce

    def forward(
        self,
        age_logits: Tensor,
        gender_logits: Tensor,
        age_target: Tensor,
        gender_target: Tensor,
        teacher: tuple[Tensor, Tensor] | None = None,
    ) -> LossParts:
        """Returns the combined loss and its parts.

        Args:
            age_logits: ``(N, age_classes)`` raw scores of the age head.
            gender_logits: ``(N, gender_classes)`` raw scores of the gender head.
            age_target: ``(N,)`` age-bin indices (``ignore_index`` where unknown); scored against one-hot targets,
                or ordinal soft ones when ``age_label_sigma > 0``.
            gender_target: ``(N,)`` gender indices (``ignore_index`` where unknown).
            teacher: a teacher's ``(age_probs (N, age_classes), gender_probs (N, gender_classes))`` for the same
                images, to distil: each task of ``distill_tasks`` then mixes its cross-entropy with
                ``distill_weight``. None: labels only.
        """
        age_teacher, gender_teacher = teacher if teacher is not None else (None, None)
        age_teacher = age_teacher if "age" in self.distill_tasks else None
        gender_teacher = gender_teacher if "gender" in self.distill_tasks else None
        age = self._distilled(
            self._cross_entropy(age_logits, age_target, self.age_label_sigma), age_logits, age_teacher
        )
        gender = self._distilled(self._cross_entropy(gender_logits, gender_target), gender_logits, gender_teacher)
        return LossParts(self.combine(age, gender), age, gender)

    def combine(self, age: Tensor, gender: Tensor) -> Tensor:
        """Combines the two mean cross-entropies into the scalar to minimise."""
        raise NotImplementedError

    def task_weights(self) -> dict[str, float]:
        """The current multiplier of each task's cross-entropy, for logs and plots."""
        raise NotImplementedError


class UncertaintyLoss(MultiTaskLoss):
    """``exp(-p_age) * CE_age + p_age + exp(-p_gender) * CE_gender + p_gender`` with learnable ``p`` (Eq. 5).

    ``p_age`` and ``p_gender`` are log-variances initialised to 0 (both tasks start with weight 1). They are
    parameters of this module, so pass ``loss_fn.parameters()`` to the optimizer together with the model's.

    Args:
        ignore_index: target value that marks a missing label.
        age_label_sigma: width in bins of the ordinal soft age targets; 0 (the paper) for one-hot targets.
        distill_weight: share of each task's cross-entropy against a teacher's probabilities, when given them.
        distill_tasks: the tasks that distil when given a teacher's probabilities.
    """

    def __init__(
        self,
        ignore_index: int = -100,
        age_label_sigma: float = 0.0,
        distill_weight: float = 0.5,
        distill_tasks: Sequence[str] = DISTILL_TASKS,
    ) -> None:
        super().__init__(ignore_index, age_label_sigma, distill_weight, distill_tasks)
        self.log_var_age = nn.Parameter(torch.zeros(()))
        self.log_var_gender = nn.Parameter(torch.zeros(()))

    def combine(self, age: Tensor, gender: Tensor) -> Tensor:
        return (
            torch.exp(-self.log_var_age) * age
            + self.log_var_age
            + torch.exp(-self.log_var_gender) * gender
            + self.log_var_gender
        )

    def task_weights(self) -> dict[str, float]:
        return {"age": math.exp(-self.log_var_age.item()), "gender": math.exp(-self.log_var_gender.item())}


class SumLoss(MultiTaskLoss):
    """``CE_age + CE_gender``: the unweighted ablation baseline."""

    def combine(self, age: Tensor, gender: Tensor) -> Tensor:
        return age + gender

    def task_weights(self) -> dict[str, float]:
        return {"age": 1.0, "gender": 1.0}


class FixedWeightLoss(MultiTaskLoss):
    """``age_weight * CE_age + gender_weight * CE_gender``; the paper's ablation uses 0.6 / 0.4.

    Args:
        age_weight: multiplier of the age cross-entropy.
        gender_weight: multiplier of the gender cross-entropy.
        ignore_index: target value that marks a missing label.
        age_label_sigma: width in bins of the ordinal soft age targets; 0 (the paper) for one-hot targets.
        distill_weight: share of each task's cross-entropy against a teacher's probabilities, when given them.
        distill_tasks: the tasks that distil when given a teacher's probabilities.
    """

    def __init__(
        self,
        age_weight: float = 0.6,
        gender_weight: float = 0.4,
        ignore_index: int = -100,
        age_label_sigma: float = 0.0,
        distill_weight: float = 0.5,
        distill_tasks: Sequence[str] = DISTILL_TASKS,
    ) -> None:
        super().__init__(ignore_index, age_label_sigma, distill_weight, distill_tasks)
        if age_weight < 0 or gender_weight < 0:
            raise ValueError(f"loss weights must be non-negative, got age={age_weight}, gender={gender_weight}")
        self.age_weight = float(age_weight)
        self.gender_weight = float(gender_weight)

    def combine(self, age: Tensor, gender: Tensor) -> Tensor:
        return self.age_weight * age + self.gender_weight * gender

    def task_weights(self) -> dict[str, float]:
        return {"age": self.age_weight, "gender": self.gender_weight}


# Names used by configs and the ablation command.
LOSSES: dict[str, type[MultiTaskLoss]] = {
    "uncertainty": UncertaintyLoss,
    "sum": SumLoss,
    "fixed": FixedWeightLoss,
}


def create_loss(name: str, **kwargs: Any) -> MultiTaskLoss:
    """Builds a loss by its config name (``uncertainty``, ``sum`` or ``fixed``).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
    return cls(**kwargs)
