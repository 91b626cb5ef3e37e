"""CurriculumTrainer: the paper's Algorithm 1 with Algorithm 2's multi-task loss.

Algorithm 1, as run by :meth:`CurriculumTrainer.fit`::

    for stage in schedule:                      # MultiDatasetSample: (datasets, bins, epochs)
        for name in stage.datasets:             # in the stage's order
            for epoch in range(stage.epochs):
                train_one_epoch(FilteredDataset(train_sets[name], stage.bins))
                validate                        # drives the LR plateau, early stopping and the best checkpoint

What each epoch validates (validation losses are the loss function's total on the labels, or with
``TrainerConfig.monitor_loss`` ``"cross_entropy"`` the two tasks' cross-entropies added without the loss's weights,
which an uncertainty loss lowers while it learns them, whatever the network does):

- the pair's view, ``FilteredDataset(val_sets[name], stage.bins)``: the record's ``val``;
- the **selection score** (:attr:`EpochRecord.selection_loss`): the loss over every validation set of the
  schedule's datasets with every bin, the same images at every epoch, so it compares across stages. ``best.pt`` holds
  the epoch where it was lowest, and :func:`~agecurriculum.train.train` releases that epoch;
- for ``plateau_scope`` / ``early_stopping_scope`` ``"stage"``: the loss over the stage's datasets on its bins.

The LR plateau and early stopping each watch the loss of their scope (``TrainerConfig.plateau_scope``,
``early_stopping_scope``): ``"run"`` the selection score, never reset, so they act over the whole training (early
stopping then ends the run); ``"stage"`` the stage's loss, reset when a stage begins (early stopping ends the stage,
and the next one starts); ``"pair"`` the pair's loss, reset at every (stage, dataset) (early stopping ends that
dataset's epochs). With ``"pair"`` and no more epochs per pair than the patience, neither can act. Both default to
``"stage"``: over the run, a stage that restarts at fewer bins than the one before makes the loss over every bin rise,
which early stopping reads as the end of the curriculum and the plateau as a stall (it cuts the learning rate of
every later stage).

Images of unknown age (no age label, or a range that straddles bins) train gender in the stages that cover every
bin, and are left out of the others.

The trainer walks these loops one epoch at a time from a :class:`SchedulePosition`, so a run can stop after any
epoch and go on later from exactly there.

The trainer runs any :class:`Curriculum`: a static :class:`~agecurriculum.schedule.TrainingSchedule` (which it wraps
in :class:`StaticCurriculum`) or an :class:`~agecurriculum.adaptive.AdaptiveCurriculum` (``schedule: adaptive``),
through the same hooks, which do nothing for a static schedule. The trainer shows an adaptive curriculum the loss of
every (dataset, bin) cell of the validation sets after every epoch (the mean of both tasks' plain cross-entropies
over the cell's images, taken from the pass that computes the selection score, so it costs nothing more; the learned
task weights are left out so that a cell's loss keeps its scale as they move), asks it for the next stage whenever a
stage ends (and for the first one, after one validation pass of the untrained model), and keeps its state in the
checkpoint. ``run_dir/learned_schedule.json`` holds the stages decided so far (replayable as a static schedule) and
``run_dir/adaptive.json`` every decision with its reason.

``TrainerConfig.image_budget`` ends the run once that many training images were seen: the epoch that reaches it
stops at the first batch that does, so a run sees at most a batch more than the budget. ``TrainerConfig.time_budget``
does the same with the minutes its training steps took (validation passes not counted, epochs before a resume
counted): a recipe sized in images for one CPU still ends in time on a slower one, at the cost of the images it sees
depending on the machine. Whichever budget is spent first ends the run.

Hooks, for a user's own loop or additions to this one:

- :meth:`CurriculumTrainer.train_one_epoch` trains one epoch on any dataset of ``(image, age_bin, gender)`` items;
  :meth:`CurriculumTrainer.evaluate` measures one (in a distributed run every rank must call it).
- ``callbacks`` receive an :class:`EpochRecord` after every epoch (logging, plots, extra checkpoints). They run on
  rank 0 only, after that epoch's checkpoint is on disk (so a callback may even end the process without losing the
  epoch), and the trainer puts the random generators back afterwards, so callbacks never change what it trains.
  A callback with an ``on_fit_end()`` method has it called once when :meth:`CurriculumTrainer.fit` has run the
  schedule to its end (rank 0; e.g. :class:`~agecurriculum.train.run_logs.PlotCallback` draws the epochs it skipped).
- :meth:`CurriculumTrainer.state_dict` / :meth:`CurriculumTrainer.load_state_dict` and their file forms
  :meth:`CurriculumTrainer.save_checkpoint` / :meth:`CurriculumTrainer.load_checkpoint` hold everything the run
  needs to continue (format: :mod:`agecurriculum.train.checkpoint`).

With ``run_dir`` set, ``run_dir/checkpoint.pt`` is rewritten atomically after every epoch, and ``run_dir/best.pt``
holds the epoch with the lowest selection score so far. ``fit(resume=True)`` continues from ``checkpoint.pt`` when it
exists, so one command line serves the first start and every restart.

Reproducibility: the order of the items in an epoch depends only on ``(config.seed, global epoch number)``, so a run
repeated with the same seed sees the same batches; a resumed run also gets back every random generator's state and
ends bit-identical to an uninterrupted one. Distributed runs (``torchrun``, see :mod:`agecurriculum.train.distributed`)
split every epoch's order across the ranks.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from agecurriculum._version import __version__
from agecurriculum.bins import AgeBins
from agecurriculum.config import TrainerConfig, check_config
from agecurriculum.data.balance import age_gender_weights, balanced_weights
from agecurriculum.data.datasets import FilteredDataset, age_bins_of, records_of
from agecurriculum.devices import resolve_device
from agecurriculum.losses import LossParts, MultiTaskLoss, UncertaintyLoss
from agecurriculum.model.classifier import shared_frozen_blocks
from agecurriculum.schedule import MultiDatasetSample, TrainingSchedule
from agecurriculum.train import checkpoint as ckpt
from agecurriculum.train import distributed as ddp

__all__ = [
    "TrainerConfig",
    "EpochRecord",
    "EvalResult",
    "SchedulePosition",
    "Curriculum",
    "StaticCurriculum",
    "ScopeMonitor",
    "CurriculumTrainer",
    "draw_weights",
]

ETA_AFTER_S = 60.0  # seconds of training after which fit() prints the measured images/s and the time left
Cell = tuple[str, int]  # (dataset name, age bin): what a curriculum's losses are keyed by


@dataclass
class EvalResult:
    """Validation metrics of one dataset (or one filtered view of it)."""

    loss: float  # mean total loss per image
    age_accuracy: float  # fraction of images of known age bin whose bin is predicted exactly
    gender_accuracy: float  # fraction of images with a known gender predicted right
    images: int  # images evaluated
    cross_entropy: float = math.nan  # mean per image of the age and the gender cross-entropy added, unweighted


@dataclass
class EpochRecord:
    """What happened in one epoch of the curriculum; passed to every callback."""

    stage: int  # index of the stage in the schedule
    dataset: str  # name of the dataset trained on
    epoch: int  # epoch number within (stage, dataset), from 0
    global_epoch: int  # epochs completed before this one, over the whole run
    train_loss: float  # mean total loss per image
    train_age_loss: float  # mean age cross-entropy per image
    train_gender_loss: float  # mean gender cross-entropy per image
    images: int  # training images seen (over all ranks)
    seconds: float  # wall time of the training part of the epoch
    lr: float  # learning rate used in this epoch
    task_weights: dict[str, float] = field(default_factory=dict)  # the loss's current task multipliers
    val: EvalResult | None = None  # validation metrics of the pair's view, when a validation set exists
    selection_loss: float | None = None  # the selection score: validation loss over every validation set and bin
    # (best.pt and the release are the epoch where it is lowest); None without validation sets

    def to_dict(self) -> dict:
        """A flat dict for CSV/JSON logs."""
        row = asdict(self)
        val = row.pop("val")
        weights = row.pop("task_weights")
        row.update({f"weight_{k}": v for k, v in weights.items()})
        row.update({f"val_{k}": v for k, v in (val or {}).items()})
        return row

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EpochRecord:
        """Inverse of ``dataclasses.asdict(record)``, the form kept in checkpoints."""
        val = state.get("val")
        return cls(**{**state, "val": None if val is None else EvalResult(**val)})


@dataclass
class SchedulePosition:
    """The next epoch of the curriculum to run."""

    stage: int = 0  # index of the stage in the schedule; len(schedule) once the run is done
    dataset_index: int = 0  # index of the dataset in the stage's dataset list
    epoch: int = 0  # epoch within (stage, dataset), from 0


@dataclass
class _EpochEval:
    """What one epoch has validated: each view once, and the per-(dataset, bin) losses when the curriculum uses them."""

    views: dict[tuple[str, frozenset[int]], EvalResult | None] = field(default_factory=dict)
    cells: dict[Cell, float] | None = None  # None: not collected (a curriculum that does not decide its stages)


class Curriculum(Protocol):
    """What :class:`CurriculumTrainer` needs of a curriculum: the stages to train, and hooks where it may decide.

    :class:`~agecurriculum.adaptive.AdaptiveCurriculum` decides its stages while training; a static
    :class:`~agecurriculum.schedule.TrainingSchedule` runs as :class:`StaticCurriculum`, whose hooks do nothing. The
    trainer calls every hook on either, in this order: :meth:`start` once per :meth:`CurriculumTrainer.fit`, then
    after every epoch :meth:`observe`, :meth:`next_stage` when the epoch ended a stage, or :meth:`stop` when it ended
    the run, and :meth:`save_run_files` after the epoch's checkpoint.
    """

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset the curriculum may train on."""

    @property
    def num_bins(self) -> int:
        """Number of age bins; the selection score is over bins ``0 .. num_bins - 1``."""

    @property
    def stages(self) -> Sequence[MultiDatasetSample]:
        """The stages decided so far; the run is over once the trainer's position is past the last one."""

    @property
    def decides_stages(self) -> bool:
        """Whether the stages are decided while training (from the per-(dataset, bin) validation losses that
        :meth:`start` and :meth:`observe` are given, which the trainer then collects); False: :attr:`stages` holds
        every stage from the start."""

    def start(self, losses: Callable[[], Mapping[Cell, float]]) -> None:
        """Before the first epoch that :meth:`CurriculumTrainer.fit` runs (a resumed run's too).

        Args:
            losses: evaluates the model as it is now: ``(dataset, bin) -> loss``; it costs a validation pass, so
                call it only to decide from it (e.g. the first stage).
        """

    def observe(self, losses: Mapping[Cell, float], images: int) -> None:
        """After every epoch: the validation loss of every (dataset, bin) cell (empty unless :attr:`decides_stages`)
        and the training images the epoch saw."""

    def next_stage(self) -> MultiDatasetSample | None:
        """After the last epoch of a stage, before that epoch's checkpoint is written (so it holds the decision):
        a curriculum that decides its stages appends the next one to :attr:`stages`, or none to end the run."""

    def stop(self, reason: str) -> None:
        """The trainer ended the run for ``reason`` (its image or time budget, or early stopping over the run)."""

    def to_dict(self) -> dict[str, Any]:
        """What the curriculum is, in plain types (the checkpoint's ``schedule``): a resume needs the same."""

    def state_dict(self) -> dict[str, Any] | None:
        """What it has decided or learned, in plain types (the checkpoint's ``adaptive``); None when nothing."""

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restores :meth:`state_dict`'s output."""

    def save_run_files(self, run_dir: Path) -> None:
        """Writes its own files into the run's folder, after each checkpoint (a resume rewrites them from it)."""


class StaticCurriculum:
    """A :class:`~agecurriculum.schedule.TrainingSchedule` as a :class:`Curriculum`: its stages are fixed, so the
    hooks where a curriculum could decide do nothing (and the trainer collects no per-bin losses for them).

    Args:
        schedule: the stages to run.
    """

    decides_stages = False

    def __init__(self, schedule: TrainingSchedule) -> None:
        self.schedule = schedule

    @property
    def datasets(self) -> tuple[str, ...]:
        """The schedule's datasets."""
        return self.schedule.datasets

    @property
    def num_bins(self) -> int:
        """The schedule's number of age bins."""
        return self.schedule.num_bins

    @property
    def stages(self) -> tuple[MultiDatasetSample, ...]:
        """Every stage of the schedule."""
        return self.schedule.stages

    def start(self, losses: Callable[[], Mapping[Cell, float]]) -> None:
        """Does nothing: ``losses`` is never evaluated, so a static run validates nothing before it trains."""

    def observe(self, losses: Mapping[Cell, float], images: int) -> None:
        """Does nothing."""

    def next_stage(self) -> None:
        """Does nothing: the next stage is in :attr:`stages` already."""

    def stop(self, reason: str) -> None:
        """Does nothing."""

    def to_dict(self) -> dict[str, Any]:
        """The stages, bins and datasets of the schedule."""
        return {
            "stages": self.schedule.to_dicts(),
            "num_bins": self.schedule.num_bins,
            "datasets": list(self.schedule.datasets),
        }

    def state_dict(self) -> None:
        """None: a static schedule learns nothing."""
        return None

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Does nothing."""

    def save_run_files(self, run_dir: Path) -> None:
        """Writes nothing: the run's configuration already names the schedule."""


class ScopeMonitor:
    """The LR plateau and early stopping, each watching the validation loss of its scope.

    A scope is ``"run"`` (the selection score, never reset), ``"stage"`` (the stage's loss, started afresh when a
    stage begins) or ``"pair"`` (the (stage, dataset)'s loss, started afresh at every pair); see the module
    docstring. The plateau's own counters are ``lr_scheduler``'s (the checkpoint's ``lr_scheduler``); early
    stopping's are :meth:`state_dict`'s (in the checkpoint's ``early_stopping``).

    Args:
        lr_scheduler: the plateau, stepped on the loss of ``plateau_scope``.
        plateau_scope: ``"run"``, ``"stage"`` or ``"pair"``.
        early_stopping_scope: the same choices, for early stopping.
        patience: epochs without a lower loss after which early stopping ends its scope; None: it never does.

    Attributes:
        best_val: the lowest loss of early stopping's scope since the scope began.
        stale_epochs: epochs since that loss, without a lower one.
    """

    def __init__(
        self,
        lr_scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
        plateau_scope: str,
        early_stopping_scope: str,
        patience: int | None,
    ) -> None:
        self.lr_scheduler = lr_scheduler
        self.plateau_scope, self.early_stopping_scope, self.patience = plateau_scope, early_stopping_scope, patience
        self.best_val, self.stale_epochs = math.inf, 0

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes whose loss :meth:`step` reads."""
        return frozenset({self.plateau_scope, self.early_stopping_scope})

    def step(self, losses: Mapping[str, float | None]) -> str | None:
        """Steps the plateau and early stopping after an epoch.

        Args:
            losses: scope -> this epoch's validation loss of it (None: not measured, e.g. no validation set), for
                at least :attr:`scopes`.

        Returns:
            The scope that early stopping ends now, or None.
        """
        plateau_loss = losses[self.plateau_scope]
        if plateau_loss is not None:
            self.lr_scheduler.step(plateau_loss)
        loss = losses[self.early_stopping_scope]
        if loss is None:
            return None
        if loss < self.best_val:
            self.best_val, self.stale_epochs = loss, 0
        else:
            self.stale_epochs += 1
        stop = self.patience is not None and self.stale_epochs >= self.patience
        return self.early_stopping_scope if stop else None

    def scopes_ended(self, ended: Iterable[str]) -> None:
        """Starts the watch of each scope in ``ended`` afresh (the learning rate keeps its value): the next pair, or
        stage, is validated on other images and bins, so its losses do not compare with the best one so far."""
        ended = set(ended)
        if self.early_stopping_scope in ended:
            self.best_val, self.stale_epochs = math.inf, 0
        if self.plateau_scope in ended:
            plateau = self.lr_scheduler
            plateau.best, plateau.num_bad_epochs, plateau.cooldown_counter = plateau.mode_worse, 0, 0

    def state_dict(self) -> dict[str, Any]:
        """Early stopping's counters: ``{"best_val", "stale_epochs"}``."""
        return {"best_val": self.best_val, "stale_epochs": self.stale_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output (extra keys are ignored)."""
        self.best_val, self.stale_epochs = float(state["best_val"]), int(state["stale_epochs"])


class _ModelWithLoss(nn.Module):
    """The model and its loss as one module, so that DDP also averages the gradients of the loss's log-variances."""

    def __init__(self, model: nn.Module, loss_fn: MultiTaskLoss) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(
        self,
        images: torch.Tensor,
        age_target: torch.Tensor,
        gender_target: torch.Tensor,
        teacher: tuple[torch.Tensor, torch.Tensor] | None = None,
        from_block: int | None = None,
    ) -> LossParts:
        # from_block: ``images`` is the model's frozen part's output (shared with the teacher), not images
        out = self.model(images) if from_block is None else self.model.forward_from(images, from_block)
        age_logits, gender_logits = out[:2]
        if teacher is None:  # a loss of the user's own may not take a teacher argument
            return self.loss_fn(age_logits, gender_logits, age_target, gender_target)
        return self.loss_fn(age_logits, gender_logits, age_target, gender_target, teacher)


def resolve_amp(amp: bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for :attr:`TrainerConfig.amp` on ``device``, or None for full fp32."""
    if amp is False:
        return None
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16  # same range as fp32: no loss scaling needed
        return torch.float16 if amp else None  # fp16 needs a GradScaler: only when asked for
    # CPU autocast exists (bf16) but is slower than fp32 on most CPUs, so "auto" leaves it off.
    return torch.bfloat16 if amp else None


def _any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (itself when not distributed): a decision every rank then takes alike."""
    if not ddp.is_distributed():
        return flag
    return bool(ddp.all_reduce_sum(torch.tensor([float(flag)])).item() > 0)


def _base_dataset(dataset: Dataset) -> Dataset:
    # The dataset under views and wrappers (FilteredDataset, BalancedDataset, Subset); a MixedDataset's first part,
    # whose bins all parts share.
    while isinstance(getattr(dataset, "dataset", None), Dataset):
        dataset = dataset.dataset
    return _base_dataset(dataset.datasets[0]) if isinstance(dataset, ConcatDataset) and dataset.datasets else dataset


def draw_weights(dataset: Dataset, config: TrainerConfig) -> np.ndarray | None:
    """Each item's chance of being drawn under ``config.sampling``: the trainer's draws with replacement.

    Args:
        dataset: the training dataset (or a stage's view of it).
        config: ``sampling``, and for ``age_gender`` its power and children's weight.

    Returns:
        ``(len(dataset),)`` weights summing to 1, or None for ``shuffle`` (every item once an epoch).

    Raises:
        ValueError: ``age_gender`` on a dataset that keeps no face records or bins.
    """
    if config.sampling == "shuffle":
        return None
    if config.sampling == "balanced":
        return balanced_weights(age_bins_of(dataset))
    records, bins = records_of(dataset), getattr(_base_dataset(dataset), "bins", None)
    if records is None or not isinstance(bins, AgeBins):
        raise ValueError(
            f"trainer.sampling: age_gender needs datasets of face records (FaceDataset, "
            f"MixedDataset), got {type(_base_dataset(dataset)).__name__}"
        )
    return age_gender_weights(records, bins, config.sampling_power, config.child_max_age, config.child_weight)


class CurriculumTrainer:
    """Trains a two-headed age/gender model over a :class:`~agecurriculum.schedule.TrainingSchedule`.

    In a distributed run (:func:`~agecurriculum.train.distributed.init_distributed` called before building it),
    every rank builds the same trainer; the model and loss are wrapped in DistributedDataParallel.

    Args:
        model: any ``nn.Module`` whose forward returns ``(age_logits, gender_logits)``, such as
            :class:`~agecurriculum.model.DualClassifier`.
        schedule: the curriculum; every dataset it names must be in ``train_sets``. A static
            :class:`~agecurriculum.schedule.TrainingSchedule`, or any :class:`Curriculum`, such as an
            :class:`~agecurriculum.adaptive.AdaptiveCurriculum`, which decides it while training (see the module
            docstring): a fresh one, or one restored with the checkpoint.
        train_sets: dataset name -> dataset of ``(image, age_bin, gender)`` items.
        val_sets: dataset name -> validation dataset; datasets without one are trained without validation
            (and so without LR plateau, early stopping or best checkpoint when none has one).
        loss: a :class:`~agecurriculum.losses.MultiTaskLoss`; defaults to :class:`UncertaintyLoss`.
        optimizer: defaults to AdamW over the model's and the loss's parameters.
        config: a :class:`TrainerConfig`.
        callbacks: callables invoked with each :class:`EpochRecord` (on rank 0); those with an ``on_fit_end()``
            method also have it called when :meth:`fit` ends.
        run_dir: folder for ``checkpoint.pt`` (after every epoch) and ``best.pt`` (the epoch with the lowest
            selection score); None writes nothing. In a distributed run it must be shared by all ranks for a
            resume; only rank 0 writes.
        teacher: a trained model (e.g. an :class:`~agecurriculum.model.EnsembleClassifier`) whose softmax
            probabilities on each training batch the model also learns, as the loss's ``distill_weight`` says
            (knowledge distillation); it runs in eval mode, without gradients, on the same augmented images, and
            must predict the same age bins. Validation losses are on the labels only, so they stay comparable.
            Where the model's frozen stem and early blocks hold the teacher's own weights (a warm start distilled
            from its parent, :func:`~agecurriculum.model.classifier.shared_frozen_blocks`), that part runs once a
            batch for both.

    Attributes:
        model: the model (never the DDP wrapper).
        schedule: the ``schedule`` argument, as given.
        curriculum: the :class:`Curriculum` the trainer runs: ``schedule`` itself, or a static schedule wrapped in
            :class:`StaticCurriculum`.
        monitor: the LR plateau and early stopping over their scopes (:class:`ScopeMonitor`).
        position: the next epoch to run.
        global_epoch: epochs completed so far.
        history: one :class:`EpochRecord` per completed epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: TrainingSchedule | Curriculum,
        train_sets: Mapping[str, Dataset],
        val_sets: Mapping[str, Dataset] | None = None,
        loss: MultiTaskLoss | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        config: TrainerConfig | None = None,
        callbacks: Sequence[Callable[[EpochRecord], None]] = (),
        run_dir: str | Path | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        missing = [name for name in schedule.datasets if name not in train_sets]
        if missing:
            raise ValueError(f"the schedule names datasets with no training set: {missing}")
        self.config = config or TrainerConfig()
        check_config(self.config, "config.")
        self.rank, self.world_size = ddp.get_rank(), ddp.get_world_size()
        self.device = self._pick_device()
        self.model = model.to(self.device)
        self.loss_fn = (loss or UncertaintyLoss()).to(self.device)
        self.teacher = None if teacher is None else teacher.to(self.device).eval().requires_grad_(False)
        self.schedule = schedule
        self._eta_due = False  # fit() sets it: print the measured speed and the time left once, a minute in
        self.curriculum: Curriculum = StaticCurriculum(schedule) if isinstance(schedule, TrainingSchedule) else schedule
        self.train_sets = dict(train_sets)
        self.val_sets = dict(val_sets or {})
        self.optimizer = optimizer or self._default_optimizer()
        self.lr_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=self.config.plateau_factor, patience=self.config.plateau_patience
        )
        c = self.config
        self.monitor = ScopeMonitor(
            self.lr_scheduler, c.plateau_scope, c.early_stopping_scope, c.early_stopping_patience
        )
        self.amp_dtype = resolve_amp(self.config.amp, self.device)
        # Loss scaling only for fp16, whose small range underflows gradients; a disabled scaler is a pass-through.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self._model_with_loss = _ModelWithLoss(self.model, self.loss_fn)
        self._ddp: DistributedDataParallel | None = None  # built by the first training step, dropped by fit's end
        self.callbacks = list(callbacks)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.position = SchedulePosition()
        self.global_epoch = 0
        self.history: list[EpochRecord] = []
        self._best_selection = math.inf  # the lowest selection score so far: best.pt's
        self._best_epoch: int | None = None  # the global epoch that scored it
        self._views: tuple[tuple[int, str], FilteredDataset] | None = None
        self._val_views: dict[tuple[str, frozenset[int]], FilteredDataset] = {}

    @property
    def images_seen(self) -> int:
        """Training images seen over the whole run (resumed epochs included)."""
        return sum(record.images for record in self.history)

    @property
    def seconds_trained(self) -> float:
        """Seconds the run's training steps took (resumed epochs included; validation not counted): what
        ``config.time_budget`` counts."""
        return sum(record.seconds for record in self.history)

    def _seconds_left(self) -> float | None:
        # The time budget's rest, in seconds (None: no time budget).
        budget = self.config.time_budget
        return None if budget is None else budget * 60 - self.seconds_trained

    def _stage(self, index: int) -> MultiDatasetSample:
        return self.curriculum.stages[index]

    def _stage_count(self) -> int:
        # An adaptive curriculum's stages grow as it decides them; the run is over when the position reaches the end.
        return len(self.curriculum.stages)

    @property
    def best_epoch(self) -> int | None:
        """The global epoch (from 0) with the lowest selection score so far, whose state ``run_dir/best.pt`` holds;
        None before any epoch was validated."""
        return self._best_epoch

    def _pick_device(self) -> torch.device:
        device = resolve_device(self.config.device)
        if device.type == "cuda" and device.index is None and self.world_size > 1:
            # One GPU per process: torchrun's LOCAL_RANK picks it (init_distributed made it the current one).
            device = torch.device("cuda", torch.cuda.current_device())
        return device

    @property
    def _cuda_device(self) -> torch.device | str:
        # The CUDA generator that dropout on this trainer's device draws from ("cuda": the current one).
        return self.device if self.device.type == "cuda" else "cuda"

    def _default_optimizer(self) -> torch.optim.Optimizer:
        # Frozen parameters are included too: AdamW skips them while they get no gradient, and they train
        # as soon as the backbone is unfrozen, without building a new optimizer.
        groups = [{"params": list(self.model.parameters())}]
        loss_params = list(self.loss_fn.parameters())
        if loss_params:  # the task log-variances are not weights to shrink
            groups.append({"params": loss_params, "weight_decay": 0.0})
        return torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)

    # ----------------------------------------------------------------------------------------- one epoch, one set

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        if not shuffle:
            shard = self._shard(dataset)
            return DataLoader(shard, batch_size=self.config.batch_size, num_workers=self.config.num_workers)
        if self.config.sampling in ("balanced", "age_gender"):
            sampler: Iterable[int] = self._balanced_draws(dataset)
        else:
            # The order depends only on (seed, global epoch): repeatable runs, and the same permutation on every
            # rank; rank r takes positions r::world of it, padded so that every rank runs the same number of steps.
            sampler = DistributedSampler(
                dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=self.config.seed * 1_000_003
            )
            sampler.set_epoch(self.global_epoch)
        # A last batch of one image cannot train: batch norm needs two values per channel. Skip that one image
        # (and a view of a single image trains nothing).
        drop_last = len(sampler) % self.config.batch_size == 1  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.config.num_workers,
        )

    def _balanced_draws(self, dataset: Dataset) -> list[int]:
        # Drawn on the stage's filtered view, so that the bins of this stage are the ones made equal. The draws depend
        # only on (seed, global epoch), like the shuffled order, and every rank takes positions r::world of them.
        weights = torch.as_tensor(draw_weights(dataset, self.config), dtype=torch.double)
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.global_epoch)
        draws = torch.multinomial(weights, len(weights), replacement=True, generator=generator).tolist()
        per_rank = math.ceil(len(draws) / self.world_size)
        draws += draws[: per_rank * self.world_size - len(draws)]  # equal steps on every rank
        return draws[self.rank :: self.world_size]

    def _shard(self, dataset: Dataset) -> Dataset:
        # Evaluation needs every item exactly once over all ranks (no padding), not equal shares.
        if self.world_size == 1:
            return dataset
        return Subset(dataset, range(self.rank, len(dataset), self.world_size))  # type: ignore[arg-type]

    def _to_device(self, batch: Iterable[torch.Tensor]) -> list[torch.Tensor]:
        return [t.to(self.device, non_blocking=True) for t in batch]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @torch.no_grad()
    def _teacher_probs(self, inputs: torch.Tensor, from_block: int | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.teacher is None:
            return None
        with self._autocast():
            out = self.teacher(inputs) if from_block is None else self.teacher.forward_from(inputs, from_block)
        age_logits, gender_logits = out[:2]
        return age_logits.float().softmax(1), gender_logits.float().softmax(1)

    @torch.no_grad()
    def _shared_part(self, images: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        # The input both models go on from: the frozen part's output when a teacher shares it, else the images
        # (without a teacher, shared_frozen_blocks is None).
        n = shared_frozen_blocks(self.model, self.teacher)
        if n is None:
            return images, None
        with self._autocast():
            return self.model.backbone.forward_prefix(images, n), n

    @property
    def _train_module(self) -> nn.Module:
        # The model and loss as trained: in a distributed run inside DistributedDataParallel, built on first use
        # (every rank trains together, so every rank builds it together: its constructor broadcasts rank 0's weights).
        if self.world_size == 1:
            return self._model_with_loss
        if self._ddp is None:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(self._model_with_loss, device_ids=device_ids)
        return self._ddp

    def _release_ddp(self) -> None:
        # DDP's reducer holds the process group: while the trainer holds the wrapper, destroy_process_group cannot
        # free the group, which then dies with the interpreter, its Gloo threads still holding tensors; a rank
        # could abort there ("terminate called without an active exception") after a finished run. Dropped here,
        # the group goes when the script destroys it; the next training step builds a new wrapper.
        if self._ddp is not None:
            self._ddp = None
            gc.collect()  # the wrapper's hooks form reference cycles

    def _train_step(self, batch: Sequence[torch.Tensor], step: int) -> tuple[LossParts, int]:
        images, age_target, gender_target = self._to_device(batch)
        inputs, from_block = self._shared_part(images)
        teacher = self._teacher_probs(inputs, from_block)
        with self._autocast():
            parts = self._train_module(inputs, age_target, gender_target, teacher, from_block)
        if not torch.isfinite(parts.total):
            raise FloatingPointError(f"training loss became {parts.total.item()} at step {step}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(parts.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return parts, images.shape[0]

    def train_one_epoch(
        self, dataset: Dataset, desc: str | None = None, max_images: int | None = None, max_seconds: float | None = None
    ) -> tuple[float, float, float, int]:
        """Trains one pass over ``dataset`` (or ``config.max_steps_per_epoch`` batches of it).

        In a distributed run each rank trains on its share and the returned numbers cover all ranks.

        Args:
            dataset: items ``(image, age_bin, gender)``.
            desc: label of the progress bar (shown when ``config.progress``).
            max_images: stop at the first batch that brings the images seen (over all ranks) to this many.
            max_seconds: stop after the first batch that ends this many seconds after the epoch started (in a
                distributed run, on any rank: every rank stops at the same batch).

        Returns:
            ``(mean total loss, mean age CE, mean gender CE, images seen)``, means taken per image.
        """
        self._train_module.train()  # the model, the loss and the DDP wrapper
        loader = self._loader(dataset, shuffle=True)
        cap = self.config.max_steps_per_epoch
        steps = len(loader) if cap is None else min(len(loader), cap)
        if max_images is not None:  # every step takes a full batch on every rank, but perhaps the last
            steps = min(steps, max(0, math.ceil(max_images / (self.config.batch_size * self.world_size))))
        sums = torch.zeros(4, dtype=torch.float64)  # total, age and gender loss times images; images
        start = time.perf_counter()
        with self._progress_bar(steps, desc) as bar:
            for step, batch in enumerate(itertools.islice(loader, steps)):
                parts, n = self._train_step(batch, step)
                losses = [parts.total.item(), parts.age.item(), parts.gender.item()]
                sums += torch.tensor([*losses, 1.0], dtype=torch.float64) * n
                elapsed = time.perf_counter() - start
                if self._eta_due and elapsed >= ETA_AFTER_S:
                    self._print_eta(
                        sums[3].item() * self.world_size / elapsed, (steps - step - 1) * n * self.world_size
                    )
                bar.update(1)
                bar.set_postfix(
                    loss=f"{losses[0]:.4f}",
                    img_s=f"{sums[3].item() / (time.perf_counter() - start):.0f}",
                    refresh=False,
                )
                if max_seconds is not None and _any_rank(time.perf_counter() - start >= max_seconds):
                    break
        sums = ddp.all_reduce_sum(sums)
        seen = int(sums[3].item())
        means = (sums[:3] / max(seen, 1)).tolist()
        return means[0], means[1], means[2], seen

    def _print_eta(self, rate: float, left_in_epoch: int) -> None:
        # Once per fit(), after the first minute of training: a run that will not fit its time says so at once.
        self._eta_due = False
        if self.rank != 0 or not self.config.verbose:
            return
        later = self._planned_images_after_this_epoch()
        line = f"measured {rate:.1f} images/s: this epoch ends in {left_in_epoch / rate / 60:.1f} min"
        if later is not None:
            line += f", the run's training in {(left_in_epoch + later) / rate / 60:.1f} min (validation not included)"
        budget = self.config.time_budget
        if budget is not None and (later is None or (left_in_epoch + later) / rate > self._seconds_left()):
            line += f"; the time budget ends it after {budget:g} min of training"
        print(line, flush=True)

    def _say(self, line: str) -> None:
        # What fit() tells the user: rank 0 only, and nothing with verbose=False.
        if self.config.verbose and self.rank == 0:
            print(line, flush=True)

    def _stage_line(self, index: int, stage: MultiDatasetSample) -> str:
        total = "?" if self.curriculum.decides_stages else str(self._stage_count())
        every = self._every_bin(stage.bins)
        bins = "every bin" if every else "bins " + ", ".join(str(b) for b in sorted(stage.bins))
        return f"stage {index + 1}/{total}: {', '.join(stage.datasets)}; {bins}; {stage.epochs} epoch(s) per dataset"

    @staticmethod
    def _epoch_line(record: EpochRecord, later: int | None) -> str:
        rate = record.images / record.seconds if record.seconds > 0 else math.nan
        line = (
            f"epoch {record.global_epoch + 1} (stage {record.stage + 1}, {record.dataset}, epoch {record.epoch + 1}):"
            f" train loss {record.train_loss:.4f} (age {record.train_age_loss:.4f}, gender "
            f"{record.train_gender_loss:.4f}), {record.images} images at {rate:.1f}/s, lr {record.lr:.3g}"
        )
        if record.val is not None:
            val = record.val
            line += (
                f"; val loss {val.loss:.4f}, gender {100 * val.gender_accuracy:.2f}%, age {100 * val.age_accuracy:.2f}%"
            )
        if later is not None and rate > 0:
            line += f"; training left about {later / rate / 60:.1f} min"
        return line

    def _planned_images_after_this_epoch(self) -> int | None:
        # The training images of every epoch after the current one, for a static schedule (None: a curriculum that
        # decides its stages as it goes); within trainer.image_budget when there is one.
        if self.curriculum.decides_stages:
            return None
        pos, total, stages = self.position, 0, self.curriculum.stages
        for index in range(pos.stage, len(stages)):
            stage = stages[index]
            for d, name in enumerate(stage.datasets):
                epochs = stage.epochs
                if index == pos.stage:
                    if d < pos.dataset_index:
                        continue
                    epochs -= pos.epoch + 1 if d == pos.dataset_index else 0
                bins = age_bins_of(self.train_sets[name])
                keep = [b for b in bins if b in stage.bins or self._every_bin(stage.bins) and b < 0]
                total += epochs * len(keep)
        if self.config.image_budget is not None:
            total = min(total, max(0, self.config.image_budget - self.images_seen))
        return total

    def _progress_bar(self, steps: int, desc: str | None) -> tqdm:
        return tqdm(
            total=steps,
            desc=desc,
            unit="step",
            leave=False,
            dynamic_ncols=True,
            disable=not (self.config.progress and self.rank == 0),
        )

    def evaluate(self, dataset: Dataset) -> EvalResult:
        """Loss and accuracies of the model on ``dataset`` (eval mode, no gradient).

        In a distributed run every rank must call it: each evaluates its share and the sums are added up.
        """
        return self._evaluate(dataset, per_bin=False)[0]

    def evaluate_per_bin(self, dataset: Dataset) -> tuple[EvalResult, dict[int, float]]:
        """:meth:`evaluate`, plus the loss of each age bin: bin -> mean over its images of the age and the gender
        cross-entropy (on the labels, unweighted; a missing gender adds 0). Bins without images are left out, and
        so are images of unknown age. This is what an :class:`~agecurriculum.adaptive.AdaptiveCurriculum` observes.
        """
        return self._evaluate(dataset, per_bin=True)

    @torch.no_grad()
    def _evaluate(self, dataset: Dataset, per_bin: bool) -> tuple[EvalResult, dict[int, float]]:
        self.model.eval()
        # loss times images, age right, age known, gender right, gender known, images, cross-entropies times images
        sums = torch.zeros(7, dtype=torch.float64)
        bins = self.curriculum.num_bins
        bin_sums = torch.zeros(2, bins, dtype=torch.float64)  # per bin: summed cross-entropies, images
        for batch in self._loader(dataset, shuffle=False):
            images, age_target, gender_target = self._to_device(batch)
            with self._autocast():
                age_logits, gender_logits = self.model(images)
                parts = self.loss_fn(age_logits, gender_logits, age_target, gender_target)
            age_known = age_target != self.loss_fn.ignore_index
            known = gender_target != self.loss_fn.ignore_index
            if per_bin and bool(age_known.any()):
                ignore = self.loss_fn.ignore_index
                ce = F.cross_entropy(
                    age_logits.float(), age_target, reduction="none", ignore_index=ignore
                ) + F.cross_entropy(gender_logits.float(), gender_target, reduction="none", ignore_index=ignore)
                target = age_target[age_known].cpu()
                bin_sums[0].index_add_(0, target, ce[age_known].double().cpu())
                bin_sums[1].index_add_(0, target, torch.ones(len(target), dtype=torch.float64))
            sums += torch.tensor(
                [
                    parts.total.item() * len(images),
                    int((age_logits.argmax(1) == age_target)[age_known].sum()),
                    int(age_known.sum()),
                    int((gender_logits.argmax(1) == gender_target)[known].sum()),
                    int(known.sum()),
                    len(images),
                    (parts.age + parts.gender).item() * len(images),
                ],
                dtype=torch.float64,
            )
        loss_sum, age_right, age_known, gender_right, gender_known, seen, ce_sum = ddp.all_reduce_sum(sums).tolist()
        result = EvalResult(
            loss=loss_sum / seen if seen else math.nan,
            age_accuracy=age_right / age_known if age_known else math.nan,
            gender_accuracy=gender_right / gender_known if gender_known else math.nan,
            images=int(seen),
            cross_entropy=ce_sum / seen if seen else math.nan,
        )
        if not per_bin:
            return result, {}
        bin_sums = ddp.all_reduce_sum(bin_sums.flatten()).view(2, bins)
        return result, {b: bin_sums[0, b].item() / bin_sums[1, b].item() for b in range(bins) if bin_sums[1, b] > 0}

    # ----------------------------------------------------------------------------------------- the curriculum

    def fit(self, resume: bool = False) -> list[EpochRecord]:
        """Runs the schedule (Algorithm 1) from :attr:`position` to its end and returns one record per epoch.

        Args:
            resume: first load ``run_dir/checkpoint.pt`` if it exists (a fresh run starts when it does not), and
                go on with the epoch after the last one it completed.

        Raises:
            ValueError: ``resume`` without a ``run_dir``.
            CheckpointError: the checkpoint is corrupt, or from a run with another config, schedule or data.
        """
        self._eta_due = True
        if resume:
            if self.run_dir is None:
                raise ValueError("fit(resume=True) needs the trainer's run_dir")
            if (self.run_dir / "checkpoint.pt").is_file():
                self.load_checkpoint()
        self.curriculum.start(self._losses_before_training)
        try:
            while self.position.stage < self._stage_count():
                self._run_next_epoch()
            if self.rank == 0:
                for callback in self.callbacks:
                    if callable(getattr(callback, "on_fit_end", None)):
                        callback.on_fit_end()  # type: ignore[attr-defined]
        finally:
            self._release_ddp()
        return self.history

    def _losses_before_training(self) -> dict[Cell, float]:
        # What an adaptive curriculum decides its first stage from (it reads them to measure what the stage gains).
        # The random generators are put back afterwards (a DataLoader draws a seed from them), so the run trains as a
        # replay of its learned schedule does, and a run killed before its first checkpoint decides the same again.
        rng = ckpt.capture_rng_state(self._cuda_device)
        losses = self._cell_losses(_EpochEval(cells={}))
        ckpt.restore_rng_state(rng, self._cuda_device)
        return losses

    def _run_next_epoch(self) -> None:
        pos = self.position
        stage = self._stage(pos.stage)
        name = stage.datasets[pos.dataset_index]
        if pos.dataset_index == 0 and pos.epoch == 0:
            self._say(self._stage_line(pos.stage, stage))
        train_view = self._train_view(pos.stage, name)
        set_epoch = getattr(self.train_sets[name], "set_epoch", None)
        if set_epoch is not None:  # e.g. BalancedDataset: fresh augmented copies every epoch, still seeded
            set_epoch(self.global_epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        desc = f"stage {pos.stage} {name} epoch {pos.epoch}"
        budget = self.config.image_budget
        left = None if budget is None else budget - self.images_seen
        loss, age_loss, gender_loss, seen = self.train_one_epoch(
            train_view, desc=desc, max_images=left, max_seconds=self._seconds_left()
        )
        seconds = time.perf_counter() - start
        # This epoch's views, each evaluated once; the per-bin losses only for a curriculum that decides from them.
        evaluated = _EpochEval(cells={} if self.curriculum.decides_stages else None)
        val = self._evaluate_view(name, stage.bins, evaluated)
        watched = self._watched_losses(pos.stage, val, evaluated)
        self.curriculum.observe(self._cell_losses(evaluated), images=seen)
        record = EpochRecord(
            stage=pos.stage,
            dataset=name,
            epoch=pos.epoch,
            global_epoch=self.global_epoch,
            train_loss=loss,
            train_age_loss=age_loss,
            train_gender_loss=gender_loss,
            images=seen,
            seconds=seconds,
            lr=lr,
            task_weights=self.loss_fn.task_weights(),
            val=val,
            selection_loss=watched["run"],
        )
        self.global_epoch += 1
        self.history.append(record)
        best = watched["run"] is not None and watched["run"] < self._best_selection
        if best:
            self._best_selection, self._best_epoch = watched["run"], record.global_epoch
        if self.config.verbose and self.rank == 0:  # before _advance moves the position past this epoch
            self._say(self._epoch_line(record, self._planned_images_after_this_epoch()))
        self._advance(self.monitor.step(watched))
        self._end_epoch(record, best)

    def _train_view(self, stage_index: int, name: str) -> FilteredDataset:
        # Built once per (stage, dataset): filtering reads every item's bin. Images of unknown age join the stages
        # that cover every bin (they could be any age) and train gender there.
        key = (stage_index, name)
        if self._views is None or self._views[0] != key:
            bins = self._stage(stage_index).bins
            self._views = (key, FilteredDataset(self.train_sets[name], bins, keep_unknown=self._every_bin(bins)))
        return self._views[1]

    def _every_bin(self, bins: frozenset[int]) -> bool:
        return set(bins) == set(range(self.curriculum.num_bins))

    def _evaluate_view(self, name: str, bins: frozenset[int], evaluated: _EpochEval) -> EvalResult | None:
        """The validation result of dataset ``name`` on ``bins`` (None: no validation set, or an empty view); each
        view is evaluated once per epoch (``evaluated``) and built once per run. A view of every bin also gives the
        dataset's per-bin losses when ``evaluated`` collects them."""
        key = (name, frozenset(bins))
        if name not in self.val_sets:
            return None
        if key not in evaluated.views:
            if key not in self._val_views:
                self._val_views[key] = FilteredDataset(self.val_sets[name], bins, keep_unknown=self._every_bin(bins))
            view = self._val_views[key]
            if not len(view):
                evaluated.views[key] = None
            elif evaluated.cells is not None and self._every_bin(bins):
                evaluated.views[key], per_bin = self.evaluate_per_bin(view)
                evaluated.cells.update({(name, b): loss for b, loss in per_bin.items()})
            else:
                evaluated.views[key] = self.evaluate(view)
        return evaluated.views[key]

    def _cell_losses(self, evaluated: _EpochEval) -> dict[Cell, float]:
        """The per-(dataset, bin) validation losses of every dataset (from the views of every bin, which the selection
        score evaluates anyway); empty when ``evaluated`` does not collect them."""
        if evaluated.cells is None:  # evaluates nothing: every evaluation draws from the random generators
            return {}
        every_bin = frozenset(range(self.curriculum.num_bins))
        for name in self.curriculum.datasets:
            self._evaluate_view(name, every_bin, evaluated)
        return dict(evaluated.cells)

    def _pooled_loss(self, views: Iterable[tuple[str, frozenset[int]]], evaluated: _EpochEval) -> float | None:
        # The mean loss per image over several views (each weighted by its images), as if they were one set.
        results = [
            r
            for r in (self._evaluate_view(name, bins, evaluated) for name, bins in views)
            if r is not None and r.images
        ]
        if not results:
            return None
        return sum(self._monitored(r) * r.images for r in results) / sum(r.images for r in results)

    def _monitored(self, result: EvalResult) -> float:
        # The loss that epochs are compared on (TrainerConfig.monitor_loss).
        return result.cross_entropy if self.config.monitor_loss == "cross_entropy" else result.loss

    def _watched_losses(
        self, stage_index: int, val: EvalResult | None, evaluated: _EpochEval
    ) -> dict[str, float | None]:
        """The validation loss of each scope this run watches: ``"run"`` (the selection score, always), ``"stage"``
        and ``"pair"`` when the plateau or early stopping watch them."""
        every_bin = frozenset(range(self.curriculum.num_bins))
        watched = {"run": self._pooled_loss([(name, every_bin) for name in self.curriculum.datasets], evaluated)}
        scopes = self.monitor.scopes
        if "stage" in scopes:
            stage = self._stage(stage_index)
            watched["stage"] = self._pooled_loss([(name, stage.bins) for name in stage.datasets], evaluated)
        if "pair" in scopes:
            watched["pair"] = None if val is None else self._monitored(val)
        return watched

    def _advance(self, ends: str | None) -> None:
        """Moves :attr:`position` to the next epoch; ``ends``: the scope that early stopping ends now (None: none)."""
        pos = self.position
        stage = self._stage(pos.stage)
        budget, seconds_left = self.config.image_budget, self._seconds_left()
        spent = budget is not None and self.images_seen >= budget
        timed_out = seconds_left is not None and _any_rank(seconds_left <= 0)  # each rank clocks its own steps
        if ends == "run" or spent or timed_out:
            if spent:
                reason = f"the image budget ({budget}) is spent ({self.images_seen} seen)"
            elif timed_out:
                reason = (
                    f"the time budget ({self.config.time_budget:g} min) is spent "
                    f"({self.seconds_trained / 60:.1f} min of training, {self.images_seen} images)"
                )
            else:
                reason = "early stopping over the run"
            self.curriculum.stop(reason)
            self._say(f"the run ends: {reason}")
            pos.stage, pos.dataset_index, pos.epoch = self._stage_count(), 0, 0
            return
        if ends is None and pos.epoch + 1 < stage.epochs:
            pos.epoch += 1
            return
        pos.epoch, pos.dataset_index = 0, pos.dataset_index + 1
        if ends == "stage":
            pos.dataset_index = len(stage.datasets)
        ended = {"pair"}
        if pos.dataset_index >= len(stage.datasets):
            pos.stage, pos.dataset_index = pos.stage + 1, 0
            ended.add("stage")
            self.curriculum.next_stage()  # decided now, so the checkpoint of this epoch holds the decision
        self.monitor.scopes_ended(ended)

    def _end_epoch(self, record: EpochRecord, best: bool) -> None:
        rng = ckpt.capture_rng_state(self._cuda_device)
        rng_all = ddp.all_gather_object(rng)  # every rank's generators, so each resumes its own stream
        if self.rank == 0:
            if self.run_dir is not None:
                state = self.state_dict(rng_all)
                ckpt.save_checkpoint(state, self.run_dir / "checkpoint.pt")
                if best:
                    ckpt.save_checkpoint(state, self.run_dir / "best.pt")
                self.curriculum.save_run_files(self.run_dir)  # after the checkpoint: a resume rewrites them from it
            for callback in self.callbacks:
                callback(record)
        # Whatever the callbacks drew, training goes on as if they had not run.
        ckpt.restore_rng_state(rng, self._cuda_device)

    # ----------------------------------------------------------------------------------------- checkpoints

    def _dataset_sizes(self) -> dict[str, int]:
        return {name: len(data) for name, data in self.train_sets.items()}  # type: ignore[arg-type]

    def state_dict(self, rng: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Everything needed to continue this run: the checkpoint dict (see :mod:`agecurriculum.train.checkpoint`).

        Args:
            rng: one :func:`~agecurriculum.train.checkpoint.capture_rng_state` per rank; default this process's.
        """
        return {
            "format": ckpt.CHECKPOINT_FORMAT,
            "version": ckpt.CHECKPOINT_VERSION,
            "library_version": __version__,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loss_fn": self.loss_fn.state_dict(),
            "position": {**asdict(self.position), "global_epoch": self.global_epoch},
            "early_stopping": {
                **self.monitor.state_dict(),
                "best_selection": self._best_selection,
                "best_epoch": self._best_epoch,
            },
            "history": [asdict(record) for record in self.history],
            "rng": list(rng) if rng is not None else [ckpt.capture_rng_state(self._cuda_device)],
            "config": asdict(self.config),
            # What the curriculum is (a resume must find the same) and what it learned (an adaptive one's stages).
            "schedule": self.curriculum.to_dict(),
            "adaptive": self.curriculum.state_dict(),
            "dataset_sizes": self._dataset_sizes(),
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any], source: str = "checkpoint") -> None:
        """Restores a :meth:`state_dict`, after checking it comes from the same run.

        Args:
            state: a checkpoint dict.
            source: how to name it in errors (the file path).

        Raises:
            CheckpointError: its config (apart from device, workers, progress), schedule or training-set sizes
                differ from this trainer's, or its model state does not fit the model.
        """
        ckpt.check_same_run(state, self.config, self.curriculum.to_dict(), self._dataset_sizes(), source)
        try:
            self.model.load_state_dict(state["model"])
            self.loss_fn.load_state_dict(state["loss_fn"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ckpt.CheckpointError(f"{source}: does not fit this model/optimizer: {e}") from e
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        position = dict(state["position"])
        self.global_epoch = int(position.pop("global_epoch"))
        self.position = SchedulePosition(**position)
        self.monitor.load_state_dict(state["early_stopping"])
        self._best_selection = float(state["early_stopping"].get("best_selection", math.inf))
        self._best_epoch = state["early_stopping"].get("best_epoch")
        self.history = [EpochRecord.from_state(row) for row in state["history"]]
        self.curriculum.load_state_dict(state.get("adaptive"))  # absent from checkpoints older than adaptive runs
        self._restore_rng(state["rng"], source)

    def _restore_rng(self, rng: Sequence[Mapping[str, Any]], source: str) -> None:
        if len(rng) != self.world_size:
            warnings.warn(
                f"{source} was written by {len(rng)} process(es), this run has {self.world_size}: "
                "every rank takes rank 0's random state, so the run is not bit-identical",
                stacklevel=3,
            )
        ckpt.restore_rng_state(rng[self.rank] if len(rng) == self.world_size else rng[0], self._cuda_device)

    def _checkpoint_path(self, path: str | Path | None) -> Path:
        if path is not None:
            return Path(path)
        if self.run_dir is None:
            raise ValueError("no checkpoint path given and the trainer has no run_dir")
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Writes :meth:`state_dict` atomically to ``path`` (default ``run_dir/checkpoint.pt``); returns the path."""
        path = self._checkpoint_path(path)
        ckpt.save_checkpoint(self.state_dict(), path)
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        """Restores the trainer from ``path`` (default ``run_dir/checkpoint.pt``); :meth:`fit` then goes on from there.

        Raises:
            FileNotFoundError: no such file (named in the message).
            CheckpointError: a corrupt file, or one from a different run (named in the message).
        """
        path = self._checkpoint_path(path)
        self.load_state_dict(ckpt.load_checkpoint(path), source=str(path))
