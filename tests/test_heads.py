"""GenderConditionedHead: shapes, conditioning of age on gender, gradient flow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agecurriculum.model import GenderConditionedHead, HeadOutput


def test_shapes_and_named_output():
    head = GenderConditionedHead(32, age_classes=8, gender_classes=2, bottleneck_dim=16)
    out = head(torch.randn(5, 32))
    assert isinstance(out, HeadOutput)
    assert out.age_logits.shape == (5, 8)
    assert out.gender_logits.shape == (5, 2)


def test_exports_as_a_plain_tuple():
    head = GenderConditionedHead(32, bottleneck_dim=16).eval()
    x = torch.randn(3, 32)
    exported = torch.export.export(head, (x,)).module()
    for got, want in zip(exported(x), head(x)):
        torch.testing.assert_close(got, want)


def test_age_logits_depend_on_the_gender_branch():
    torch.manual_seed(0)
    head = GenderConditionedHead(32, bottleneck_dim=16).eval()
    x = torch.randn(4, 32)
    before = head(x)
    with torch.no_grad():
        head.gender.weight.add_(torch.randn_like(head.gender.weight))
    after = head(x)
    assert not torch.allclose(before.age_logits, after.age_logits)


@pytest.mark.parametrize("detach", [False, True])
def test_age_loss_reaches_gender_head_unless_detached(detach):
    torch.manual_seed(0)
    head = GenderConditionedHead(32, bottleneck_dim=16, detach_gender=detach)
    out = head(torch.randn(6, 32))
    F.cross_entropy(out.age_logits, torch.randint(0, 8, (6,))).backward()
    grad = head.gender.weight.grad
    if detach:
        assert grad is None
    else:
        assert grad is not None and grad.abs().sum() > 0
    assert head.bottleneck[0].weight.grad.abs().sum() > 0  # the shared layer still learns from the age loss


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    x = torch.randn(6, 32, requires_grad=True)
    head = GenderConditionedHead(32, bottleneck_dim=16)
    out = head(x)
    loss = F.cross_entropy(out.age_logits, torch.randint(0, 8, (6,))) + F.cross_entropy(
        out.gender_logits, torch.randint(0, 2, (6,)))
    loss.backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_bad_input_is_rejected():
    head = GenderConditionedHead(32, bottleneck_dim=16)
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        head(torch.randn(4, 31))
    with pytest.raises(ValueError, match="dropout"):
        GenderConditionedHead(32, dropout=1.0)
    with pytest.raises(ValueError, match="age_classes"):
        GenderConditionedHead(32, age_classes=0)
