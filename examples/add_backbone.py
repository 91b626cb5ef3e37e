"""How to add a backbone: one registered factory (docs/add_backbone.rst walks through it).

The backbone here, "mobilenet-v3-small", is torchvision's MobileNetV3-Small, which expects ImageNet's input
statistics. Registered, it is a ``model.backbone`` name like the built-in ones: the run normalises its inputs with
the statistics of its :class:`~agecurriculum.model.backbones.BackboneSpec`, the release records them in its
``preprocessing``, and a predictor reads them back from there; nothing else in the library names it.

It runs offline in about half a minute on 2 CPU cores: it writes a small UTKFace-like data root (crops of
scikit-image's astronaut photo), trains the backbone from random weights for a few steps and predicts on a crop with
the release.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from PIL import Image
from skimage import data as skdata
from torchvision.models import MobileNet_V3_Small_Weights, mobilenet_v3_small

from agecurriculum.config import RunConfig
from agecurriculum.inference import Predictor
from agecurriculum.model.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    BackboneSpec,
    create_backbone,
    load_weights,
    register_backbone,
)
from agecurriculum.train.run import train


# The one addition: a factory under a name. MobileNetV3-Small's ``features`` is an nn.Sequential of its stem, then
# its blocks, the last a 1x1 convolution to 576 channels: Backbone's defaults take it as it is (forward_features
# calls it, freeze_groups lists its children). BackboneSpec carries what the rest of the pipeline needs to know: the
# feature width for the head, and the input statistics the run normalises with and the release records.
@register_backbone("mobilenet-v3-small")
def mobilenet(pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone:
    weights = MobileNet_V3_Small_Weights.IMAGENET1K_V1 if pretrained else None  # downloaded by torchvision
    spec = BackboneSpec("mobilenet-v3-small", 576, 224, IMAGENET_MEAN, IMAGENET_STD)
    backbone = Backbone(mobilenet_v3_small(weights=weights).features, spec)  # no pooling, no classifier
    if weights_path is not None:
        load_weights(backbone, weights_path)  # a local state dict of the features
    return backbone


def make_demo_root(root: Path, count: int = 24) -> None:
    """A data root with a UTKFace folder: ``count`` shifted crops of the astronaut's face, named AGE_GENDER_..."""
    faces = root / "utkface" / "UTKFace"
    faces.mkdir(parents=True, exist_ok=True)
    photo = skdata.astronaut()
    for i in range(count):
        dx, dy, age = (i * 7) % 30 - 15, (i * 5) % 20 - 10, [1, 5, 10, 18, 28, 40, 52, 70][i % 8]
        crop = Image.fromarray(photo[30 + dy : 230 + dy, 120 + dx : 320 + dx]).resize((48, 48))
        crop.save(faces / f"{age}_{i % 2}_0_20170101{i:06d}.jpg.chip.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the demo data and the run (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="add-backbone-"))
    make_demo_root(out / "data")

    # What the library sees of it: the public interface of docs/add_backbone.rst.
    backbone = create_backbone("mobilenet-v3-small").eval()
    with torch.no_grad():
        shape = tuple(backbone.forward_features(torch.zeros(1, 3, 64, 64)).shape)
    print(
        f"features at 64 px: {shape}, pooled: {backbone.num_features}, freeze groups: stem + "
        f"{backbone.num_blocks} blocks"
    )

    # Use it by name: model.backbone in a configuration (--set model.backbone=mobilenet-v3-small on the command
    # line, from a process that has imported the module registering it).
    config = RunConfig(
        out_dir=str(out / "run"),
        bins="paper",
        schedule=[{"datasets": ["utkface"], "bins": list(range(8)), "epochs": 1}],
    )
    config.data.root, config.data.datasets, config.data.cache = str(out / "data"), ["utkface"], str(out / "cache")
    config.data.image_size, config.data.split, config.data.preprocess_workers = 32, [0.6, 0.2, 0.2], 0
    config.model.backbone, config.model.pretrained, config.model.bottleneck_dim = "mobilenet-v3-small", False, 16
    config.trainer.batch_size, config.trainer.max_steps_per_epoch = 8, 2
    config.trainer.verbose = False  # the lines per epoch hold timings: this page shows only what does not vary
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
