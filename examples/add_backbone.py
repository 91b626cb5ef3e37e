"""How to add a backbone: one registered factory (docs/add_backbone.rst walks through it).

The backbone here, "tiny-convnet", is a three-block convolutional network that expects ImageNet's input statistics.
Registered, it is a ``model.backbone`` name like the built-in ones: the run normalises its inputs with the
statistics of its :class:`~agecurriculum.model.backbones.BackboneSpec`, the release records them in its
``preprocessing``, and a predictor reads them back from there; nothing else in the library names it.

It runs offline in about half a minute on 2 CPU cores: it writes a small UTKFace-like data root (crops of
scikit-image's astronaut photo), trains the backbone for a few steps and predicts on a crop with the release.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

from agecurriculum.config import RunConfig
from agecurriculum.inference import Predictor
from agecurriculum.model.backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneSpec, register_backbone
from agecurriculum.train.run import train


class TinyConvNet(nn.Module):
    """The network, laid out as :class:`~agecurriculum.model.backbones.Backbone` expects: a stem
    (``_conv_stem``, ``_bn0``), ``_blocks`` in input-to-output order, and ``extract_features``."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(width)
        self._blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width * 2**i, width * 2 ** (i + 1), 3, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(width * 2 ** (i + 1)), nn.ReLU())
            for i in range(3))

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x  # (N, 128, H / 16, W / 16); Backbone average-pools it to (N, 128)


# The one addition: a factory under a name. BackboneSpec carries what the rest of the pipeline needs to know: the
# feature width for the head, and the input statistics the run normalises with and the release records.
@register_backbone("tiny-convnet")
def tiny_convnet(pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone:
    if pretrained or weights_path is not None:
        raise ValueError("tiny-convnet has no pretrained weights")
    return Backbone(TinyConvNet(), BackboneSpec("tiny-convnet", 128, 64, IMAGENET_MEAN, IMAGENET_STD))


def make_demo_root(root: Path, count: int = 24) -> None:
    """A data root with a UTKFace folder: ``count`` shifted crops of the astronaut's face, named AGE_GENDER_..."""
    faces = root / "utkface" / "UTKFace"
    faces.mkdir(parents=True, exist_ok=True)
    photo = skdata.astronaut()
    for i in range(count):
        dx, dy, age = (i * 7) % 30 - 15, (i * 5) % 20 - 10, [1, 5, 10, 18, 28, 40, 52, 70][i % 8]
        crop = Image.fromarray(photo[30 + dy:230 + dy, 120 + dx:320 + dx]).resize((48, 48))
        crop.save(faces / f"{age}_{i % 2}_0_20170101{i:06d}.jpg.chip.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the demo data and the run (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="add-backbone-"))
    make_demo_root(out / "data")

    # Use it by name: model.backbone in a configuration (--set model.backbone=tiny-convnet on the command line,
    # from a process that has imported the module registering it).
    config = RunConfig(out_dir=str(out / "run"), bins="paper",
                       schedule=[{"datasets": ["utkface"], "bins": list(range(8)), "epochs": 1}])
    config.data.root, config.data.datasets, config.data.cache = str(out / "data"), ["utkface"], str(out / "cache")
    config.data.image_size, config.data.split, config.data.preprocess_workers = 32, [0.6, 0.2, 0.2], 0
    config.model.backbone, config.model.pretrained, config.model.bottleneck_dim = "tiny-convnet", False, 16
    config.trainer.batch_size, config.trainer.max_steps_per_epoch = 8, 2
    result = train(config)

    predictor = Predictor.from_release(result.release_dir, backend="torch", verify=False)
    preprocessing = predictor.release.preprocessing
    print("release architecture:", predictor.release.architecture)
    same = (preprocessing.mean, preprocessing.std) == (IMAGENET_MEAN, IMAGENET_STD)
    print("release mean/std are the backbone's:", same)
    [photo] = predictor.predict([skdata.astronaut()[30:230, 120:320]], aligned=True)
    face = photo["faces"][0]
    print(f"prediction: {face['gender']}, {face['age_range'][0]}-{face['age_range'][1]} years")


if __name__ == "__main__":
    main()
