"""Run configuration: one dataclass tree, loaded from YAML or TOML, with ``section.field=value`` overrides.

A training or evaluation run is fully described by a :class:`RunConfig`. The command line reads it from a file and
applies overrides, e.g. ``agecurriculum train --config examples/configs/cpu.yaml --set trainer.lr=3e-4``; the
resolved configuration is saved beside the run so that it can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
import yaml

from agecurriculum.train.trainer import TrainerConfig

__all__ = ["DataConfig", "ModelConfig", "RunConfig", "load_config", "apply_overrides", "settings_help"]


@dataclass
class DataConfig:
    """Where the faces come from and how they are prepared."""

    root: str | None = None  # a folder laid out like ../shared/data; every dataset found under it is used
    datasets: list[str] = field(default_factory=lambda: ["utkface", "adience", "morph2", "fairface"])  # datasets to use
    # (those of them found under root), by name
    cache: str = "~/.cache/agecurriculum/crops"  # aligned-crop cache (keyed by content, safe to share between runs)
    image_size: int = 112  # side of the square model input in pixels (crops are aligned at this size)
    padding: float = 0.25  # border around the face in the aligned crop, as a fraction of the face size
    max_images: int | None = None  # keep at most this many images per dataset (first in a seeded shuffle)
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train / val / test fractions
    split_seed: int = 0  # seed of the subject-disjoint split (fixed across runs so test sets stay held out)
    straddle: str = "ignore"  # age ranges that straddle bins: ignore | overlap | drop | error
    balance: str = "paper"  # paper (median rule with augmented copies) | sampler (draw age bins equally) | none
    preprocess_workers: int = 2  # processes for face detection and alignment


@dataclass
class ModelConfig:
    """The DualClassifier."""

    backbone: str = "efficientnet-lite0"  # any name from agecurriculum.list_backbones()
    pretrained: bool = True  # start from ImageNet weights (offline for Lite0-2, downloaded for B0-B7)
    bottleneck_dim: int = 512  # width of the shared bottleneck layer
    dropout: float = 0.3  # dropout after the bottleneck
    init_from: str | None = None  # fine-tune: start from a release folder or a run's checkpoint.pt/best.pt


@dataclass
class RunConfig:
    """Everything a training run needs."""

    out_dir: str = "runs/default"  # where checkpoints, logs, plots, the release and the report go
    bins: str | list[int] = "auto"  # auto (fit on the data's labels) | paper | explicit boundaries [c1, ..., c7]
    schedule: str | list[dict] = "original"  # a preset name (original, list1, list2) or a list of stage dicts
    epochs_per_stage: int = 1  # epochs of each dataset in each stage, for preset schedules
    loss: str = "uncertainty"  # uncertainty | sum | fixed
    age_label_sigma: float = 0.0  # 0: one-hot age targets (the paper); > 0: ordinal soft targets this many bins wide
    teacher: str | None = None  # distil: a release folder (one model or an ensemble) whose probabilities the model
    # also learns from, on the same augmented images (resized to its image size); bins, padding, mean/std as this run
    distill_weight: float = 0.5  # with a teacher: share of each task's loss taken against its probabilities
    rep_ages: str = "train_mean"  # the age standing for each bin in the expected age: train_mean (mean training age
    # in the bin) | fit_val (the ages, inside their bins, with the least validation MAE; needs exact ages there)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _set(obj: Any, path: list[str], value: Any, where: str) -> None:
    name = path[0]
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        raise ValueError(f"{where}: unknown setting {name!r}; known: {sorted(fields)}")
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if len(path) == 1:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {name} is a section; give a mapping of its settings")
            for key, sub in value.items():
                _set(current, [str(key)], sub, f"{where}.{key}")
            return
        _set(current, path[1:], value, where)
        return
    if len(path) > 1:
        raise ValueError(f"{where}: {name} is a value, not a section")
    setattr(obj, name, _coerce(current, value, where))


def _coerce(current: Any, value: Any, where: str) -> Any:
    """Checks ``value`` against the type of the default it replaces; numbers may come as strings (YAML reads
    ``3e-4`` as a string)."""
    if value is None or current is None or isinstance(current, (list, str)) and not isinstance(value, (int, float)):
        return value
    try:
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(current, int):
            number = float(value)
            if number != int(number) or isinstance(value, bool):
                raise ValueError
            return int(number)
        if isinstance(current, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a {type(current).__name__}, got {value!r}") from None
    return value


def _from_mapping(data: dict[str, Any], source: str) -> RunConfig:
    config = RunConfig()
    for key, value in data.items():
        _set(config, [str(key)], value, f"{source}: {key}")
    return config


def load_config(path: str | Path | None) -> RunConfig:
    """Reads a YAML (``.yaml``/``.yml``) or TOML (``.toml``) run configuration; None gives the defaults.

    Raises:
        ValueError: naming the file for unreadable files, syntax errors and unknown settings.
    """
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ValueError(f"{path}: unknown config format; use .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: not valid {path.suffix[1:].upper()}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping of settings")
    return _from_mapping(data, str(path))


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Applies ``section.field=value`` overrides in order; values are parsed as YAML (``3e-4``, ``[1, 2]``, ``null``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected section.field=value")
        _set(config, key.strip().split("."), yaml.safe_load(raw), f"override {key}")
    return config


_FIELD_LINE = re.compile(r"^    (\w+): [^=]+=.*?#\s?(.*)$")
_CONTINUATION = re.compile(r"^    #\s?(.*)$")


def _field_comments(cls: type) -> dict[str, str]:
    # The comment after each field (and its "    # ..." continuation lines) is the field's documentation: one source
    # of truth for the code, the docs and --help.
    comments: dict[str, str] = {}
    last = None
    for line in inspect.getsource(cls).splitlines():
        if match := _FIELD_LINE.match(line):
            last = match.group(1)
            comments[last] = match.group(2).strip()
        elif last is not None and (match := _CONTINUATION.match(line)):
            comments[last] += " " + match.group(1).strip()
        else:
            last = None
    return comments


def settings_help(config: Any = None, prefix: str = "") -> list[str]:
    """One line per setting of a :class:`RunConfig`: ``name = default: what it means``, sections dotted.

    This is what ``agecurriculum train --help`` lists, taken from the comments in this module and in
    :class:`~agecurriculum.train.trainer.TrainerConfig`.
    """
    config = RunConfig() if config is None else config
    comments = _field_comments(type(config))
    lines = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            lines += settings_help(value, f"{prefix}{f.name}.")
        else:
            lines.append(f"{prefix}{f.name} = {value!r}: {comments.get(f.name, '')}".rstrip(": "))
    return lines
