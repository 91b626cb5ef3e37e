"""A small untrained release for the inference tests (predictor, predict command, ONNX export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage import data as skdata

from agecurriculum.bins import PAPER_BINS
from agecurriculum.model import DualClassifier
from agecurriculum.train import save_release

# Where the astronaut's real face is in skimage.data.astronaut(): dlib's HOG box at upsample 1 (the CNN agrees).
ASTRONAUT_FACE = (175, 76, 266, 167)
# dlib's HOG detector's false face on the astronaut: the mission patch on her suit.
ASTRONAUT_PATCH = (126, 335, 216, 426)
REP_AGES = [1.0, 4.5, 10.5, 19.0, 29.0, 40.0, 52.5, 68.2]


def make_release(folder: Path, image_size: int = 64, seed: int = 0) -> Path:
    """An efficientnet-lite0 DualClassifier with ImageNet features (shipped offline) and an untrained head, saved
    as a release in ``folder``.

    ImageNet features and large random output weights make the probabilities differ clearly between images and
    classes: a randomly initialised backbone's features are all near zero, which would make every face look alike
    and the parity tests weak. Another ``seed`` gives other head weights (ensemble members).
    """
    torch.manual_seed(seed)
    model = DualClassifier(backbone="efficientnet-lite0", pretrained=True, bottleneck_dim=16).eval()
    with torch.no_grad():
        for layer in (model.head.age, model.head.gender):
            layer.weight.normal_(0, 1.0)
    spec = model.backbone.spec
    preprocessing = {
        "image_size": image_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "padding": 0.25,
        "alignment": {"utkface": "aligned", "other": "detect"},
    }
    return save_release(model, folder, PAPER_BINS, preprocessing, extra={"rep_ages": REP_AGES})


def astronaut() -> np.ndarray:
    return skdata.astronaut()


def iou(a, b) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
