"""CurriculumTrainer: the paper's Algorithm 1 with Algorithm 2's multi-task loss.

Algorithm 1, as run by :meth:`CurriculumTrainer.fit`::

    for stage in schedule:                      # MultiDatasetSample: (datasets, bins, epochs)
        for name in stage.datasets:             # in the stage's order
            for epoch in range(stage.epochs):
                train_one_epoch(FilteredDataset(train_sets[name], stage.bins))
                validate on FilteredDataset(val_sets[name], stage.bins)   # drives the LR plateau and early stop

The pieces are public so that a user's own loop can call them: :meth:`CurriculumTrainer.train_one_epoch` trains one
epoch on any dataset of ``(image, age_bin, gender)`` items and :meth:`CurriculumTrainer.evaluate` measures one.
Callbacks receive an :class:`EpochRecord` after every epoch (logging, plots, checkpoints).

Reproducibility: the order of the items in an epoch depends only on ``(config.seed, global epoch number)``, so a run
repeated with the same seed sees the same batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from agecurriculum.data.datasets import FilteredDataset
from agecurriculum.losses import MultiTaskLoss, UncertaintyLoss
from agecurriculum.schedule import TrainingSchedule

__all__ = ["TrainerConfig", "EpochRecord", "EvalResult", "CurriculumTrainer"]


@dataclass
class TrainerConfig:
    """Settings of :class:`CurriculumTrainer`; saved with each run so it can be repeated."""

    batch_size: int = 32  # images per optimisation step
    lr: float = 1e-3  # initial learning rate of the default AdamW optimizer
    weight_decay: float = 1e-4  # AdamW weight decay (not applied to the loss's log-variances)
    seed: int = 0  # seeds model-independent randomness: the data order of every epoch
    device: str = "cpu"  # torch device string, e.g. "cuda:0"
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    plateau_factor: float = 0.1  # ReduceLROnPlateau: LR multiplier when the validation loss stalls
    plateau_patience: int = 2  # ReduceLROnPlateau: epochs without improvement before the LR drops
    early_stopping_patience: int | None = 5  # epochs without validation improvement before a dataset's epochs
    # in the current stage end early; None disables early stopping
    max_steps_per_epoch: int | None = None  # cap on batches per epoch (smoke tests, demos); None = whole epoch


@dataclass
class EvalResult:
    """Validation metrics of one dataset (or one filtered view of it)."""

    loss: float  # mean total loss per image
    age_accuracy: float  # fraction of images whose age bin is predicted exactly
    gender_accuracy: float  # fraction of images with a known gender predicted right
    images: int  # images evaluated


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
    images: int  # training images seen
    seconds: float  # wall time of the training part of the epoch
    lr: float  # learning rate used in this epoch
    task_weights: dict[str, float] = field(default_factory=dict)  # the loss's current task multipliers
    val: EvalResult | None = None  # validation metrics, when a validation set exists

    def to_dict(self) -> dict:
        """A flat dict for CSV/JSON logs."""
        row = asdict(self)
        val = row.pop("val")
        weights = row.pop("task_weights")
        row.update({f"weight_{k}": v for k, v in weights.items()})
        row.update({f"val_{k}": v for k, v in (val or {}).items()})
        return row


class CurriculumTrainer:
    """Trains a two-headed age/gender model over a :class:`~agecurriculum.schedule.TrainingSchedule`.

    Args:
        model: any ``nn.Module`` whose forward returns ``(age_logits, gender_logits)``, such as
            :class:`~agecurriculum.model.DualClassifier`.
        schedule: the curriculum; every dataset it names must be in ``train_sets``.
        train_sets: dataset name -> dataset of ``(image, age_bin, gender)`` items.
        val_sets: dataset name -> validation dataset; datasets without one are trained without validation
            (and so without LR plateau or early stopping).
        loss: a :class:`~agecurriculum.losses.MultiTaskLoss`; defaults to :class:`UncertaintyLoss`.
        optimizer: defaults to AdamW over the model's and the loss's parameters.
        config: a :class:`TrainerConfig`.
        callbacks: callables invoked with each :class:`EpochRecord`.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: TrainingSchedule,
        train_sets: Mapping[str, Dataset],
        val_sets: Mapping[str, Dataset] | None = None,
        loss: MultiTaskLoss | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        config: TrainerConfig | None = None,
        callbacks: Sequence[Callable[[EpochRecord], None]] = (),
    ) -> None:
        missing = [name for name in schedule.datasets if name not in train_sets]
        if missing:
            raise ValueError(f"the schedule names datasets with no training set: {missing}")
        self.config = config or TrainerConfig()
        self.device = torch.device(self.config.device)
        self.model = model.to(self.device)
        self.loss_fn = (loss or UncertaintyLoss()).to(self.device)
        self.schedule = schedule
        self.train_sets = dict(train_sets)
        self.val_sets = dict(val_sets or {})
        if optimizer is None:
            # Frozen parameters are included too: AdamW skips them while they get no gradient, and they train
            # as soon as the backbone is unfrozen, without building a new optimizer.
            groups = [{"params": list(self.model.parameters())}]
            loss_params = list(self.loss_fn.parameters())
            if loss_params:  # the task log-variances are not weights to shrink
                groups.append({"params": loss_params, "weight_decay": 0.0})
            optimizer = torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.optimizer = optimizer
        self.lr_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=self.config.plateau_factor, patience=self.config.plateau_patience
        )
        self.callbacks = list(callbacks)
        self.global_epoch = 0
        self.history: list[EpochRecord] = []

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        sampler = None
        if shuffle:
            # The order depends only on (seed, global epoch): repeatable runs, and the same on every DDP rank.
            generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.global_epoch)
            sampler = RandomSampler(dataset, generator=generator)
        return DataLoader(
            dataset, batch_size=self.config.batch_size, sampler=sampler, num_workers=self.config.num_workers
        )

    def _to_device(self, batch: Iterable[torch.Tensor]) -> list[torch.Tensor]:
        return [t.to(self.device, non_blocking=True) for t in batch]

    def train_one_epoch(self, dataset: Dataset) -> tuple[float, float, float, int]:
        """Trains one pass over ``dataset`` (or ``config.max_steps_per_epoch`` batches of it).

        Returns:
            ``(mean total loss, mean age CE, mean gender CE, images seen)``, means taken per image.
        """
        self.model.train()
        sums = torch.zeros(3, dtype=torch.float64)
        seen = 0
        for step, batch in enumerate(self._loader(dataset, shuffle=True)):
            if self.config.max_steps_per_epoch is not None and step >= self.config.max_steps_per_epoch:
                break
            images, age_target, gender_target = self._to_device(batch)
            age_logits, gender_logits = self.model(images)
            parts = self.loss_fn(age_logits, gender_logits, age_target, gender_target)
            if not torch.isfinite(parts.total):
                raise FloatingPointError(f"training loss became {parts.total.item()} at step {step}")
            self.optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            self.optimizer.step()
            n = images.shape[0]
            sums += torch.tensor([parts.total.item(), parts.age.item(), parts.gender.item()], dtype=torch.float64) * n
            seen += n
        means = (sums / max(seen, 1)).tolist()
        return means[0], means[1], means[2], seen

    @torch.no_grad()
    def evaluate(self, dataset: Dataset) -> EvalResult:
        """Loss and accuracies of the model on ``dataset`` (eval mode, no gradient)."""
        self.model.eval()
        loss_sum, age_right, gender_right, gender_known, seen = 0.0, 0, 0, 0, 0
        for batch in self._loader(dataset, shuffle=False):
            images, age_target, gender_target = self._to_device(batch)
            age_logits, gender_logits = self.model(images)
            loss_sum += self.loss_fn(age_logits, gender_logits, age_target, gender_target).total.item() * len(images)
            age_right += int((age_logits.argmax(1) == age_target).sum())
            known = gender_target != self.loss_fn.ignore_index
            gender_right += int((gender_logits.argmax(1) == gender_target)[known].sum())
            gender_known += int(known.sum())
            seen += len(images)
        return EvalResult(
            loss=loss_sum / seen if seen else math.nan,
            age_accuracy=age_right / seen if seen else math.nan,
            gender_accuracy=gender_right / gender_known if gender_known else math.nan,
            images=seen,
        )

    def fit(self) -> list[EpochRecord]:
        """Runs the whole schedule (Algorithm 1) and returns one record per epoch."""
        for stage_index, stage in enumerate(self.schedule):
            for name in stage.datasets:
                train_view = FilteredDataset(self.train_sets[name], stage.bins)
                val_view = FilteredDataset(self.val_sets[name], stage.bins) if name in self.val_sets else None
                self._train_dataset_in_stage(stage_index, name, stage.epochs, train_view, val_view)
        return self.history

    def _train_dataset_in_stage(
        self, stage_index: int, name: str, epochs: int, train_view: FilteredDataset, val_view: FilteredDataset | None
    ) -> None:
        best_val, stale_epochs = math.inf, 0
        set_epoch = getattr(self.train_sets[name], "set_epoch", None)
        for epoch in range(epochs):
            if set_epoch is not None:  # e.g. BalancedDataset: fresh augmented copies every epoch, still seeded
                set_epoch(self.global_epoch)
            lr = self.optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            loss, age_loss, gender_loss, seen = self.train_one_epoch(train_view)
            seconds = time.perf_counter() - start
            val = self.evaluate(val_view) if val_view is not None and len(val_view) else None
            record = EpochRecord(
                stage=stage_index,
                dataset=name,
                epoch=epoch,
                global_epoch=self.global_epoch,
                train_loss=loss,
                train_age_loss=age_loss,
                train_gender_loss=gender_loss,
                images=seen,
                seconds=seconds,
                lr=lr,
                task_weights=self.loss_fn.task_weights(),
                val=val,
            )
            self.global_epoch += 1
            self.history.append(record)
            for callback in self.callbacks:
                callback(record)
            if val is None:
                continue
            self.lr_scheduler.step(val.loss)
            if val.loss < best_val:
                best_val, stale_epochs = val.loss, 0
            else:
                stale_epochs += 1
            patience = self.config.early_stopping_patience
            if patience is not None and stale_epochs >= patience:
                break
