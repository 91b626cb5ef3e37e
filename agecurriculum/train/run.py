"""A whole training run from one :class:`~agecurriculum.config.RunConfig`: data, model, curriculum, release, report.

The ``agecurriculum train`` and ``agecurriculum evaluate`` commands are thin wrappers of :func:`train` and
:func:`evaluate_run`; call these from your own scripts to run the same pipeline::

    config = apply_overrides(load_config("examples/configs/cpu.yaml"), ["data.root=/data"])
    result = train(config)
    print(result.report.to_markdown())

A run folder (``config.out_dir``) ends up holding ``checkpoint.pt``/``best.pt`` and ``metrics.csv`` (trainer and
loggers), ``training_curves.png``, ``run_config.yaml`` (the configuration, replayable with ``--config``),
``resolved_config.json`` (the same plus versions, seed and command), ``release/`` (weights for inference: the epoch
with the best selection score, as ``best.pt``), ``release-last/`` (the last epoch's, as ``checkpoint.pt``) and
``report/`` (the test-split evaluation of ``release/``).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from agecurriculum.adaptive import AdaptiveCurriculum
from agecurriculum.bins import PAPER_BINS, AgeBins, representative_ages
from agecurriculum.config import EVALUATION_PARTS, RUN_CONFIG_FILE, RunConfig, TrainerConfig, check_config
from agecurriculum.data.balance import BalancedDataset, age_prior_shift, balance_plan
from agecurriculum.data.cache import CachedCrops, CropCache, preprocess
from agecurriculum.data.datasets import MIXED, FaceDataset, MixedDataset, age_bins_of
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.records import IGNORE, FaceRecord
from agecurriculum.data.sources import DATASETS, alignment_record, discover, histogram_datasets
from agecurriculum.data.splits import PARTS, Split, split_records
from agecurriculum.data.summary import age_distribution, fit_age_bins
from agecurriculum.data.transforms import eval_transform, train_transform
from agecurriculum.devices import resolve_device
from agecurriculum.evaluation.calibration import apply_temperature, expected_calibration_error, fit_temperature
from agecurriculum.evaluation.gate import GATE_RESAMPLES, GateModel, GateResult, aligned, gate_rows
from agecurriculum.evaluation.metrics import fit_representative_ages
from agecurriculum.evaluation.predict import Predictions, predict_dataset
from agecurriculum.evaluation.protocols import PROTOCOLS
from agecurriculum.evaluation.report import REP_AGES_NOTES, EvaluationReport, build_report, write_report
from agecurriculum.fileio import ensure_writable_folder
from agecurriculum.losses import MultiTaskLoss, create_loss
from agecurriculum.model.backbones import BackboneSpec, create_backbone
from agecurriculum.model.classifier import DualClassifier, ModelConfig
from agecurriculum.model.ensemble import EnsembleClassifier
from agecurriculum.model.resized_input import ResizedInput
from agecurriculum.release import RELEASE_CONFIG, Preprocessing, load_release, save_release, update_release_extra
from agecurriculum.schedule import PRESETS, TrainingSchedule, preset
from agecurriculum.train import distributed as ddp
from agecurriculum.train.checkpoint import CheckpointError, load_checkpoint
from agecurriculum.train.run_logs import (
    PlotCallback,
    default_loggers,
    save_resolved_config,
)
from agecurriculum.train.trainer import CurriculumTrainer, EpochRecord, draw_weights

__all__ = [
    "AgeLogitAdjustment",
    "PreparedData",
    "TrainResult",
    "add_mixed",
    "adjust_age_prior",
    "age_logit_offsets",
    "build_curriculum",
    "build_schedule",
    "compare_releases",
    "evaluate_release",
    "evaluate_run",
    "prepare_data",
    "train",
    "train_sizes",
]


@dataclass
class PreparedData:
    """The datasets of a run, ready for the trainer and the evaluation.

    Attributes:
        bins: the unified age bins.
        splits: dataset name -> its train/val/test records (only images with a cached face crop).
        train_sets: dataset name -> training dataset (balanced per ``data.balance``, training transform).
        val_sets: dataset name -> validation dataset (evaluation transform); datasets with an empty val split are
            left out.
        test_sets: dataset name -> test dataset (evaluation transform).
        failures: dataset name -> {reason: count} of images dropped by the face pipeline.
        preprocessing: what every image went through before the network (size, normalisation, framing): the
            one record of it, which the transforms were built from and a release of this data carries.
        train_ages: exact ages of all training images (the mean of those in the open last bin represents it).
    """

    bins: AgeBins
    splits: dict[str, Split]
    train_sets: dict[str, Dataset]
    val_sets: dict[str, FaceDataset]
    test_sets: dict[str, FaceDataset]
    preprocessing: Preprocessing
    failures: dict[str, dict[str, int]] = field(default_factory=dict)
    train_ages: list[int] = field(default_factory=list)


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        run_dir: the run folder.
        history: one record per epoch run by this call (empty when a finished run is resumed).
        release_dir: the saved release (the epoch with the best selection score; ``run_dir/release-last`` holds
            the last epoch's).
        report: the evaluation on the test splits (also written to ``run_dir/report``); None on ranks other
            than 0 of a distributed run.
        data: the prepared data (bins, splits, counts of images the face pipeline dropped).
    """

    run_dir: Path
    history: list[EpochRecord]
    release_dir: Path
    report: EvaluationReport | None
    data: PreparedData


def _backbone_spec(name: str) -> BackboneSpec:
    # The spec (input statistics) belongs to the registry entry; building the untrained network is the way to it.
    return create_backbone(name, pretrained=False).spec


def _subsample(records: list[FaceRecord], max_images: int | None, seed: int) -> list[FaceRecord]:
    # Sorted first so that the result does not depend on the order the file system lists images in.
    records = sorted(records, key=lambda r: str(r.path))
    if max_images is None or len(records) <= max_images:
        return records
    return random.Random(seed).sample(records, max_images)


def _fit_bins(splits: dict[str, Split]) -> AgeBins:
    # "auto" fits on the labels of the training splits only (never on test images), of the datasets whose labels
    # count for the histogram (DatasetSource.not_in_histogram: FairFace's decades straddle the constraint groups).
    counted = histogram_datasets()
    records = [r for name, split in splits.items() if name in counted for r in split.train]
    if not records:
        raise ValueError(
            f"bins: auto fits the bins on {list(counted)} training labels; none was "
            "prepared; set bins to paper or to explicit boundaries"
        )
    return fit_age_bins(age_distribution(records)).bins


def _resolve_bins(config: RunConfig, splits: dict[str, Split]) -> AgeBins:
    if config.bins == "auto":
        return _fit_bins(splits)
    if config.bins == "paper":
        return PAPER_BINS
    if isinstance(config.bins, list):
        return AgeBins(tuple(int(b) for b in config.bins))
    raise ValueError(f"bins: expected auto, paper or a list of boundaries, got {config.bins!r}")


def prepare_data(
    config: RunConfig, bins: AgeBins | None = None, splits_override: Mapping[str, Split] | None = None
) -> PreparedData:
    """Loads, subsamples, splits and crops the datasets of ``config.data``, and builds the torch datasets.

    Per dataset under ``config.data.root``: a seeded subsample of at most ``max_images`` images (seed
    ``data.split_seed``), the subject-disjoint split, and the crop cache filled in the dataset's framing
    (:attr:`~agecurriculum.data.sources.DatasetSource.framing`: UTKFace's and FairFace's crops as they are, face
    detection for the others); images that cannot be read or show no face are dropped and counted.

    Args:
        config: the run configuration.
        bins: use these bins instead of resolving ``config.bins`` (e.g. the bins a release was trained with).
        splits_override: dataset name -> the split to use for it instead of the subsample and the hash split,
            e.g. a benchmark's own lists (see :mod:`agecurriculum.train.adience_folds`). Its records are cropped
            and kept in each part's order, duplicates included; those the face pipeline drops are left out.

    Raises:
        ValueError: no data root, no dataset found, unknown balance mode, bad bins, or a ``splits_override``
            dataset that was not found.
    """
    data = config.data
    if data.root is None:
        raise ValueError("data.root: not set; give the folder holding the datasets (e.g. --set data.root=DIR)")
    check_config(config)
    loaded = discover(data.root, require_images=True, datasets=data.datasets)
    aligner = FaceAligner(AlignConfig(size=data.image_size, padding=data.padding))
    cache = CropCache(Path(data.cache).expanduser())
    splits: dict[str, Split] = {}
    failures: dict[str, dict[str, int]] = {}
    sources: dict[str, CachedCrops] = {}
    given = dict(splits_override or {})
    unknown = [name for name in given if name not in loaded]
    if unknown:
        raise ValueError(
            f"splits_override: dataset(s) {unknown} not found under {data.root} (found: {list(loaded)};"
            f" data.datasets: {data.datasets})"
        )
    for name, result in loaded.items():
        mode = DATASETS[name].framing
        if name in given:
            records = list(dict.fromkeys(r for part in PARTS for r in getattr(given[name], part)))
        else:
            records = _subsample(result.records, data.max_images, data.split_seed)
        done = preprocess(records, aligner, cache, mode=mode, workers=data.preprocess_workers, progress=False)
        failures[name] = done.failure_counts
        if name in given:
            cropped = set(done.succeeded)
            splits[name] = Split(*([r for r in getattr(given[name], part) if r in cropped] for part in PARTS))
        else:
            splits[name] = split_records(done.succeeded, data.split, seed=data.split_seed)
        sources[name] = CachedCrops(cache, aligner, mode)
    bins = bins or _resolve_bins(config, splits)
    spec = _backbone_spec(config.model.backbone)
    pre = Preprocessing(data.image_size, spec.mean, spec.std, data.padding, alignment_record())
    train_tf = train_transform(pre.image_size, pre.mean, pre.std)
    eval_tf = eval_transform(pre.image_size, pre.mean, pre.std)
    train_sets, val_sets, test_sets = {}, {}, {}
    for name, split in splits.items():
        train = FaceDataset(split.train, bins, sources[name], train_tf, straddle=data.straddle)
        if data.balance in ("paper", "ratio") and len(train):
            plan = balance_plan(train.age_bins, seed=config.trainer.seed, num_bins=len(bins), rule=data.balance)
            train = BalancedDataset(train, plan, seed=config.trainer.seed)
        train_sets[name] = train
        if split.val:
            val_sets[name] = FaceDataset(split.val, bins, sources[name], eval_tf, straddle=data.straddle)
        test_sets[name] = FaceDataset(split.test, bins, sources[name], eval_tf, straddle=data.straddle)
    train_ages = [r.exact_age for s in splits.values() for r in s.train if r.exact_age is not None]
    return PreparedData(bins, splits, train_sets, val_sets, test_sets, pre, failures, train_ages)


def add_mixed(prepared: PreparedData, order: Sequence[str] | None = None) -> None:
    """Adds the dataset :data:`~agecurriculum.data.datasets.MIXED` (``"mixed"``) to ``prepared``: every training set
    as one :class:`~agecurriculum.data.datasets.MixedDataset`, and every validation set likewise, so that a schedule
    stage naming it trains on all datasets shuffled together. The test parts stay per dataset.

    Args:
        prepared: from :func:`prepare_data`.
        order: the datasets in the order they are concatenated (the data order of a seeded run depends on it);
            default the order they were prepared in. Names not prepared are skipped.
    """
    names = [n for n in (order or prepared.splits) if n in prepared.splits]
    prepared.train_sets[MIXED] = MixedDataset([prepared.train_sets[n] for n in names if n in prepared.train_sets])
    prepared.val_sets[MIXED] = MixedDataset([prepared.val_sets[n] for n in names if n in prepared.val_sets])


def build_schedule(config: RunConfig, num_bins: int) -> TrainingSchedule:
    """The static curriculum of ``config``: its preset (``epochs_per_stage`` epochs per stage), its ``.json`` file
    or its list of stages.

    A file is replayed as written: a rule of Eq. 7 it breaks (a learned schedule's revisit, say) warns
    (:class:`~agecurriculum.schedule.ScheduleWarning`) as the presets' do; the list form is strict.

    Raises:
        ValueError: ``schedule`` names no preset or file (or is ``adaptive``: see :func:`build_curriculum`), the
            file cannot be read, or list stages that break Eq. 7; the message starts with ``schedule:``.
    """
    schedule = config.schedule
    if isinstance(schedule, str) and schedule in PRESETS:
        return preset(schedule, epochs=config.epochs_per_stage)
    if isinstance(schedule, str) and schedule.endswith(".json"):
        try:
            return TrainingSchedule.load(schedule, num_bins=num_bins, strict=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"schedule: {err}") from None
    if isinstance(schedule, str):
        raise ValueError(
            f"schedule: expected a preset ({', '.join(PRESETS)}), adaptive, a .json file or a list of "
            f"stages, got {schedule!r}" + ("; adaptive is built by build_curriculum" if schedule == "adaptive" else "")
        )
    return TrainingSchedule.from_dicts(schedule, num_bins=num_bins)


def train_sizes(train_sets: Mapping[str, Dataset]) -> dict[str, dict[int, int]]:
    """Dataset -> age bin -> training images (images of unknown age left out), for the adaptive policy's budget."""
    return {
        name: {b: n for b, n in sorted(Counter(age_bins_of(ds)).items()) if b >= 0} for name, ds in train_sets.items()
    }


def build_curriculum(
    config: RunConfig,
    num_bins: int,
    datasets: list[str] | None = None,
    sizes: Mapping[str, Mapping[int, int]] | None = None,
) -> TrainingSchedule | AdaptiveCurriculum:
    """:func:`build_schedule`, or for ``schedule: adaptive`` a fresh
    :class:`~agecurriculum.adaptive.AdaptiveCurriculum` over ``datasets`` with ``config.adaptive``'s settings and
    ``trainer.image_budget`` as its budget.

    Args:
        config: the run configuration.
        num_bins: number of age bins.
        datasets: the datasets an adaptive curriculum may use, in order; default ``config.data.datasets``.
        sizes: training images per dataset and bin (:func:`train_sizes`), which the policy's budget rule reads.

    Raises:
        ValueError: as :func:`build_schedule`; a bad adaptive setting, named as ``adaptive.FIELD``.
    """
    if config.schedule != "adaptive":
        return build_schedule(config, num_bins)
    try:
        return AdaptiveCurriculum(
            datasets or config.data.datasets,
            num_bins,
            config.adaptive,
            budget=config.trainer.image_budget,
            train_sizes=sizes,
        )
    except ValueError as err:
        raise ValueError(f"adaptive.{err}") from None


def _evaluate(
    model: DualClassifier,
    prepared: PreparedData,
    rep_ages: list[float],
    batch_size: int,
    device: str,
    rep_ages_method: str = "train_mean",
    part: str = "test",
    flip: bool = False,
    temperature: Mapping[str, float] | None = None,
) -> EvaluationReport:
    sets = prepared.test_sets if part == "test" else prepared.val_sets
    predictions = {
        name: predict_dataset(model, ds, batch_size=batch_size, device=device, flip=flip)
        for name, ds in sets.items()
        if len(ds) and name in prepared.splits
    }
    # The comparison protocols each dataset asks for (DatasetSource.protocols), on this run's split, read from the
    # probabilities predict would give (the release's temperatures; build_report scales its own copy).
    protocols = {}
    for name, pred in predictions.items():
        source = DATASETS[name]
        scaled = pred.scaled(temperature or {})
        for key in source.protocols:
            protocol = PROTOCOLS[key]
            title = protocol.title.format(dataset=source.title or name, part=part)
            protocols[title] = protocol.score(scaled, prepared.bins, sets[name].records)
    return build_report(predictions, prepared.bins, rep_ages, protocols, rep_ages_method, temperature)


def evaluate_release(
    release_dir: str | Path, prepared: PreparedData, config: RunConfig, part: str = "test"
) -> EvaluationReport:
    """Evaluates a release on the ``part`` splits of data already prepared (as :func:`evaluate_run` does, without
    preparing the data again): e.g. the validation numbers of the runs of an ablation, which share their data.

    Raises:
        ValueError: ``part`` is not one of :data:`~agecurriculum.config.EVALUATION_PARTS`.
    """
    if part not in EVALUATION_PARTS:
        raise ValueError(f"part: expected one of {', '.join(EVALUATION_PARTS)}, got {part!r}")
    model, info = load_release(release_dir)
    return _evaluate(
        model,
        prepared,
        list(info.rep_ages),
        config.trainer.batch_size,
        config.trainer.device,
        info.rep_ages_method,
        part,
        temperature=info.temperature,
    )


def _prepare_on_rank0_first(config: RunConfig) -> PreparedData:
    # Rank 0 detects and caches the faces while the other ranks wait; they then read the same crops from the cache
    # (keyed by content), so every rank holds identical data without doing the work again.
    if not ddp.is_main_process():
        ddp.barrier()
    prepared = prepare_data(config)
    if ddp.is_main_process():
        ddp.barrier()
    return prepared


def train(config: RunConfig, resume: bool = False, prepared: PreparedData | None = None) -> TrainResult:
    """Trains a DualClassifier over the configured curriculum, then saves a release and the test report.

    Launched by ``torchrun`` (``torchrun --nproc_per_node N -m agecurriculum train ...``), every process joins the
    run (:func:`~agecurriculum.train.distributed.init_distributed`) and trains its share of each epoch; only rank 0
    writes files and evaluates.

    Args:
        config: the run configuration; everything goes to ``config.out_dir``.
        resume: go on from ``out_dir/checkpoint.pt`` when it exists (a finished run trains no more epochs and
            only rewrites the release and the report).
        prepared: the output of :func:`prepare_data` for a config with the same ``data``, ``bins``,
            ``model.backbone`` and ``trainer.seed`` (e.g. shared by the runs of an ablation, which differ only in
            loss or schedule); None prepares the data from ``config``.

    Returns:
        What was trained and written; ``report`` is None on ranks other than 0.

    Raises:
        ValueError: bad configuration, or a schedule naming datasets that were not prepared.
        OSError: ``out_dir`` or the crop cache cannot be written (checked before any data is prepared for
            ``out_dir``); what was written before, e.g. the last checkpoint, is kept.
    """
    out = Path(config.out_dir)
    # A bad setting, or a device this machine does not have, fails first, before any data is prepared.
    check_config(config)
    resolve_device(config.trainer.device)
    loss_fn = build_loss(config)
    if config.rep_ages not in REP_AGES_NOTES:
        raise ValueError(f"rep_ages: {config.rep_ages!r} is not one of {', '.join(REP_AGES_NOTES)}")
    ddp.init_distributed()
    main = ddp.is_main_process()
    if main:  # an out_dir that cannot be written fails now, not after the data is prepared and the model trained
        ensure_writable_folder(out)
    prepared = prepared if prepared is not None else _prepare_on_rank0_first(config)
    # An adaptive curriculum may use every configured dataset that has training images.
    found = [name for name in config.data.datasets if len(prepared.train_sets.get(name, ()))]
    schedule = build_curriculum(config, len(prepared.bins), found, train_sizes(prepared.train_sets))
    if MIXED in schedule.datasets and MIXED not in prepared.train_sets:
        add_mixed(prepared)
    missing = [name for name in schedule.datasets if name not in prepared.train_sets]
    if missing:
        raise ValueError(
            f"schedule: uses dataset(s) {missing}, but only {list(prepared.train_sets)} were found "
            f"under {config.data.root} (data.datasets: {config.data.datasets})"
        )
    empty = [name for name in schedule.datasets if not len(prepared.train_sets[name])]
    if empty:
        raise ValueError(f"schedule: dataset(s) {empty} have no training images left after preprocessing")
    # Computed before training: a setting it cannot undo (shuffle draws, an adaptive schedule) fails now, not after.
    adjustment = age_logit_offsets(config, prepared, schedule) if config.logit_adjust else None
    # The head's initial weights and dropout draw from torch's global generator; seed it so a run repeats.
    torch.manual_seed(config.trainer.seed)
    model = DualClassifier.from_model_config(config.model, len(prepared.bins))
    if config.model.init_from:  # a resumed run's checkpoint replaces these weights again in trainer.fit
        _load_initial_weights(model, Path(config.model.init_from), prepared.bins)
    freeze_model(model, config.model)
    preprocessing = prepared.preprocessing  # the one the data went through: the release records it
    teacher = _load_teacher(Path(config.teacher), prepared.bins, preprocessing) if config.teacher else None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        save_resolved_config(
            {"run": config, "bins": prepared.bins.to_dict(), "schedule": schedule},
            out / "resolved_config.json",
            seed=config.trainer.seed,
        )
    history: list[EpochRecord] = []  # the epochs this call runs (the trainer's history also holds resumed ones)
    trainer_config = _trainer_config(config)
    trainer = CurriculumTrainer(
        model,
        schedule,
        prepared.train_sets,
        prepared.val_sets,
        loss=loss_fn,
        config=trainer_config,
        callbacks=[*default_loggers(out), PlotCallback(out), history.append],
        run_dir=out,
        teacher=teacher,
    )
    trainer.fit(resume=resume)
    release, report = out / "release", None
    if adjustment is not None:  # both releases shift from their own weights: keep the last epoch's to reload
        last_state = {k: v.clone() for k, v in model.state_dict().items()}
    if main:
        # release-last/ holds the last epoch's weights; release/ (what the report evaluates) the best epoch's by the
        # selection score (CurriculumTrainer: the validation loss over every validation set and bin), from best.pt.
        for name, weights in (("release-last", "last"), ("release", "best")):
            if weights == "best" and trainer.best_epoch is not None and (out / "best.pt").is_file():
                model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
            else:
                weights = "last"
                if adjustment is not None:
                    model.load_state_dict(last_state)
            if adjustment is not None:
                model.shift_age_logits(adjustment.offsets)
            epoch = trainer.best_epoch if weights == "best" else trainer.global_epoch - 1
            rep_ages = _rep_ages(config, model, prepared, str(trainer.device))
            calibration = _calibration(config, model, prepared, str(trainer.device)) if config.calibrate else {}
            release = save_release(
                model,
                out / name,
                prepared.bins,
                preprocessing,
                extra={
                    "rep_ages": rep_ages,
                    "rep_ages_method": config.rep_ages,
                    "datasets": list(prepared.splits),
                    "weights": {"epoch": epoch, "chosen": weights},
                    **({} if adjustment is None else {AGE_LOGIT_OFFSETS: adjustment.to_dict()}),
                    **calibration,
                },
            )
        # The report reads release/ as predict would: with its temperatures (those of the last release written).
        report = _evaluate(
            model,
            prepared,
            rep_ages,
            config.trainer.batch_size,
            str(trainer.device),
            config.rep_ages,
            temperature=calibration.get("temperature"),
        )
        write_report(report, out / "report")
    ddp.barrier()  # no rank leaves (and tears the process group down) while rank 0 still writes
    return TrainResult(out, history, release, report, prepared)


def _trainer_config(config: RunConfig) -> TrainerConfig:
    # balance: sampler leaves the datasets as they are and has the trainer draw every age bin equally often.
    return replace(config.trainer, sampling="balanced") if config.data.balance == "sampler" else config.trainer


AGE_LOGIT_OFFSETS = "age_logit_offsets"  # the release's extra entry that records a logit adjustment


@dataclass(frozen=True)
class AgeLogitAdjustment:
    """The offsets a release's age logits got so that it answers with the data's age proportions (``logit_adjust``).

    Attributes:
        offsets: ``(K,)`` what was added to each bin's logit: ``-strength * log(q_b / p_b)``, ``q_b`` the share of
            bin ``b`` in the trainer's draws, ``p_b`` its share of the data
            (:func:`~agecurriculum.data.balance.age_prior_shift`).
        strength: the ``logit_adjust`` setting it was made with.
        dataset: the training set whose draws they correct (the schedule's last).
        sampling: ``trainer.sampling``, with ``sampling_power`` and ``child_weight`` for ``age_gender``.
    """

    offsets: tuple[float, ...]
    strength: float
    dataset: str
    sampling: str

    def to_dict(self) -> dict[str, Any]:
        """The release's ``extra.age_logit_offsets``."""
        return {**asdict(self), "offsets": list(self.offsets)}


def age_logit_offsets(
    config: RunConfig, prepared: PreparedData, schedule: Any, strength: float | None = None
) -> AgeLogitAdjustment:
    """The age-logit offsets that undo what ``config``'s sampler did to the age prior (``logit_adjust``).

    The trainer drew the faces of the schedule's last training set by ``trainer.sampling`` (half-way to equal
    (age group, gender) cells, say): the age head learned the drawn bin proportions ``q_b`` as its prior. Adding
    ``-strength * log(q_b / p_b)`` to its logits answers with the data's proportions ``p_b`` (Menon et al. 2021).
    Only the sampler's draws are undone, not ``data.balance``'s cuts and copies.

    Args:
        config: the run configuration (``trainer`` and ``data.balance`` say how faces were drawn).
        prepared: its data (``"mixed"`` is added when the schedule names it).
        schedule: the run's schedule: a :class:`~agecurriculum.schedule.TrainingSchedule`.
        strength: default ``config.logit_adjust``.

    Raises:
        ValueError: an adaptive schedule (its last set is known only after training), ``shuffle`` sampling (nothing
            to undo), or a set without known ages.
    """
    if not isinstance(schedule, TrainingSchedule):
        raise ValueError("logit_adjust: needs a static schedule (a preset, a file or a list of stages), not adaptive")
    name = schedule[-1].datasets[-1]
    if name == MIXED and MIXED not in prepared.train_sets:
        add_mixed(prepared)
    dataset, trainer_config = prepared.train_sets[name], _trainer_config(config)
    weights = draw_weights(dataset, trainer_config)
    if weights is None:
        raise ValueError(
            "logit_adjust: trainer.sampling is shuffle, which draws the faces in the data's own proportions: "
            "there is no sampler's prior to undo"
        )
    shift = age_prior_shift(age_bins_of(dataset), weights, len(prepared.bins))
    strength = config.logit_adjust if strength is None else strength
    sampling = trainer_config.sampling
    if sampling == "age_gender":
        sampling += f" (power {trainer_config.sampling_power:g}, children x{trainer_config.child_weight:g})"
    return AgeLogitAdjustment(tuple(float(-strength * v) for v in shift), float(strength), name, sampling)


def _rep_ages(config: RunConfig, model: DualClassifier, prepared: PreparedData, device: str) -> list[float]:
    if config.rep_ages == "train_mean":
        return [float(a) for a in representative_ages(prepared.bins, prepared.train_ages)]
    # fit_val: the validation parts of the run's datasets (not views of them such as a mixture, which would count
    # faces twice); those without exact ages (Adience, FairFace) drop out in the fit.
    parts = [
        predict_dataset(model, prepared.val_sets[name], batch_size=config.trainer.batch_size, device=device)
        for name in prepared.splits
        if name in prepared.val_sets and len(prepared.val_sets[name])
    ]
    if not any((~np.isnan(p.exact_ages)).any() for p in parts):
        raise ValueError(
            "rep_ages: fit_val needs exact ages in a validation part (UTKFace, MORPH-II, ...); none "
            "has them: use rep_ages: train_mean"
        )
    fitted = fit_representative_ages(
        np.concatenate([p.age_probs for p in parts]), np.concatenate([p.exact_ages for p in parts]), prepared.bins
    )
    return [float(a) for a in fitted]


def _calibration(config: RunConfig, model: DualClassifier, prepared: PreparedData, device: str) -> dict[str, Any]:
    """A release's ``temperature`` (each head's, fitted on the validation parts with flip averaging, as predict
    runs) and ``calibration``: the validation gender and age ECE before and after, and how many faces each saw."""
    parts = [
        predict_dataset(model, prepared.val_sets[name], batch_size=config.trainer.batch_size, device=device, flip=True)
        for name in prepared.splits
        if name in prepared.val_sets and len(prepared.val_sets[name])
    ]
    if not parts:
        raise ValueError(
            "calibrate: the temperatures are fitted on the validation parts, and this run has none "
            "(data.split gives them no images)"
        )
    probs = {
        "gender": np.concatenate([p.gender_probs for p in parts]),
        "age": np.concatenate([p.age_probs for p in parts]),
    }
    targets = {
        "gender": np.concatenate([p.gender_targets for p in parts]),
        "age": np.concatenate([p.age_targets for p in parts]),
    }
    temperature, report = {}, {}
    for head in ("gender", "age"):
        temperature[head] = fit_temperature(probs[head], targets[head])
        scaled = apply_temperature(probs[head], temperature[head])
        report[head] = {
            "ece_before": expected_calibration_error(probs[head], targets[head]),
            "ece_after": expected_calibration_error(scaled, targets[head]),
            "n": int((targets[head] != IGNORE).sum()),
            "flip": True,
            "part": "val",
        }
    return {"temperature": temperature, "calibration": report}


def build_loss(config: RunConfig) -> MultiTaskLoss:
    """The run's loss (``loss``, with ``age_label_sigma`` and the distillation settings), as :func:`train` and the
    plan of ``train --dry-run`` build it.

    Raises:
        ValueError: an unknown loss name or a bad setting of it.
    """
    return create_loss(
        config.loss,
        age_label_sigma=config.age_label_sigma,
        distill_weight=config.distill_weight,
        distill_tasks=config.distill_tasks,
    )


def freeze_model(model: DualClassifier, cfg: ModelConfig) -> None:
    """Applies a run's ``model.freeze_blocks`` and ``model.train_only_gender`` to ``model``.

    What is frozen stays frozen for the whole run: the optimizer skips weights without gradients, and a resumed
    run freezes them again from its config.

    Raises:
        ValueError: more blocks than the backbone has, naming ``model.freeze_blocks`` (a count that is not a whole
            number is :func:`~agecurriculum.config.check_config`'s to refuse); ``model.train_only_gender`` without
            ``model.gender_branch``.
    """
    if cfg.freeze_blocks is not None:
        try:
            model.freeze_backbone(cfg.freeze_blocks)
        except ValueError as err:
            raise ValueError(f"model.freeze_blocks: {err}") from None
    if cfg.train_only_gender:
        if model.gender_branch is None:
            raise ValueError("model.train_only_gender: needs a gender branch to train (set model.gender_branch)")
        model.freeze_age_path()


def _load_initial_weights(model: DualClassifier, path: Path, bins: AgeBins) -> None:
    # Fine-tuning starts from trained weights; a release also says which bins its age head predicts.
    if path.is_dir():
        trained, info = load_release(path)
        if isinstance(trained, EnsembleClassifier):
            raise ValueError(
                f"model.init_from: {path} is an ensemble release; start from one of the releases it was made of"
            )
        info.check_compatible(
            bins,
            source=f"model.init_from: {path}",
            against="this run uses",
            hint=f"; set bins to the release's boundaries {list(info.bins.boundaries)}",
        )
        state = trained.state_dict()
    else:
        state = load_checkpoint(path)["model"]
    try:
        model.load_state_dict_growing(state)  # a parent without the run's gender branch grows one
    except RuntimeError as err:
        raise CheckpointError(
            f"model.init_from: {path}: its weights do not fit the model of this configuration "
            f"(model: {model.config}): {err}"
        ) from None


def _load_teacher(path: Path, bins: AgeBins, preprocessing: Preprocessing) -> torch.nn.Module:
    # The teacher sees the student's batches: it must read them as it was trained to and answer in the same bins.
    try:
        teacher, info = load_release(path)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"teacher: {e}") from e
    # The image size may differ: crops of one face at two sizes show the same region, so the teacher gets the
    # student's batches resized to its own size. Padding, alignment and normalisation cannot be undone that way.
    info.check_compatible(
        bins,
        preprocessing,
        source=f"teacher: {path}",
        against="this run (data.padding, the backbone's mean/std, alignment)",
        any_image_size=True,
        hint=f"; set bins to the teacher's boundaries {list(info.bins.boundaries)}",
    )
    if info.image_size != preprocessing.image_size:
        teacher = ResizedInput(teacher, info.image_size).eval()
    return teacher


def _model_from_checkpoint(path: Path, config: RunConfig, num_bins: int) -> DualClassifier:
    # A training checkpoint holds weights only; the architecture comes from the run's configuration.
    state = load_checkpoint(path)
    model = DualClassifier.from_model_config(config.model, num_bins, pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: its weights do not fit the model of this configuration (model: {config.model}): {err}"
        ) from None
    return model


def _run_bins(run_dir: Path) -> AgeBins:
    resolved = run_dir / "resolved_config.json"
    try:
        return AgeBins.from_dict(json.loads(resolved.read_text(encoding="utf-8"))["config"]["bins"])
    except (OSError, ValueError, KeyError) as err:
        raise FileNotFoundError(
            f"{resolved}: cannot read the run's age bins ({err}); evaluating a checkpoint "
            "needs the run folder that train() wrote"
        ) from None


def evaluate_run(
    run_dir_or_release: str | Path,
    config: RunConfig,
    out_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    part: str = "test",
    flip: bool = False,
) -> EvaluationReport:
    """Reloads a run's weights and evaluates them on the test splits of ``config``'s data, as :func:`train` did.

    By default the release is read: it holds the weights of the epoch with the best selection score, the bins, the
    representative ages and the calibration temperatures (the report scales the probabilities by them, as
    ``predict`` does), so the same data gives the same report (``RUN/release-last`` holds the last epoch's).
    With ``checkpoint`` (e.g. ``RUN/best.pt``, the release's weights, or ``RUN/checkpoint.pt``, the last epoch's)
    those weights are evaluated instead, with the bins of the run's ``resolved_config.json`` and the representative
    ages of the training split; ``best.pt`` of a finished run gives the release's report (with ``rep_ages:
    train_mean``).

    Args:
        run_dir_or_release: a run folder (its ``release/`` is used) or a release folder.
        config: the run configuration (usually the run's ``run_config.yaml``, with overrides).
        out_dir: where to write the report; None writes nothing.
        checkpoint: a training checkpoint of this run to evaluate instead of the release.
        part: ``"test"``, or ``"val"`` to compare models on the validation parts without reading test.
        flip: average every face's probabilities with its mirror image's
            (:func:`~agecurriculum.evaluation.flip.flip_averaged`).

    Raises:
        ValueError: ``part`` is not one of :data:`~agecurriculum.config.EVALUATION_PARTS`.
        FileNotFoundError: no release there (or, with ``checkpoint``, no checkpoint or resolved config).
        CheckpointError: the checkpoint is corrupt or does not fit the configured model.
    """
    if part not in EVALUATION_PARTS:
        raise ValueError(f"part: expected one of {', '.join(EVALUATION_PARTS)}, got {part!r}")
    path = Path(run_dir_or_release)
    if checkpoint is not None:
        bins = _run_bins(path)
        model = _model_from_checkpoint(Path(checkpoint), config, len(bins))
        prepared = prepare_data(config, bins=bins)
        rep_ages, method = [float(a) for a in representative_ages(bins, prepared.train_ages)], "train_mean"
        temperature = None  # a checkpoint has no fitted temperatures
    else:
        release = path / "release" if (path / "release" / RELEASE_CONFIG).is_file() else path
        if not (release / RELEASE_CONFIG).is_file():
            raise FileNotFoundError(f"{path}: no release (config.json and model.safetensors) in it or in its release/")
        model, info = load_release(release)
        prepared = prepare_data(config, bins=info.bins)
        rep_ages, method, temperature = list(info.rep_ages), info.rep_ages_method, info.temperature
    report = _evaluate(
        model, prepared, rep_ages, config.trainer.batch_size, config.trainer.device, method, part, flip, temperature
    )
    if out_dir is not None:
        write_report(report, out_dir)
    return report


def compare_releases(
    candidate: str | Path,
    baseline: str | Path,
    config: RunConfig,
    part: str = "test",
    flip: bool = True,
    resamples: int = GATE_RESAMPLES,
    seed: int = 0,
) -> GateResult:
    """The release gate: scores ``candidate`` and ``baseline`` on the same ``part`` faces of ``config``'s data and
    compares them metric by metric (:func:`~agecurriculum.evaluation.gate.gate_rows`).

    Each release reads the faces as it was trained to (its image size and padding; the data is prepared once per
    framing), with its own representative ages and gender temperature; only faces both of them got are compared.

    Args:
        candidate: the release that would replace the shipped one.
        baseline: the shipped release (e.g. :data:`~agecurriculum.inference.DEFAULT_RELEASE_DIR`).
        config: says where the data is and how it is split: the split must be the one the baseline was trained
            with, so that no face either model trained on is scored.
        part: ``"test"``, or ``"val"`` (to choose between candidates without reading test).
        flip: average each face's probabilities with its mirror image's, as ``predict`` does by default.
        resamples: bootstrap resamples behind each margin.
        seed: seed of the resampling.

    Raises:
        ValueError: ``part`` is not one of :data:`~agecurriculum.config.EVALUATION_PARTS`; the releases predict
            different bins or read faces in a way this data preparation cannot (normalisation, alignment).
        FileNotFoundError: a release folder is missing a file.
    """
    if part not in EVALUATION_PARTS:
        raise ValueError(f"part: expected one of {', '.join(EVALUATION_PARTS)}, got {part!r}")
    prepared_by_framing: dict[tuple[int, float], PreparedData] = {}
    infos, keyed = [], []
    for path in (Path(baseline), Path(candidate)):
        model, info = load_release(path)
        pre = info.preprocessing
        if infos:  # the gate compares models of the same bins (their image sizes may differ: each reads its own)
            info.check_compatible(infos[0].bins, source=str(path), against=str(baseline))
        framing = (pre.image_size, pre.padding)
        if framing not in prepared_by_framing:
            data = replace(config.data, image_size=pre.image_size, padding=pre.padding)
            prepared_by_framing[framing] = prepare_data(replace(config, data=data), bins=info.bins)
        prepared = prepared_by_framing[framing]
        # What this preparation gives (the backbone's normalisation, the alignment) must be what the release reads.
        ours = prepared.preprocessing
        info.check_compatible(
            prepared.bins,
            replace(ours, image_size=pre.image_size, padding=pre.padding),
            source=str(path),
            against="the gate's data (model.backbone sets mean/std)",
        )
        sets = prepared.test_sets if part == "test" else prepared.val_sets
        names = [n for n in prepared.splits if n in sets and len(sets[n])]
        preds = [
            predict_dataset(
                model, sets[n], batch_size=config.trainer.batch_size, device=config.trainer.device, flip=flip
            )
            for n in names
        ]
        keys = [str(r.path) for n in names for r in sets[n].records]
        pred = Predictions(*(np.concatenate([getattr(p, f.name) for p in preds]) for f in fields(Predictions)))
        infos.append(info)
        keyed.append((keys, pred))
    preds = aligned(keyed)
    base, cand = (
        GateModel(pred, info.rep_ages, info.temperature.get("gender", 1.0), info.temperature.get("age", 1.0))
        for pred, info in zip(preds, infos, strict=True)
    )
    return gate_rows(base, cand, resamples=resamples, seed=seed)


def refit_release(
    release_dir: str | Path,
    config: RunConfig,
    rep_ages: bool = True,
    calibrate: bool = True,
    prepared: PreparedData | None = None,
) -> Path:
    """Fits a release's representative bin ages (``rep_ages: fit_val``) and calibration temperatures again, on the
    validation parts of ``config``'s data, and stores them in the release (``extra``).

    For a release whose weights no run fitted them for, e.g. one made by
    :func:`~agecurriculum.inference.interpolate_releases`. The data is prepared at the release's image size and
    padding; ``config``'s split must be the one it was trained with (its validation parts unseen in training).

    Args:
        release_dir: the release, rewritten in place.
        config: the data and its split.
        rep_ages: fit the representative bin ages.
        calibrate: fit the temperatures.
        prepared: ``config``'s data prepared already at the release's image size and padding; None prepares it.

    Returns:
        The path of the rewritten ``config.json``.

    Raises:
        ValueError: the data has no validation part with exact ages (for ``rep_ages``) or none at all.
        FileNotFoundError: the release is missing.
    """
    model, info = load_release(release_dir)
    pre = info.preprocessing
    data = replace(config.data, image_size=pre.image_size, padding=pre.padding)
    refit = replace(config, data=data, rep_ages="fit_val")
    prepared = prepared if prepared is not None else prepare_data(refit, bins=info.bins)
    info.check_compatible(prepared.bins, prepared.preprocessing, source=str(release_dir), against="the data")
    entries: dict[str, Any] = {}
    if rep_ages:
        entries["rep_ages"] = _rep_ages(refit, model, prepared, config.trainer.device)
        entries["rep_ages_method"] = "fit_val"
    if calibrate:
        entries.update(_calibration(refit, model, prepared, config.trainer.device))
    return update_release_extra(release_dir, entries)


def adjust_age_prior(
    release_dir: str | Path, config: RunConfig, out_dir: str | Path, strength: float = 1.0
) -> AgeLogitAdjustment:
    """Writes ``release_dir`` again to ``out_dir`` with its age logits adjusted to the data's age proportions
    (:func:`age_logit_offsets`, as ``logit_adjust`` does at the end of a run), its representative bin ages and
    calibration temperatures refitted on the validation parts (:func:`refit_release`).

    For a release trained without ``logit_adjust``: ``config`` must be the configuration of the run that made it
    (its sampler is what is undone; its split keeps the validation parts unseen).

    Args:
        release_dir: the release.
        config: the configuration it was trained with (e.g. ``examples/configs/release.yaml``).
        out_dir: the new release folder (not ``release_dir``).
        strength: the share of the shift undone (``logit_adjust``); 1: all of it.

    Returns:
        The offsets the new release's age logits got (its ``extra.age_logit_offsets``).

    Raises:
        ValueError: the release was adjusted already, ``strength`` is not positive, ``out_dir`` is the release, or
            as :func:`age_logit_offsets` and :func:`refit_release`.
        FileNotFoundError: the release is missing.
    """
    if not strength > 0:
        raise ValueError(f"strength must be > 0, got {strength}")
    if Path(out_dir).resolve() == Path(release_dir).resolve():
        raise ValueError(f"{out_dir}: write the adjusted release to a folder of its own, not over the release")
    model, info = load_release(release_dir)
    extra = dict(info.config.get("extra") or {})
    if AGE_LOGIT_OFFSETS in extra:
        raise ValueError(f"{release_dir}: its age logits are adjusted already (extra.{AGE_LOGIT_OFFSETS})")
    pre = info.preprocessing
    prepared = prepare_data(
        replace(config, data=replace(config.data, image_size=pre.image_size, padding=pre.padding)), bins=info.bins
    )
    adjustment = age_logit_offsets(config, prepared, build_schedule(config, len(info.bins)), strength)
    model.shift_age_logits(adjustment.offsets)
    save_release(model, out_dir, info.bins, pre, extra={**extra, AGE_LOGIT_OFFSETS: adjustment.to_dict()})
    refit_release(out_dir, config, prepared=prepared)
    return adjustment
