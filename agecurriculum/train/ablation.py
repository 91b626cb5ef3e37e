"""The paper's ablations as one call: the loss variants (Table VII), the three curricula (Table VIII), hard
versus soft gender conditioning (a Table VII-style row of this project's), and the adaptive curriculum against the
paper's curricula and plain mixed training on one image budget (a Table VIII-style study of this project's).

:func:`run_ablation` trains one run per variant with :func:`~agecurriculum.train.run.train`, each in its own
sub-folder of ``config.out_dir``, with everything else of the configuration identical (data, splits, age bins,
seed, model, trainer), and tabulates their test results::

    out_dir/loss-uncertainty/  loss-sum/  loss-fixed/                   config's schedule, each loss
    out_dir/curriculum-original/  curriculum-list1/  curriculum-list2/  config's loss, each preset curriculum
    out_dir/conditioning-hard/  conditioning-soft/                      config's loss and schedule, each conditioning
    out_dir/adaptive-original/  -list1/  -list2/  -mixed/  -adaptive/   one image budget, see run_ablation
    out_dir/ablation.md, ablation.json                                  the tables (rewritten after each run)

    config = apply_overrides(load_config("examples/configs/cpu.yaml"), ["data.root=/data", "out_dir=runs/ablation"])
    result = run_ablation(config, study="loss")
    print(result.to_markdown())

The data is prepared once and shared by every run. A variant whose configuration equals one trained before it in
the same ablation (e.g. loss ``uncertainty`` under the ``original`` schedule is also curriculum ``original`` under
loss ``uncertainty``) reuses that run instead of training it twice. With ``resume=True`` every run goes on from its
own checkpoint, so a finished run trains no more epochs and an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agecurriculum.bins import PAPER_BINS
from agecurriculum.config import CONDITIONING_MODES, LOSS_NAMES, RunConfig
from agecurriculum.data.datasets import FilteredDataset
from agecurriculum.evaluation.metrics import format_number
from agecurriculum.evaluation.report import EvaluationReport
from agecurriculum.schedule import PRESETS, ScheduleWarning, TrainingSchedule
from agecurriculum.train.checkpoint import load_checkpoint
from agecurriculum.train.distributed import is_main_process
from agecurriculum.train.plan import format_bins
from agecurriculum.train.run import PreparedData, build_curriculum, evaluate_release, prepare_data, train

__all__ = [
    "ADAPTIVE_VARIANTS",
    "CONDITIONINGS",
    "CURRICULA",
    "LOSS_VARIANTS",
    "STUDIES",
    "AblationResult",
    "AblationRow",
    "run_ablation",
]

STUDIES = ("loss", "curriculum", "conditioning")  # what ``study="all"`` runs, in this order
_TABLES = (*STUDIES, "adaptive")  # every study, in the order of the tables
ADAPTIVE_VARIANTS = (*PRESETS, "mixed", "adaptive")  # the adaptive study's rows; the first sets the image budget
LOSS_VARIANTS = LOSS_NAMES  # uncertainty, sum, fixed
CURRICULA = tuple(PRESETS)  # original, list1, list2
CONDITIONINGS = CONDITIONING_MODES  # hard (the paper's), soft
_LABELS = {
    "loss": {"uncertainty": "uncertainty (learned weights)", "sum": "plain sum", "fixed": "fixed 0.6 / 0.4"},
    "conditioning": {"hard": "hard (one-hot predicted gender)", "soft": "soft (gender softmax)"},
    "adaptive": {
        "original": "original (the paper's)",
        "list1": "list 1",
        "list2": "list 2",
        "mixed": "mixed (every dataset and bin from the start)",
        "adaptive": "adaptive (learned from the losses)",
    },
}
_TITLES = {
    "loss": ("Loss", "Table VII form"),
    "curriculum": ("Curriculum", "Table VIII form"),
    "conditioning": ("Conditioning", "Table VII form"),
    "adaptive": ("Curriculum on one image budget", "Table VIII form"),
}
_METRICS = ("gender_accuracy", "age_accuracy")


@dataclass
class AblationRow:
    """One variant of one study and its test results.

    Attributes:
        study: ``"loss"``, ``"curriculum"`` or ``"conditioning"``.
        variant: the loss name, the curriculum preset name or the conditioning (``"hard"``, ``"soft"``).
        run_dir: the run folder holding the run's checkpoints, release and ``report/``.
        epochs_trained: epochs run by this call (0 for a finished run resumed, or a run shared with another row).
        seconds: wall time of this call's training and evaluation of the run.
        results: test dataset -> ``{"gender_accuracy", "age_accuracy"}`` (fractions, NaN where undefined) and
            ``"n"`` (test images), copied from the run's :class:`EvaluationReport`.
        val_results: the same on the validation splits (the adaptive study; empty for the others).
        images: training images the run saw in all (the adaptive study; None for the others).
        schedule: what the run trained, in words (the adaptive study; empty for the others).
    """

    study: str
    variant: str
    run_dir: Path
    epochs_trained: int
    seconds: float
    results: dict[str, dict[str, float]]
    val_results: dict[str, dict[str, float]] = field(default_factory=dict)
    images: int | None = None
    schedule: str = ""

    @property
    def mean(self) -> dict[str, float]:
        """Unweighted mean of each accuracy over the test datasets where it is defined (NaN where none is)."""
        return _mean(self.results)

    def to_dict(self) -> dict[str, Any]:
        row = {
            "variant": self.variant,
            "run_dir": str(self.run_dir),
            "epochs_trained": self.epochs_trained,
            "seconds": self.seconds,
            "results": self.results,
            "mean": self.mean,
        }
        if self.study == "adaptive":
            row.update(
                {
                    "val_results": self.val_results,
                    "val_mean": _mean(self.val_results),
                    "images": self.images,
                    "schedule": self.schedule,
                }
            )
        return row


def _mean(results: dict[str, dict[str, float]]) -> dict[str, float]:
    means = {}
    for key in _METRICS:
        values = [r[key] for r in results.values() if not math.isnan(r[key])]
        means[key] = sum(values) / len(values) if values else math.nan
    return means


@dataclass
class AblationResult:
    """All rows of an ablation and the settings they share.

    Attributes:
        out_dir: the ablation folder (``config.out_dir``).
        config: the configuration every run derives from.
        bin_labels: the unified age bins of every run.
        rows: one row per variant, in the order they ran.
    """

    out_dir: Path
    config: RunConfig
    bin_labels: list[str]
    rows: list[AblationRow] = field(default_factory=list)

    def study(self, name: str) -> list[AblationRow]:
        """The rows of one study (``"loss"``, ``"curriculum"`` or ``"conditioning"``)."""
        return [row for row in self.rows if row.study == name]

    def datasets(self) -> list[str]:
        """The test datasets of every row, in order of first appearance (the table columns)."""
        return list(dict.fromkeys(name for row in self.rows for name in row.results))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: the shared configuration and, per study, what it holds fixed and its rows."""
        studies = {
            name: {"fixed": self._fixed(name), "rows": [row.to_dict() for row in self.study(name)]}
            for name in _TABLES
            if self.study(name)
        }
        return _jsonable(
            {
                "out_dir": str(self.out_dir),
                "config": self.config.to_dict(),
                "bin_labels": self.bin_labels,
                "datasets": self.datasets(),
                "studies": studies,
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """The tables, one per study: a row per variant, gender and age accuracy (%) per test dataset and mean."""
        intro = (
            f"Test-split accuracy (%) of each variant: gender, and age over the {len(self.bin_labels)} unified "
            f"bins ({', '.join(self.bin_labels)}), per dataset and as the unweighted mean over the datasets. "
            "All runs share the data, splits, bins, model, trainer settings and seed; only the varied setting "
            "differs."
        )
        lines = ["# Ablation", "", intro, ""]
        datasets = self.datasets()
        for name in _TABLES:
            rows = self.study(name)
            if not rows:
                continue
            title, form = _TITLES[name]
            lines += [f"## {title} ({form})", "", f"Held fixed: {_describe(self._fixed(name))}.", ""]
            if name != "adaptive":
                lines += self._table(title, rows, datasets, "results") + [""]
                continue
            for split, attr in (("Test", "results"), ("Validation", "val_results")):
                lines += [f"{split} split:", ""] + self._table(title, rows, datasets, attr, images=True) + [""]
            lines += ["What each row trained:", ""]
            lines += [f"- {_LABELS[name].get(row.variant, row.variant)}: {row.schedule}" for row in rows] + [""]
        return "\n".join(lines)

    def _table(
        self, title: str, rows: list[AblationRow], datasets: list[str], attr: str, images: bool = False
    ) -> list[str]:
        header = [
            title,
            *(f"{d} {part} (%)" for d in datasets for part in ("gender", "age")),
            "mean gender (%)",
            "mean age (%)",
            *(["images seen"] if images else []),
            "run",
        ]
        lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for row in rows:
            label = _LABELS.get(row.study, {}).get(row.variant, row.variant)
            results = getattr(row, attr)
            cells = [
                format_number(results[d][key], True) if d in results else "–" for d in datasets for key in _METRICS
            ]
            cells += [format_number(_mean(results)[key], True) for key in _METRICS]
            cells += [f"{row.images:,}" if row.images is not None else "–"] if images else []
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {_relative(row.run_dir, self.out_dir)} |")
        return lines

    def write(self) -> list[Path]:
        """Writes ``ablation.md`` and ``ablation.json`` into :attr:`out_dir`; returns their paths."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in (("ablation.md", self.to_markdown()), ("ablation.json", self.to_json())):
            path = self.out_dir / name
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)  # atomic: an interrupted write leaves the previous table, not half of one
            paths.append(path)
        return paths

    def _fixed(self, study: str) -> dict[str, Any]:
        # What a study holds fixed while it varies the other setting.
        if study == "loss":
            return {
                "schedule": self.config.schedule,
                "epochs_per_stage": self.config.epochs_per_stage,
                "conditioning": self.config.model.conditioning,
            }
        if study == "curriculum":
            return {
                "loss": self.config.loss,
                "epochs_per_stage": self.config.epochs_per_stage,
                "conditioning": self.config.model.conditioning,
            }
        if study == "adaptive":
            budget = next((row.images for row in self.study("adaptive") if row.variant == ADAPTIVE_VARIANTS[0]), None)
            return {
                "loss": self.config.loss,
                "conditioning": self.config.model.conditioning,
                "seed": self.config.trainer.seed,
                "image budget": "the original curriculum's images" + (f" ({budget:,})" if budget is not None else ""),
                "early stopping": "off",
            }
        return {
            "loss": self.config.loss,
            "schedule": self.config.schedule,
            "epochs_per_stage": self.config.epochs_per_stage,
        }


def _describe(fixed: dict[str, Any]) -> str:
    parts = []
    for key, value in fixed.items():
        if key == "schedule" and not isinstance(value, str):
            value = f"the config's own {len(value)}-stage curriculum"
        parts.append(f"{key} {value}")
    return ", ".join(parts)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN (the runs' report.json does the same)
    return value


def _results(report: EvaluationReport | None) -> dict[str, dict[str, float]]:
    if report is None:  # ranks other than 0 of a distributed run do not evaluate
        return {}
    return {
        r.name: {
            "gender_accuracy": float(r.metrics["gender_accuracy"]),
            "age_accuracy": float(r.metrics["age_accuracy"]),
            "n": int(r.metrics["n"]),
        }
        for r in report.results
    }


def _choose(names: Iterable[str], known: Sequence[str], what: str) -> list[str]:
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"{what}: expected one or more of {list(known)}, got {names}")
    return names


def _variants(
    config: RunConfig,
    study: str,
    losses: Sequence[str],
    curricula: Sequence[str],
    conditionings: Sequence[str] = CONDITIONINGS,
    adaptive_variants: Sequence[str] = ADAPTIVE_VARIANTS,
) -> list[tuple[str, str, RunConfig]]:
    """``(study, variant, run config)`` of every run, each config a copy with its own ``out_dir``; the adaptive
    study's get their image budget in :func:`_on_budget`, once the data is prepared."""
    if study not in (*_TABLES, "all"):
        raise ValueError(f"study: expected all, {', '.join(_TABLES)}, got {study!r}")
    out = Path(config.out_dir)
    variants = []
    if study == "adaptive":
        for name in _choose(adaptive_variants, ADAPTIVE_VARIANTS, "adaptive variants"):
            run = copy.deepcopy(config)
            run.trainer.early_stopping_patience = None  # every variant trains its whole budget
            # mixed: the placeholder names the datasets for the checks; _on_budget sets its number of stages.
            every_bin = list(range(len(PAPER_BINS)))
            run.schedule = name if name != "mixed" else [{"datasets": list(config.data.datasets), "bins": every_bin}]
            run.out_dir = str(out / f"adaptive-{name}")
            variants.append(("adaptive", name, run))
    if study in ("all", "loss"):
        for name in _choose(losses, LOSS_VARIANTS, "losses"):
            run = copy.deepcopy(config)
            run.loss, run.out_dir = name, str(out / f"loss-{name}")
            variants.append(("loss", name, run))
    if study in ("all", "curriculum"):
        for name in _choose(curricula, CURRICULA, "curricula"):
            run = copy.deepcopy(config)
            run.schedule, run.out_dir = name, str(out / f"curriculum-{name}")
            variants.append(("curriculum", name, run))
    if study in ("all", "conditioning"):
        for name in _choose(conditionings, CONDITIONINGS, "conditionings"):
            run = copy.deepcopy(config)
            run.model.conditioning, run.out_dir = name, str(out / f"conditioning-{name}")
            variants.append(("conditioning", name, run))
    return variants


def _check_datasets(
    variants: list[tuple[str, str, RunConfig]], available: Sequence[str], num_bins: int, where: str
) -> None:
    """Raises one ValueError naming every variant whose curriculum uses a dataset not in ``available``."""
    problems = []
    for study, name, run in variants:
        if run.schedule == "adaptive":
            continue  # it uses whichever of the configured datasets have training images
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScheduleWarning)  # the presets break Eq. 7 on purpose; train() warns
            needed = build_curriculum(run, num_bins).datasets
        missing = [d for d in needed if d not in available]
        if missing:
            problems.append(f"{study}-{name} needs {missing}")
    if problems:
        hint = "add the missing datasets"
        if any(problem.startswith(("curriculum-", "adaptive-")) for problem in problems):
            hint = (
                "the paper's curricula (original, list1, list2) each use utkface, adience and morph2: "
                + hint
                + ", or run only the loss study (--study loss)"
            )
        raise ValueError(f"ablation: {'; '.join(problems)}, but {where} has only {list(available)}; {hint}")


def _planned_images(schedule: TrainingSchedule, prepared: PreparedData, run: RunConfig) -> int:
    """Training images ``schedule`` would see, by the trainer's rules: a stage with every bin also takes the images
    of unknown age, an epoch skips a last batch of one image and stops at ``max_steps_per_epoch`` (one process)."""
    every_bin, t, total = frozenset(range(len(prepared.bins))), run.trainer, 0
    for stage in schedule:
        for name in stage.datasets:
            n = len(FilteredDataset(prepared.train_sets[name], stage.bins, keep_unknown=stage.bins == every_bin))
            n -= n % t.batch_size == 1
            total += stage.epochs * (
                n if t.max_steps_per_epoch is None else min(n, t.max_steps_per_epoch * t.batch_size)
            )
    return total


def _on_budget(runs: list[tuple[str, str, RunConfig]], prepared: PreparedData, found: list[str]) -> None:
    """Puts every run of the adaptive study on one image budget: the images the original curriculum plans (with the
    config's epochs_per_stage). The runs are cut at it; those that would see fewer train longer first: list 1 and
    2 with more epochs per stage, mixed with as many one-epoch stages of every dataset and bin as it takes."""
    if not runs:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScheduleWarning)  # the presets break Eq. 7 on purpose; train() warns
        budget = _planned_images(PRESETS["original"](runs[0][2].epochs_per_stage), prepared, runs[0][2])
        for _, name, run in runs:
            run.trainer.image_budget = budget
            if name in PRESETS:
                while _planned_images(PRESETS[name](run.epochs_per_stage), prepared, run) < budget:
                    run.epochs_per_stage += 1
            elif name == "mixed":
                stage = {"datasets": found, "bins": list(range(len(prepared.bins))), "epochs": 1}
                per_stage = _planned_images(TrainingSchedule.from_dicts([stage]), prepared, run)
                run.schedule = [dict(stage) for _ in range(math.ceil(budget / max(per_stage, 1)))]


def _trained(row_variant: str, run: RunConfig, run_dir: Path) -> tuple[int, str]:
    """The images a finished run saw (from its checkpoint) and what it trained, in words."""
    history = load_checkpoint(run_dir / "checkpoint.pt")["history"]
    images = sum(int(record["images"]) for record in history)
    if row_variant == "adaptive":
        learned = json.loads((run_dir / "learned_schedule.json").read_text(encoding="utf-8"))
        parts: list[list[Any]] = []  # [text, repeats], consecutive repeats merged
        for stage in learned:
            text = f"{'+'.join(stage['datasets'])} {format_bins(frozenset(stage['bins']))}"
            if parts and parts[-1][0] == text:
                parts[-1][1] += 1
            else:
                parts.append([text, 1])
        stages = "; ".join(text + (f" (x{n})" if n > 1 else "") for text, n in parts)
        return images, f"{len(learned)} learned stages of one epoch per dataset: {stages} (learned_schedule.json)"
    if row_variant == "mixed":
        return images, f"{len(run.schedule)} one-epoch stages of every dataset and bin, cut at the budget"
    # The original curriculum sets the budget: it trains all of it; a longer preset is cut where the budget ends.
    if row_variant == ADAPTIVE_VARIANTS[0]:
        cut = " (all of it: it sets the budget)"
    else:
        cut = " cut at the budget" if images >= (run.trainer.image_budget or math.inf) else " (all of it)"
    return images, f"the preset, {run.epochs_per_stage} epoch(s) per stage and dataset,{cut}"


def run_ablation(
    config: RunConfig,
    study: str = "all",
    losses: Sequence[str] = LOSS_VARIANTS,
    curricula: Sequence[str] = CURRICULA,
    resume: bool = False,
    on_run: Callable[[AblationRow], None] | None = None,
    conditionings: Sequence[str] = CONDITIONINGS,
    adaptive_variants: Sequence[str] = ADAPTIVE_VARIANTS,
) -> AblationResult:
    """Trains and evaluates every variant of the chosen studies, then writes ``ablation.md`` and ``ablation.json``.

    The loss study keeps ``config.schedule`` and sets ``loss`` to each of ``losses``; the curriculum study keeps
    ``config.loss`` and sets ``schedule`` to each preset of ``curricula`` (``config.epochs_per_stage`` epochs per
    stage); the conditioning study keeps both and sets ``model.conditioning`` to each of ``conditionings``. Each run
    goes to ``config.out_dir/<study>-<variant>``. The tables are rewritten after every run, so they hold what is
    finished so far.

    The adaptive study (only when asked for: ``study="adaptive"``) trains ``adaptive_variants`` on one image
    budget, the images the original curriculum plans, with early stopping off so that each sees all of it: the
    paper's three curricula (more epochs per stage where they would see fewer), ``mixed`` (every dataset and bin
    from the start, the datasets alternating epoch by epoch) and ``adaptive``
    (:class:`~agecurriculum.adaptive.AdaptiveCurriculum` with ``config.adaptive``), and tabulates test and
    validation accuracy and the images each saw.

    Args:
        config: the configuration every run derives from; ``out_dir`` is the ablation folder.
        study: ``"all"`` (loss, curriculum, then conditioning study), ``"loss"``, ``"curriculum"``,
            ``"conditioning"`` or ``"adaptive"``.
        losses: the loss variants of the loss study (:data:`~agecurriculum.config.LOSS_NAMES`).
        curricula: the presets of the curriculum study (names of :data:`~agecurriculum.schedule.PRESETS`).
        resume: go on from each run's checkpoint; finished runs train no more epochs (they are re-evaluated).
        on_run: called with each row as soon as its run is done (e.g. to print progress).
        conditionings: the variants of the conditioning study (``"hard"``, ``"soft"``).
        adaptive_variants: the rows of the adaptive study (names of :data:`ADAPTIVE_VARIANTS`).

    Returns:
        Every row, in the order the runs ran (also written to ``ablation.md`` and ``ablation.json``).

    Raises:
        ValueError: unknown study, loss, preset or conditioning name; a curriculum that uses a dataset missing from
            ``config.data.datasets`` or from the data root (raised before anything is trained); and every error
            of :func:`~agecurriculum.train.run.prepare_data` and :func:`~agecurriculum.train.run.train`.
    """
    variants = _variants(config, study, losses, curricula, conditionings, adaptive_variants)
    # The presets are checked against the configured dataset names first, so that a curriculum study that cannot
    # run fails before face detection; then every variant against the datasets that have training images.
    presets = [
        v for v in variants if v[0] == "curriculum" or isinstance(v[2].schedule, str) and v[2].schedule in PRESETS
    ]
    _check_datasets(presets, config.data.datasets, len(PAPER_BINS), "data.datasets")
    prepared: PreparedData = prepare_data(config)
    found = [name for name, ds in prepared.train_sets.items() if len(ds)]
    _check_datasets(variants, found, len(prepared.bins), f"the data under {config.data.root} (with training images)")
    _on_budget([v for v in variants if v[0] == "adaptive"], prepared, [d for d in config.data.datasets if d in found])
    result = AblationResult(Path(config.out_dir), config, prepared.bins.labels())
    trained: dict[str, AblationRow] = {}  # run configuration (less out_dir) -> the row that trained it
    for study_name, name, run in variants:
        key = json.dumps({**run.to_dict(), "out_dir": None}, sort_keys=True, default=str)
        start = time.perf_counter()
        if key in trained:
            same = trained[key]
            row = AblationRow(study_name, name, same.run_dir, 0, 0.0, same.results)
        else:
            done = train(run, resume=resume, prepared=prepared)
            row = AblationRow(
                study_name, name, done.run_dir, len(done.history), time.perf_counter() - start, _results(done.report)
            )
            if study_name == "adaptive" and is_main_process():
                row.val_results = _results(evaluate_release(done.release_dir, prepared, run, part="val"))
                row.images, row.schedule = _trained(name, run, done.run_dir)
            trained[key] = row
        result.rows.append(row)
        if is_main_process():  # under torchrun, rank 0 writes (as train() does)
            result.write()
        if on_run is not None:
            on_run(row)
    return result
