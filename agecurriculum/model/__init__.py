"""Networks: backbones (EfficientNet-B0..B7, EfficientNet-Lite0..2), the gender-conditioned head, DualClassifier,
EnsembleClassifier (several trained classifiers averaged) and ResizedInput (a model fed batches of another size).

The names are imported on first use (PEP 562), as in :mod:`agecurriculum`: ``import agecurriculum.model.config``
(:class:`ModelConfig`, what a run configuration reads) does not load torch.
"""

from __future__ import annotations

from agecurriculum._lazy import lazy_exports

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
    **dict.fromkeys(("DualClassifier", "shared_frozen_blocks"), "agecurriculum.model.classifier"),
    **dict.fromkeys(("ModelConfig", "member_configs"), "agecurriculum.model.config"),
    "EfficientNetLite": "agecurriculum.model.efficientnet_lite",
    **dict.fromkeys(("EnsembleClassifier", "classifier_from_config"), "agecurriculum.model.ensemble"),
    **dict.fromkeys(("GenderConditionedHead", "HeadOutput"), "agecurriculum.model.heads"),
    "ResizedInput": "agecurriculum.model.resized_input",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
