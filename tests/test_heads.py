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
        out.gender_logits, torch.randint(0, 2, (6,))
    )
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


@pytest.mark.parametrize("conditioning", ["hard", "soft"])
def test_hard_conditioning_passes_no_age_gradient_into_the_gender_head_and_soft_does(conditioning):
    torch.manual_seed(0)
    head = GenderConditionedHead(32, bottleneck_dim=16, conditioning=conditioning)
    out = head(torch.randn(6, 32))
    F.cross_entropy(out.age_logits, torch.randint(0, 8, (6,))).backward()  # the age loss alone
    grad = head.gender.weight.grad
    if conditioning == "hard":
        assert grad is None and head.gender.bias.grad is None
    else:
        assert grad is not None and grad.abs().sum() > 0
    assert head.bottleneck[0].weight.grad.abs().sum() > 0  # the shared layer learns from the age loss either way
    assert head.age.weight.grad.abs().sum() > 0


def test_hard_conditioning_feeds_the_one_hot_of_the_predicted_gender():
    torch.manual_seed(0)
    hard = GenderConditionedHead(32, bottleneck_dim=16, conditioning="hard").eval()
    x = torch.randn(5, 32)
    out = hard(x)
    shared = hard.bottleneck(x)
    one_hot = F.one_hot(out.gender_logits.argmax(1), 2).float()
    torch.testing.assert_close(out.age_logits, hard.age(torch.cat([shared, one_hot], 1)))
    # Only the predicted class matters: logits that keep the argmax leave the age output unchanged.
    with torch.no_grad():
        hard.gender.weight.mul_(3.0)
        hard.gender.bias.mul_(3.0)
    torch.testing.assert_close(hard(x).age_logits, out.age_logits)
    # The soft head with the same weights feeds the probabilities instead: another output.
    soft = GenderConditionedHead(32, bottleneck_dim=16, conditioning="soft").eval()
    soft.load_state_dict(hard.state_dict())
    assert not torch.allclose(soft(x).age_logits, hard(x).age_logits)
    exported = torch.export.export(hard, (x,)).module()
    for got, want in zip(exported(x), hard(x)):
        torch.testing.assert_close(got, want)


def test_conditioning_is_checked_and_soft_by_default():
    assert GenderConditionedHead(32, bottleneck_dim=16).conditioning == "soft"
    with pytest.raises(ValueError, match="conditioning must be one of hard, soft, got 'argmax'"):
        GenderConditionedHead(32, conditioning="argmax")


def test_a_head_with_gender_features_of_its_own_reads_them_through_its_own_bottleneck():
    torch.manual_seed(0)
    head = GenderConditionedHead(32, bottleneck_dim=16, gender_in_features=24).eval()
    features, gender_features = torch.randn(4, 32), torch.randn(4, 24)
    out = head(features, gender_features)
    torch.testing.assert_close(out.gender_logits, head.gender(head.gender_bottleneck(gender_features)))
    # The age head reads the shared layer of its own features and the gender softmax.
    shared = head.bottleneck(features)
    torch.testing.assert_close(out.age_logits, head.age(torch.cat([shared, out.gender_logits.softmax(1)], 1)))
    with pytest.raises(ValueError, match=r"gender features of shape \(N, 24\), got None"):
        head(features)
    with pytest.raises(ValueError, match=r"gender features of shape \(N, 24\), got \(4, 23\)"):
        head(features, torch.randn(4, 23))
    with pytest.raises(ValueError, match="no gender features of its own"):
        GenderConditionedHead(32, bottleneck_dim=16)(features, gender_features)
    with pytest.raises(ValueError, match="gender_in_features"):
        GenderConditionedHead(32, gender_in_features=0)
