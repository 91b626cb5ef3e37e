"""Metrics on :class:`~agecurriculum.evaluation.predict.Predictions`: accuracies, MAE, confusion matrices, breakdowns.

Conventions:

- Accuracies are fractions in [0, 1] over the items whose label is known (target != IGNORE); NaN when none is.
- **1-off**: the predicted bin is the true bin or one of its neighbours; bins 0 and K-1 have one neighbour only.
- **MAE** (years) compares the *expected* age ``sum_k p_k * m_k`` with the true exact age, over the items that have
  one (UTKFace, MORPH-II; not Adience's group labels); ``n_mae`` says how many. ``m_k`` is the representative age of
  bin k (:func:`~agecurriculum.bins.representative_ages`, re-exported here): the mean exact training age inside the
  bin when training ages are given, else its midpoint, and ``lo + 10`` for the open last bin (e.g. 60-100).
  :func:`fit_representative_ages` instead fits ``m_k`` to held-out predictions (a release's ``rep_ages``, run
  setting ``rep_ages: fit_val``): the mean training age is only right for a face classified with certainty, and a
  network's probabilities are not.
- **Children** (:func:`children_gender_accuracy`): faces whose label says they are at most :data:`CHILD_MAX_AGE`
  (12): an exact age up to 12, or a range ending there or below (FairFace's 0-2 and 3-9; not 10-19). Gender is
  hardest to see before puberty, so it is reported apart from the adults it would hide among.
- **Flip consistency** (:func:`flip_consistency`): the fraction of faces given the same class for the crop and for
  its mirror image; a prediction that changes with the mirror is not one to rely on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# representative_ages lives with the bins (a release reads it without evaluation); re-exported here.
from agecurriculum.bins import OPEN_BIN_OFFSET, AgeBins, representative_ages
from agecurriculum.data.records import IGNORE
from agecurriculum.evaluation.predict import Predictions

__all__ = [
    "CHILD_MAX_AGE",
    "GENDER_LABELS",
    "OPEN_BIN_OFFSET",
    "representative_ages",
    "fit_representative_ages",
    "expected_ages",
    "accuracy",
    "one_off_accuracy",
    "compute_metrics",
    "children_gender_accuracy",
    "flip_consistency",
    "confusion_matrix",
    "plot_confusion",
    "breakdown",
    "breakdown_markdown",
    "format_number",
]

GENDER_LABELS = ("male", "female")
CHILD_MAX_AGE = 12  # oldest age counted as a child (issue 16: gender fails most on faces of 0-12 year olds)


def fit_representative_ages(age_probs: np.ndarray, exact_ages: np.ndarray, bins: AgeBins) -> np.ndarray:
    """The ages ``m_k``, each inside its bin, that minimise the MAE of the expected age ``sum_k p_k * m_k``.

    Least absolute deviations with bounds, as a linear program (OR-Tools' GLOP): minimise ``sum_i t_i`` with
    ``t_i >= |sum_k p_ik m_k - a_i|`` and ``lo_k <= m_k <= hi_k``. Keeping each
    ``m_k`` in its bin keeps the expected age of a confident face inside the bin it names. Fit on a validation
    split: the test split must stay unseen, and the training split's probabilities are overconfident.

    Args:
        age_probs: ``(N, K)`` predicted bin probabilities.
        exact_ages: ``(N,)`` true ages in years; NaN rows (no exact age) are left out.
        bins: the K bins of ``age_probs``.

    Returns:
        ``(K,)`` float array.

    Raises:
        ValueError: shapes disagree, or no row has an exact age.
    """
    from ortools.linear_solver import pywraplp  # imported here: only fitting needs the solver

    age_probs, exact_ages = np.asarray(age_probs, dtype=float), np.asarray(exact_ages, dtype=float)
    if age_probs.ndim != 2 or age_probs.shape[1] != len(bins) or exact_ages.shape != (len(age_probs),):
        raise ValueError(
            f"expected (N, {len(bins)}) probabilities and N exact ages, got {age_probs.shape} and {exact_ages.shape}"
        )
    known = ~np.isnan(exact_ages)
    if not known.any():
        raise ValueError(
            "no exact ages to fit the representative ages on (age-group labels such as Adience's cannot be used)"
        )
    probs, ages = age_probs[known], exact_ages[known]
    solver = pywraplp.Solver.CreateSolver("GLOP")
    reps = [solver.NumVar(float(lo), float(hi), f"m{k}") for k, (lo, hi) in enumerate(bins.groups)]
    errors = [solver.NumVar(0.0, solver.infinity(), f"t{i}") for i in range(len(ages))]
    for p, age, error in zip(probs, ages, errors):
        estimate = solver.Sum([float(pk) * m for pk, m in zip(p, reps)])
        solver.Add(error >= estimate - float(age))
        solver.Add(error >= float(age) - estimate)
    solver.Minimize(solver.Sum(errors))
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        raise RuntimeError("the representative-age linear program found no optimum")
    return np.array([m.solution_value() for m in reps])


def expected_ages(age_probs: np.ndarray, rep_ages: np.ndarray) -> np.ndarray:
    """``sum_k p_k * m_k`` for every row of ``age_probs``."""
    if age_probs.shape[1] != len(rep_ages):
        raise ValueError(f"{age_probs.shape[1]} age classes but {len(rep_ages)} representative ages")
    return age_probs @ rep_ages


def accuracy(probs: np.ndarray, targets: np.ndarray, tolerance: int = 0) -> float:
    """Fraction of known targets whose argmax class is within ``tolerance`` classes of them (NaN if none known)."""
    known = targets != IGNORE
    if not known.any():
        return math.nan
    return float((np.abs(probs[known].argmax(1) - targets[known]) <= tolerance).mean())


def one_off_accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Accuracy that also counts a prediction one class off (neighbouring age group) as right."""
    return accuracy(probs, targets, tolerance=1)


def compute_metrics(pred: Predictions, bins: AgeBins, rep_ages: np.ndarray | None = None) -> dict[str, float]:
    """The headline metrics of one set of predictions.

    Args:
        pred: the predictions.
        bins: the unified bins the age probabilities are over.
        rep_ages: ``(K,)`` representative ages; default :func:`representative_ages` of ``bins`` without training ages.

    Returns:
        ``gender_accuracy``, ``age_accuracy``, ``age_one_off`` (fractions), ``mae`` (years), and the counts
        ``n`` (items), ``n_gender`` / ``n_age`` (known labels), ``n_mae`` (items with an exact age).
    """
    if pred.age_probs.shape[1] != len(bins):
        raise ValueError(f"predictions have {pred.age_probs.shape[1]} age classes but the bins have {len(bins)}")
    rep_ages = representative_ages(bins) if rep_ages is None else np.asarray(rep_ages, dtype=float)
    exact = ~np.isnan(pred.exact_ages)
    errors = np.abs(expected_ages(pred.age_probs[exact], rep_ages) - pred.exact_ages[exact])
    return {
        "gender_accuracy": accuracy(pred.gender_probs, pred.gender_targets),
        "age_accuracy": accuracy(pred.age_probs, pred.age_targets),
        "age_one_off": one_off_accuracy(pred.age_probs, pred.age_targets),
        "mae": float(errors.mean()) if errors.size else math.nan,
        "n": len(pred),
        "n_gender": int((pred.gender_targets != IGNORE).sum()),
        "n_age": int((pred.age_targets != IGNORE).sum()),
        "n_mae": int(errors.size),
    }


def children_gender_accuracy(pred: Predictions, max_age: float = CHILD_MAX_AGE) -> dict[str, float]:
    """Gender accuracy on the faces whose label puts them at ``max_age`` or younger (see the module docstring).

    Returns:
        ``gender_accuracy`` (NaN when there is no such face with a known gender) and ``n``, the number of those
        faces with a known gender (the accuracy's denominator).
    """
    children = pred.max_ages <= max_age  # NaN (unknown age) compares False
    known = children & (pred.gender_targets != IGNORE)
    return {
        "gender_accuracy": accuracy(pred.gender_probs[children], pred.gender_targets[children]),
        "n": int(known.sum()),
    }


def flip_consistency(pred: Predictions, mirrored: Predictions) -> dict[str, float]:
    """How often the model gives a face and its mirror image the same answer.

    Args:
        pred: predictions on the faces as they are.
        mirrored: predictions on the same faces, in the same order, mirrored left-right (e.g.
            :func:`~agecurriculum.evaluation.predict.predict_dataset` with ``mirror=True``).

    Returns:
        ``gender`` and ``age_bin``: the fraction of faces whose predicted (argmax) gender, or age bin, is the same
        in both; ``n``: the number of faces. Labels are not needed: a face without one counts too.

    Raises:
        ValueError: the two are not predictions of the same items (their lengths or targets differ).
    """
    if len(pred) != len(mirrored) or not (
        np.array_equal(pred.gender_targets, mirrored.gender_targets)
        and np.array_equal(pred.age_targets, mirrored.age_targets)
    ):
        raise ValueError(
            f"flip_consistency needs predictions of the same items in the same order; got {len(pred)} "
            f"and {len(mirrored)} items" + ("" if len(pred) != len(mirrored) else " with other targets")
        )
    if not len(pred):
        return {"gender": math.nan, "age_bin": math.nan, "n": 0}
    return {
        "gender": float((pred.gender_pred == mirrored.gender_pred).mean()),
        "age_bin": float((pred.age_pred == mirrored.age_pred).mean()),
        "n": len(pred),
    }


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts, rows = true class, columns = predicted class; IGNORE targets are left out."""
    known = targets != IGNORE
    flat = targets[known] * num_classes + predicted[known]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion(
    matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "", axis_name: str = ""
) -> Path:
    """Writes a confusion matrix PNG: colour = row-normalised fraction, text = count and row percentage.

    Rows are normalised so that classes of very different sizes are comparable (each row shows where that true
    class went); the counts stay visible because a 100% row of 3 images means little.

    Args:
        matrix: ``(C, C)`` counts from :func:`confusion_matrix`.
        labels: class names for both axes, e.g. ``AgeBins.labels()``.
        path: the PNG to write; its folder is created.
        title: figure title.
        axis_name: what the classes are, e.g. ``"age bin (years)"``, appended to the axis titles.
    """
    matrix = np.asarray(matrix)
    rows = matrix.sum(1, keepdims=True)
    frac = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = 1.6 + 0.65 * len(labels)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")  # Agg canvas, no pyplot: leaves global state alone
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{count}\n{frac[i, j]:.0%}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if frac[i, j] > 0.5 else "black",
        )
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, list(labels), rotation=45 if len(labels) > 4 else 0)
    ax.set_yticks(ticks, list(labels))
    suffix = f" {axis_name}" if axis_name else ""
    ax.set_xlabel(f"predicted{suffix}")
    ax.set_ylabel(f"true{suffix}")
    ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _cell_labels(pred: Predictions, bins: AgeBins, key: str) -> np.ndarray:
    unknown = "unknown"
    if key == "gender":
        return np.array([GENDER_LABELS[g] if g != IGNORE else unknown for g in pred.gender_targets], dtype=object)
    if key == "age_bin":
        names = bins.labels()
        return np.array([names[b] if b != IGNORE else unknown for b in pred.age_targets], dtype=object)
    if key == "race":
        return np.array([unknown if r is None else str(r) for r in pred.races], dtype=object)
    raise ValueError(f"unknown breakdown key {key!r}; use 'gender', 'age_bin' or 'race'")


def breakdown(
    pred: Predictions,
    bins: AgeBins,
    rep_ages: np.ndarray | None = None,
    by: Sequence[str] = ("gender", "age_bin", "race"),
) -> list[dict[str, Any]]:
    """Metrics per cell of true gender x true age bin x race (or any subset of those keys, in ``by``).

    Items with an unknown label fall in an ``"unknown"`` cell of that key, so every item is counted once. A key
    without any label at all (e.g. race on Adience) is left out, as it would only add one ``"unknown"`` column.

    Returns:
        One row per non-empty cell, sorted by gender, age-bin order and race: the keys' values, then ``n``,
        ``age_accuracy``, ``age_one_off``, ``gender_accuracy``, ``mae`` and ``n_mae`` (see :func:`compute_metrics`).
    """
    columns = {key: _cell_labels(pred, bins, key) for key in by}
    columns = {key: col for key, col in columns.items() if (col != "unknown").any()}
    order = {name: i for i, name in enumerate([*GENDER_LABELS, *bins.labels()])}
    cells = sorted(
        {tuple(col[i] for col in columns.values()) for i in range(len(pred))},
        key=lambda cell: [(order.get(v, len(order)), v) for v in cell],
    )
    rows = []
    for cell in cells:
        mask = (
            np.logical_and.reduce([col == v for col, v in zip(columns.values(), cell)])
            if columns
            else np.ones(len(pred), bool)
        )
        m = compute_metrics(pred.select(mask), bins, rep_ages)
        rows.append(
            {
                **dict(zip(columns, cell)),
                "n": m["n"],
                "age_accuracy": m["age_accuracy"],
                "age_one_off": m["age_one_off"],
                "gender_accuracy": m["gender_accuracy"],
                "mae": m["mae"],
                "n_mae": m["n_mae"],
            }
        )
    return rows


def format_number(value: Any, percent: bool = False) -> str:
    """A table cell: a fraction as a percentage with ``percent``, floats to 2 decimals, "–" for NaN."""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{100 * value:.2f}" if percent else f"{value:.2f}"
    return str(value)


def breakdown_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of :func:`breakdown` rows; accuracies in %, MAE in years, "–" where undefined."""
    if not rows:
        return "(no items)\n"
    headers = list(rows[0])
    percent = {"age_accuracy", "age_one_off", "gender_accuracy"}
    titles = {
        "age_accuracy": "age acc (%)",
        "age_one_off": "1-off (%)",
        "gender_accuracy": "gender acc (%)",
        "mae": "MAE (years)",
        "n_mae": "n (exact age)",
        "age_bin": "age bin",
    }
    lines = ["| " + " | ".join(titles.get(h, h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_number(row[h], h in percent) for h in headers) + " |" for row in rows]
    return "\n".join(lines) + "\n"
