import math

import pytest
import torch
import torch.nn.functional as F

from agecurriculum.losses import (
    FixedWeightLoss,
    LossParts,
    SumLoss,
    UncertaintyLoss,
    create_loss,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    age_logits = torch.randn(6, 8, generator=g, requires_grad=True)
    gender_logits = torch.randn(6, 2, generator=g, requires_grad=True)
    age_target = torch.tensor([0, 3, 7, 2, 5, 1])
    gender_target = torch.tensor([0, 1, 1, 0, 1, 0])
    return age_logits, gender_logits, age_target, gender_target


def test_uncertainty_loss_starts_as_plain_sum(batch):
    age_logits, gender_logits, age_t, gender_t = batch
    parts = UncertaintyLoss()(*batch)
    ce_age = F.cross_entropy(age_logits, age_t)
    ce_gender = F.cross_entropy(gender_logits, gender_t)
    assert isinstance(parts, LossParts)
    torch.testing.assert_close(parts.age, ce_age)
    torch.testing.assert_close(parts.gender, ce_gender)
    torch.testing.assert_close(parts.total, ce_age + ce_gender)  # p = 0: exp(0) * CE + 0


def test_uncertainty_loss_matches_eq5_for_any_p(batch):
    age_logits, gender_logits, age_t, gender_t = batch
    loss = UncertaintyLoss()
    with torch.no_grad():
        loss.log_var_age.fill_(0.7)
        loss.log_var_gender.fill_(-1.3)
    ce_age = F.cross_entropy(age_logits, age_t).item()
    ce_gender = F.cross_entropy(gender_logits, gender_t).item()
    expected = math.exp(-0.7) * ce_age + 0.7 + math.exp(1.3) * ce_gender - 1.3
    assert loss(*batch).total.item() == pytest.approx(expected, rel=1e-6)
    assert loss.task_weights() == pytest.approx({"age": math.exp(-0.7), "gender": math.exp(1.3)})


def test_uncertainty_parameters_receive_gradients_and_learn(batch):
    loss = UncertaintyLoss()
    assert [p.item() for p in loss.parameters()] == [0.0, 0.0]
    parts = loss(*batch)
    parts.total.backward()
    # d/dp [exp(-p) * CE + p] at p=0 is 1 - CE.
    assert loss.log_var_age.grad.item() == pytest.approx(1 - parts.age.item(), rel=1e-6)
    assert loss.log_var_gender.grad.item() == pytest.approx(1 - parts.gender.item(), rel=1e-6)
    # A task with high loss gets a smaller weight after a step: p grows where CE > 1.
    opt = torch.optim.SGD(loss.parameters(), lr=0.1)
    opt.step()
    assert (loss.log_var_age.item() > 0) == (parts.age.item() > 1)


def test_ablation_losses(batch):
    age_logits, gender_logits, age_t, gender_t = batch
    ce_age = F.cross_entropy(age_logits, age_t)
    ce_gender = F.cross_entropy(gender_logits, gender_t)
    torch.testing.assert_close(SumLoss()(*batch).total, ce_age + ce_gender)
    torch.testing.assert_close(FixedWeightLoss()(*batch).total, 0.6 * ce_age + 0.4 * ce_gender)
    torch.testing.assert_close(FixedWeightLoss(0.2, 0.8)(*batch).total, 0.2 * ce_age + 0.8 * ce_gender)
    assert list(SumLoss().parameters()) == []


def test_missing_labels_are_ignored(batch):
    age_logits, gender_logits, age_t, _ = batch
    unknown_gender = torch.full((6,), -100)
    parts = UncertaintyLoss()(age_logits, gender_logits, age_t, unknown_gender)
    assert parts.gender.item() == 0.0
    assert torch.isfinite(parts.total)
    parts.total.backward()
    assert torch.count_nonzero(gender_logits.grad) == 0
    assert torch.count_nonzero(age_logits.grad) > 0


def test_create_loss_by_name():
    assert isinstance(create_loss("uncertainty"), UncertaintyLoss)
    assert create_loss("fixed", age_weight=0.5, gender_weight=0.5).task_weights() == {"age": 0.5, "gender": 0.5}
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        create_loss("focal")
    with pytest.raises(ValueError, match="non-negative"):
        FixedWeightLoss(-1.0, 1.0)
