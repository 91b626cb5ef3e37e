import pytest
import torch
from torch import nn

from agecurriculum.data import FilteredDataset, TensorFaceDataset
from agecurriculum.losses import SumLoss, UncertaintyLoss
from agecurriculum.schedule import MultiDatasetSample, ScheduleWarning, TrainingSchedule
from agecurriculum.train import CurriculumTrainer, EpochRecord, TrainerConfig


class TinyDual(nn.Module):
    """A two-headed model small enough to train in milliseconds."""

    def __init__(self, age_classes=8, gender_classes=2):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.ReLU())
        self.gender = nn.Linear(16, gender_classes)
        self.age = nn.Linear(16 + gender_classes, age_classes)

    def forward(self, x):
        h = self.features(x)
        gender_logits = self.gender(h)
        return self.age(torch.cat([h, gender_logits.softmax(1)], 1)), gender_logits


def learnable_dataset(n, seed):
    """Images whose pixels encode the labels, so a model can learn them."""
    g = torch.Generator().manual_seed(seed)
    age_bins = torch.randint(0, 8, (n,), generator=g)
    genders = torch.randint(0, 2, (n,), generator=g)
    images = torch.randn(n, 3, 4, 4, generator=g) * 0.1
    images[:, 0, 0, :] += nn.functional.one_hot(age_bins % 4, 4).float()
    images[:, 1, 0, :] += nn.functional.one_hot(age_bins // 4 + 2 * genders, 4).float()
    return TensorFaceDataset(images, age_bins, genders)


def two_stage_schedule(epochs=2):
    return TrainingSchedule(
        [
            MultiDatasetSample(["a"], {3, 4, 5}, epochs=epochs),
            MultiDatasetSample(["a", "b"], range(8), epochs=epochs),
        ]
    )


def make_trainer(seed=0, epochs=2, **config):
    torch.manual_seed(seed)
    sets = {"a": learnable_dataset(96, 1), "b": learnable_dataset(96, 2)}
    vals = {"a": learnable_dataset(48, 3), "b": learnable_dataset(48, 4)}
    cfg = TrainerConfig(batch_size=16, lr=1e-2, seed=seed, **config)
    return CurriculumTrainer(TinyDual(), two_stage_schedule(epochs), sets, vals, config=cfg)


def test_fit_runs_algorithm_1_in_schedule_order():
    seen = []
    trainer = make_trainer(early_stopping_patience=None)
    trainer.callbacks.append(seen.append)
    history = trainer.fit()
    # stage 0: dataset a x 2 epochs; stage 1: a x 2 then b x 2.
    assert [(r.stage, r.dataset, r.epoch) for r in history] == [
        (0, "a", 0),
        (0, "a", 1),
        (1, "a", 0),
        (1, "a", 1),
        (1, "b", 0),
        (1, "b", 1),
    ]
    assert [r.global_epoch for r in history] == list(range(6))
    assert seen == history and all(isinstance(r, EpochRecord) for r in seen)
    # Stage 0 trains only on bins 3-5 of dataset a; stage 1 on everything.
    a_bins = trainer.train_sets["a"].age_bins
    assert history[0].images == int(((a_bins >= 3) & (a_bins <= 5)).sum())
    assert history[2].images == 96
    assert history[0].val.images == int(
        ((trainer.val_sets["a"].age_bins >= 3) & (trainer.val_sets["a"].age_bins <= 5)).sum()
    )
    assert set(history[-1].task_weights) == {"age", "gender"}


def test_stage_only_sees_its_bins():
    class SpyLoss(SumLoss):
        def forward(self, age_logits, gender_logits, age_target, gender_target):
            seen_bins.update(age_target.tolist())
            return super().forward(age_logits, gender_logits, age_target, gender_target)

    seen_bins = set()
    # One incomplete stage breaks Eq. 7's last-stage rule: allowed in non-strict mode, with a warning.
    with pytest.warns(ScheduleWarning):
        schedule = TrainingSchedule([MultiDatasetSample(["a", "b"], {3, 4, 5})], strict=False)
    sets = {"a": learnable_dataset(64, 1), "b": learnable_dataset(64, 2)}
    CurriculumTrainer(TinyDual(), schedule, sets, loss=SpyLoss(), config=TrainerConfig(batch_size=8)).fit()
    assert seen_bins == {3, 4, 5}


def test_training_learns_and_uncertainty_weights_move():
    trainer = make_trainer(epochs=4, early_stopping_patience=None)
    before = trainer.evaluate(trainer.val_sets["b"])
    trainer.fit()
    after = trainer.evaluate(trainer.val_sets["b"])
    assert after.loss < before.loss
    assert after.age_accuracy > 0.5 and after.gender_accuracy > 0.8  # chance: 0.125 and 0.5
    assert trainer.loss_fn.task_weights() != {"age": 1.0, "gender": 1.0}


def test_same_seed_same_weights_and_different_seed_differs():
    def final_weights(seed):
        trainer = make_trainer(seed=seed)
        trainer.fit()
        return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])

    assert torch.equal(final_weights(0), final_weights(0))
    assert not torch.equal(final_weights(0), final_weights(1))


def test_early_stopping_ends_a_dataset_epoch_loop():
    torch.manual_seed(0)
    sets = {"a": learnable_dataset(32, 1)}
    vals = {"a": learnable_dataset(32, 9)}
    schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=20)])
    # lr 0 cannot improve the validation loss, so patience 2 stops after 1 + 2 epochs.
    cfg = TrainerConfig(batch_size=8, lr=0.0, early_stopping_patience=2)
    history = CurriculumTrainer(TinyDual(), schedule, sets, vals, loss=SumLoss(), config=cfg).fit()
    assert len(history) == 3


def test_plateau_lowers_the_learning_rate():
    torch.manual_seed(0)
    sets = {"a": learnable_dataset(32, 1)}
    schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=6)])
    # At lr 1e-6 the validation loss moves by less than the plateau threshold (1e-4 relative): a plateau.
    cfg = TrainerConfig(batch_size=8, lr=1e-6, plateau_patience=1, plateau_factor=0.5, early_stopping_patience=None)
    trainer = CurriculumTrainer(TinyDual(), schedule, sets, {"a": sets["a"]}, loss=SumLoss(), config=cfg)
    history = trainer.fit()
    assert [r.lr for r in history] == [1e-6, 1e-6, 1e-6, 5e-7, 5e-7, 2.5e-7]


def test_epochs_compare_on_the_cross_entropies_when_the_loss_learns_its_weights():
    """An uncertainty loss's total falls while its task weights settle, even when the network does not change at all
    (here it is frozen): on that total every epoch looks better than the last, so best.pt is the last and the plateau
    never acts. ``monitor_loss="cross_entropy"`` compares the tasks' unweighted cross-entropies, which stay put."""
    sets = {"a": learnable_dataset(64, 1)}
    schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=4)])
    runs = {}
    for monitor in ("total", "cross_entropy"):
        torch.manual_seed(0)
        model = TinyDual().requires_grad_(False)  # only the loss's log-variances train
        cfg = TrainerConfig(
            batch_size=16,
            lr=0.05,
            plateau_patience=0,
            plateau_factor=0.5,
            plateau_scope="run",
            early_stopping_patience=None,
            monitor_loss=monitor,
        )
        trainer = CurriculumTrainer(model, schedule, sets, {"a": learnable_dataset(32, 2)}, config=cfg)
        runs[monitor] = (trainer, trainer.fit())
    trainer, history = runs["total"]
    totals = [r.selection_loss for r in history]
    assert all(later < earlier for earlier, later in zip(totals, totals[1:]))  # "better" every epoch
    assert [r.lr for r in history] == [0.05] * 4 and trainer.best_epoch == 3
    trainer, history = runs["cross_entropy"]
    plain = [r.selection_loss for r in history]
    assert plain == pytest.approx([plain[0]] * 4, rel=1e-6) and plain[0] == pytest.approx(history[0].val.cross_entropy)
    assert [r.lr for r in history] == [0.05, 0.05, 0.025, 0.0125] and trainer.best_epoch == 0  # cut after epoch 2
    with pytest.raises(ValueError, match="monitor_loss"):
        CurriculumTrainer(TinyDual(), schedule, sets, config=TrainerConfig(monitor_loss="weighted"))


def test_missing_training_set_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no training set: \['b'\]"):
        CurriculumTrainer(TinyDual(), two_stage_schedule(), {"a": learnable_dataset(8, 0)})


def test_max_steps_per_epoch_caps_the_epoch_and_record_flattens():
    trainer = make_trainer(max_steps_per_epoch=2, early_stopping_patience=None)
    history = trainer.fit()
    assert all(r.images <= 32 for r in history)
    row = history[-1].to_dict()
    assert {"train_loss", "weight_age", "val_age_accuracy", "val_loss"} <= set(row)
    assert isinstance(trainer.loss_fn, UncertaintyLoss)


def test_datasets_with_set_epoch_are_told_the_global_epoch():
    class EpochAware(TensorFaceDataset):
        epochs_seen = []

        def set_epoch(self, epoch):
            self.epochs_seen.append(epoch)

    base = learnable_dataset(16, 1)
    dataset = EpochAware(base.images, base.age_bins, base.genders)
    schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=3)])
    CurriculumTrainer(TinyDual(), schedule, {"a": dataset}, config=TrainerConfig(batch_size=8)).fit()
    assert dataset.epochs_seen == [0, 1, 2]


class AutocastSpy(TinyDual):
    """Records, at every forward, whether CPU autocast is on and at which dtype."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def forward(self, x):
        enabled = torch.is_autocast_enabled("cpu")
        self.seen.add((enabled, torch.get_autocast_dtype("cpu") if enabled else None))
        return super().forward(x)


def test_amp_auto_or_off_on_cpu_changes_nothing():
    def run(amp):
        torch.manual_seed(0)
        model = AutocastSpy()
        schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=2)])
        trainer = CurriculumTrainer(
            model,
            schedule,
            {"a": learnable_dataset(48, 1)},
            {"a": learnable_dataset(16, 2)},
            config=TrainerConfig(batch_size=16, amp=amp),
        )
        trainer.fit()
        return trainer, torch.cat([p.detach().flatten() for p in model.parameters()])

    (auto, auto_weights), (off, off_weights) = run(None), run(False)
    assert auto.amp_dtype is None and off.amp_dtype is None
    assert not auto.scaler.is_enabled()
    assert auto.model.seen == off.model.seen == {(False, None)}
    assert torch.equal(auto_weights, off_weights)


def test_amp_true_on_cpu_trains_under_bf16_autocast():
    torch.manual_seed(0)
    model = AutocastSpy()
    schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=1)])
    trainer = CurriculumTrainer(
        model,
        schedule,
        {"a": learnable_dataset(32, 1)},
        {"a": learnable_dataset(16, 2)},
        config=TrainerConfig(batch_size=16, amp=True),
    )
    history = trainer.fit()
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()  # bf16 needs no loss scaling
    assert model.seen == {(True, torch.bfloat16)}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast computes in bf16, keeps fp32 weights
    assert torch.isfinite(torch.tensor([history[0].train_loss, history[0].val.loss])).all()


def test_progress_bar_shows_loss_and_throughput(monkeypatch, capsys):
    import agecurriculum.train.trainer as trainer_module

    bars = []

    class RecordingBar(trainer_module.tqdm):
        # The screen refreshes at most every 0.1 s, so what is shown is read from the bar, not from stderr.
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.postfixes = []
            self.shown = not self.disable  # close() disables every bar, so keep what it was
            bars.append(self)

        def set_postfix(self, **kwargs):
            self.postfixes.append(kwargs)
            super().set_postfix(**kwargs)

    monkeypatch.setattr(trainer_module, "tqdm", RecordingBar)
    trainer = make_trainer(epochs=1, progress=True)
    trainer.train_one_epoch(trainer.train_sets["a"], desc="demo")
    (bar,) = bars
    assert bar.shown and bar.desc.startswith("demo") and bar.n == bar.total == 6  # 96 images / 16
    assert len(bar.postfixes) == 6 and {"loss", "img_s"} <= set(bar.postfixes[-1])
    assert float(bar.postfixes[-1]["img_s"]) > 0
    assert "demo" in capsys.readouterr().err
    make_trainer(epochs=1).train_one_epoch(trainer.train_sets["a"])
    assert not bars[-1].shown and capsys.readouterr().err == ""  # progress=False (the default) prints nothing


def test_balanced_sampling_draws_every_bin_of_the_stage_equally_and_repeats():
    # Dataset "a" with a skewed age distribution: bin 3 twelve times as frequent as bin 5.
    bins = torch.tensor([3] * 120 + [4] * 30 + [5] * 10 + [0] * 40)
    data = TensorFaceDataset(torch.zeros(len(bins), 3, 4, 4), bins, torch.zeros(len(bins), dtype=torch.long))
    with pytest.warns(ScheduleWarning):  # a one-stage schedule without every bin: fine for this test
        schedule = TrainingSchedule([MultiDatasetSample(["a"], {3, 4, 5}, epochs=1)], strict=False)

    def drawn(seed, epoch):
        trainer = CurriculumTrainer(
            TinyDual(), schedule, {"a": data}, config=TrainerConfig(batch_size=16, seed=seed, sampling="balanced")
        )
        trainer.global_epoch = epoch
        view = FilteredDataset(data, {3, 4, 5})
        return [int(label) for _, label, _ in (view[i] for i in trainer._loader(view, shuffle=True).sampler)]

    labels = drawn(0, 0)
    assert len(labels) == 160 and set(labels) <= {3, 4, 5}  # an epoch draws as many items as the view holds
    counts = [labels.count(b) for b in (3, 4, 5)]
    assert min(counts) > 35 and max(counts) < 75, counts  # about 53 each instead of 120 / 30 / 10
    assert drawn(0, 0) == labels and drawn(0, 1) != labels and drawn(1, 0) != labels


def test_unknown_sampling_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="sampling"):
        make_trainer(sampling="weighted")


def test_a_last_batch_of_one_image_is_skipped_not_a_batch_norm_crash():
    class WithBatchNorm(TinyDual):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.BatchNorm1d(16), nn.ReLU())

    schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=1)])
    for n, seen in ((33, 32), (34, 34), (1, 0)):
        trainer = CurriculumTrainer(
            WithBatchNorm(), schedule, {"a": learnable_dataset(n, 1)}, config=TrainerConfig(batch_size=16)
        )
        assert trainer.fit()[0].images == seen
        balanced = CurriculumTrainer(
            WithBatchNorm(),
            schedule,
            {"a": learnable_dataset(n, 1)},
            config=TrainerConfig(batch_size=16, sampling="balanced"),
        )
        assert balanced.fit()[0].images == seen


def test_unknown_age_items_train_gender_in_stages_that_cover_every_bin():
    data = learnable_dataset(64, 1)
    data.age_bins[:16] = -100  # e.g. FairFace decades that straddle two bins: gender labels only
    seen = []

    class SpyLoss(SumLoss):
        def forward(self, age_logits, gender_logits, age_target, gender_target):
            seen.append((stage_now[0], torch.is_grad_enabled(), (age_target == -100).sum().item()))
            return super().forward(age_logits, gender_logits, age_target, gender_target)

    stage_now = [0]
    schedule = TrainingSchedule(
        [MultiDatasetSample(["a"], {3, 4, 5}, epochs=1), MultiDatasetSample(["a"], range(8), epochs=1)]
    )
    trainer = CurriculumTrainer(
        TinyDual(),
        schedule,
        {"a": data},
        {"a": data},
        loss=SpyLoss(),
        config=TrainerConfig(batch_size=16, early_stopping_patience=None),
    )
    trainer.callbacks.append(lambda record: stage_now.__setitem__(0, record.stage + 1))
    history = trainer.fit()
    known_345 = int(((data.age_bins[16:] >= 3) & (data.age_bins[16:] <= 5)).sum())
    assert [r.images for r in history] == [known_345, 64]
    unknown_by_stage = {(stage, training): 0 for stage in (0, 1) for training in (True, False)}
    for stage, training, unknown in seen:
        unknown_by_stage[stage, training] += unknown
    # Stage 1 trains on the 16 unknown-age items and validates on them; stage 0 never trains on them. Both validate
    # them once in the selection score (every bin, every image), which stage 1's view is (evaluated once).
    assert unknown_by_stage[0, True] == 0 and unknown_by_stage[1, True] == 16
    assert unknown_by_stage[0, False] == 16 and unknown_by_stage[1, False] == 16
    # Validation age accuracy counts only items of known age.
    assert history[1].val.images == 64 and 0 <= history[1].val.age_accuracy <= 1


def test_a_new_dataset_does_not_read_as_a_plateau():
    # Dataset b is much harder (random labels) than a: its first validation loss is far above a's best. That is a
    # change of data, not a stall, and must not cut the learning rate.
    torch.manual_seed(0)
    easy, hard = learnable_dataset(64, 1), learnable_dataset(64, 2)
    hard.age_bins = hard.age_bins[torch.randperm(64)]
    schedule = TrainingSchedule([MultiDatasetSample(["a", "b"], range(8), epochs=2)])
    cfg = TrainerConfig(batch_size=16, lr=1e-2, plateau_patience=0, plateau_factor=0.5, early_stopping_patience=None)
    trainer = CurriculumTrainer(
        TinyDual(), schedule, {"a": easy, "b": hard}, {"a": easy, "b": hard}, loss=SumLoss(), config=cfg
    )
    history = trainer.fit()
    assert history[2].val.loss > history[1].val.loss  # b is harder ...
    assert history[2].lr == history[1].lr and trainer.optimizer.param_groups[0]["lr"] == history[2].lr  # ... no cut


class ShiftedTeacher(nn.Module):
    """A fixed teacher that is sure of the wrong age bin: the true one plus 1. Has dropout, to see it stays off."""

    def __init__(self):
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        codes = self.dropout(x[:, :, 0, :])  # the pixels that encode the labels (see learnable_dataset)
        age = codes[:, 0].argmax(1) + 4 * (codes[:, 1].argmax(1) % 2)
        gender = codes[:, 1].argmax(1) // 2
        one_hot = nn.functional.one_hot
        return self.scale * one_hot((age + 1) % 8, 8).float(), self.scale * one_hot(gender, 2).float()


def test_a_teacher_is_learned_as_the_distill_weight_says():
    def student_agreement(distill_weight):
        torch.manual_seed(0)
        teacher = ShiftedTeacher()
        schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=8)])
        trainer = CurriculumTrainer(
            TinyDual(),
            schedule,
            {"a": learnable_dataset(192, 1)},
            loss=SumLoss(distill_weight=distill_weight),
            teacher=teacher,
            config=TrainerConfig(batch_size=16, lr=1e-2, early_stopping_patience=None),
        )
        trainer.fit()
        assert not teacher.training and teacher.scale.item() == 20.0 and teacher.scale.grad is None
        val = learnable_dataset(96, 3)
        with torch.no_grad():
            predicted = trainer.model.eval()(val.images)[0].argmax(1)
        agree_teacher = (predicted == (val.age_bins + 1) % 8).float().mean().item()
        return agree_teacher, (predicted == val.age_bins).float().mean().item()

    follows_teacher, follows_labels = student_agreement(1.0)
    assert follows_teacher > 0.6 and follows_labels < 0.2
    follows_teacher, follows_labels = student_agreement(0.0)
    assert follows_labels > 0.6 and follows_teacher < 0.2


def _face_dataset(specs):
    """A FaceDataset of blank images from ``(age_min, age_max, gender)`` triples (records only, no files)."""
    import numpy as np

    from agecurriculum.bins import PAPER_BINS
    from agecurriculum.data import FaceDataset, FaceRecord

    records = [FaceRecord(f"face{i}.jpg", "gen", lo, hi, gender) for i, (lo, hi, gender) in enumerate(specs)]
    return FaceDataset(records, PAPER_BINS, lambda r: np.zeros((4, 4, 3), np.uint8))


def test_age_gender_sampling_evens_the_cells_weighs_children_and_repeats():
    from agecurriculum.data.datasets import MixedDataset

    # Two datasets mixed: 300 men of 30, 60 women of 30, 20 girls of 5 (a FairFace-like 3-9 range: no age bin,
    # but a child's) and 20 boys of 8.
    first = _face_dataset([(30, 30, 0)] * 300 + [(30, 30, 1)] * 60)
    second = _face_dataset([(3, 9, 1)] * 20 + [(8, 8, 0)] * 20)
    mixed = MixedDataset([first, second])
    schedule = TrainingSchedule([MultiDatasetSample(["mixed"], range(8), epochs=1)])

    def drawn(seed, epoch, **settings):
        config = TrainerConfig(batch_size=16, seed=seed, sampling="age_gender", **settings)
        trainer = CurriculumTrainer(TinyDual(), schedule, {"mixed": mixed}, config=config)
        trainer.global_epoch = epoch
        view = trainer._train_view(0, "mixed")
        return list(trainer._loader(view, shuffle=True).sampler)

    def shares(draws):
        cells = {"men": range(300), "women": range(300, 360), "girls": range(360, 380), "boys": range(380, 400)}
        return {cell: sum(i in index for i in draws) / len(draws) for cell, index in cells.items()}

    even = shares(drawn(0, 0, sampling_power=1.0))
    assert len(drawn(0, 0)) == 400  # an epoch draws as many items as the view holds
    assert all(0.18 < share < 0.32 for share in even.values()), even  # four cells, a quarter each
    natural = shares(drawn(0, 0, sampling_power=0.0))
    assert natural["men"] > 0.65 and natural["girls"] < 0.1, natural  # power 0: the data's own proportions
    weighted = shares(drawn(0, 0, sampling_power=1.0, child_weight=3.0))
    assert weighted["girls"] + weighted["boys"] > 0.65, weighted  # 3 / 4 of the weight on the two child cells
    assert drawn(0, 0) == drawn(0, 0) and drawn(0, 1) != drawn(0, 0) and drawn(1, 0) != drawn(0, 0)


def test_age_gender_sampling_needs_face_records():
    schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=1)])
    trainer = CurriculumTrainer(
        TinyDual(),
        schedule,
        {"a": learnable_dataset(32, 1)},
        config=TrainerConfig(batch_size=16, sampling="age_gender"),
    )
    with pytest.raises(ValueError, match="age_gender needs datasets of face records"):
        trainer.fit()


def test_fit_prints_the_measured_speed_and_the_time_left_once(capsys, monkeypatch):
    import agecurriculum.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "ETA_AFTER_S", 0.0)  # at the first step, not after a minute
    trainer = make_trainer(epochs=2, early_stopping_patience=None)
    trainer.fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("measured ")]
    assert len(lines) == 1, lines
    # Printed after the first step of the first epoch (stage 0, bins 3-5 of "a"): the rest of the run is that
    # epoch's remainder, its second epoch, and stage 1's two epochs of "a" and two of "b" (96 images each).
    first_epoch = int(((trainer.train_sets["a"].age_bins >= 3) & (trainer.train_sets["a"].age_bins <= 5)).sum())
    assert trainer._planned_images_after_this_epoch() == 0  # the run is over
    match = __import__("re").fullmatch(
        r"measured ([\d.]+) images/s: this epoch ends in ([\d.]+) min, the run's "
        r"training in ([\d.]+) min \(validation not included\)",
        lines[0],
    )
    assert match, lines[0]
    rate, epoch_min, run_min = (float(g) for g in match.groups())
    expected_run = (first_epoch - 16 + first_epoch + 4 * 96) / rate / 60
    assert run_min == pytest.approx(expected_run, abs=0.051) and epoch_min <= run_min


def test_fit_says_what_it_does_by_default_and_verbose_false_silences_it(capsys):
    make_trainer(epochs=1, early_stopping_patience=None).fit()
    lines = capsys.readouterr().out.splitlines()
    stages = [line for line in lines if line.startswith("stage ")]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert stages == [
        "stage 1/2: a; bins 3, 4, 5; 1 epoch(s) per dataset",
        "stage 2/2: a, b; every bin; 1 epoch(s) per dataset",
    ]
    assert len(epochs) == 3 and epochs[0].startswith("epoch 1 (stage 1, a, epoch 1): train loss ")
    assert all(" images at " in line and "; val loss " in line and "%, age " in line for line in epochs)
    assert "training left about" in epochs[0] and "training left about 0.0 min" in epochs[-1]
    make_trainer(epochs=1, early_stopping_patience=None, verbose=False).fit()
    assert capsys.readouterr().out == ""


def test_time_budget_ends_the_run_after_the_batch_that_passes_it(capsys):
    trainer = make_trainer(epochs=2, early_stopping_patience=None, time_budget=1e-9)
    history = trainer.fit()
    # The first step already takes longer than the budget: its epoch stops there, is validated, and the run ends.
    assert [(r.stage, r.epoch, r.images) for r in history] == [(0, 0, 16)]
    assert history[0].val is not None and trainer.seconds_trained == history[0].seconds
    assert "the run ends: the time budget (1e-09 min) is spent (" in capsys.readouterr().out


def test_a_time_budget_that_is_not_reached_changes_nothing():
    plain = make_trainer(early_stopping_patience=None)
    timed = make_trainer(early_stopping_patience=None, time_budget=1e6)
    plain_history, timed_history = plain.fit(), timed.fit()
    assert [r.images for r in plain_history] == [r.images for r in timed_history]
    for (name, a), b in zip(plain.model.state_dict().items(), timed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_time_budget_counts_the_epochs_before_a_resume(tmp_path, monkeypatch):
    import types

    import agecurriculum.train.trainer as trainer_module

    clock = iter(range(10**6))  # a clock that moves one second at every reading: the run's timing is repeatable
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: float(next(clock))))

    class Killed(Exception):
        pass

    def kill(record):
        raise Killed

    def trainer(run_dir):
        made = make_trainer(early_stopping_patience=None, time_budget=1.0)  # 60 readings: within stage 2
        made.run_dir = run_dir
        return made

    whole = trainer(tmp_path / "whole")
    whole_history = whole.fit()
    killed = trainer(tmp_path / "killed")
    killed.callbacks.append(kill)
    with pytest.raises(Killed):
        killed.fit()
    resumed = trainer(tmp_path / "killed")
    history = resumed.fit(resume=True)
    # The run ends where the whole run ended: the killed epoch's seconds count against the budget after the resume.
    assert 60 <= whole.seconds_trained and whole_history[-1].stage == 1 and whole_history[-1].images < 96
    assert [r.images for r in history] == [r.images for r in whole_history]
    assert resumed.seconds_trained == whole.seconds_trained
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_time_budget_must_be_positive():
    from agecurriculum.config import RunConfig, apply_overrides, check_config

    with pytest.raises(ValueError, match=r"^trainer\.time_budget: must be > 0"):
        check_config(apply_overrides(RunConfig(), ["trainer.time_budget=0"]))


def test_a_teacher_with_the_models_frozen_part_shares_it_and_trains_the_same():
    """A warm start distilled from its parent with a frozen stem and early blocks: the frozen part runs once a
    batch (the teacher's own copy never), and training gives what a teacher running its own pass gives."""
    import copy

    from agecurriculum.model import DualClassifier, shared_frozen_blocks

    torch.manual_seed(0)
    parent = DualClassifier(age_classes=8, backbone="efficientnet-lite0", bottleneck_dim=16)
    data = TensorFaceDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 8, (8,)), torch.randint(0, 2, (8,)))

    def train(wrap_teacher):
        student, teacher = copy.deepcopy(parent), copy.deepcopy(parent)
        student.freeze_backbone(4)
        with torch.no_grad():
            student.head.age.weight.mul_(0.5)  # the student's answers differ from the teacher's
        runs = []
        teacher.backbone.net._blocks[0].register_forward_hook(lambda *_: runs.append("teacher"))
        student.backbone.net._blocks[0].register_forward_hook(lambda *_: runs.append("student"))
        shared = shared_frozen_blocks(student, teacher)
        trainer = CurriculumTrainer(
            student,
            TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=1)]),
            {"a": data},
            loss=SumLoss(distill_weight=0.5),
            teacher=nn.Sequential(teacher) if wrap_teacher else teacher,  # a wrapper hides what it shares
            config=TrainerConfig(batch_size=4, lr=1e-3, seed=3),
        )
        torch.manual_seed(5)
        losses = trainer.train_one_epoch(data)[:3]
        return shared, runs, losses, student.state_dict()

    shared, runs, losses, weights = train(wrap_teacher=False)
    assert shared == 4 and runs == ["student", "student"]  # two batches, the frozen part once each
    _, own_runs, own_losses, own_weights = train(wrap_teacher=True)
    assert own_runs == ["teacher", "student"] * 2
    assert losses == pytest.approx(own_losses, rel=1e-6)
    for key, value in weights.items():
        torch.testing.assert_close(value, own_weights[key], rtol=1e-5, atol=1e-6)


def test_only_the_same_frozen_weights_are_shared():
    import copy

    from agecurriculum.model import DualClassifier, shared_frozen_blocks

    torch.manual_seed(0)
    model = DualClassifier(age_classes=8, backbone="efficientnet-lite0", bottleneck_dim=16)
    teacher = copy.deepcopy(model)
    assert shared_frozen_blocks(model, teacher) is None  # nothing frozen: nothing to share
    model.freeze_backbone(4)
    with torch.no_grad():
        teacher.backbone.net._blocks[5]._project_conv.weight.add_(1.0)  # after the cut: still shared
    assert shared_frozen_blocks(model, teacher) == 4
    with torch.no_grad():
        teacher.backbone.net._blocks[3]._bn2.running_mean.add_(1.0)  # a frozen block's statistics differ
    assert shared_frozen_blocks(model, teacher) is None
    assert shared_frozen_blocks(model, None) is None
    other = DualClassifier(age_classes=8, backbone="efficientnet-b0", bottleneck_dim=16)
    assert shared_frozen_blocks(model, other) is None
