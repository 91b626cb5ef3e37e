"""DualClassifier: forward, config round trip, freezing, custom backbones."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from agecurriculum.model import DualClassifier, HeadOutput, ResizedInput


class TinyBackbone(nn.Module):
    """A user's own feature extractor: images -> (N, num_features)."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).mean(dim=(2, 3))


def test_forward_shapes():
    model = DualClassifier(age_classes=8, gender_classes=2, backbone="efficientnet-lite0", bottleneck_dim=32)
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, HeadOutput)
    assert out.age_logits.shape == (2, 8) and out.gender_logits.shape == (2, 2)


def test_config_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DualClassifier(
        age_classes=5, backbone="efficientnet-lite0", bottleneck_dim=32, dropout=0.1, detach_gender=True
    ).eval()
    cfg = json.loads(json.dumps(model.config()))
    assert cfg["backbone"] == "efficientnet-lite0" and cfg["age_classes"] == 5 and cfg["detach_gender"] is True
    clone = DualClassifier.from_config(cfg).eval()
    assert clone.config() == model.config()
    clone.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    for got, want in zip(clone(x), model(x)):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="bogus"):
        DualClassifier.from_config({**cfg, "bogus": 1})


def test_pretrained_config_can_be_overridden_on_restore():
    cfg = DualClassifier(backbone="efficientnet-lite0", pretrained=True, bottleneck_dim=16).config()
    assert cfg["pretrained"] is True
    assert DualClassifier.from_config(cfg, pretrained=False).config()["pretrained"] is False


def test_freeze_and_unfreeze_backbone():
    model = DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16).train()
    model.freeze_backbone(4)
    assert not model.backbone.blocks[3]._project_conv.weight.requires_grad
    assert model.backbone.blocks[4]._project_conv.weight.requires_grad
    model.freeze_backbone()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.unfreeze_backbone()
    out = model(torch.randn(2, 3, 64, 64))
    (out.age_logits.sum() + out.gender_logits.sum()).backward()
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_custom_backbone():
    torch.manual_seed(0)
    model = DualClassifier(age_classes=4, backbone=TinyBackbone(), bottleneck_dim=16).train()
    out = model(torch.randn(3, 3, 20, 20))
    assert out.age_logits.shape == (3, 4) and out.gender_logits.shape == (3, 2)

    cfg = model.config()
    assert cfg["backbone"] is None
    with pytest.raises(ValueError, match="custom backbone"):
        DualClassifier.from_config(cfg)
    assert isinstance(DualClassifier.from_config(cfg, backbone=TinyBackbone()).backbone, TinyBackbone)

    with pytest.raises(ValueError, match="freeze_backbone\\(None\\)"):
        model.freeze_backbone(2)
    model.freeze_backbone()
    model.train()
    assert not model.backbone.training and model.head.training
    stats = model.backbone.bn.running_mean.clone()
    model(torch.randn(3, 3, 20, 20))
    torch.testing.assert_close(stats, model.backbone.bn.running_mean)
    model.unfreeze_backbone()
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


def test_custom_backbone_errors():
    with pytest.raises(TypeError, match="num_features"):
        DualClassifier(backbone=nn.Linear(3, 3))
    with pytest.raises(ValueError, match="custom backbone"):
        DualClassifier(backbone=TinyBackbone(), pretrained=True)
    with pytest.raises(ValueError, match="unknown backbone"):
        DualClassifier(backbone="efficientnet-b9")


def test_resized_input_feeds_the_model_its_own_size():
    seen = []

    class Recorder(nn.Module):
        def forward(self, images):
            seen.append(images)
            return images.mean((1, 2, 3)), images.amax((1, 2, 3))

    wrapped = ResizedInput(Recorder(), 32)
    same = torch.rand(2, 3, 32, 32)
    wrapped(same)
    assert seen[-1] is same  # its own size: untouched, no copy
    flat = torch.full((2, 3, 48, 48), 0.25)
    mean, peak = wrapped(flat)
    assert seen[-1].shape == (2, 3, 32, 32)
    torch.testing.assert_close(mean, torch.full((2,), 0.25))  # resizing keeps a flat image flat
    torch.testing.assert_close(peak, torch.full((2,), 0.25))
    with pytest.raises(ValueError, match="positive"):
        ResizedInput(Recorder(), 0)


def test_conditioning_round_trips_and_a_config_without_it_is_soft():
    torch.manual_seed(0)
    hard = DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16, conditioning="hard").eval()
    cfg = json.loads(json.dumps(hard.config()))
    assert cfg["conditioning"] == "hard" and DualClassifier.from_config(cfg).head.conditioning == "hard"
    # A release written before the setting existed has no such key: it was trained soft, and loads so.
    old = {k: v for k, v in cfg.items() if k != "conditioning"}
    assert DualClassifier.from_config(old).head.conditioning == "soft"


def test_from_model_config_builds_what_the_run_section_says():
    from agecurriculum.config import ModelConfig as FromConfig
    from agecurriculum.model import ModelConfig

    assert FromConfig is ModelConfig  # one class: the run config's model section is the model's own
    cfg = ModelConfig(
        backbone="efficientnet-lite0",
        pretrained=False,
        bottleneck_dim=24,
        dropout=0.1,
        conditioning="hard",
        init_from="ignored/here",
    )
    model = DualClassifier.from_model_config(cfg, 5)
    assert model.config() == {
        **DualClassifier(age_classes=5, pretrained=False, bottleneck_dim=24, dropout=0.1, conditioning="hard").config()
    }
    assert model.head.conditioning == "hard" and model.config()["age_classes"] == 5
    assert DualClassifier.from_model_config(ModelConfig(), 8, pretrained=False).config()["pretrained"] is False


def test_a_gender_branch_grown_from_a_model_without_one_starts_as_that_model():
    """A release trained without a branch loads into a model with one; the branch starts as a copy of the age path,
    so the grown model answers exactly as its parent did, and its config and weights round-trip."""
    torch.manual_seed(0)
    parent = DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16).eval()
    assert "gender_branch" not in parent.config()  # releases without a branch keep their config
    grown = DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16, gender_branch=14).eval()
    grown.load_state_dict_growing(parent.state_dict())
    x = torch.randn(3, 3, 64, 64)
    for got, want in zip(grown(x), parent(x), strict=True):
        torch.testing.assert_close(got, want)
    clone = DualClassifier.from_config(json.loads(json.dumps(grown.config()))).eval()
    assert clone.gender_branch == 14
    clone.load_state_dict_growing(grown.state_dict())  # a state with a branch loads as it is
    for got, want in zip(clone(x), grown(x), strict=True):
        torch.testing.assert_close(got, want)
    with pytest.raises(RuntimeError, match="missing or unexpected keys"):
        grown.load_state_dict_growing({k: v for k, v in parent.state_dict().items() if "age" not in k})
    with pytest.raises(ValueError, match="no gender branch"):
        parent.fill_gender_branch()
    with pytest.raises(ValueError, match="gender branch"):
        grown.forward_from(grown.backbone.forward_prefix(x, 4), 4)


def test_training_only_the_gender_branch_leaves_the_age_path_as_it_was():
    """``freeze_age_path``: a training step moves the gender branch alone; the backbone, the shared bottleneck (its
    BatchNorm statistics too) and the age classifier keep their values, so the age logits change only through the
    gender softmax the age head reads."""
    torch.manual_seed(0)
    model = DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16, gender_branch=15)
    model.freeze_age_path()
    model.train()
    branch = {n for n, p in model.named_parameters() if p.requires_grad}
    assert branch and all(n.startswith(("gender_backbone.", "head.gender")) for n in branch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out = model(torch.randn(6, 3, 64, 64))
    loss = nn.functional.cross_entropy(out.age_logits, torch.arange(6)) + nn.functional.cross_entropy(
        out.gender_logits, torch.tensor([0, 1] * 3)
    )
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved and all(k.startswith(("gender_backbone.", "head.gender")) for k in moved)
    assert any(k.startswith("gender_backbone.") for k in moved)
    with pytest.raises(ValueError, match="needs a gender branch"):
        DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16).freeze_age_path()


def test_a_gender_branch_beyond_the_backbone_names_the_setting():
    from agecurriculum.model import ModelConfig

    expected = r"^model.gender_branch must be in 0..16 \(the blocks of efficientnet-lite0\), got 17$"
    with pytest.raises(ValueError, match=expected):
        DualClassifier.from_model_config(ModelConfig(pretrained=False, gender_branch=17), 8)
    with pytest.raises(ValueError, match=r"^gender_branch must be in 0..16 .*got -1$"):
        DualClassifier(backbone="efficientnet-lite0", gender_branch=-1)
    with pytest.raises(TypeError, match="tail_copy"):
        DualClassifier(backbone=TinyBackbone(), gender_branch=1)


def test_shifting_the_age_logits_moves_every_age_logit_by_its_offset_and_nothing_else():
    torch.manual_seed(0)
    model = DualClassifier(age_classes=4, gender_classes=2, backbone=TinyBackbone(), bottleneck_dim=16).eval()
    x = torch.randn(3, 3, 32, 32)
    before = model(x)
    offsets = [0.5, -1.0, 0.0, 2.0]
    model.shift_age_logits(offsets)
    after = model(x)
    torch.testing.assert_close(after.age_logits, before.age_logits + torch.tensor(offsets))
    torch.testing.assert_close(after.gender_logits, before.gender_logits)
    with pytest.raises(ValueError, match="expected 4 finite age-logit offsets"):
        model.shift_age_logits([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        model.shift_age_logits([0.0, float("nan"), 0.0, 0.0])
    torch.testing.assert_close(model(x).age_logits, after.age_logits)  # a refused shift changes nothing
