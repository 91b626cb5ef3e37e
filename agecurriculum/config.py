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

from agecurriculum.adaptive import AdaptiveSettings
from agecurriculum.data.sources import DATASETS
from agecurriculum.data.splits import check_fractions
from agecurriculum.model.config import ModelConfig  # the model section: DualClassifier's settings, without torch

__all__ = [
    "AdaptiveSettings",
    "BALANCE_MODES",
    "CONDITIONING_MODES",
    "EVALUATION_PARTS",
    "LOSS_NAMES",
    "RUN_CONFIG_FILE",
    "MONITOR_LOSSES",
    "MONITOR_SCOPES",
    "SAMPLING_MODES",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainerConfig",
    "apply_overrides",
    "check_config",
    "load_config",
    "settings_help",
]

BALANCE_MODES = ("paper", "sampler", "none", "ratio")  # the values of DataConfig.balance
CONDITIONING_MODES = ("hard", "soft")  # the values of ModelConfig.conditioning (GenderConditionedHead's)
LOSS_NAMES = ("uncertainty", "sum", "fixed")  # the values of RunConfig.loss (agecurriculum.losses.LOSSES has each)
MONITOR_SCOPES = ("run", "stage", "pair")  # the values of TrainerConfig.plateau_scope / early_stopping_scope
MONITOR_LOSSES = ("total", "cross_entropy")  # the values of TrainerConfig.monitor_loss
SAMPLING_MODES = ("shuffle", "balanced", "age_gender")  # the values of TrainerConfig.sampling
RUN_CONFIG_FILE = "run_config.yaml"  # a run's RunConfig, as train() writes it into out_dir; evaluate_run() reads it
EVALUATION_PARTS = ("test", "val")  # the parts evaluate_run can score: test for reports, val to choose models


@dataclass
class TrainerConfig:
    """Settings of :class:`~agecurriculum.train.CurriculumTrainer`; saved with each run so it can be repeated."""

    batch_size: int = 32  # images per optimisation step (per process in a distributed run)
    lr: float = 1e-3  # initial learning rate of the default AdamW optimizer
    weight_decay: float = 1e-4  # AdamW weight decay (not applied to the loss's log-variances)
    seed: int = 0  # seeds model-independent randomness: the data order of every epoch
    device: str = "cpu"  # torch device string, e.g. "cuda:0"; plain "cuda" under torchrun means cuda:LOCAL_RANK
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    plateau_factor: float = 0.1  # ReduceLROnPlateau: LR multiplier when the validation loss stalls
    plateau_patience: int = 2  # ReduceLROnPlateau: epochs without improvement before the LR drops
    plateau_scope: str = "stage"  # what the plateau watches, and when it starts afresh: stage (the stage's datasets
    # and bins, reset at each stage; a cut LR stays cut) | run (the validation loss over every validation set and bin,
    # never reset: a stage that restarts at fewer bins reads as a stall) | pair (the current (stage, dataset), reset
    # at each; with a few epochs per pair it never acts)
    early_stopping_patience: int | None = 5  # epochs without validation improvement before training stops early
    # (what stops is early_stopping_scope's); None disables early stopping
    early_stopping_scope: str = "stage"  # stage (the rest of the stage is skipped; later stages still train) | run
    # (the rest of the run is skipped: a curriculum stage that restarts at fewer bins can end the curriculum there)
    # | pair (the rest of the current dataset's epochs in the stage); each watches the loss as plateau_scope says
    monitor_loss: str = "total"  # the validation loss that the selection score (best.pt, the release), the plateau
    # and early stopping compare across epochs: total (the loss function's value, learned task weights and their
    # terms included) | cross_entropy (the two tasks' cross-entropies added, unweighted: the uncertainty loss's
    # total falls while its learned weights settle, whatever the network does, so epochs compare on this instead)
    max_steps_per_epoch: int | None = None  # cap on batches per epoch (smoke tests, demos); None = whole epoch
    image_budget: int | None = None  # end the run once this many training images were seen (the epoch that gets
    # there stops at the batch that does); None = no budget. The adaptive curriculum plans its stages within it
    time_budget: float | None = None  # end the run once its training steps took this many minutes (validation
    # passes not counted; resumed epochs are): the epoch running then stops at the batch that passes it; None = no
    # limit. Caps a recipe's wall time on a slower CPU, where image_budget alone would run long; the images a run
    # then sees depend on the machine's speed (the run's log and history say how many)
    amp: bool | None = None  # mixed precision: None = bf16 autocast on CUDA GPUs that support it, else off;
    # True = bf16 where supported (fp16 with a GradScaler on older GPUs, bf16 on the CPU); False = always fp32
    progress: bool = False  # show a per-step progress bar (loss, images/s) on rank 0
    verbose: bool = True  # print on rank 0 a line per stage, one per epoch (losses, validation, images/s, time
    # left) and the measured speed a minute in; False keeps fit() silent
    sampling: str = "shuffle"  # shuffle: each item once per epoch | balanced: draws with replacement so that every
    # age bin of the stage's view is seen equally often (the weighted-sampler alternative to the paper's balancing)
    # | age_gender: draws with replacement weighted over (age group, gender) cells and children (the settings below)
    sampling_power: float = 1.0  # age_gender: a face weighs 1 / (faces in its cell) ** this: 1 = every cell drawn
    # equally often, 0 = the data's own proportions
    child_max_age: int = 12  # age_gender: faces whose middle age is at most this count as children
    child_weight: float = 1.0  # age_gender: children's draw weights are multiplied by this


@dataclass
class DataConfig:
    """Where the faces come from and how they are prepared."""

    root: str | None = None  # the data folder, one subfolder per dataset (docs/data.rst); every dataset found under it
    # is used
    datasets: list[str] = field(default_factory=lambda: list(DATASETS))  # datasets to use (those of them found under
    # root), by name; default every dataset the library knows (agecurriculum.data.sources.DATASETS)
    cache: str = "~/.cache/agecurriculum/crops"  # aligned-crop cache (keyed by content, safe to share between runs)
    image_size: int = 112  # side of the square model input in pixels (crops are aligned at this size)
    padding: float = 0.25  # border around the face in the aligned crop, as a fraction of the face size
    max_images: int | None = None  # keep at most this many images per dataset (first in a seeded shuffle)
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train / val / test fractions
    split_seed: int = 0  # seed of the subject-disjoint split (fixed across runs so test sets stay held out)
    straddle: str = "ignore"  # age ranges that straddle bins: ignore | overlap | drop | error
    balance: str = "paper"  # paper (bins above the median cut to it, bins below it augmented towards it, at most one
    # copy per image) | ratio (cut to the median, augment only bins below median / 3.5, up to it) | sampler (draw age
    # bins equally) | none
    preprocess_workers: int = 2  # processes for face detection and alignment (0: in the training process)


@dataclass
class RunConfig:
    """Everything a training run needs."""

    out_dir: str = "runs/default"  # where checkpoints, logs, plots, the release and the report go
    bins: str | list[int] = "auto"  # auto (fit on the data's labels) | paper | explicit boundaries [c1, ..., c7]
    schedule: str | list[dict] = "original"  # a preset name (original, list1, list2), adaptive (learned while
    # training from per-(dataset, bin) validation losses; settings in the adaptive section), a schedule .json file
    # (e.g. a run's learned_schedule.json, replayed as written) or a list of stage dicts
    epochs_per_stage: int = 1  # epochs of each dataset in each stage, for preset schedules
    loss: str = "uncertainty"  # uncertainty | sum | fixed
    age_label_sigma: float = 0.0  # 0: one-hot age targets (the paper); > 0: ordinal soft targets this many bins wide
    teacher: str | None = None  # distil: a release folder (one model or an ensemble) whose probabilities the model
    # also learns from, on the same augmented images (resized to its image size); bins, padding, mean/std as this run
    distill_weight: float = 0.5  # with a teacher: share of each task's loss taken against its probabilities
    distill_tasks: list[str] = field(default_factory=lambda: ["age", "gender"])  # with a teacher: the tasks that
    # distil (agecurriculum.losses.DISTILL_TASKS); [age] holds a fine-tuned model's age answers near its parent's
    # (the teacher) while gender learns from the labels alone
    calibrate: bool = False  # fit a temperature for each head's probabilities on the validation parts (flip-averaged,
    # as predict runs) and ship them in the release (extra.temperature), with the gender ECE before and after
    logit_adjust: float = 0.0  # > 0: the release's age logits lose this times log(drawn / data's own share) of each
    # bin (trainer.sampling's draws of the schedule's last training set), so that it answers with the data's age
    # proportions, not the sampler's (post-hoc logit adjustment); 1 = the whole shift, 0 = none
    rep_ages: str = "train_mean"  # the age standing for each bin in the expected age: train_mean (mean training age
    # in the bin) | fit_val (the ages, inside their bins, with the least validation MAE; needs exact ages there)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    adaptive: AdaptiveSettings = field(default_factory=AdaptiveSettings)  # schedule: adaptive's policy

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
    """Applies ``section.field=value`` overrides in order; values are parsed as YAML (``3e-4``, ``[1, 2]``,
    ``null``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected section.field=value")
        _set(config, key.strip().split("."), yaml.safe_load(raw), f"override {key}")
    return config


# The range of every numeric setting, checked by check_config before any work (so that a batch size of 0 fails at
# once, not with a ZeroDivisionError after the data was prepared). None is allowed where the field's default type
# allows it.
_RANGES: dict[type, dict[str, str]] = {
    TrainerConfig: {
        "batch_size": ">= 1",
        "lr": ">= 0",
        "weight_decay": ">= 0",
        "seed": ">= 0",
        "num_workers": ">= 0",
        "plateau_factor": "> 0, < 1",
        "plateau_patience": ">= 0",
        "early_stopping_patience": ">= 1",
        "max_steps_per_epoch": ">= 1",
        "image_budget": ">= 1",
        "time_budget": "> 0",
        "sampling_power": ">= 0",
        "child_max_age": ">= 0",
        "child_weight": "> 0",
    },
    DataConfig: {
        "image_size": ">= 16",
        "padding": ">= 0",
        "max_images": ">= 1",
        "split_seed": ">= 0",
        "preprocess_workers": ">= 0",
    },
    ModelConfig: {"bottleneck_dim": ">= 1", "dropout": ">= 0, < 1", "freeze_blocks": ">= 0", "gender_branch": ">= 0"},
    RunConfig: {
        "epochs_per_stage": ">= 1",
        "age_label_sigma": ">= 0",
        "distill_weight": ">= 0, <= 1",
        "logit_adjust": ">= 0",
    },
    AdaptiveSettings: {
        "epochs": ">= 1",
        "min_improvement": ">= 0, < 1",
        "max_stages_per_set": ">= 1",
        "forget_tolerance": ">= 0",
        "final_share": ">= 0, < 1",
        "max_stages": ">= 1",
    },
}
_CHOICES: dict[type, dict[str, tuple[str, ...]]] = {
    TrainerConfig: {
        "sampling": SAMPLING_MODES,
        "plateau_scope": MONITOR_SCOPES,
        "early_stopping_scope": MONITOR_SCOPES,
        "monitor_loss": MONITOR_LOSSES,
    },
    DataConfig: {"balance": BALANCE_MODES},
    ModelConfig: {"conditioning": CONDITIONING_MODES},
    RunConfig: {"loss": LOSS_NAMES},
}
_COMPARE = {">=": float.__ge__, ">": float.__gt__, "<=": float.__le__, "<": float.__lt__}


def _whole(f: dataclasses.Field) -> bool:
    """Whether a setting is a whole number: annotated ``int`` or ``int | None`` (annotations are strings here)."""
    return str(f.type).replace(" ", "") in ("int", "int|None")


def check_config(config: Any, prefix: str = "") -> None:
    """Checks every numeric setting of a config (and its sections) against its allowed range (whole numbers where
    the setting counts something), and the choices.

    :func:`~agecurriculum.train.train` and :class:`~agecurriculum.train.CurriculumTrainer` call it first, so a bad
    value fails in a second, before any data is prepared.

    Args:
        config: a :class:`RunConfig`, or one of its sections.
        prefix: put before each setting's name in messages (e.g. ``"trainer."``).

    Raises:
        ValueError: ``"trainer.batch_size: must be >= 1, got 0"``, naming the first bad setting.
    """
    ranges, choices = _RANGES.get(type(config), {}), _CHOICES.get(type(config), {})
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_config(value, f"{name}.")
        elif f.name in choices and value not in choices[f.name]:
            raise ValueError(f"{name}: expected one of {', '.join(choices[f.name])}, got {value!r}")
        elif f.name in ranges and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: expected a number, got {value!r}")
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{name}: must be a finite number, got {value!r}")
            for bound in ranges[f.name].split(", "):
                op, limit = bound.split(" ")
                if not _COMPARE[op](float(value), float(limit)):
                    raise ValueError(f"{name}: must be {ranges[f.name]}, got {value!r}")
            if _whole(f) and not isinstance(value, int):  # the file and --set readers convert 3.0; Python code must not
                raise ValueError(f"{name}: expected a whole number, got {value!r}")
    if isinstance(config, DataConfig):
        try:
            check_fractions(config.split)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{prefix}split: {err}") from None


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
    :class:`TrainerConfig`.
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
