"""The evaluation report: the paper's Table III for every dataset, protocols, confusion matrices, error tables,
and gender as a target of its own: calibration (ECE), children's gender accuracy, gender accuracy by age bin and race.

:func:`build_report` computes everything from :class:`Predictions`; :meth:`EvaluationReport.to_markdown` and
:meth:`~EvaluationReport.to_json` render it, and :func:`write_report` writes ``report.md``, ``report.json`` and the
confusion-matrix PNGs of every dataset into one folder.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agecurriculum.bins import AgeBins
from agecurriculum.evaluation.calibration import expected_calibration_error
from agecurriculum.evaluation.metrics import (
    CHILD_MAX_AGE,
    GENDER_LABELS,
    breakdown,
    breakdown_markdown,
    children_gender_accuracy,
    compute_metrics,
    confusion_matrix,
    format_number,
    plot_confusion,
    representative_ages,
)
from agecurriculum.evaluation.predict import Predictions

__all__ = ["PAPER_RESULTS", "DatasetResult", "EvaluationReport", "build_report", "write_report"]

# Table III of the paper (gender / 8-bin age accuracy, %), EfficientNet-B4 trained on GPU. Shown beside measured
# rows for comparison only; 1-off, MAE and n are not published there.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "Adience": {"gender_accuracy": 92.25, "age_accuracy": 73.12},
    "MORPH-II": {"gender_accuracy": 97.92, "age_accuracy": 77.17},
    "UTKFace": {"gender_accuracy": 97.74, "age_accuracy": 69.83},
}
_PAPER_LABEL = "paper's number, EfficientNet-B4 on GPU"


@dataclass
class DatasetResult:
    """Everything measured on one dataset.

    Attributes:
        name: dataset name.
        metrics: :func:`compute_metrics` output.
        age_confusion: ``(K, K)`` counts, rows true bin, columns predicted bin.
        gender_confusion: ``(2, 2)`` counts, rows true gender, columns predicted.
        breakdown: :func:`breakdown` rows (gender x age bin x race).
        calibration: ``gender_ece`` and ``age_ece``, the :func:`expected_calibration_error` of the gender and the
            age-bin probabilities (fractions).
        children: :func:`children_gender_accuracy` (``gender_accuracy``, ``n``).
        by_age_bin: :func:`breakdown` rows by true age bin alone (gender accuracy per age bin among them).
        by_race: :func:`breakdown` rows by race alone; empty when the dataset has no race labels.
    """

    name: str
    metrics: dict[str, float]
    age_confusion: np.ndarray
    gender_confusion: np.ndarray
    breakdown: list[dict[str, Any]]
    calibration: dict[str, float] = field(default_factory=dict)
    children: dict[str, float] = field(default_factory=dict)
    by_age_bin: list[dict[str, Any]] = field(default_factory=list)
    by_race: list[dict[str, Any]] = field(default_factory=list)

    @property
    def slug(self) -> str:
        """The name made safe for file names."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name) or "dataset"


# How the representative ages were chosen, as the report says it, by ``rep_ages`` setting (see :mod:`.metrics`).
REP_AGES_NOTES = {
    "train_mean": "the mean training age in each bin; a bin without training ages uses its midpoint, the open last "
    "bin its lower end + 10",
    "fit_val": "fitted to the validation parts: the ages, each inside its bin, with the least mean absolute error",
}


@dataclass
class EvaluationReport:
    """Results of one model on several datasets.

    Attributes:
        bins: the unified age bins.
        rep_ages: representative age of every bin used for the expected age (MAE).
        rep_ages_method: how they were chosen, a key of :data:`REP_AGES_NOTES`.
        results: one :class:`DatasetResult` per dataset.
        protocols: protocol name -> metrics, either one run (:func:`adience_protocol`) or a fold summary
            (:func:`summarize_folds`, values ``{"mean", "std", "folds"}``).
        temperature: the calibration temperature of each head (``age``, ``gender``) the probabilities were scaled
            by before anything was measured, as ``predict`` scales them; empty: none.
    """

    bins: AgeBins
    rep_ages: list[float]
    results: list[DatasetResult]
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)
    rep_ages_method: str = "train_mean"
    temperature: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN becomes None)."""
        return _jsonable(
            {
                "bins": self.bins.to_dict(),
                "bin_labels": self.bins.labels(),
                "rep_ages": self.rep_ages,
                "rep_ages_method": self.rep_ages_method,
                "temperature": self.temperature,
                "datasets": [vars(r) for r in self.results],
                "protocols": self.protocols,
                "paper_results": {"note": _PAPER_LABEL, "percent": PAPER_RESULTS},
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self, images: bool = False) -> str:
        """The report as markdown; ``images=True`` links the confusion PNGs that :func:`write_report` writes."""
        k = len(self.bins)
        lines = [
            "# Evaluation report",
            "",
            f"Unified age bins: {', '.join(self.bins.labels())}. MAE uses the expected age sum_k p_k * m_k with "
            f"m_k = {', '.join(f'{a:.1f}' for a in self.rep_ages)} "
            f"({REP_AGES_NOTES.get(self.rep_ages_method, self.rep_ages_method)}).",
            "",
        ]
        if self.temperature:
            scaled = ", ".join(f"{head} {t:.3f}" for head, t in sorted(self.temperature.items()))
            lines += [
                f"Probabilities scaled by the release's calibration temperatures ({scaled}) before anything was "
                "measured, as predict scales them: the MAE and the ECEs are those of predict's answers.",
                "",
            ]
        lines += [
            "## Results (Table III form)",
            "",
            f"| Dataset | Gender accuracy (%) | Age accuracy (%) ({k} bins) | 1-off (%) | MAE (years) | n |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.results:
            m = r.metrics
            mae = format_number(m["mae"]) + (f" (n={m['n_mae']})" if m["n_mae"] not in (0, m["n"]) else "")
            accs = " | ".join(format_number(m[key], True) for key in ("gender_accuracy", "age_accuracy", "age_one_off"))
            lines.append(f"| {r.name} | {accs} | {mae} | {m['n']} |")
        for name, paper in PAPER_RESULTS.items():
            lines.append(
                f"| {name} ({_PAPER_LABEL}) | {paper['gender_accuracy']:.2f} | {paper['age_accuracy']:.2f}"
                " | – | – | – |"
            )
        lines += ["", "Rows marked as the paper's numbers are copied from its Table III, not measured here.", ""]
        lines += ["## Gender and calibration", "", _gender_table(self.results)]
        if self.protocols:
            lines += ["## Comparison protocols", "", _protocol_table(self.protocols)]
        for r in self.results:
            lines += [f"## {r.name}", ""]
            if images:
                lines += [
                    f"![age confusion](confusion_age_{r.slug}.png) ![gender confusion](confusion_gender_{r.slug}.png)",
                    "",
                ]
            lines += ["Errors by true gender x age bin x race:", "", breakdown_markdown(r.breakdown)]
            groups = [(f"age {row['age_bin']}", row) for row in r.by_age_bin]
            groups += [(f"race {row['race']}", row) for row in r.by_race]
            if groups:
                lines += [
                    "Gender accuracy by true age bin and by race:",
                    "",
                    "| group | n | gender acc (%) |",
                    "|---|---|---|",
                ]
                lines += [
                    f"| {name} | {row['n']} | {format_number(row['gender_accuracy'], True)} |" for name, row in groups
                ]
                lines.append("")
        return "\n".join(lines)


def _gender_table(results: list[DatasetResult]) -> str:
    """One row per dataset: the ECE of both heads and the gender accuracy on children."""
    lines = [
        f"| Dataset | Gender ECE (%) | Age-bin ECE (%) | Children (0-{CHILD_MAX_AGE}) gender accuracy (%) "
        "| n children |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        cal, kids = r.calibration, r.children
        lines.append(
            f"| {r.name} | {format_number(cal.get('gender_ece', math.nan), True)} | "
            f"{format_number(cal.get('age_ece', math.nan), True)} | "
            f"{format_number(kids.get('gender_accuracy', math.nan), True)} | {kids.get('n', 0)} |"
        )
    return "\n".join(lines) + (
        "\n\nECE: expected calibration error of the top class, 15 equal-width confidence "
        "bins (0 = calibrated). Children: faces whose label says at most "
        f"{CHILD_MAX_AGE} years (an exact age, or a range such as FairFace's 3-9).\n"
    )


def _protocol_table(protocols: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per protocol; fold summaries print as ``mean ± std`` (sample std)."""
    keys = list(dict.fromkeys(key for metrics in protocols.values() for key in metrics))
    percent = {key for key in keys if "accuracy" in key or "one_off" in key}

    def cell(value: Any, key: str) -> str:
        if isinstance(value, Mapping):
            mean, std = (format_number(value[part], key in percent) for part in ("mean", "std"))
            return f"{mean} ± {std}"
        return "–" if value is None else format_number(value, key in percent)

    titles = {"accuracy": "age accuracy", "one_off": "1-off", "gender_accuracy": "gender accuracy"}
    header = [titles.get(key, key) + (" (%)" if key in percent else "") for key in keys]
    lines = ["| Protocol | " + " | ".join(header) + " |", "|---|" + "---|" * len(keys)]
    lines += [
        f"| {name} | " + " | ".join(cell(metrics.get(key), key) for key in keys) + " |"
        for name, metrics in protocols.items()
    ]
    return "\n".join(lines) + "\n\nFold summaries are mean ± sample standard deviation (ddof=1) over the folds.\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN
    return value


def build_report(
    predictions: Mapping[str, Predictions],
    bins: AgeBins,
    rep_ages: np.ndarray | None = None,
    protocols: Mapping[str, Mapping[str, Any]] | None = None,
    rep_ages_method: str = "train_mean",
    temperature: Mapping[str, float] | None = None,
) -> EvaluationReport:
    """Computes the metrics, confusion matrices and breakdown of every dataset.

    Args:
        predictions: dataset name -> its predictions (:meth:`Predictions.by_dataset` splits a mixed test set).
        bins: the unified bins.
        rep_ages: representative bin ages; default :func:`representative_ages` of ``bins`` (pass training ages
            there to represent the open last bin by their mean).
        protocols: protocol results to include, e.g. ``{"Adience 5-fold (8 groups)": summarize_folds(...)}``.
        rep_ages_method: how ``rep_ages`` were chosen (``train_mean`` or ``fit_val``), for the report's text.
        temperature: a release's calibration temperatures by head (``age``, ``gender``; a head left out keeps
            1.0): each head's probabilities are scaled by its own before anything is measured
            (:meth:`Predictions.scaled`), so the expected age (MAE) and the ECEs are those ``predict``
            gives; the predicted classes, hence the accuracies, do not change. None: the probabilities as they are.
    """
    rep_ages = representative_ages(bins) if rep_ages is None else np.asarray(rep_ages, dtype=float)
    scales = {head: float(t) for head, t in (temperature or {}).items() if float(t) != 1.0}
    if scales:
        predictions = {name: pred.scaled(scales) for name, pred in predictions.items()}
    results = [
        DatasetResult(
            name,
            compute_metrics(pred, bins, rep_ages),
            confusion_matrix(pred.age_targets, pred.age_pred, len(bins)),
            confusion_matrix(pred.gender_targets, pred.gender_pred, 2),
            breakdown(pred, bins, rep_ages),
            {
                "gender_ece": expected_calibration_error(pred.gender_probs, pred.gender_targets),
                "age_ece": expected_calibration_error(pred.age_probs, pred.age_targets),
            },
            children_gender_accuracy(pred),
            _breakdown_by(pred, bins, rep_ages, "age_bin"),
            _breakdown_by(pred, bins, rep_ages, "race"),
        )
        for name, pred in predictions.items()
    ]
    return EvaluationReport(bins, [float(a) for a in rep_ages], results, dict(protocols or {}), rep_ages_method, scales)


def _breakdown_by(pred: Predictions, bins: AgeBins, rep_ages: np.ndarray, key: str) -> list[dict[str, Any]]:
    """:func:`breakdown` rows by ``key`` alone; [] when no item has that label (breakdown() would then drop the key
    and return one row of all items)."""
    rows = breakdown(pred, bins, rep_ages, by=(key,))
    return rows if rows and key in rows[0] else []


def write_report(report: EvaluationReport, out_dir: str | Path) -> list[Path]:
    """Writes ``report.md``, ``report.json`` and ``confusion_{age,gender}_<dataset>.png`` into ``out_dir``.

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in report.results:
        paths.append(
            plot_confusion(
                r.age_confusion,
                report.bins.labels(),
                out / f"confusion_age_{r.slug}.png",
                f"{r.name}: age",
                "age bin (years)",
            )
        )
        paths.append(
            plot_confusion(
                r.gender_confusion, GENDER_LABELS, out / f"confusion_gender_{r.slug}.png", f"{r.name}: gender"
            )
        )
    for name, text in (("report.md", report.to_markdown(images=True)), ("report.json", report.to_json())):
        (out / name).write_text(text, encoding="utf-8")
        paths.append(out / name)
    return paths
