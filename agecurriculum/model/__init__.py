"""Networks: backbones (EfficientNet-B0..B7, EfficientNet-Lite0..2), the gender-conditioned head, DualClassifier,
and EnsembleClassifier (several trained classifiers averaged)."""

from agecurriculum.model.backbones import (
    Backbone,
    BackboneSpec,
    create_backbone,
    list_backbones,
    lite_weights_path,
    register_backbone,
)
from agecurriculum.model.classifier import DualClassifier
from agecurriculum.model.efficientnet_lite import EfficientNetLite
from agecurriculum.model.ensemble import EnsembleClassifier, classifier_from_config, member_configs
from agecurriculum.model.heads import GenderConditionedHead, HeadOutput

__all__ = [
    "Backbone",
    "BackboneSpec",
    "DualClassifier",
    "EfficientNetLite",
    "EnsembleClassifier",
    "GenderConditionedHead",
    "HeadOutput",
    "classifier_from_config",
    "create_backbone",
    "list_backbones",
    "member_configs",
    "lite_weights_path",
    "register_backbone",
]
