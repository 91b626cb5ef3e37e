"""Training checkpoints that lose nothing.

:class:`~agecurriculum.train.CurriculumTrainer` writes ``run_dir/checkpoint.pt`` after
every epoch with :func:`save_checkpoint` (atomically: a kill at any moment leaves the previous file or the new one,
never half of one) and reads it back with :func:`load_checkpoint`. It is one plain dict, as in the torchvision
references; see :meth:`CurriculumTrainer.state_dict` for what each key holds::

    format, version, library_version    # "agecurriculum-checkpoint", CHECKPOINT_VERSION, agecurriculum.__version__
    model, optimizer, lr_scheduler, scaler, loss_fn                     # state dicts (model unwrapped from DDP)
    position        # the NEXT epoch to run: {"stage", "dataset_index", "epoch", "global_epoch"}
    early_stopping  # {"best_val", "stale_epochs"} of early stopping's scope;
                    # {"best_selection", "best_epoch"}: best.pt's
    history         # [dataclasses.asdict(EpochRecord), ...]
    rng             # one capture_rng_state() per rank: {"torch", "cuda" (its device's, or None), "numpy", "python"}
    config, schedule, dataset_sizes, world_size   # what the run was; resuming checks them (check_same_run)
    adaptive        # what the curriculum learned (AdaptiveCurriculum.state_dict); None for a static schedule

It loads with ``torch.load(path, weights_only=True)``: no pickled code, so opening a checkpoint runs nothing.

Released weights (``save_release``, ``load_release``) are another format, for inference: :mod:`agecurriculum.release`.
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agecurriculum.config import TrainerConfig
from agecurriculum.fileio import atomic_write, safe_torch_load

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "check_same_run",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = "agecurriculum-checkpoint"
CHECKPOINT_VERSION = 1  # bump when a key changes meaning; load_checkpoint refuses other versions
_REQUIRED_KEYS = frozenset(
    {
        "model",
        "optimizer",
        "lr_scheduler",
        "loss_fn",
        "position",
        "early_stopping",
        "history",
        "rng",
        "config",
        "schedule",
    }
)
# Config fields that say where/how fast a run executes, not what it computes: a resume may change them.
_RUNTIME_ONLY_FIELDS = frozenset({"device", "num_workers", "progress", "verbose"})
# What a checkpoint written before a setting existed ran with, where that differs from today's default: resuming it
# under the new default would change the run, so check_same_run must compare with the old value.
_LEGACY_CONFIG = {"plateau_scope": "pair", "early_stopping_scope": "pair"}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, or does not belong to the run that tries to resume from it."""


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Writes a checkpoint dict to ``path`` atomically (see :func:`atomic_write`).

    Raises:
        OSError: naming ``path`` when it cannot be written (full disk, read-only file system, ...); the checkpoint
            that was there before is kept.
    """
    # Serialised in memory first: torch.save turns a failed write (a full disk) into a RuntimeError that says
    # neither the file nor the reason, whereas atomic_write reports the OSError itself.
    buffer = io.BytesIO()
    torch.save(dict(checkpoint), buffer)
    atomic_write(path, buffer.getbuffer())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a training checkpoint onto the CPU and checks its format.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        CheckpointError: the file is truncated, corrupt, of another format or version, or lacks a key (one line,
            never torch's advice to load it unsafely).
        OSError: the file cannot be opened (permissions, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = safe_torch_load(path, "checkpoint", CheckpointError)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an agecurriculum training checkpoint")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {checkpoint.get('version')!r}, this library reads {CHECKPOINT_VERSION}"
        )
    missing = sorted(_REQUIRED_KEYS - set(checkpoint))
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks the key(s) {missing}")
    return checkpoint


def check_same_run(
    checkpoint: Mapping[str, Any],
    config: TrainerConfig,
    schedule: Mapping[str, Any],
    dataset_sizes: Mapping[str, int],
    source: str = "checkpoint",
) -> None:
    """Checks that a checkpoint belongs to the run that resumes from it.

    Args:
        checkpoint: the checkpoint dict (as :func:`load_checkpoint` returns it).
        config: the resuming run's trainer settings; ``device``, ``num_workers`` and ``progress`` may differ, as they
            change where and how fast the run executes, not what it computes. A setting the checkpoint lacks (it
            was written before the setting existed) reads as the value such runs had.
        schedule: the resuming run's curriculum as the checkpoint's ``schedule`` holds it (what the curriculum is:
            a static schedule's stages, an adaptive curriculum's datasets, bins and settings).
        dataset_sizes: training-set name -> images, of the resuming run.
        source: how to name the checkpoint in the error (its path).

    Raises:
        CheckpointError: ``"SOURCE belongs to a different run: "`` followed by every difference.
    """
    problems = []
    saved = {**asdict(TrainerConfig()), **_LEGACY_CONFIG, **checkpoint["config"]}
    current = asdict(config)
    for key in sorted(set(saved) | set(current)):
        if key not in _RUNTIME_ONLY_FIELDS and saved.get(key) != current.get(key):
            problems.append(f"config.{key} is {saved.get(key)!r} there, {current.get(key)!r} here")
    if checkpoint["schedule"] != schedule:
        problems.append(f"schedule is {checkpoint['schedule']} there, {schedule} here")
    sizes = dict(dataset_sizes)
    if checkpoint.get("dataset_sizes", sizes) != sizes:  # checkpoints from before the sizes were kept pass
        problems.append(f"training-set sizes are {checkpoint['dataset_sizes']} there, {sizes} here")
    if problems:
        raise CheckpointError(f"{source} belongs to a different run: " + "; ".join(problems))


def capture_rng_state(cuda_device: torch.device | str = "cuda") -> dict[str, Any]:
    """The state of every random generator training draws from: torch (CPU and CUDA), numpy, Python's ``random``.

    Args:
        cuda_device: the CUDA device whose generator to keep (default the current one); its state is taken only
            once CUDA is in use, so a CPU run never initialises CUDA here.
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(cuda_device) if torch.cuda.is_initialized() else None,
        # Plain ints, not an ndarray, so that weights_only loading accepts it.
        "numpy": (name, keys.tolist(), pos, has_gauss, gauss),
        "python": random.getstate(),
    }


def restore_rng_state(state: Mapping[str, Any], cuda_device: torch.device | str = "cuda") -> None:
    """Puts back a :func:`capture_rng_state` result (the CUDA part into ``cuda_device``'s generator)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"], cuda_device)
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
