import math

import pytest
import torch
import torch.nn.functional as F

from agecurriculum.config import LOSS_NAMES, RunConfig
from agecurriculum.losses import (
    DISTILL_TASKS,
    LOSSES,
    FixedWeightLoss,
    LossParts,
    SumLoss,
    UncertaintyLoss,
    create_loss,
    ordinal_soft_targets,
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


def test_the_configs_loss_names_are_the_registrys():
    # RunConfig.loss is checked against LOSS_NAMES (without torch); each must build the loss of that name.
    assert LOSS_NAMES == tuple(LOSSES)


def test_create_loss_by_name():
    assert isinstance(create_loss("uncertainty"), UncertaintyLoss)
    assert create_loss("fixed", age_weight=0.5, gender_weight=0.5).task_weights() == {"age": 0.5, "gender": 0.5}
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        create_loss("focal")
    with pytest.raises(ValueError, match="non-negative"):
        FixedWeightLoss(-1.0, 1.0)


def test_ordinal_soft_targets_are_distributions_peaked_on_the_true_bin():
    q = ordinal_soft_targets(torch.tensor([0, 3, 7]), 8, sigma=0.5)
    torch.testing.assert_close(q.sum(1), torch.ones(3))
    assert q.argmax(1).tolist() == [0, 3, 7]
    torch.testing.assert_close(q[1, 2], q[1, 4])  # symmetric around an inner bin
    assert q[1, 2] > q[1, 1] > q[1, 0]  # falls off with the distance in bins
    assert 0.75 < q[1, 3] < 0.85 and 0.09 < q[1, 4] < 0.12  # the docstring's example
    torch.testing.assert_close(
        ordinal_soft_targets(torch.tensor([2]), 8, 0.05), F.one_hot(torch.tensor([2]), 8).float()
    )


@pytest.mark.parametrize("loss_cls", [UncertaintyLoss, SumLoss, FixedWeightLoss])
def test_age_label_sigma_scores_the_age_head_against_soft_targets(batch, loss_cls):
    age_logits, gender_logits, age_t, gender_t = batch
    age_t = age_t.clone()
    age_t[2] = -100  # an unknown age stays out of the loss
    parts = loss_cls(age_label_sigma=0.7)(age_logits, gender_logits, age_t, gender_t)
    known = age_t != -100
    q = ordinal_soft_targets(age_t[known], 8, 0.7)
    expected = -(q * F.log_softmax(age_logits[known], 1)).sum(1).mean()
    torch.testing.assert_close(parts.age, expected)
    torch.testing.assert_close(parts.gender, F.cross_entropy(gender_logits, gender_t))  # gender is untouched
    parts.total.backward()
    assert torch.count_nonzero(age_logits.grad[2]) == 0


def test_soft_targets_make_a_near_miss_cheaper_than_a_far_one():
    # A confident prediction one bin off against one three bins off: one-hot targets score them alike,
    # ordinal soft targets charge the far miss more; that is what they are for.
    target, gender = torch.tensor([3]), torch.tensor([0])
    near, far = torch.full((1, 8), -5.0), torch.full((1, 8), -5.0)
    near[0, 4], far[0, 6] = 5.0, 5.0
    gender_logits = torch.zeros(1, 2)
    hard, soft = SumLoss(), SumLoss(age_label_sigma=0.6)
    torch.testing.assert_close(
        hard(near, gender_logits, target, gender).age, hard(far, gender_logits, target, gender).age
    )
    assert soft(near, gender_logits, target, gender).age < soft(far, gender_logits, target, gender).age


def test_age_label_sigma_must_be_non_negative():
    with pytest.raises(ValueError, match="age_label_sigma"):
        UncertaintyLoss(age_label_sigma=-0.5)
    with pytest.raises(ValueError, match="age_label_sigma"):
        create_loss("sum", age_label_sigma=float("nan"))
    assert create_loss("fixed", age_label_sigma=0.5).age_label_sigma == 0.5


def test_distillation_mixes_label_and_teacher_cross_entropy(batch):
    age_logits, gender_logits, age_t, gender_t = batch
    g = torch.Generator().manual_seed(1)
    teacher = (torch.randn(6, 8, generator=g).softmax(1), torch.randn(6, 2, generator=g).softmax(1))
    soft_age = -(teacher[0] * age_logits.log_softmax(1)).sum(1).mean()
    soft_gender = -(teacher[1] * gender_logits.log_softmax(1)).sum(1).mean()
    parts = SumLoss(distill_weight=0.7)(*batch, teacher=teacher)
    torch.testing.assert_close(parts.age, 0.3 * F.cross_entropy(age_logits, age_t) + 0.7 * soft_age)
    torch.testing.assert_close(parts.gender, 0.3 * F.cross_entropy(gender_logits, gender_t) + 0.7 * soft_gender)
    # Without a teacher (validation) the same loss scores the labels only.
    torch.testing.assert_close(SumLoss(distill_weight=0.7)(*batch).age, F.cross_entropy(age_logits, age_t))
    # A teacher that is sure of the labels teaches exactly what the labels do.
    sure = (F.one_hot(age_t, 8).float(), F.one_hot(gender_t, 2).float())
    torch.testing.assert_close(
        UncertaintyLoss(distill_weight=1.0)(*batch, teacher=sure).total, UncertaintyLoss()(*batch).total
    )


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_distilling_age_only_leaves_gender_to_its_labels(batch, name):
    # Learning without forgetting: a fine-tuned model's age answers are held near its parent's (the teacher) while
    # its gender learns from the labels alone.
    age_logits, gender_logits, age_t, gender_t = batch
    g = torch.Generator().manual_seed(2)
    teacher = (torch.randn(6, 8, generator=g).softmax(1), torch.randn(6, 2, generator=g).softmax(1))
    soft_age = -(teacher[0] * age_logits.log_softmax(1)).sum(1).mean()
    parts = create_loss(name, distill_weight=0.6, distill_tasks=["age"])(*batch, teacher=teacher)
    torch.testing.assert_close(parts.age, 0.4 * F.cross_entropy(age_logits, age_t) + 0.6 * soft_age)
    torch.testing.assert_close(parts.gender, F.cross_entropy(gender_logits, gender_t))
    parts = create_loss(name, distill_weight=0.6, distill_tasks=("gender",))(*batch, teacher=teacher)
    torch.testing.assert_close(parts.age, F.cross_entropy(age_logits, age_t))
    assert not torch.allclose(parts.gender, F.cross_entropy(gender_logits, gender_t))


def test_distill_tasks_default_to_both_and_reject_unknown_names(batch):
    assert create_loss("sum").distill_tasks == DISTILL_TASKS == ("age", "gender")
    assert RunConfig().distill_tasks == list(DISTILL_TASKS)  # the config's default, without importing torch
    assert create_loss("sum", distill_tasks="age").distill_tasks == ("age",)  # `--set distill_tasks=age`
    for tasks in (["race"], [], ["age", "gendr"]):
        with pytest.raises(ValueError, match="distill_tasks must name some of"):
            create_loss("uncertainty", distill_tasks=tasks)


def test_distillation_teaches_images_without_labels(batch):
    age_logits, gender_logits, _, _ = batch
    unknown = torch.full((6,), -100)
    teacher = (torch.full((6, 8), 1 / 8), torch.full((6, 2), 0.5))
    parts = FixedWeightLoss(distill_weight=0.5)(age_logits, gender_logits, unknown, unknown, teacher=teacher)
    assert parts.age.item() > 0 and parts.gender.item() > 0
    parts.total.backward()
    assert age_logits.grad.abs().sum() > 0  # the teacher's answer trains the age head where no label does


def test_distillation_rejects_bad_weights_and_mismatched_teachers(batch):
    for weight in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="distill_weight"):
            create_loss("uncertainty", distill_weight=weight)
    with pytest.raises(ValueError, match="teacher must predict the same classes"):
        SumLoss()(*batch, teacher=(torch.full((6, 7), 1 / 7), torch.full((6, 2), 0.5)))
