"""Networks: backbones (EfficientNet-B0..B7, EfficientNet-Lite0..2), the gender-conditioned head, DualClassifier,
EnsembleClassifier (several trained classifiers averaged) and ResizedInput (a model fed batches of another size)."""

from agecurriculum.model.backbones import (
    Backbone,
    BackboneSpec,
    create_backbone,
    list_backbones,
    lite_weights_path,
    register_backbone,
)
from agecurriculum.model.classifier import DualClassifier, ModelConfig
from agecurriculum.model.efficientnet_lite import EfficientNetLite
from agecurriculum.model.ensemble import EnsembleClassifier, classifier_from_config, member_configs
from agecurriculum.model.heads import GenderConditionedHead, HeadOutput
from agecurriculum.model.resized_input import ResizedInput

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
