"""The Adience benchmark's 5-fold protocol: one training run per fold on the fold's own lists, scored in Adience's
native 8 age groups, summarized as mean ± sample standard deviation.

For each round K (``adience/levi_folds/test_fold_is_K/{age,gender}_{train,val,test}.txt``),
:func:`run_adience_folds` trains one ordinary run (:func:`~agecurriculum.train.run.train`) into
``config.out_dir/fold-K``, with Adience's split taken from the round's lists instead of the hash split:

- train: the faces of ``age_train.txt`` in its order, duplicate lines included, then those of ``gender_train.txt``
  that the age list does not name (every face trains on its own labels from the fold files, as in any run);
- val and test: the same from the ``val`` and ``test`` lists.

Every list line is used whatever ``data.max_images`` says (the lists define the benchmark); the configuration's
other datasets keep their usual subsample and split, and train per its schedule, which must use Adience. The fold's
released model is then scored on the round's test lists: age accuracy and 1-off in the 8 Adience groups against
the classes of ``age_test.txt`` (unified-bin probabilities converted by
:func:`~agecurriculum.evaluation.protocols.adience_protocol`), gender accuracy against those of ``gender_test.txt``::

    out_dir/fold-0/ ... fold-4/           one run folder per fold; adience_fold.json holds its score
    out_dir/adience_5fold.md, .json       the table (rewritten after each fold)

    config = apply_overrides(load_config("examples/configs/paper.yaml"), ["data.root=/data", "out_dir=runs/adience"])
    print(run_adience_folds(config).to_markdown())

A list entry is *found* when the data root holds its face (either naming, see
:mod:`agecurriculum.data.sources.adience`) with a label the loader keeps, and *used* when it also went through the
face pipeline into training, validation or scoring. Entries not found (a partial copy of Adience) are counted per
list. A fold none of whose test entries, or none of whose training entries, is found or cropped is not trained:
its row gives a note instead of numbers, and the summary covers the scored folds only.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agecurriculum.bins import ADIENCE_GROUPS, PAPER_BINS
from agecurriculum.config import RunConfig
from agecurriculum.data.datasets import FaceDataset
from agecurriculum.data.records import FaceRecord
from agecurriculum.data.sources import AdienceSplit, ResolvedSplit, discover, load_adience_protocol, resolve_split
from agecurriculum.data.sources.adience import FOLD_RESULT, FOLDS
from agecurriculum.data.splits import PARTS, Split
from agecurriculum.evaluation.metrics import accuracy, format_number
from agecurriculum.evaluation.predict import predict_dataset
from agecurriculum.evaluation.protocols import adience_protocol, summarize_folds
from agecurriculum.evaluation.report import PAPER_RESULTS
from agecurriculum.fileio import atomic_write
from agecurriculum.release import load_release
from agecurriculum.schedule import ScheduleWarning
from agecurriculum.train.ablation import _jsonable
from agecurriculum.train.distributed import is_main_process
from agecurriculum.train.run import build_schedule, prepare_data, train

__all__ = ["FOLDS", "FOLD_RESULT", "LISTS", "AdienceFoldsResult", "FoldResult", "run_adience_folds"]

LISTS = tuple(f"{task}_{part}" for task in ("age", "gender") for part in PARTS)  # age_train ... gender_test
_METRICS = ("age_accuracy", "one_off", "gender_accuracy")
# Settings that do not change what a finished fold measured, so a resume may differ in them.
_RUNTIME = (
    "out_dir",
    "data.cache",
    "data.preprocess_workers",
    "trainer.device",
    "trainer.num_workers",
    "trainer.progress",
)


@dataclass
class FoldResult:
    """One round of the protocol.

    Attributes:
        fold: K of ``test_fold_is_K``.
        run_dir: the fold's run folder.
        coverage: list name (``age_train`` ... ``gender_test``) -> ``{"entries", "found", "used"}``: lines of the
            list, those whose face is in the data with a usable label, those that went into training, validation
            or scoring.
        metrics: ``age_accuracy``, ``one_off``, ``gender_accuracy`` (fractions, NaN where undefined), ``n_age``
            and ``n_gender`` (test entries scored); empty when the fold was not scored.
        note: why the fold was not scored, or which lists it used only in part; empty for a complete fold.
        epochs_trained: epochs run by this call (0 for a fold finished before and resumed).
        seconds: wall time of this call's preparation, training and scoring of the fold.
        resumed: the result was read from the fold's ``adience_fold.json`` (``resume=True``), not computed.
    """

    fold: int
    run_dir: Path
    coverage: dict[str, dict[str, int]]
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""
    epochs_trained: int = 0
    seconds: float = 0.0
    resumed: bool = False

    @property
    def scored(self) -> bool:
        return bool(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "run_dir": str(self.run_dir),
            "scored": self.scored,
            "note": self.note,
            "metrics": self.metrics,
            "coverage": self.coverage,
            "epochs_trained": self.epochs_trained,
            "seconds": self.seconds,
            "resumed": self.resumed,
        }


@dataclass
class AdienceFoldsResult:
    """The folds of one protocol run.

    Attributes:
        out_dir: the protocol folder (``config.out_dir``).
        config: the configuration every fold derives from.
        folds: one result per requested fold, in the order they ran.
    """

    out_dir: Path
    config: RunConfig
    folds: list[FoldResult] = field(default_factory=list)

    def scored(self) -> list[FoldResult]:
        """The folds that have numbers."""
        return [f for f in self.folds if f.scored]

    def summary(self) -> dict[str, dict[str, float]]:
        """:func:`~agecurriculum.evaluation.protocols.summarize_folds` of the scored folds (empty when none is)."""
        scored = self.scored()
        return summarize_folds([f.metrics for f in scored]) if scored else {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: per fold its numbers, coverage and note; the summary; the configuration."""
        return _jsonable(
            {
                "protocol": "adience-5fold",
                "out_dir": str(self.out_dir),
                "groups": [f"{lo}-{hi}" for lo, hi in ADIENCE_GROUPS],
                "folds": [f.to_dict() for f in self.folds],
                "scored_folds": [f.fold for f in self.scored()],
                "summary": self.summary(),
                "config": self.config.to_dict(),
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """The table in the paper's Table III form (a row per fold, mean ± std, the paper's number), list coverage
        and the per-fold notes."""
        groups = ", ".join(f"{lo}-{hi}" for lo, hi in ADIENCE_GROUPS)
        lines = [
            "# Adience 5-fold protocol",
            "",
            (
                f"Age accuracy and 1-off in Adience's native 8 groups ({groups}) against each fold's "
                "age_test.txt, gender accuracy against its gender_test.txt, in %. Each fold's model was trained "
                "on the fold's train lists (levi_folds/test_fold_is_K). n: test entries scored (in the mean row, "
                "all scored folds together). Mean ± sample standard deviation over the scored folds."
            ),
            "",
            "| Fold | age accuracy (%) | 1-off (%) | gender accuracy (%) | n (age) | n (gender) | run |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in self.folds:
            cells = [format_number(f.metrics.get(key, float("nan")), True) for key in _METRICS]
            counts = [str(f.metrics.get(key, 0)) for key in ("n_age", "n_gender")]
            run = _relative(f.run_dir, self.out_dir) if f.scored else "not scored (see notes)"
            lines.append(f"| {f.fold} | " + " | ".join(cells + counts) + f" | {run} |")
        summary, scored = self.summary(), self.scored()
        if scored:
            cells = [_mean_std(summary[key]) for key in _METRICS]
            counts = [str(sum(f.metrics[key] for f in scored)) for key in ("n_age", "n_gender")]
            lines.append(
                f"| mean ± std ({len(scored)} fold{'s' * (len(scored) != 1)}) | " + " | ".join(cells + counts) + " |  |"
            )
        else:
            lines.append("| mean ± std (no fold scored) | – | – | – | 0 | 0 |  |")
        paper = PAPER_RESULTS["Adience"]
        lines += [
            (
                f"| Adience (paper's number, EfficientNet-B4 on GPU) | {paper['age_accuracy']:.2f} | – | "
                f"{paper['gender_accuracy']:.2f} | – | – |  |"
            ),
            "",
            "The paper's row is copied from its Table III (its 8-bin age accuracy), not measured here.",
            "",
            "## List entries",
            "",
            "Entries used / entries in the list (found in the data, before the face pipeline).",
            "",
            "| Fold | " + " | ".join(name.replace("_", " ") for name in LISTS) + " |",
            "|---" * (len(LISTS) + 1) + "|",
        ]
        for f in self.folds:
            cells = [f"{c['used']}/{c['entries']} ({c['found']})" for c in (f.coverage[name] for name in LISTS)]
            lines.append(f"| {f.fold} | " + " | ".join(cells) + " |")
        notes = [f"- fold {f.fold}: {f.note}" for f in self.folds if f.note]
        if notes:
            lines += ["", "## Notes", "", *notes]
        return "\n".join(lines) + "\n"

    def write(self) -> list[Path]:
        """Writes ``adience_5fold.md`` and ``adience_5fold.json`` into :attr:`out_dir` atomically; returns them."""
        paths = []
        for name, text in (("adience_5fold.md", self.to_markdown()), ("adience_5fold.json", self.to_json())):
            atomic_write(self.out_dir / name, text.encode("utf-8"), durable=False)
            paths.append(self.out_dir / name)
        return paths


def _mean_std(stats: dict[str, float]) -> str:
    return f"{format_number(stats['mean'], True)} ± {format_number(stats['std'], True)}"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _config_key(config: RunConfig) -> dict[str, Any]:
    # JSON round trip: a config read back from a fold's file must compare equal to the same config in memory.
    flat = _flat(json.loads(json.dumps(config.to_dict(), default=str)))
    return {key: value for key, value in flat.items() if key not in _RUNTIME}


def _check_config(config: RunConfig, folds: Sequence[int]) -> None:
    """Raises before any data is prepared when the configuration cannot run the protocol."""
    if "adience" not in config.data.datasets:
        raise ValueError(
            f"data.datasets: the Adience protocol trains and scores on adience; add it (now: {config.data.datasets})"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScheduleWarning)  # train() warns about a preset that breaks Eq. 7
        num_bins = len(config.bins) + 1 if isinstance(config.bins, list) else len(PAPER_BINS)
        datasets = build_schedule(config, num_bins).datasets
    if "adience" not in datasets:
        raise ValueError(
            f"schedule: uses {list(datasets)}; the Adience protocol trains on each fold's Adience "
            "train lists, so a stage must use adience"
        )
    bad = [k for k in folds if k not in FOLDS]
    if bad or not folds or len(set(folds)) != len(folds):
        raise ValueError(f"folds: expected distinct folds among {list(FOLDS)}, got {list(folds)}")


def _fold_split(records: list[FaceRecord], split: AdienceSplit) -> tuple[Split, dict[str, ResolvedSplit]]:
    """Adience's split for one round: per part the age list's faces, then the gender list's other faces."""
    resolved = {
        f"{task}_{part}": resolve_split(records, getattr(split, task)[part])
        for task in ("age", "gender")
        for part in PARTS
    }
    parts = {}
    for part in PARTS:
        age = resolved[f"age_{part}"].records
        named = set(age)
        parts[part] = age + list(dict.fromkeys(r for r in resolved[f"gender_{part}"].records if r not in named))
    return Split(**parts), resolved


def _coverage(split: AdienceSplit, resolved: dict[str, ResolvedSplit]) -> dict[str, dict[str, int]]:
    return {
        name: {
            "entries": len(getattr(split, name.split("_")[0])[name.split("_")[1]]),
            "found": resolved[name].resolved,
            "used": 0,
        }
        for name in LISTS
    }


def _shortfall(coverage: dict[str, dict[str, int]]) -> str:
    short = [f"{name} {c['used']} of {c['entries']}" for name, c in coverage.items() if c["used"] < c["entries"]]
    if not short:
        return ""
    return f"list entries used: {', '.join(short)} (the rest not found in the data or dropped by the face pipeline)"


def _unusable(coverage: dict[str, dict[str, int]], key: str, where: str) -> str | None:
    """A note when no test entry, or no training entry, is left (``key``: ``found`` or ``used``)."""
    for part, what in (("test", "scored"), ("train", "trained")):
        lists = [f"{task}_{part}" for task in ("age", "gender")]
        if not any(coverage[name][key] for name in lists):
            counts = " and ".join(f"{coverage[name]['entries']} {name}" for name in lists)
            return f"none of the {counts} entries {where}; nothing to be {what} on, so the fold was not trained"
    return None


def _score(
    release_dir: Path, test_set: FaceDataset, resolved: dict[str, ResolvedSplit], batch_size: int, device: str
) -> dict[str, float]:
    """The fold's metrics on its test lists, from the released model."""
    model, info = load_release(release_dir)
    pred = predict_dataset(model, test_set, batch_size=batch_size, device=device)
    index = {record: i for i, record in enumerate(test_set.records)}
    picked = {}
    for task in ("age", "gender"):
        lst = resolved[f"{task}_test"]
        pairs = [(index[r], label) for r, label in zip(lst.records, lst.labels, strict=True) if r in index]
        picked[task] = (np.array([i for i, _ in pairs], dtype=np.int64), [label for _, label in pairs])
    age_index, age_labels = picked["age"]
    age = adience_protocol(pred.select(age_index), info.bins, age_labels)
    gender_index, gender_labels = picked["gender"]
    gender = accuracy(pred.gender_probs[gender_index], np.array(gender_labels, dtype=np.int64))
    return {
        "age_accuracy": age["accuracy"],
        "one_off": age["one_off"],
        "gender_accuracy": gender,
        "n_age": age["n"],
        "n_gender": len(gender_labels),
    }


def _finished(run_dir: Path, config: RunConfig) -> FoldResult | None:
    """The result of a fold scored before with this configuration, or None when it was not finished."""
    path = run_dir / FOLD_RESULT
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        current = _config_key(config)
        differs = sorted(k for k in current.keys() | saved["config"].keys() if current.get(k) != saved["config"].get(k))
        metrics = {k: float("nan") if v is None else v for k, v in saved["metrics"].items()}
        result = FoldResult(saved["fold"], run_dir, saved["coverage"], metrics, saved["note"], resumed=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: unreadable fold result ({err}); delete it to score the fold again") from None
    if differs:
        raise ValueError(
            f"{path}: this fold was finished with another configuration (differs in: "
            f"{', '.join(differs)}); resume with the same --config and --set values, use another "
            "out_dir, or leave out --resume to train again"
        )
    return result


def _run_fold(config: RunConfig, split: AdienceSplit, records: list[FaceRecord], resume: bool) -> FoldResult:
    run_dir = Path(config.out_dir)
    start = time.perf_counter()
    if is_main_process():  # a score from an earlier training of this folder no longer holds once it trains again
        (run_dir / FOLD_RESULT).unlink(missing_ok=True)
    override, resolved = _fold_split(records, split)
    coverage = _coverage(split, resolved)
    faces = Path(config.data.root) / "adience" / "faces"
    note = _unusable(coverage, "found", f"is in {faces} with a usable label")
    if note:
        return FoldResult(split.test_fold, run_dir, coverage, note=note, seconds=time.perf_counter() - start)
    prepared = prepare_data(config, splits_override={"adience": override})
    kept = prepared.splits["adience"]
    for part in ("train", "val"):
        present = set(getattr(kept, part))
        for task in ("age", "gender"):
            coverage[f"{task}_{part}"]["used"] = sum(r in present for r in resolved[f"{task}_{part}"].records)
    test_records = set(prepared.test_sets["adience"].records)
    for task in ("age", "gender"):  # what will be scored, so that the check below sees it before training
        coverage[f"{task}_test"]["used"] = sum(r in test_records for r in resolved[f"{task}_test"].records)
    note = _unusable(coverage, "used", "kept a face crop")
    if note:
        return FoldResult(split.test_fold, run_dir, coverage, note=note, seconds=time.perf_counter() - start)
    done = train(config, resume=resume, prepared=prepared)
    metrics = _score(
        done.release_dir, prepared.test_sets["adience"], resolved, config.trainer.batch_size, config.trainer.device
    )
    result = FoldResult(
        split.test_fold,
        run_dir,
        coverage,
        metrics,
        _shortfall(coverage),
        len(done.history),
        time.perf_counter() - start,
    )
    if is_main_process():
        saved = {**result.to_dict(), "config": _config_key(config)}
        atomic_write(run_dir / FOLD_RESULT, json.dumps(_jsonable(saved), indent=2).encode("utf-8"))
    return result


def run_adience_folds(
    config: RunConfig,
    folds: Iterable[int] = FOLDS,
    resume: bool = False,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> AdienceFoldsResult:
    """Trains and scores each fold of the Adience protocol, then writes ``adience_5fold.md`` and ``.json``.

    Args:
        config: the configuration every fold derives from; ``out_dir`` is the protocol folder, each fold trains
            into ``out_dir/fold-K``. ``data.datasets`` and the schedule must use adience.
        folds: the rounds to run (K of ``levi_folds/test_fold_is_K``), in this order.
        resume: a fold scored before (its ``adience_fold.json`` exists) is taken as it is, neither trained nor
            scored again; an interrupted fold goes on from its checkpoint.
        on_fold: called with each fold's result as soon as it is known (e.g. to print progress).

    Returns:
        The folds, in the order they ran (also written to the tables, which are rewritten after every fold).

    Raises:
        ValueError: adience not in ``data.datasets`` or not used by the schedule, bad fold numbers, no Adience
            fold files or protocol lists under the data root, a finished fold resumed with another
            configuration; every error of :func:`~agecurriculum.train.run.prepare_data` and
            :func:`~agecurriculum.train.run.train`.
    """
    folds = list(folds)
    _check_config(config, folds)
    if config.data.root is None:
        raise ValueError("data.root: not set; give the folder holding the datasets (e.g. --set data.root=DIR)")
    folder = Path(config.data.root) / "adience"
    loaded = discover(config.data.root, require_images=True, datasets=["adience"])
    if "adience" not in loaded:
        raise ValueError(f"{folder}: no Adience data (expected fold_0_data.txt ... fold_4_data.txt and faces/)")
    records = loaded["adience"].records
    splits = load_adience_protocol(folder, folds)
    out = Path(config.out_dir)
    result = AdienceFoldsResult(out, config)
    for split in splits:
        run = copy.deepcopy(config)
        run.out_dir = str(out / f"fold-{split.test_fold}")
        fold = _finished(Path(run.out_dir), run) if resume else None
        if fold is None:
            fold = _run_fold(run, split, records, resume)
        result.folds.append(fold)
        if is_main_process():
            result.write()
        if on_fold is not None:
            on_fold(fold)
    return result
