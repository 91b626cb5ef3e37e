"""DualClassifier: backbone + GenderConditionedHead, rebuildable from a JSON-able config."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agecurriculum.model.backbones import create_backbone
from agecurriculum.model.config import ModelConfig  # re-exported: the settings of the model this module builds
from agecurriculum.model.heads import GenderConditionedHead, HeadOutput

_BRANCH_KEYS = ("gender_backbone.", "head.gender_bottleneck.")  # the state-dict keys of a gender branch


class GenderBranchError(ValueError):
    """``gender_branch`` names no block of the backbone (a ``ValueError``: its message starts with the setting)."""


class DualClassifier(nn.Module):
    """Age-group and gender classifier: a backbone's pooled features feed a :class:`GenderConditionedHead`.

    Args:
        age_classes: Number of age groups.
        gender_classes: Number of gender classes.
        backbone: A registered backbone name (see :func:`~agecurriculum.model.list_backbones`), or an
            already-built ``nn.Module`` mapping images to ``(N, num_features)`` with an int ``num_features``.
        pretrained: Load the backbone's ImageNet weights (names only).
        weights_path: Load the backbone from this local state-dict file (names only).
        bottleneck_dim: Width of the head's shared layer.
        dropout: Dropout after the shared layer.
        detach_gender: See :class:`GenderConditionedHead`.
        conditioning: ``"hard"`` or ``"soft"``; see :class:`GenderConditionedHead`. A config without the key
            (releases written before it existed) rebuilds a soft model, as those were trained.
        gender_branch: Give the gender head a backbone end of its own: a copy of the backbone after its stem and
            first ``gender_branch`` blocks (``Backbone.tail_copy``) and a bottleneck of its own, so that the two
            tasks share only those first layers and the gender can be fine-tuned while the age path stays as it is
            (:meth:`freeze_age_path`). ``None`` (the paper's, and the default): one backbone and one shared
            bottleneck for both.

    Input: ``(N, 3, H, W)`` images normalised with ``model.backbone.spec.mean/std`` (registered backbones).
    Output: :class:`HeadOutput` ``(age_logits (N, age_classes), gender_logits (N, gender_classes))``.

    Raises:
        GenderBranchError: ``gender_branch`` is outside ``0..backbone.num_blocks``.
        TypeError: ``gender_branch`` with a backbone that has no ``tail_copy``.
    """

    def __init__(
        self,
        age_classes: int = 8,
        gender_classes: int = 2,
        backbone: str | nn.Module = "efficientnet-lite0",
        pretrained: bool = False,
        weights_path: str | Path | None = None,
        bottleneck_dim: int = 512,
        dropout: float = 0.3,
        detach_gender: bool = False,
        conditioning: str = "soft",
        gender_branch: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(backbone, str):
            self.backbone = create_backbone(backbone, pretrained=pretrained, weights_path=weights_path)
            self._backbone_name: str | None = backbone
        elif isinstance(backbone, nn.Module):
            if not isinstance(getattr(backbone, "num_features", None), int):
                raise TypeError(f"custom backbone {type(backbone).__name__} needs an int attribute num_features")
            if pretrained or weights_path is not None:
                raise ValueError(
                    "pretrained/weights_path apply to registered backbone names; load weights into "
                    "a custom backbone before passing it"
                )
            self.backbone = backbone
            self._backbone_name = None
        else:
            raise TypeError(f"backbone must be a registered name or an nn.Module, got {type(backbone).__name__}")
        self.gender_branch = gender_branch
        if gender_branch is not None:
            name = type(self.backbone).__name__
            if not hasattr(self.backbone, "tail_copy"):
                raise TypeError(f"gender_branch needs a backbone with tail_copy(); {name} has none")
            try:
                self.gender_backbone = self.backbone.tail_copy(gender_branch)
            except ValueError:  # tail_copy's one ValueError: no such block (Backbone's bound, checked there)
                raise GenderBranchError(
                    f"gender_branch must be in 0..{self.backbone.num_blocks} (the blocks of "
                    f"{self._backbone_name or name}), got {gender_branch}"
                ) from None
        self.head = GenderConditionedHead(
            self.backbone.num_features,
            age_classes,
            gender_classes,
            bottleneck_dim,
            dropout,
            detach_gender,
            conditioning,
            gender_in_features=None if gender_branch is None else self.backbone.num_features,
        )
        self._config = {
            "age_classes": age_classes,
            "gender_classes": gender_classes,
            "backbone": self._backbone_name,
            "pretrained": pretrained,
            "weights_path": None if weights_path is None else str(weights_path),
            "bottleneck_dim": bottleneck_dim,
            "dropout": dropout,
            "detach_gender": detach_gender,
            "conditioning": conditioning,
        }
        if gender_branch is not None:  # releases without a branch keep the config they always had
            self._config["gender_branch"] = gender_branch
        self._custom_frozen = False
        self._age_frozen = False

    def forward(self, x: torch.Tensor) -> HeadOutput:
        if self.gender_branch is None:
            return self.head(self.backbone(x))
        trunk = self.backbone.forward_prefix(x, self.gender_branch)
        return self.head(
            self.backbone.forward_from(trunk, self.gender_branch),
            self.gender_backbone.forward_from(trunk, self.gender_branch),
        )

    def fill_gender_branch(self) -> None:
        """Copies the age path's backbone end and bottleneck into the gender branch's, so that the model computes
        what it computed before it had a branch: the start of a fine-tune from a release without one
        (:meth:`load_state_dict_growing`).

        Raises:
            ValueError: the model has no gender branch.
        """
        if self.gender_branch is None:
            raise ValueError("this model has no gender branch (gender_branch=None)")
        own = self.gender_backbone.state_dict()
        self.gender_backbone.load_state_dict({k: v for k, v in self.backbone.state_dict().items() if k in own})
        self.head.gender_bottleneck.load_state_dict(self.head.bottleneck.state_dict())

    def load_state_dict_growing(self, state: dict[str, torch.Tensor]) -> None:
        """Loads ``state``; a state without this model's gender branch (a release trained before it had one) loads
        into the rest, and the branch starts as a copy of the age path (:meth:`fill_gender_branch`).

        Raises:
            RuntimeError: the state does not fit the model otherwise (torch's message).
        """
        if self.gender_branch is None or any(k.startswith(_BRANCH_KEYS) for k in state):
            self.load_state_dict(state)
            return
        missing, unexpected = self.load_state_dict(state, strict=False)
        wrong = [k for k in missing if not k.startswith(_BRANCH_KEYS)] + list(unexpected)
        if wrong:
            raise RuntimeError(f"state does not fit the model: missing or unexpected keys {wrong[:5]}")
        self.fill_gender_branch()

    def freeze_age_path(self) -> None:
        """Freezes everything but the gender branch: the backbone (frozen BatchNorm statistics and eval mode, as
        ``Backbone.freeze``), the shared bottleneck (kept in eval mode too) and the age classifier. Fine-tuning
        then changes the age predictions only through the gender the age head reads.

        Raises:
            ValueError: the model has no gender branch.
        """
        if self.gender_branch is None:
            raise ValueError("freezing the age path needs a gender branch (gender_branch=None)")
        self.freeze_backbone(None)
        self.head.bottleneck.requires_grad_(False)
        self.head.age.requires_grad_(False)
        self._age_frozen = True
        self.train(self.training)

    @torch.no_grad()
    def shift_age_logits(self, offsets: Sequence[float] | torch.Tensor) -> None:
        """Adds ``offsets`` to every age logit the model gives from now on, through the age classifier's bias, so
        that every runtime (eager, ONNX, the phone formats) answers alike without knowing of it.

        Args:
            offsets: ``(age_classes,)`` one offset per age bin (e.g. ``-log(q_b / p_b)``: the data's age proportions
                instead of the drawn ones, :func:`~agecurriculum.data.balance.age_prior_shift`).

        Raises:
            ValueError: not one offset per age bin, or an offset that is not finite.
        """
        bias = self.head.age.bias
        delta = torch.as_tensor(offsets, dtype=bias.dtype, device=bias.device)
        if delta.shape != bias.shape or not torch.isfinite(delta).all():
            raise ValueError(f"expected {bias.numel()} finite age-logit offsets, got {tuple(delta.shape)}")
        bias.add_(delta)

    def forward_from(self, h: torch.Tensor, num_blocks: int) -> HeadOutput:
        """:meth:`forward` from ``self.backbone.forward_prefix(x, num_blocks)``'s output on (see
        :func:`shared_frozen_blocks`).

        Raises:
            AttributeError: a custom backbone without ``forward_from``.
            ValueError: a model with a gender branch (its two ends start from block ``gender_branch``).
        """
        if self.gender_branch is not None:
            raise ValueError("forward_from: a model with a gender branch starts its two ends from its own trunk")
        return self.head(self.backbone.forward_from(h, num_blocks))

    def freeze_backbone(self, num_blocks: int | None = None) -> None:
        """Freezes the whole backbone (``None``) or its stem and first ``num_blocks`` blocks (see ``Backbone.freeze``).

        A custom backbone without a ``freeze`` method can only be frozen whole; it is then kept in eval mode.
        """
        if hasattr(self.backbone, "freeze"):
            self.backbone.freeze(num_blocks)
            return
        if num_blocks is not None:
            raise ValueError(f"{type(self.backbone).__name__} has no freeze(num_blocks); use freeze_backbone(None)")
        self.backbone.requires_grad_(False)
        self._custom_frozen = True
        self.train(self.training)

    def unfreeze_backbone(self) -> None:
        """Makes the whole backbone trainable again."""
        if hasattr(self.backbone, "unfreeze"):
            self.backbone.unfreeze()
            return
        self.backbone.requires_grad_(True)
        self._custom_frozen = False
        self.train(self.training)

    def train(self, mode: bool = True) -> DualClassifier:
        super().train(mode)
        if self._custom_frozen:
            self.backbone.eval()  # frozen BatchNorm statistics must not drift; see Backbone.freeze
        if self._age_frozen:
            self.head.bottleneck.eval()  # nor the frozen bottleneck's
        return self

    @classmethod
    def from_model_config(cls, cfg: ModelConfig, age_classes: int, **overrides: Any) -> DualClassifier:
        """The model a run's ``model`` section describes, for ``age_classes`` age bins.

        ``cfg.init_from`` is not read here: the run loads those weights into the model afterwards.

        Args:
            cfg: the section.
            age_classes: the number of age bins.
            **overrides: constructor arguments replacing the section's, e.g. ``pretrained=False`` when trained
                weights are loaded next anyway.
        """
        args = {
            "backbone": cfg.backbone,
            "pretrained": cfg.pretrained,
            "bottleneck_dim": cfg.bottleneck_dim,
            "dropout": cfg.dropout,
            "conditioning": cfg.conditioning,
            "gender_branch": cfg.gender_branch,
        }
        try:
            return cls(age_classes=age_classes, **{**args, **overrides})
        except GenderBranchError as err:
            raise GenderBranchError(f"model.{err}") from None

    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-able dict (``backbone`` is ``None`` for a custom module)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], **overrides: Any) -> DualClassifier:
        """Rebuilds a model from :meth:`config` output.

        Args:
            cfg: A dict from :meth:`config`.
            **overrides: Constructor arguments replacing those in ``cfg``, e.g. ``pretrained=False`` when a
                checkpoint's state dict is loaded next anyway, or ``backbone=module`` for a custom backbone.

        Raises:
            ValueError: Unknown keys, or a custom-backbone config without a ``backbone`` override.
        """
        args = {**cfg, **overrides}
        unknown = sorted(set(args) - set(inspect.signature(cls.__init__).parameters) - {"self"})
        if unknown:
            raise ValueError(f"unknown DualClassifier config keys: {unknown}")
        if args.get("backbone") is None:
            raise ValueError("config was saved from a custom backbone; pass it again: from_config(cfg, backbone=...)")
        return cls(**args)


def shared_frozen_blocks(model: nn.Module, teacher: nn.Module | None) -> int | None:
    """How far ``teacher`` can start from ``model``'s frozen part instead of running its own: the ``n`` of
    ``model.backbone.freeze(n)`` when both are :class:`DualClassifier` models whose stem and first ``n`` blocks are
    the same modules with equal weights and buffers, else None.

    A warm start distilled from its own parent with a frozen stem and early blocks is such a pair: the frozen part
    (the layers on the largest maps) then runs once a batch, ``backbone.forward_prefix``, and both models go on
    from its output with ``forward_from``. The frozen part computes in train mode what it computes in eval mode
    (``Backbone.freeze``), so the teacher's answers are the same as from its own pass.
    """
    if not (isinstance(model, DualClassifier) and isinstance(teacher, DualClassifier)):
        return None
    if model.gender_branch is not None or teacher.gender_branch is not None:
        return None  # a branched model's two ends start from its own trunk (DualClassifier.forward_from)
    n = getattr(model.backbone, "frozen_blocks", None)
    if n is None or not hasattr(teacher.backbone, "freeze_groups"):
        return None
    ours, theirs = model.backbone.freeze_groups(), teacher.backbone.freeze_groups()
    if len(ours) != len(theirs) or type(model.backbone) is not type(teacher.backbone):
        return None
    for mine, other in zip(ours[: n + 1], theirs[: n + 1], strict=True):
        if [type(m) for m in mine.modules()] != [type(m) for m in other.modules()]:
            return None
        a, b = mine.state_dict(), other.state_dict()
        if a.keys() != b.keys() or not all(
            a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k].to(a[k].device)) for k in a
        ):
            return None
    return n
