"""Networks: backbones (EfficientNet-B0..B7, EfficientNet-Lite0..2), the gender-conditioned head, DualClassifier,
EnsembleClassifier (several trained classifiers averaged) and ResizedInput (a model fed batches of another size).

The names are imported on first use (PEP 562), as in :mod:`agecurriculum`: ``import agecurriculum.model.config``
(:class:`ModelConfig`, what a run configuration reads) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "Backbone",
            "BackboneSpec",
            "create_backbone",
            "list_backbones",
            "lite_weights_path",
            "register_backbone",
        ),
        "agecurriculum.model.backbones",
    ),
    "DualClassifier": "agecurriculum.model.classifier",
    "ModelConfig": "agecurriculum.model.config",
    "EfficientNetLite": "agecurriculum.model.efficientnet_lite",
    **dict.fromkeys(("EnsembleClassifier", "classifier_from_config", "member_configs"), "agecurriculum.model.ensemble"),
    **dict.fromkeys(("GenderConditionedHead", "HeadOutput"), "agecurriculum.model.heads"),
    "ResizedInput": "agecurriculum.model.resized_input",
}

__all__ = [
    "Backbone",
    "BackboneSpec",
    "DualClassifier",
    "EfficientNetLite",
    "EnsembleClassifier",
    "GenderConditionedHead",
    "HeadOutput",
    "ModelConfig",
    "ResizedInput",
    "classifier_from_config",
    "create_backbone",
    "list_backbones",
    "member_configs",
    "lite_weights_path",
    "register_backbone",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come here again
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
