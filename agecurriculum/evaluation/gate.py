"""The release gate: a candidate model against the shipped one, on the same faces, metric by metric.

A release replaces the shipped model only when no metric falls by more than its noise margin. Both models are scored
on the same test (or validation) faces, so the comparison is *paired*: the margin comes from the spread of the
difference ``candidate - baseline`` over bootstrap resamples of those faces (:data:`GATE_RESAMPLES` resamples, each
face drawn with replacement; both models see the same resample). A metric *falls* when the difference is worse than
``z`` bootstrap standard deviations, with ``z`` the one-sided normal quantile at ``alpha / m`` (Bonferroni over the
``m`` gated rows): were the two models equally good, the gate would fail by chance at most ``alpha`` (5%) of the
time, however many rows it reads. Rows of fewer than :data:`GATE_MIN_FACES` faces are shown and not gated: their
margin would be wider than anything worth reading.

The rows (:func:`gate_rows`), each over every face of the part together (``all``) and per dataset:

- gender accuracy, and on children (:data:`~agecurriculum.evaluation.metrics.CHILD_MAX_AGE` or younger by label);
- 8-bin age accuracy and the MAE of the expected age (faces with an exact age), the expected age from the age
  probabilities after the model's own age temperature, as ``predict`` computes it;
- gender ECE (:func:`~agecurriculum.evaluation.calibration.expected_calibration_error`'s bins), after each model's
  own calibration temperature;
- gender accuracy per race, per dataset that labels race.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from agecurriculum.data.records import IGNORE
from agecurriculum.evaluation.calibration import apply_temperature
from agecurriculum.evaluation.metrics import CHILD_MAX_AGE, expected_ages
from agecurriculum.evaluation.predict import Predictions

__all__ = [
    "GATE_ALPHA",
    "GATE_MIN_FACES",
    "GATE_RESAMPLES",
    "GateModel",
    "GateResult",
    "GateRow",
    "aligned",
    "gate_rows",
]

GATE_ALPHA = 0.05  # the chance that two equally good models fail the gate (family-wise, over every gated row)
GATE_MIN_FACES = 30  # rows over fewer faces are reported, not gated
GATE_RESAMPLES = 2000  # bootstrap resamples of the faces
ECE_BINS = 15  # as expected_calibration_error's default (Guo et al.)


@dataclass(frozen=True)
class GateModel:
    """One side of the comparison: its predictions on the gate's faces and how its release reads them.

    Attributes:
        predictions: the model's probabilities and the labels, one row per face, in the same order as the other
            side's.
        rep_ages: ``(K,)`` the release's representative bin ages (for the MAE of the expected age).
        gender_temperature: the release's gender calibration temperature (1.0: none).
        age_temperature: the release's age calibration temperature (1.0: none): the expected age is computed from
            the probabilities it gives, as ``predict`` does (it leaves the 8-bin argmax as it is).
    """

    predictions: Predictions
    rep_ages: np.ndarray
    gender_temperature: float = 1.0
    age_temperature: float = 1.0


@dataclass(frozen=True)
class GateRow:
    """One metric on one group of faces, for both models.

    Attributes:
        metric: ``gender``, ``gender children 0-12``, ``age 8-bin``, ``MAE``, ``gender ECE`` or ``gender race R``.
        group: ``all`` or a dataset name.
        n: the faces the metric is computed over.
        baseline: the shipped model's value (a fraction for accuracies and ECE, years for the MAE).
        candidate: the candidate's value.
        margin: how far the candidate may fall below (above, for lower-is-better metrics) the baseline; NaN for a
            row that is not gated.
        higher_is_better: False for the MAE and the ECE.
    """

    metric: str
    group: str
    n: int
    baseline: float
    candidate: float
    margin: float
    higher_is_better: bool = True

    @property
    def gated(self) -> bool:
        return not math.isnan(self.margin)

    @property
    def change(self) -> float:
        """The candidate's gain: positive when it is better, whatever the metric's direction."""
        sign = 1.0 if self.higher_is_better else -1.0
        return sign * (self.candidate - self.baseline)

    @property
    def fell(self) -> bool:
        return self.gated and self.change < -self.margin

    def verdict(self) -> str:
        if not self.gated:
            return "not gated (few faces)"
        if self.fell:
            return "FELL"
        return "better" if self.change > self.margin else "same"


@dataclass(frozen=True)
class GateResult:
    """Every row of the gate and whether the candidate passed.

    Attributes:
        rows: the rows in table order.
        z: the number of bootstrap standard deviations a metric may fall (see the module docstring).
        resamples: bootstrap resamples behind the margins.
    """

    rows: tuple[GateRow, ...]
    z: float
    resamples: int

    @property
    def passed(self) -> bool:
        return not any(row.fell for row in self.rows)

    @property
    def fallen(self) -> list[GateRow]:
        return [row for row in self.rows if row.fell]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "z": self.z,
            "resamples": self.resamples,
            "alpha": GATE_ALPHA,
            "min_faces": GATE_MIN_FACES,
            "rows": [asdict(row) | {"verdict": row.verdict()} for row in self.rows],
        }

    def to_markdown(self, baseline: str = "shipped", candidate: str = "candidate") -> str:
        """The side-by-side table (percent for accuracies and ECE, years for the MAE) and the verdict."""
        lines = [
            f"| metric | faces | {baseline} | {candidate} | change | margin | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            scale, unit = (1.0, " y") if row.metric == "MAE" else (100.0, "")
            metric = row.metric if row.group == "all" else f"{row.metric} ({row.group})"
            margin = "–" if not row.gated else f"{scale * row.margin:.2f}"
            lines.append(
                f"| {metric} | {row.n} | {scale * row.baseline:.2f}{unit} | {scale * row.candidate:.2f}{unit} "
                f"| {scale * row.change:+.2f} | {margin} | {row.verdict()} |"
            )
        gated = sum(row.gated for row in self.rows)
        verdict = "PASSED" if self.passed else f"FAILED: {len(self.fallen)} metric(s) fell beyond the margin"
        lines += [
            "",
            f"Change: the candidate's gain (positive = better; for MAE and ECE a fall is a gain). Margin: "
            f"{self.z:.2f} x the bootstrap standard deviation of the paired difference ({self.resamples} "
            f"resamples of the faces), z the one-sided normal quantile at {GATE_ALPHA} / {gated} gated rows. "
            f"Rows of fewer than {GATE_MIN_FACES} faces are not gated.",
            "",
            f"**Gate: {verdict}.**",
        ]
        return "\n".join(lines)


# A metric as a function of bootstrap weights: (W: (B, n) counts of each face in each resample) -> (B,) values; the
# row of ones gives the value on the faces as they are.
Weighted = Callable[[np.ndarray], np.ndarray]


def _accuracy(correct: np.ndarray) -> Weighted:
    correct = correct.astype(np.float64)
    return lambda w: (w @ correct) / np.maximum(w.sum(1), 1e-12)


def _mae(errors: np.ndarray) -> Weighted:
    return lambda w: (w @ errors) / np.maximum(w.sum(1), 1e-12)


def _ece(probs: np.ndarray, targets: np.ndarray) -> Weighted:
    # As expected_calibration_error: per confidence bin |sum(correct - confidence)|, summed, over the faces.
    confidence = probs.max(1)
    gap = (probs.argmax(1) == targets) - confidence
    bin_of = np.searchsorted(np.linspace(0, 1, ECE_BINS + 1)[1:-1], confidence, side="left")
    member = np.zeros((len(gap), ECE_BINS))
    member[np.arange(len(gap)), bin_of] = 1.0
    return lambda w: np.abs(w @ (member * gap[:, None])).sum(1) / np.maximum(w.sum(1), 1e-12)


def _groups(pred: Predictions) -> list[tuple[str, np.ndarray]]:
    names = [name for name in dict.fromkeys(pred.datasets) if name is not None]
    return [("all", np.ones(len(pred), dtype=bool))] + [(name, pred.datasets == name) for name in names]


def _row_metrics(side: GateModel, mask: np.ndarray, group: str) -> dict[str, tuple[np.ndarray, Weighted, bool]]:
    """metric name -> (faces it reads, as indices; its weighted form; higher is better) for one side, one group."""
    pred = side.predictions
    gender_known = mask & (pred.gender_targets != IGNORE)
    age_known = mask & (pred.age_targets != IGNORE)
    exact = mask & ~np.isnan(pred.exact_ages)
    children = gender_known & (pred.max_ages <= CHILD_MAX_AGE)
    gender_right = pred.gender_probs.argmax(1) == pred.gender_targets
    age_right = pred.age_probs.argmax(1) == pred.age_targets
    age_probs = apply_temperature(pred.age_probs, side.age_temperature)  # what predict's expected age reads
    errors = np.abs(expected_ages(age_probs, np.asarray(side.rep_ages, float)) - np.nan_to_num(pred.exact_ages))
    calibrated = apply_temperature(pred.gender_probs, side.gender_temperature)
    out: dict[str, tuple[np.ndarray, Weighted, bool]] = {}

    def add(name: str, where: np.ndarray, make: Callable[[np.ndarray], Weighted], higher: bool = True) -> None:
        index = np.flatnonzero(where)
        if len(index):
            out[name] = (index, make(index), higher)

    add("gender", gender_known, lambda i: _accuracy(gender_right[i]))
    add(f"gender children 0-{CHILD_MAX_AGE}", children, lambda i: _accuracy(gender_right[i]))
    add("age 8-bin", age_known, lambda i: _accuracy(age_right[i]))
    add("MAE", exact, lambda i: _mae(errors[i]), higher=False)
    add("gender ECE", gender_known, lambda i: _ece(calibrated[i], pred.gender_targets[i]), higher=False)
    if group != "all":  # race labels are each dataset's own (UTKFace's and FairFace's differ)
        races = sorted({r for r in pred.races[gender_known] if r is not None})
        for race in races:
            add(f"gender race {race}", gender_known & (pred.races == race), lambda i: _accuracy(gender_right[i]))
    return out


def gate_rows(
    baseline: GateModel,
    candidate: GateModel,
    resamples: int = GATE_RESAMPLES,
    seed: int = 0,
    alpha: float = GATE_ALPHA,
    min_faces: int = GATE_MIN_FACES,
) -> GateResult:
    """Compares two models' predictions on the same faces (see the module docstring).

    Args:
        baseline: the shipped model.
        candidate: the model that would replace it.
        resamples: bootstrap resamples behind each margin.
        seed: seed of the resampling (the same faces and seed give the same margins).
        alpha: the family-wise chance of failing two equally good models.
        min_faces: rows over fewer faces are not gated.

    Raises:
        ValueError: the two sides hold different faces (their labels differ) or no face.
    """
    a, b = baseline.predictions, candidate.predictions
    if len(a) != len(b) or not len(a):
        raise ValueError(f"the gate compares predictions on the same faces: got {len(a)} and {len(b)}")
    for name in ("age_targets", "gender_targets", "datasets"):
        if not np.array_equal(getattr(a, name), getattr(b, name)):
            raise ValueError(f"the gate compares predictions on the same faces: their {name} differ")
    rng = np.random.default_rng(seed)
    staged: list[tuple[str, str, int, float, float, np.ndarray, bool]] = []
    for group, mask in _groups(a):
        mine, theirs = _row_metrics(baseline, mask, group), _row_metrics(candidate, mask, group)
        for metric, (index, base_fn, higher) in mine.items():
            cand_fn = theirs[metric][1]
            ones = np.ones((1, len(index)))
            base, cand = float(base_fn(ones)[0]), float(cand_fn(ones)[0])
            spread = np.empty(0)
            if len(index) >= min_faces:
                weights = rng.multinomial(len(index), np.full(len(index), 1 / len(index)), size=resamples)
                weights = weights.astype(np.float64)
                spread = cand_fn(weights) - base_fn(weights)
            staged.append((metric, group, len(index), base, cand, spread, higher))
    gated = sum(len(s[5]) > 0 for s in staged)
    z = NormalDist().inv_cdf(1 - alpha / max(gated, 1))
    rows = tuple(
        GateRow(metric, group, n, base, cand, z * float(spread.std(ddof=1)) if len(spread) else math.nan, higher)
        for metric, group, n, base, cand, spread, higher in staged
    )
    return GateResult(rows, z, resamples)


def aligned(pairs: Sequence[tuple[Sequence[str], Predictions]]) -> list[Predictions]:
    """The rows of several models' predictions that are of faces all of them scored, in the first one's order.

    Args:
        pairs: per model, the key of every face (e.g. its file path) and the predictions in that order.
    """
    keys = [list(k) for k, _ in pairs]
    common = set(keys[0]).intersection(*map(set, keys[1:]))
    order = [k for k in keys[0] if k in common]
    out = []
    for k, pred in pairs:
        position: Mapping[str, int] = {key: i for i, key in enumerate(k)}
        out.append(pred.select(np.array([position[key] for key in order], dtype=np.int64)))
    return out
