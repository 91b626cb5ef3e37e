"""What a run configuration will do, in words, without preparing data or training: ``agecurriculum train --dry-run``.

:func:`describe_run` resolves a :class:`~agecurriculum.config.RunConfig` as :func:`~agecurriculum.train.train` would
(settings checked, bins resolved where they do not depend on the data, the schedule built and checked against Eq. 7,
the model built without downloading weights) and returns the plan, one line per item::

    print("\\n".join(describe_run(load_config("examples/configs/paper.yaml"))))
"""

from __future__ import annotations

import warnings

from agecurriculum.adaptive import AdaptiveCurriculum
from agecurriculum.bins import PAPER_BINS, AgeBins
from agecurriculum.config import RunConfig, check_config
from agecurriculum.data.balance import BALANCE_RULES
from agecurriculum.model.classifier import DualClassifier
from agecurriculum.schedule import ScheduleWarning, TrainingSchedule
from agecurriculum.train.run import build_curriculum, build_loss, freeze_model

__all__ = ["describe_run", "format_bins"]

_LOSSES = {
    "uncertainty": "uncertainty (Eq. 5: each task's cross-entropy weighted by a learned exp(-p_t), plus p_t)",
    "sum": "sum (plain CE_age + CE_gender, an ablation of Table VII)",
    "fixed": "fixed (0.6 CE_age + 0.4 CE_gender, an ablation of Table VII)",
}
_CONDITIONING = {
    "hard": "hard conditioning (the age head sees the one-hot predicted gender; the paper's)",
    "soft": "soft conditioning (the age head sees the gender softmax; the shipped model's)",
}
_BALANCE = {
    "paper": "bins above the median cut to it, every bin below it augmented towards it, at most "
    f"{BALANCE_RULES['paper']} copy per image: the paper's rule",
    "ratio": f"bins above the median cut to it, bins below median / 3.5 augmented up to that, at most "
    f"{BALANCE_RULES['ratio']} copies per image",
    "sampler": "no copies: every age bin of a stage drawn equally often",
    "none": "the training sets as they are",
}
_SCOPE = {
    "run": "the run's validation loss (every validation set, every bin), never reset",
    "stage": "the stage's validation loss (its datasets on its bins), reset at every stage",
    "pair": "the (stage, dataset)'s validation loss, reset at every pair",
}
_STOPS = {"run": "ends the run", "stage": "ends the stage", "pair": "ends the dataset's epochs in the stage"}


def _bins(config: RunConfig) -> AgeBins | None:
    if config.bins == "paper":
        return PAPER_BINS
    if isinstance(config.bins, list):
        return AgeBins(tuple(int(b) for b in config.bins))
    if config.bins == "auto":
        return None
    raise ValueError(f"bins: expected auto, paper or a list of boundaries, got {config.bins!r}")


def format_bins(bins: frozenset[int]) -> str:
    """Bins as ranges: ``{0, 1, 2, 6, 7}`` -> ``"0-2, 6-7"``."""
    runs: list[list[int]] = []
    for b in sorted(bins):
        if runs and b == runs[-1][-1] + 1:
            runs[-1].append(b)
        else:
            runs.append([b])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def describe_run(config: RunConfig) -> list[str]:
    """The plan of a training run of ``config``, one line per item (indented lines belong to the one above).

    Builds the schedule and the model (on the CPU, without pretrained weights: nothing is downloaded) to check them
    and count parameters; prepares no data and writes nothing.

    Raises:
        ValueError: a setting out of range, unknown bins, preset or loss, or a list schedule that breaks Eq. 7.
    """
    check_config(config)
    loss = build_loss(config)
    bins = _bins(config)
    num_bins = 8 if bins is None else len(bins)  # auto: one bin per Adience constraint group
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScheduleWarning)
        schedule = build_curriculum(config, num_bins)
    broken = [str(w.message) for w in caught if issubclass(w.category, ScheduleWarning)]
    model = DualClassifier.from_model_config(config.model, num_bins, pretrained=False)
    params = sum(p.numel() for p in model.parameters())
    m, d, t = config.model, config.data, config.trainer
    frozen = ""
    freeze_model(model, m)  # a bad count fails the dry run as it would fail the run
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if m.gender_branch is not None:
        frozen += f"; gender branch after block {m.gender_branch}"
    if m.train_only_gender:
        frozen += f"; only the gender branch trains: {trainable / 1e6:.1f} M trained"
    elif m.freeze_blocks is not None:
        frozen += f"; stem and first {m.freeze_blocks} backbone block(s) frozen: {trainable / 1e6:.1f} M trained"
    lines = [
        f"model: DualClassifier, {m.backbone} backbone at {d.image_size} x {d.image_size} px, bottleneck "
        f"{m.bottleneck_dim}, dropout {m.dropout}, {_CONDITIONING[m.conditioning]}; {params / 1e6:.1f} M parameters"
        + ("; ImageNet weights loaded when training starts" if m.pretrained else "")
        + (f"; initial weights from {m.init_from}" if m.init_from else "")
        + frozen,
        "age bins: "
        + (
            "auto (fitted by AgeBinOptimizer on the training labels when the data is prepared)"
            if bins is None
            else f"{config.bins if isinstance(config.bins, str) else 'explicit'}: {', '.join(bins.labels())}"
        ),
    ]
    labels = None if bins is None else bins.labels()
    if isinstance(schedule, AdaptiveCurriculum):
        lines += _adaptive_lines(schedule, labels, t.image_budget)
    else:
        lines += _static_lines(config, schedule, labels)
    lines += [f"  breaks Eq. 7: {message}" for message in broken]
    lines.append(
        "image budget: "
        + ("none" if t.image_budget is None else f"{t.image_budget} training images, then the run ends")
    )
    lines.append(
        "time budget: "
        + ("none" if t.time_budget is None else f"{t.time_budget:g} min of training steps, then the run ends")
    )
    patience = t.early_stopping_patience
    lines += [
        f"loss: {_LOSSES[config.loss]}"
        + (f"; ordinal soft age targets, sigma {config.age_label_sigma}" if config.age_label_sigma else "")
        + (
            f"; {' and '.join(loss.distill_tasks)} distilled from {config.teacher} (weight {config.distill_weight})"
            if config.teacher
            else ""
        ),
        f"optimiser: AdamW, lr {t.lr:g}, weight decay {t.weight_decay:g}, batch {t.batch_size}, seed {t.seed}",
        f"LR: ReduceLROnPlateau x {t.plateau_factor:g} after {t.plateau_patience} epoch(s) without improvement of "
        f"{_SCOPE[t.plateau_scope]}",
        "early stopping: off"
        if patience is None
        else f"early stopping: after {patience} epoch(s) without improvement of {_SCOPE[t.early_stopping_scope]}; "
        f"{_STOPS[t.early_stopping_scope]}",
        "release: release/ = the epoch with the lowest selection score (validation loss over every validation set "
        "and bin; best.pt), release-last/ = the last epoch (checkpoint.pt); report/ evaluates release/",
        "validation loss compared across epochs: "
        + (
            "the tasks' cross-entropies added, without the loss's weights (trainer.monitor_loss)"
            if t.monitor_loss == "cross_entropy"
            else "the loss function's total (trainer.monitor_loss)"
        ),
        f"balance: {d.balance} ({_BALANCE[d.balance]})",
        f"data: {', '.join(d.datasets)} under {d.root or '(data.root not set)'}, "
        f"{'every image' if d.max_images is None else f'at most {d.max_images} images per dataset'}, split "
        f"{'/'.join(f'{x:g}' for x in d.split)} (seed {d.split_seed}), face padding {d.padding:g}",
        f"device: {t.device}, mixed precision {'auto' if t.amp is None else t.amp}, {t.num_workers} loader worker(s)",
        f"out_dir: {config.out_dir}",
    ]
    return lines


def _ages(labels: list[str] | None, bins: frozenset[int]) -> str:
    return "" if labels is None else f" (ages {', '.join(labels[b] for b in sorted(bins))})"


def _static_lines(config: RunConfig, schedule: TrainingSchedule, labels: list[str] | None) -> list[str]:
    pairs = sum(len(stage.datasets) for stage in schedule)
    lines = [
        f"curriculum: {schedule_name(config)}, {len(schedule)} stage(s), {pairs} (stage, dataset) pair(s), "
        f"{schedule.total_epochs} epochs in all"
    ]
    for index, stage in enumerate(schedule):
        score = "" if stage.score is None else f", score {stage.score:g}"
        lines.append(
            f"  stage {index}: {', '.join(stage.datasets)}; bins {format_bins(stage.bins)}"
            f"{_ages(labels, stage.bins)}; {stage.epochs} epoch(s) per dataset{score}"
        )
    return lines


def _adaptive_lines(policy: AdaptiveCurriculum, labels: list[str] | None, budget: int | None) -> list[str]:
    # The stages are decided while training; what can be said now is where it starts and how it decides.
    s = policy.settings
    first = policy.next_stage()  # no losses needed for the first stage: it comes from the settings
    assert first is not None
    end = (
        f"until the image budget ({budget}) is spent; every dataset and bin joins once no more than "
        f"{s.final_share:.0%} of it (or one complete stage) is left"
        if budget is not None
        else f"until the complete set (every dataset and bin) stops improving, at most {s.max_stages} stages"
    )
    return [
        f"curriculum: adaptive (decided while training from per-(dataset, bin) validation losses) over "
        f"{', '.join(policy.datasets)}; {s.epochs} epoch(s) per dataset and stage",
        f"  stage 0: {', '.join(first.datasets)}; bins {format_bins(first.bins)}{_ages(labels, first.bins)}",
        f"  then, after each stage: widen when it lowered the set's validation loss by less than "
        f"{s.min_improvement:.0%} or after {s.max_stages_per_set} stage(s) on a set (the easiest neighbouring bin "
        f"or new dataset by loss joins)"
        + (
            f"; revisit a dataset whose loss rose {s.forget_tolerance:.0%} above its best (once per set)"
            if s.revisit
            else "; no revisits (every rule of Eq. 7 kept)"
        ),
        f"  {end}; the stages go to learned_schedule.json, the decisions to adaptive.json",
    ]


def schedule_name(config: RunConfig) -> str:
    """``"original curriculum (preset)"`` or ``"the config's own N-stage list"``."""
    if isinstance(config.schedule, str) and config.schedule.endswith(".json"):
        return f"the schedule file {config.schedule}"
    if isinstance(config.schedule, str):
        return f"{config.schedule} curriculum (preset, {config.epochs_per_stage} epoch(s) per stage and dataset)"
    return f"the config's own {len(config.schedule)}-stage list"
