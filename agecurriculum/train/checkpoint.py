"""Training checkpoints that lose nothing, and released weights.

**Training checkpoints.** :class:`~agecurriculum.train.CurriculumTrainer` writes ``run_dir/checkpoint.pt`` after
every epoch with :func:`save_checkpoint` (atomically: a kill at any moment leaves the previous file or the new one,
never half of one) and reads it back with :func:`load_checkpoint`. It is one plain dict, as in the torchvision
references; see :meth:`CurriculumTrainer.state_dict` for what each key holds::

    format, version, library_version    # "agecurriculum-checkpoint", CHECKPOINT_VERSION, agecurriculum.__version__
    model, optimizer, lr_scheduler, scaler, loss_fn                     # state dicts (model unwrapped from DDP)
    position        # the NEXT epoch to run: {"stage", "dataset_index", "epoch", "global_epoch"}
    early_stopping  # {"best_val", "stale_epochs"} of the current (stage, dataset)
    history         # [dataclasses.asdict(EpochRecord), ...]
    rng             # one capture_rng_state() per rank: {"torch", "cuda" (its device's, or None), "numpy", "python"}
    config, schedule, dataset_sizes, world_size   # what the run was; resuming checks them

It loads with ``torch.load(path, weights_only=True)``: no pickled code, so opening a checkpoint runs nothing.

**Released weights.** :func:`save_release` writes a folder holding ``model.safetensors`` and ``config.json`` (the
model's constructor arguments, the age bins, the preprocessing the model expects, the library version);
:func:`load_release` rebuilds the :class:`~agecurriculum.model.DualClassifier` (or
:class:`~agecurriculum.model.EnsembleClassifier`) from it, ready for inference.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from agecurriculum.bins import AgeBins
from agecurriculum.fileio import atomic_write
from agecurriculum.model import DualClassifier, EnsembleClassifier, classifier_from_config, member_configs
from agecurriculum.train.distributed import unwrap_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "save_release",
    "read_release_config",
    "check_release_config",
    "load_release",
    "SHARED_PREPROCESSING",
    "preprocessing_mismatch",
]

CHECKPOINT_FORMAT = "agecurriculum-checkpoint"
CHECKPOINT_VERSION = 1  # bump when a key changes meaning; load_checkpoint refuses other versions
RELEASE_FORMAT = "agecurriculum-release"
RELEASE_WEIGHTS = "model.safetensors"
RELEASE_CONFIG = "config.json"
# The preprocessing entries of a release that decide what crop its model sees: two models can share input batches
# (ensemble members, a teacher and its student) only when these agree.
SHARED_PREPROCESSING = ("image_size", "mean", "std", "padding", "alignment")
_REQUIRED_KEYS = frozenset(
    {"model", "optimizer", "lr_scheduler", "loss_fn", "position", "early_stopping", "history", "rng", "config",
     "schedule"}
)


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
        CheckpointError: the file is truncated, corrupt, of another format or version, or lacks a key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # weights_only: a checkpoint is data; loading one must never run pickled code.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/garbled zip files and pickles
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {e}") from e
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


def save_release(
    model: nn.Module,
    path_dir: str | Path,
    bins: AgeBins,
    preprocessing: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    weights_dtype: torch.dtype = torch.float32,
) -> Path:
    """Writes trained weights for inference: ``path_dir/model.safetensors`` and ``path_dir/config.json``.

    Both files are written atomically; write each release to its own folder so that the pair always matches.

    Args:
        model: a :class:`~agecurriculum.model.DualClassifier` or
            :class:`~agecurriculum.model.EnsembleClassifier` (or a DDP wrapper of one).
        path_dir: the release folder, created if needed.
        bins: the age bins the age head predicts.
        preprocessing: what an input image must go through, e.g. ``{"image_size": 224, "mean": [...],
            "std": [...], "alignment": {...}}``; JSON-able.
        extra: anything else to keep (training data, metrics, licence); JSON-able.
        weights_dtype: the floating-point type the weights are stored in; ``torch.float16`` halves the file
            (integer buffers stay as they are). :func:`load_release` loads them into a float32 model either way.

    Returns:
        ``path_dir`` as a Path.

    Raises:
        TypeError: the model has no ``config()``.
        ValueError: the model's age classes differ from ``len(bins)``, ``preprocessing``/``extra`` is not JSON-able,
            or ``weights_dtype`` is not a floating-point type.
    """
    from agecurriculum import (
        __version__,  # here, not at the top: agecurriculum imports this module
    )

    model = unwrap_model(model)
    if not callable(getattr(model, "config", None)):
        raise TypeError(f"{type(model).__name__} has no config(); save_release needs a DualClassifier")
    if not weights_dtype.is_floating_point:
        raise ValueError(f"weights_dtype must be a floating-point type, got {weights_dtype}")
    model_config = model.config()
    for member in member_configs(model_config):
        if member.get("age_classes", len(bins)) != len(bins):
            raise ValueError(f"the model predicts {member['age_classes']} age classes but bins has {len(bins)}")
    config = {
        "format": RELEASE_FORMAT,
        "library_version": __version__,
        "model": model_config,
        "age_bins": bins.to_dict(),
        "age_labels": bins.labels(),
        "preprocessing": dict(preprocessing),
        "extra": dict(extra or {}),
    }
    try:
        text = json.dumps(config, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ValueError(f"release config must be JSON-able (check preprocessing and extra): {e}") from e
    # Own copies: safetensors refuses tensors that share storage, which some state dicts hand out.
    tensors = {k: v.detach().cpu().to(weights_dtype if v.is_floating_point() else v.dtype).contiguous().clone()
               for k, v in model.state_dict().items()}
    path_dir = Path(path_dir)
    atomic_write(path_dir / RELEASE_WEIGHTS, safetensors.torch.save(tensors, {"format": "pt"}))
    atomic_write(path_dir / RELEASE_CONFIG, text.encode("utf-8"))
    return path_dir


def read_release_config(path_dir: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a release folder, without loading any weights.

    Raises:
        FileNotFoundError: ``config.json`` is missing.
        ValueError: it is not valid JSON or not a release config (the message names the file).
    """
    path = Path(path_dir) / RELEASE_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"release file not found: {path}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    return check_release_config(config, str(path))


def check_release_config(config: Any, source: str) -> dict[str, Any]:
    """``config`` if it is a release config (see :func:`~agecurriculum.train.save_release`), else ValueError
    naming ``source``."""
    if not isinstance(config, dict) or config.get("format") != RELEASE_FORMAT or "model" not in config:
        raise ValueError(f"{source}: not an agecurriculum release config")
    return config


def preprocessing_mismatch(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> str | None:
    """The first :data:`SHARED_PREPROCESSING` entry on which two releases' ``preprocessing`` differ, or None.

    Of ``alignment`` only the framing of photos (``"other"``) counts: the one every release applies at prediction.
    Which datasets a release was trained on as ready-made crops does not change what it is given.
    """
    def value(config: Mapping[str, Any], key: str) -> Any:
        entry = config.get(key)
        return entry.get("other") if key == "alignment" and isinstance(entry, Mapping) else entry

    return next((key for key in SHARED_PREPROCESSING if value(ours, key) != value(theirs, key)), None)


def load_release(path_dir: str | Path, **overrides: Any) -> tuple[DualClassifier | EnsembleClassifier, dict[str, Any]]:
    """Rebuilds a released model in eval mode, on the CPU, in float32 (whatever type the weights are stored in).

    Args:
        path_dir: a folder written by :func:`save_release`.
        **overrides: constructor arguments for :meth:`DualClassifier.from_config` (for an ensemble: for each
            member), e.g. ``backbone=module`` for a model saved with a custom backbone.

    Returns:
        ``(model, config)`` with ``config`` the parsed ``config.json`` (``AgeBins.from_dict(config["age_bins"])``
        gives the bins back).

    Raises:
        FileNotFoundError: a release file is missing (the message names it).
        ValueError: a file is unreadable or does not fit the model; the message names it.
    """
    path_dir = Path(path_dir)
    config_path, weights_path = path_dir / RELEASE_CONFIG, path_dir / RELEASE_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"release file not found: {path}")
    config = read_release_config(path_dir)
    # The weights come from the release: never download or read the backbone's original ones.
    model = classifier_from_config(config["model"], **{"pretrained": False, "weights_path": None, **overrides})
    try:
        model.load_state_dict(safetensors.torch.load_file(weights_path))
    except Exception as e:  # safetensors' own error for a corrupt file; RuntimeError for mismatched keys/shapes
        raise ValueError(f"{weights_path}: cannot load the weights into the model of {config_path}: {e}") from e
    return model.eval(), config
