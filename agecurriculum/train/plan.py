"""What a run configuration will do, in words, without preparing data or training: ``agecurriculum train --dry-run``.

:func:`describe_run` resolves a :class:`~agecurriculum.config.RunConfig` as :func:`~agecurriculum.train.train` would
(settings checked, bins resolved where they do not depend on the data, the schedule built and checked against Eq. 7,
the model built without downloading weights) and returns the plan, one line per item::

    print("\\n".join(describe_run(load_config("examples/configs/paper.yaml"))))
"""

from __future__ import annotations

import warnings

from agecurriculum.bins import PAPER_BINS, AgeBins
from agecurriculum.config import RunConfig, check_config
from agecurriculum.data.balance import BALANCE_RULES
from agecurriculum.losses import create_loss
from agecurriculum.model.classifier import DualClassifier
from agecurriculum.schedule import ScheduleWarning
from agecurriculum.train.run import build_schedule

__all__ = ["describe_run"]

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


def _ranges(bins: frozenset[int]) -> str:
    # {0, 1, 2, 6, 7} -> "0-2, 6-7"
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
    create_loss(config.loss, age_label_sigma=config.age_label_sigma, distill_weight=config.distill_weight)
    bins = _bins(config)
    num_bins = 8 if bins is None else len(bins)  # auto: one bin per Adience constraint group
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScheduleWarning)
        schedule = build_schedule(config, num_bins)
    broken = [str(w.message) for w in caught if issubclass(w.category, ScheduleWarning)]
    model = DualClassifier(age_classes=num_bins, backbone=config.model.backbone, pretrained=False,
                           bottleneck_dim=config.model.bottleneck_dim, dropout=config.model.dropout,
                           conditioning=config.model.conditioning)
    params = sum(p.numel() for p in model.parameters())
    m, d, t = config.model, config.data, config.trainer
    pairs = sum(len(stage.datasets) for stage in schedule)
    lines = [
        f"model: DualClassifier, {m.backbone} backbone at {d.image_size} x {d.image_size} px, bottleneck "
        f"{m.bottleneck_dim}, dropout {m.dropout}, {_CONDITIONING[m.conditioning]}; {params / 1e6:.1f} M parameters"
        + ("; ImageNet weights loaded when training starts" if m.pretrained else "")
        + (f"; initial weights from {m.init_from}" if m.init_from else ""),
        "age bins: " + ("auto (fitted by AgeBinOptimizer on the training labels when the data is prepared)"
                        if bins is None else f"{config.bins if isinstance(config.bins, str) else 'explicit'}: "
                        f"{', '.join(bins.labels())}"),
        f"curriculum: {schedule_name(config)}, {len(schedule)} stage(s), {pairs} (stage, dataset) pair(s), "
        f"{schedule.total_epochs} epochs in all",
    ]
    labels = None if bins is None else bins.labels()
    for index, stage in enumerate(schedule):
        ages = "" if labels is None else f" (ages {', '.join(labels[b] for b in sorted(stage.bins))})"
        score = "" if stage.score is None else f", score {stage.score:g}"
        lines.append(f"  stage {index}: {', '.join(stage.datasets)}; bins {_ranges(stage.bins)}{ages}; "
                     f"{stage.epochs} epoch(s) per dataset{score}")
    lines += [f"  breaks Eq. 7: {message}" for message in broken]
    patience = t.early_stopping_patience
    lines += [
        f"loss: {_LOSSES[config.loss]}"
        + (f"; ordinal soft age targets, sigma {config.age_label_sigma}" if config.age_label_sigma else "")
        + (f"; distilled from {config.teacher} (weight {config.distill_weight})" if config.teacher else ""),
        f"optimiser: AdamW, lr {t.lr:g}, weight decay {t.weight_decay:g}, batch {t.batch_size}, seed {t.seed}",
        f"LR: ReduceLROnPlateau x {t.plateau_factor:g} after {t.plateau_patience} epoch(s) without improvement of "
        f"{_SCOPE[t.plateau_scope]}",
        "early stopping: off" if patience is None else
        f"early stopping: after {patience} epoch(s) without improvement of {_SCOPE[t.early_stopping_scope]}; "
        f"{_STOPS[t.early_stopping_scope]}",
        "release: release/ = the epoch with the lowest selection score (validation loss over every validation set "
        "and bin; best.pt), release-last/ = the last epoch (checkpoint.pt); report/ evaluates release/",
        f"balance: {d.balance} ({_BALANCE[d.balance]})",
        f"data: {', '.join(d.datasets)} under {d.root or '(data.root not set)'}, "
        f"{'every image' if d.max_images is None else f'at most {d.max_images} images per dataset'}, split "
        f"{'/'.join(f'{x:g}' for x in d.split)} (seed {d.split_seed}), face padding {d.padding:g}",
        f"device: {t.device}, mixed precision {'auto' if t.amp is None else t.amp}, {t.num_workers} loader worker(s)",
        f"out_dir: {config.out_dir}",
    ]
    return lines


def schedule_name(config: RunConfig) -> str:
    """``"original curriculum (preset)"`` or ``"the config's own N-stage list"``."""
    if isinstance(config.schedule, str):
        return f"{config.schedule} curriculum (preset, {config.epochs_per_stage} epoch(s) per stage and dataset)"
    return f"the config's own {len(config.schedule)}-stage list"
