"""The release gate (agecurriculum.evaluation.gate): paired bootstrap margins, the verdict, the table."""

import json
import math

import numpy as np
import pytest

from agecurriculum.bins import PAPER_BINS, representative_ages
from agecurriculum.data.records import IGNORE
from agecurriculum.evaluation import Predictions, expected_calibration_error
from agecurriculum.evaluation.gate import GateModel, aligned, gate_rows

N = 600


def labels(seed=0):
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 80, N).astype(float)
    genders = rng.integers(0, 2, N)
    genders[:20] = IGNORE  # some faces without a gender label
    age_bins = np.array([PAPER_BINS.bin_of(int(a)) for a in ages])
    datasets = np.array(["utk"] * (N // 2) + ["ff"] * (N // 2), dtype=object)
    races = np.array(["A", "B", "C"] * (N // 3), dtype=object)
    exact = np.where(datasets == "utk", ages, np.nan)  # "ff" has no exact ages, as FairFace
    return age_bins, genders, exact, datasets, races, ages


def model(right_gender: float, right_age: float, seed: int, label_seed=0, confidence=0.9) -> GateModel:
    """Predictions that get about the given fractions right, with gender probability ``confidence``."""
    age_bins, genders, exact, datasets, races, ages = labels(label_seed)
    rng = np.random.default_rng(seed)
    g_ok = rng.random(N) < right_gender
    predicted_gender = np.where(g_ok, np.clip(genders, 0, 1), 1 - np.clip(genders, 0, 1))
    gender_probs = np.full((N, 2), 1 - confidence)
    gender_probs[np.arange(N), predicted_gender] = confidence
    a_ok = rng.random(N) < right_age
    predicted_age = np.where(a_ok, age_bins, (age_bins + 1) % 8)
    age_probs = np.full((N, 8), 0.02)
    age_probs[np.arange(N), predicted_age] = 0.86
    pred = Predictions(age_probs, gender_probs, age_bins, genders, exact, races, datasets, max_ages=ages)
    return GateModel(pred, representative_ages(PAPER_BINS))


def test_the_same_model_passes_with_every_row_the_same():
    base = model(0.9, 0.7, seed=1)
    result = gate_rows(base, base)
    assert result.passed and {row.verdict() for row in result.rows if row.gated} == {"same"}
    assert all(row.change == 0 and row.margin == 0 for row in result.rows if row.gated)


def test_a_worse_candidate_fails_and_a_better_one_passes():
    base = model(0.9, 0.7, seed=1)
    worse = model(0.8, 0.7, seed=2)
    result = gate_rows(base, worse)
    assert not result.passed
    fallen = {(row.metric, row.group) for row in result.fallen}
    assert ("gender", "all") in fallen and not any(m.startswith("age") for m, _ in fallen)
    better = gate_rows(base, model(0.97, 0.8, seed=3, confidence=0.97))
    assert better.passed and better.rows[0].verdict() == "better"
    # As accurate, but as unsure as before: right 97% of the time at 90% confidence is a calibration error.
    underconfident = gate_rows(base, model(0.97, 0.8, seed=3))
    assert {(row.metric, row.group) for row in underconfident.fallen} >= {("gender ECE", "all")}


def test_margins_come_from_the_paired_spread_and_shrink_with_more_faces():
    base, other = model(0.9, 0.7, seed=1), model(0.9, 0.7, seed=4)
    result = gate_rows(base, other, resamples=4000)
    row = next(r for r in result.rows if (r.metric, r.group) == ("gender", "all"))
    # The bootstrap SD of a paired difference of accuracies: sqrt(discordant share - difference^2) / sqrt(n).
    a = base.predictions.gender_pred == base.predictions.gender_targets
    b = other.predictions.gender_pred == other.predictions.gender_targets
    known = base.predictions.gender_targets != IGNORE
    d = (b.astype(float) - a)[known]
    assert row.margin == pytest.approx(result.z * d.std() / math.sqrt(known.sum()), rel=0.08)
    per_dataset = next(r for r in result.rows if (r.metric, r.group) == ("gender", "utk"))
    assert per_dataset.margin > row.margin  # half the faces: a wider margin
    # Bonferroni: z is the one-sided quantile at 0.05 over the gated rows.
    gated = sum(r.gated for r in result.rows)
    assert result.z == pytest.approx(__import__("statistics").NormalDist().inv_cdf(1 - 0.05 / gated))


def test_rows_values_match_the_library_metrics():
    base = model(0.9, 0.7, seed=1)
    pred = base.predictions
    rows = {(r.metric, r.group): r for r in gate_rows(base, base).rows}
    known = pred.gender_targets != IGNORE
    assert rows[("gender", "all")].baseline == pytest.approx((pred.gender_pred == pred.gender_targets)[known].mean())
    assert rows[("gender ECE", "all")].baseline == pytest.approx(
        expected_calibration_error(pred.gender_probs, pred.gender_targets)
    )
    children = known & (pred.max_ages <= 12)
    assert rows[("gender children 0-12", "all")].n == children.sum()
    assert ("MAE", "utk") in rows and ("MAE", "ff") not in rows  # exact ages only
    assert {m for m, g in rows if m.startswith("gender race")} == {"gender race A", "gender race B", "gender race C"}
    assert not any(m.startswith("gender race") and g == "all" for m, g in rows)  # each dataset's own race labels
    assert rows[("MAE", "all")].higher_is_better is False and rows[("gender ECE", "all")].higher_is_better is False


def test_small_rows_are_shown_not_gated():
    base, worse = model(0.9, 0.7, seed=1), model(0.5, 0.2, seed=2)
    result = gate_rows(base, worse, min_faces=400)
    assert [r.gated for r in result.rows] == [r.n >= 400 for r in result.rows]
    assert all(r.verdict() == "not gated (few faces)" for r in result.rows if not r.gated)


def test_the_table_and_the_json_say_what_fell():
    result = gate_rows(model(0.9, 0.7, seed=1), model(0.8, 0.7, seed=2))
    table = result.to_markdown(baseline="shipped", candidate="new")
    assert table.startswith("| metric | faces | shipped | new | change | margin | verdict |")
    assert "| gender | 580 |" in table and "FELL" in table and "**Gate: FAILED" in table
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["passed"] is False and as_json["rows"][0]["verdict"] == "FELL"


def test_predictions_on_different_faces_are_refused():
    with pytest.raises(ValueError, match="same faces"):
        gate_rows(model(0.9, 0.7, seed=1), model(0.9, 0.7, seed=1, label_seed=5))


def test_aligned_keeps_the_faces_both_scored_in_the_first_order():
    pred = model(0.9, 0.7, seed=1).predictions
    first = [f"f{i}" for i in range(N)]
    second = list(reversed(first))[:-10]  # the second model lost ten faces and lists them in another order
    reordered = pred.select(np.arange(N)[::-1][:-10])
    a, b = aligned([(first, pred), (second, reordered)])
    assert len(a) == len(b) == N - 10
    np.testing.assert_array_equal(a.gender_probs, b.gender_probs)
    np.testing.assert_array_equal(a.age_targets, pred.age_targets[10:])


def test_the_mae_reads_the_expected_age_after_each_models_age_temperature_as_predict_does():
    from agecurriculum.evaluation.calibration import apply_temperature
    from agecurriculum.evaluation.metrics import expected_ages

    base = model(0.9, 0.7, seed=1)
    tempered = GateModel(base.predictions, base.rep_ages, age_temperature=2.0)
    pred = base.predictions
    exact = ~np.isnan(pred.exact_ages)

    def mae(probs):
        return np.abs(expected_ages(probs, base.rep_ages)[exact] - pred.exact_ages[exact]).mean()

    result = gate_rows(base, tempered)
    row = next(r for r in result.rows if (r.metric, r.group) == ("MAE", "all"))
    assert row.baseline == pytest.approx(mae(pred.age_probs))
    assert row.candidate == pytest.approx(mae(apply_temperature(pred.age_probs, 2.0)))
    assert row.candidate != pytest.approx(row.baseline)
    # The temperature flattens the probabilities but keeps their order: the 8-bin accuracy is the same.
    age = next(r for r in result.rows if (r.metric, r.group) == ("age 8-bin", "all"))
    assert age.candidate == age.baseline
