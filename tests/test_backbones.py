"""Backbone registry, EfficientNet-Lite weights and padding, weight loading, partial freezing, a new architecture."""

from __future__ import annotations

import warnings
from urllib.error import URLError

import efficientnet_pytorch.utils as ep_utils
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from efficientnet_pytorch import EfficientNet
from torch import nn
from torchvision.models import mobilenet_v3_small

from agecurriculum.model import (
    Backbone,
    BackboneSpec,
    DualClassifier,
    create_backbone,
    list_backbones,
    lite_weights_path,
    register_backbone,
)
from agecurriculum.model import backbones as registry
from agecurriculum.model.backbones import IMAGENET_MEAN, IMAGENET_STD
from agecurriculum.model.efficientnet_lite import (
    LITE_MEAN,
    LITE_STD,
    Conv2dSame,
    EfficientNetLite,
)

LITES = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def photo(image, size: int, mean, std) -> torch.Tensor:
    """An (H, W, 3) uint8 photo as a normalised (1, 3, size, size) batch."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@pytest.mark.parametrize(
    "name, blocks", [("efficientnet-lite0", 16), ("efficientnet-lite1", 21), ("efficientnet-lite2", 21)]
)
def test_shipped_lite_state_dicts_load_strictly(name, blocks):
    net = EfficientNetLite(name)
    net.load_state_dict(torch.load(lite_weights_path(name), weights_only=True), strict=True)
    assert len(net._blocks) == blocks


@pytest.mark.parametrize("name", LITES)
def test_pretrained_lite_recognises_real_photos(name):
    backbone = create_backbone(name, pretrained=True).eval()
    state = torch.load(lite_weights_path(name), weights_only=True)
    spec = backbone.spec
    with torch.no_grad():
        for image, classes in [(skimage.data.coffee(), COFFEE_CLASSES), (skimage.data.chelsea(), CAT_CLASSES)]:
            features = backbone(photo(image, spec.default_image_size, spec.mean, spec.std))
            logits = F.linear(features, state["_fc.weight"], state["_fc.bias"])
            top5 = set(logits.topk(5).indices[0].tolist())
            assert top5 & classes, f"{name}: top-5 {sorted(top5)} misses {sorted(classes)}"


def test_lite_weights_expect_tflite_normalisation():
    """The stem BatchNorm's running statistics fit (x - 0.498) / 0.502 input far better than ImageNet mean/std."""
    net = EfficientNetLite("efficientnet-lite0")
    net.load_state_dict(torch.load(lite_weights_path("efficientnet-lite0"), weights_only=True))
    bn = net._bn0
    live = bn.running_var > 1e-4  # some stem channels are dead (zero variance)

    def var_mismatch(mean, std) -> float:
        images = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut()]
        with torch.no_grad():
            out = torch.cat([net._conv_stem(photo(im, 224, mean, std)).flatten(2) for im in images], 2)[0]
        return (out.var(1)[live] / bn.running_var[live]).log().abs().mean().item()

    assert var_mismatch(LITE_MEAN, LITE_STD) < 0.7 * var_mismatch(IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("size", [7, 8, 97, 112])
@pytest.mark.parametrize("kernel", [3, 5])
def test_conv2d_same_matches_tensorflow_same_padding(size, kernel):
    torch.manual_seed(0)
    ours = Conv2dSame(4, 4, kernel, stride=2, groups=4, bias=False)
    reference = ep_utils.Conv2dDynamicSamePadding(4, 4, kernel, stride=2, groups=4, bias=False)
    reference.weight = ours.weight
    x = torch.randn(2, 4, size, size + 1)
    torch.testing.assert_close(ours(x), reference(x))


@pytest.mark.parametrize("size", [64, 97, 112])
def test_lite_output_shapes(size):
    x = torch.randn(2, 3, size, size)
    assert create_backbone("efficientnet-lite0").eval()(x).shape == (2, 1280)
    assert EfficientNetLite("efficientnet-lite0").eval()(x).shape == (2, 1000)
    assert EfficientNetLite("efficientnet-lite0").eval().extract_features(x).shape == (
        2,
        1280,
        -(-size // 32),
        -(-size // 32),
    )


def test_drop_connect_is_random_in_training_only():
    # num_classes=0: no classifier dropout, so only stochastic depth can make train-mode outputs differ.
    x = torch.randn(2, 3, 64, 64)
    net = EfficientNetLite("efficientnet-lite0", num_classes=0, drop_connect_rate=0.5).train()
    torch.manual_seed(1)
    first = net(x)
    torch.manual_seed(2)
    assert not torch.allclose(first, net(x))
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    plain = EfficientNetLite("efficientnet-lite0", num_classes=0, drop_connect_rate=0.0).train()
    torch.testing.assert_close(plain(x), plain(x))


def test_registry_lists_all_efficientnets():
    names = list_backbones()
    assert {f"efficientnet-b{i}" for i in range(8)} <= set(names)
    assert set(LITES) <= set(names)


def test_unknown_backbone_names_the_registered_ones():
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        create_backbone("resnet-50")


def test_register_custom_backbone(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_backbone("tiny-lite")
    def tiny(pretrained=False, weights_path=None):
        return create_backbone("efficientnet-lite0", pretrained, weights_path)

    assert "tiny-lite" in list_backbones()
    assert create_backbone("tiny-lite").num_features == 1280
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny-lite")(tiny)


def test_efficientnet_b0_loads_a_local_state_dict(tmp_path):
    torch.manual_seed(0)
    source = EfficientNet.from_name("efficientnet-b0")
    path = tmp_path / "b0.pth"
    torch.save(source.state_dict(), path)
    backbone = create_backbone("efficientnet-b0", weights_path=path)
    loaded = backbone.net.state_dict()
    assert "_fc.weight" not in loaded
    for key, value in loaded.items():
        torch.testing.assert_close(value, source.state_dict()[key], msg=key)


def test_efficientnet_b0_pretrained_uses_the_efficientnet_pytorch_download(monkeypatch):
    torch.manual_seed(0)
    source = EfficientNet.from_name("efficientnet-b0")
    requested = []

    def fake_load_url(url, *args, **kwargs):
        requested.append(url)
        return {k: v.clone() for k, v in source.state_dict().items()}

    monkeypatch.setattr(ep_utils.model_zoo, "load_url", fake_load_url)
    backbone = create_backbone("efficientnet-b0", pretrained=True)
    assert requested == [ep_utils.url_map["efficientnet-b0"]]
    for key, value in backbone.net.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key], msg=key)


def test_efficientnet_pretrained_without_network_points_to_weights_path(monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(ep_utils.model_zoo, "load_url", offline)
    with pytest.raises(RuntimeError, match="weights_path"):
        create_backbone("efficientnet-b0", pretrained=True)


def test_weight_loading_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_backbone("efficientnet-lite0", weights_path=missing)
    with pytest.raises(ValueError, match="not a efficientnet-b0 state dict"):
        create_backbone("efficientnet-b0", weights_path=lite_weights_path("efficientnet-lite0"))
    # Lite1 and Lite2 share every key name; only the shapes differ.
    with pytest.raises(ValueError, match="does not fit efficientnet-lite1"):
        create_backbone("efficientnet-lite1", weights_path=lite_weights_path("efficientnet-lite2"))
    with pytest.raises(ValueError, match="not both"):
        create_backbone("efficientnet-lite0", pretrained=True, weights_path=lite_weights_path("efficientnet-lite0"))
    # Issue 30.6: a file torch's safe loader refuses was torch's six lines advising weights_only=False.
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x04" + bytes(range(256)) * 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as caught:
            create_backbone("efficientnet-lite0", weights_path=corrupt)
    assert str(caught.value) == f"{corrupt}: not a weights file (truncated, corrupt, or another kind of file)"


def _bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_partial_freeze_keeps_weights_and_statistics_of_frozen_blocks():
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet-lite0").train()
    backbone.freeze(3)
    frozen = [backbone.net._conv_stem, backbone.net._bn0, *backbone.blocks[:3]]
    trainable = [*backbone.blocks[3:], backbone.net._conv_head, backbone.net._bn1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in trainable for p in m.parameters())

    backbone.eval().train()  # train() must keep re-applying the frozen BatchNorm eval mode
    assert backbone.training
    before_frozen = [s for m in frozen for s in _bn_stats(m)]
    before_trainable = _bn_stats(backbone.blocks[3])
    backbone(torch.randn(4, 3, 64, 64)).sum().backward()
    for old, new in zip(before_frozen, [s for m in frozen for s in _bn_stats(m)]):
        torch.testing.assert_close(old, new)
    assert not torch.allclose(before_trainable[0], _bn_stats(backbone.blocks[3])[0])
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert all(p.grad is not None for m in trainable for p in m.parameters())

    backbone.unfreeze()
    assert all(p.requires_grad for p in backbone.parameters())
    stem_stats = _bn_stats(backbone.net._bn0)[0]
    backbone(torch.randn(4, 3, 64, 64)).sum().backward()
    assert not torch.allclose(stem_stats, _bn_stats(backbone.net._bn0)[0])
    assert backbone.net._conv_stem.weight.grad is not None


def test_full_freeze_and_bounds():
    backbone = create_backbone("efficientnet-lite0").train()
    backbone.freeze()
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not any(m.training for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ValueError, match="0..16"):
        backbone.freeze(17)
    backbone.freeze(backbone.num_blocks)
    assert backbone.net._conv_head.weight.requires_grad


def test_state_dict_holds_each_weight_once_and_reads_older_files_with_duplicates():
    backbone = create_backbone("efficientnet-lite0")
    state = backbone.state_dict()
    assert not [k for k in state if k.startswith("blocks.")]
    pointers = [v.data_ptr() for v in state.values() if v.numel()]
    assert len(pointers) == len(set(pointers)), "a tensor is saved under two names"
    # Releases written before blocks became a property also hold blocks.* copies of net._blocks.*.
    older = {
        **{k: v.clone() + 1 for k, v in state.items()},
        **{"blocks." + k.removeprefix("net._blocks."): v for k, v in state.items() if k.startswith("net._blocks.")},
    }
    fresh = create_backbone("efficientnet-lite0")
    fresh.load_state_dict(older)  # strict: the duplicates are dropped, not reported as unexpected keys
    assert torch.equal(fresh.net._conv_stem.weight, state["net._conv_stem.weight"] + 1)
    key = "net._blocks.3._project_conv.weight"
    assert torch.equal(fresh.state_dict()[key], state[key] + 1)  # net._blocks.* wins over the stale copy


def test_a_torchvision_network_registers_in_a_few_lines_and_trains_partly_frozen(monkeypatch):
    """The public interface alone: torchvision's MobileNetV3-Small, whose ``features`` is a Sequential of its stem
    then its blocks, is a backbone as it comes; frozen groups keep their weights and statistics through a step."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the test's name leaves with the test

    @register_backbone("test-mobilenet-v3-small")
    def mobilenet(pretrained=False, weights_path=None):
        spec = BackboneSpec("test-mobilenet-v3-small", 576, 224, IMAGENET_MEAN, IMAGENET_STD)
        return Backbone(mobilenet_v3_small(weights=None).features, spec)

    torch.manual_seed(0)
    model = DualClassifier(age_classes=4, backbone="test-mobilenet-v3-small", bottleneck_dim=16).train()
    backbone = model.backbone
    assert backbone.num_features == 576 and backbone.num_blocks == 12
    assert backbone.forward_features(torch.randn(2, 3, 64, 64)).shape == (2, 576, 2, 2)
    model.freeze_backbone(3)  # the stem and three blocks
    frozen, trainable = backbone.freeze_groups()[:4], [*backbone.freeze_groups()[4:], model.head]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in trainable for p in m.parameters())

    def tensors(modules, buffers=False):
        return [
            t.detach().clone()
            for m in modules
            for t in (m.buffers() if buffers else m.parameters())
            if t.is_floating_point()
        ]

    frozen_params, frozen_stats, trainable_params = tensors(frozen), tensors(frozen, True), tensors(trainable)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # every parameter, as the trainer does
    out = model(torch.randn(4, 3, 64, 64))
    loss = F.cross_entropy(out.age_logits, torch.tensor([0, 1, 2, 3])) + F.cross_entropy(
        out.gender_logits, torch.tensor([0, 1, 0, 1])
    )
    loss.backward()
    optimizer.step()
    for old, new in zip(frozen_params + frozen_stats, tensors(frozen) + tensors(frozen, True), strict=True):
        assert torch.equal(old, new)
    assert all(not torch.equal(old, new) for old, new in zip(trainable_params, tensors(trainable), strict=True))


def test_a_backbone_that_is_no_sequential_must_name_its_freeze_groups():
    backbone = Backbone(nn.Conv2d(3, 8, 3), BackboneSpec("conv", 8, 32, IMAGENET_MEAN, IMAGENET_STD))
    assert backbone(torch.randn(1, 3, 8, 8)).shape == (1, 8)
    backbone.freeze()  # freezing everything needs no groups
    assert not any(p.requires_grad for p in backbone.parameters())
    with pytest.raises(NotImplementedError, match="freeze_groups"):
        backbone.freeze(1)


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-b0"])
def test_the_cut_halves_compose_to_forward_features_in_eval_and_train_mode(name):
    """``forward_features_from(forward_prefix(x, n), n)`` is ``forward_features(x)`` bit for bit, stochastic depth
    included (same seed), at any cut: what lets a teacher start from a model's frozen part."""
    torch.manual_seed(0)
    backbone = create_backbone(name)
    x = torch.randn(2, 3, 64, 64)
    for mode in (False, True):
        backbone.train(mode)
        for n in (0, 4, backbone.num_blocks):
            torch.manual_seed(1)
            whole = backbone.forward_features(x)
            torch.manual_seed(1)
            cut = backbone.forward_features_from(backbone.forward_prefix(x, n), n)
            assert torch.equal(whole, cut), (mode, n)
            torch.manual_seed(1)
            pooled = backbone(x)
            torch.manual_seed(1)
            assert torch.equal(pooled, backbone.forward_from(backbone.forward_prefix(x, n), n))
    with pytest.raises(ValueError, match=f"0..{backbone.num_blocks}"):
        backbone.forward_prefix(x, backbone.num_blocks + 1)


def test_a_frozen_part_computes_in_train_mode_what_it_computes_in_eval_mode():
    """Frozen blocks keep no stochastic depth and no batch statistics in training: their output is the eval-mode
    output, whatever the seed (the third block, a residual one, drops its branch for some faces in train mode)."""
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet-lite0").train()
    x = torch.randn(8, 3, 64, 64)
    backbone.freeze(4)
    assert backbone.frozen_blocks == 4
    expected = backbone.eval().forward_prefix(x, 4)
    backbone.train()
    assert backbone.blocks[4].training and not backbone.blocks[2].training
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.equal(backbone.forward_prefix(x, 4), expected)
    backbone.unfreeze()
    assert backbone.frozen_blocks is None and all(m.training for m in backbone.modules())
    backbone.freeze()
    assert backbone.frozen_blocks is None  # the whole backbone: no cut to share


def test_the_default_cut_halves_of_a_sequential_and_their_limits():
    spec = BackboneSpec("seq", 8, 32, IMAGENET_MEAN, IMAGENET_STD)
    backbone = Backbone(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3)), spec)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(backbone.forward_features_from(backbone.forward_prefix(x, 1), 1), backbone.forward_features(x))

    class Custom(Backbone):
        def forward_features(self, x):
            return self.net(x) * 2

    with pytest.raises(NotImplementedError, match="override forward_prefix and forward_features_from"):
        Custom(backbone.net, spec).forward_prefix(x, 1)


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-b0", "sequential"])
def test_a_tail_copy_continues_the_trunk_with_weights_of_its_own(name):
    """``tail_copy(n)`` holds only what comes after the stem and ``n`` blocks, starts as this backbone's end, and
    trains apart from it: the gender branch of a DualClassifier."""
    torch.manual_seed(0)
    if name == "sequential":
        spec = BackboneSpec("seq", 8, 32, IMAGENET_MEAN, IMAGENET_STD)
        backbone = Backbone(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 8, 3)), spec)
        n = 1
    else:
        backbone = create_backbone(name)
        n = backbone.num_blocks - 1
    backbone.freeze(n)
    tail = backbone.tail_copy(n).eval()
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    trunk = backbone.forward_prefix(x, n)
    assert torch.equal(tail.forward_from(trunk, n), backbone(x))

    def named(module):
        return [*module.named_parameters(), *module.named_buffers()]

    prefix = {id(t) for group in backbone.freeze_groups()[: n + 1] for _, t in named(group)}
    assert {k for k, _ in named(tail)} == {k for k, t in named(backbone) if id(t) not in prefix}
    assert all(p.requires_grad for p in tail.parameters()) and tail.frozen_blocks is None
    with torch.no_grad():
        for p in tail.parameters():
            p.add_(1.0)
    assert torch.equal(backbone.forward_from(trunk, n), backbone(x))  # the copy's weights are its own
    assert not torch.equal(tail.forward_from(trunk, n), backbone(x))
    with pytest.raises(ValueError, match=f"0..{backbone.num_blocks}"):
        backbone.tail_copy(backbone.num_blocks + 1)
