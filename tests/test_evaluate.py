"""Tests of agecurriculum.evaluation: exact metric values on hand-made arrays, protocols, report, predict_dataset."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from agecurriculum.bins import ADIENCE_GROUPS, PAPER_BINS, AgeBins
from agecurriculum.data.datasets import (
    IGNORE,
    FaceDataset,
    FilteredDataset,
    TensorFaceDataset,
)
from agecurriculum.data.records import FaceRecord
from agecurriculum.evaluation import (
    SEVEN_GROUPS,
    Predictions,
    accuracy,
    adience_protocol,
    breakdown,
    breakdown_markdown,
    build_report,
    children_gender_accuracy,
    compute_metrics,
    confusion_matrix,
    convert_probs,
    expected_ages,
    fit_representative_ages,
    flip_averaged,
    flip_consistency,
    groups_of_ages,
    one_off_accuracy,
    predict_dataset,
    representative_ages,
    seven_group_protocol,
    summarize_folds,
    write_report,
)

NAN = math.nan


def onehot(k: int, n: int = 8) -> list[float]:
    row = [0.0] * n
    row[k] = 1.0
    return row


@pytest.fixture
def pred() -> Predictions:
    """Four items over PAPER_BINS, worked out by hand in test_compute_metrics."""
    age = [onehot(0), [0, 0.6, 0, 0, 0, 0, 0, 0.4], onehot(7), onehot(5)]
    gender = [[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.2, 0.8]]
    return Predictions(
        age,
        gender,
        [0, 0, 6, IGNORE],
        [0, 0, IGNORE, 1],
        exact_ages=[2, NAN, 50, 40],
        races=["white", "black", "white", None],
        datasets=["utk", "utk", "utk", "morph"],
    )


def test_representative_ages_training_means_else_midpoints():
    mids = [1, 4.5, 10.5, 19, 29, 40, 52.5]
    assert representative_ages(PAPER_BINS).tolist() == mids + [70]  # 60 + 10
    # Bins with training ages stand at their mean (30 and 34 -> 32 in 24-34; 104 counts in the open last bin).
    assert representative_ages(PAPER_BINS, train_ages=[61, 63, 30, 34, 104]).tolist() == [
        1,
        4.5,
        10.5,
        19,
        32,
        40,
        52.5,
        76,
    ]
    assert representative_ages(PAPER_BINS, train_ages=[2, 30]).tolist() == [2] + mids[1:4] + [30, 40, 52.5, 70]
    assert representative_ages(PAPER_BINS, [61], last_bin_age=80)[-1] == 80


def test_fitted_representative_ages():
    # Sure predictions: each bin's age is the median of its faces' ages (least absolute deviations), kept inside
    # the bin (the face of 10 predicted 0-2 can pull bin 0 up to 2 only).
    ages = [16, 18, 23, 30, 33, 34, 1, 10, 10, NAN]
    probs = [onehot(3)] * 3 + [onehot(4)] * 3 + [onehot(0)] * 3 + [onehot(6)]
    fitted = fit_representative_ages(np.array(probs), np.array(ages), PAPER_BINS)
    np.testing.assert_allclose(fitted[[0, 3, 4]], [2, 18, 33], atol=1e-6)
    assert all(lo <= m <= hi for m, (lo, hi) in zip(fitted, PAPER_BINS.groups))

    # Unsure predictions: no choice of ages inside the bins gives a smaller MAE than the fitted one.
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(8, 0.5), size=200)
    truth = rng.integers(0, 90, size=200).astype(float)
    fitted = fit_representative_ages(probs, truth, PAPER_BINS)
    best = np.abs(expected_ages(probs, fitted) - truth).mean()
    lows, highs = (np.array(side, dtype=float) for side in zip(*PAPER_BINS.groups))
    for _ in range(200):
        other = rng.uniform(lows, highs)
        assert best <= np.abs(expected_ages(probs, other) - truth).mean() + 1e-9
    assert best < np.abs(expected_ages(probs, representative_ages(PAPER_BINS, truth)) - truth).mean()

    with pytest.raises(ValueError, match="no exact ages"):
        fit_representative_ages(np.array([onehot(2)]), np.array([NAN]), PAPER_BINS)
    with pytest.raises(ValueError, match=r"expected \(N, 8\)"):
        fit_representative_ages(np.ones((2, 7)) / 7, np.array([3.0, 4.0]), PAPER_BINS)


def test_compute_metrics(pred):
    m = compute_metrics(pred, PAPER_BINS)
    # age: right, 1 off, 1 off (bin 7 vs 6), unknown; gender: right, wrong, unknown, right.
    assert m["age_accuracy"] == pytest.approx(1 / 3)
    assert m["age_one_off"] == 1.0
    assert m["gender_accuracy"] == pytest.approx(2 / 3)
    # expected ages 1.0 (0.6*4.5 + 0.4*70 for the item without an exact age is not scored), 70, 40 vs 2, 50, 40.
    assert m["mae"] == pytest.approx((1 + 20 + 0) / 3)
    assert (m["n"], m["n_age"], m["n_gender"], m["n_mae"]) == (4, 3, 3, 3)
    custom = compute_metrics(pred, PAPER_BINS, representative_ages(PAPER_BINS, last_bin_age=62))
    assert custom["mae"] == pytest.approx((1 + 12 + 0) / 3)


def test_metrics_without_known_labels_are_nan():
    p = Predictions([onehot(1)], [[1, 0]], [IGNORE], [IGNORE])
    m = compute_metrics(p, PAPER_BINS)
    assert math.isnan(m["age_accuracy"]) and math.isnan(m["gender_accuracy"]) and math.isnan(m["mae"])
    assert m["n_mae"] == 0


def test_one_off_at_the_edges():
    probs = np.array([onehot(1), onehot(6), onehot(2), onehot(5), onehot(0), onehot(7)])
    targets = np.array([0, 7, 0, 7, 0, 7])
    assert one_off_accuracy(probs, targets) == pytest.approx(4 / 6)
    assert accuracy(probs, targets) == pytest.approx(2 / 6)


def test_confusion_matrix_skips_ignore(pred):
    cm = confusion_matrix(pred.age_targets, pred.age_pred, 8)
    expected = np.zeros((8, 8), int)
    expected[0, 0] = expected[0, 1] = expected[6, 7] = 1
    np.testing.assert_array_equal(cm, expected)
    np.testing.assert_array_equal(confusion_matrix(pred.gender_targets, pred.gender_pred, 2), [[1, 1], [0, 1]])


def test_predictions_validate_shapes_and_targets():
    with pytest.raises(ValueError, match="age target 8"):
        Predictions([onehot(0)], [[1, 0]], [8], [0])
    with pytest.raises(ValueError, match="exact_ages"):
        Predictions([onehot(0)], [[1, 0]], [0], [0], exact_ages=[1, 2])


def test_breakdown_cells(pred):
    rows = breakdown(pred, PAPER_BINS)
    cells = [(r["gender"], r["age_bin"], r["race"], r["n"]) for r in rows]
    assert cells == [
        ("male", "0-2", "black", 1),
        ("male", "0-2", "white", 1),
        ("female", "unknown", "unknown", 1),
        ("unknown", "46-59", "white", 1),
    ]
    white_baby = rows[1]
    assert (white_baby["age_accuracy"], white_baby["gender_accuracy"], white_baby["mae"]) == (1.0, 1.0, 1.0)
    assert math.isnan(rows[0]["mae"]) and rows[0]["n_mae"] == 0
    by_gender = breakdown(pred, PAPER_BINS, by=("gender",))
    assert [(r["gender"], r["n"], r["age_one_off"]) for r in by_gender][::2] == [("male", 2, 1.0), ("unknown", 1, 1.0)]
    assert by_gender[1]["gender"] == "female" and math.isnan(by_gender[1]["age_one_off"])  # its age is unknown
    no_race = breakdown(Predictions([onehot(0)], [[1, 0]], [0], [0]), PAPER_BINS)
    assert "race" not in no_race[0]  # no race label anywhere: no race column
    table = breakdown_markdown(rows)
    assert "| gender | age bin | race | n | age acc (%) |" in table and "| male | 0-2 | white | 1 | 100.00 |" in table


def test_convert_to_adience_groups():
    probs = np.array([onehot(0), onehot(1), onehot(7)])
    out = convert_probs(probs, PAPER_BINS, ADIENCE_GROUPS)
    np.testing.assert_allclose(out.sum(1), 1)
    np.testing.assert_allclose(out[0], onehot(0))  # 0-2 lies inside Adience 0-2
    np.testing.assert_allclose(out[2], onehot(7))  # 60-100 is Adience 60-100
    # 3-6: year 3 sits halfway between 0-2 and 4-6 and is split; 4, 5, 6 are in 4-6.
    np.testing.assert_allclose(out[1], [0.125, 0.875, 0, 0, 0, 0, 0, 0])


def test_convert_to_seven_groups():
    probs = np.array([onehot(0), onehot(2), onehot(7), [0.5, 0, 0, 0, 0, 0, 0, 0.5]])
    out = convert_probs(probs, PAPER_BINS, SEVEN_GROUPS)
    np.testing.assert_allclose(out.sum(1), 1)
    np.testing.assert_allclose(out[0], onehot(0, 7))
    np.testing.assert_allclose(out[1], [0, 0.75, 0.25, 0, 0, 0, 0])  # 7-14: 7..12 in 4-12, 13..14 in 13-19
    np.testing.assert_allclose(out[2], [0, 0, 0, 0, 0, 1 / 41, 40 / 41])  # 60 is in 46-60
    np.testing.assert_allclose(out[3], 0.5 * out[0] + 0.5 * out[2])


def test_groups_of_ages_gaps_and_ties():
    ages = np.array([3, 35, 22, 23, NAN, 105, 30])
    np.testing.assert_array_equal(groups_of_ages(ages, ADIENCE_GROUPS), [IGNORE, IGNORE, 3, 4, IGNORE, 7, 4])
    np.testing.assert_array_equal(groups_of_ages(np.array([0, 3, 4, 61, 90]), SEVEN_GROUPS), [0, 0, 1, 6, 6])


def test_protocols(pred):
    seven = seven_group_protocol(pred, PAPER_BINS)
    # true groups of ages 2, 50, 40: 0-3, 46-60, 31-45; predictions 0-2 -> 0-3, 60-100 -> mostly 61+, 35-45 -> 31-45.
    assert seven == {"accuracy": pytest.approx(2 / 3), "one_off": 1.0, "n": 3}
    adience = adience_protocol(pred, PAPER_BINS, [0, 1, 7, IGNORE])
    assert adience["accuracy"] == pytest.approx(1.0) and adience["n"] == 3
    assert adience["gender_accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="3 Adience labels for 4"):
        adience_protocol(pred, PAPER_BINS, [0, 1, 7])


def test_summarize_folds_uses_sample_std():
    folds = [
        {"accuracy": 0.5, "n": 10, "name": "a"},
        {"accuracy": 0.7, "n": 12, "name": "b"},
        {"accuracy": 0.9, "n": 14, "extra": 1.0, "name": "c"},
    ]
    summary = summarize_folds(folds)
    assert set(summary) == {"accuracy", "n"}
    assert summary["accuracy"]["mean"] == pytest.approx(0.7)
    assert summary["accuracy"]["std"] == pytest.approx(0.2)  # ddof=1; ddof=0 would give 0.163
    assert summary["n"] == {"mean": 12.0, "std": 2.0, "folds": 3}
    assert math.isnan(summarize_folds(folds[:1])["accuracy"]["std"])
    with pytest.raises(ValueError):
        summarize_folds([])


def test_report_markdown_json_and_files(pred, tmp_path):
    protocols = {"Adience 5-fold": summarize_folds([{"accuracy": 0.5}, {"accuracy": 0.7}])}
    report = build_report(pred.by_dataset(), PAPER_BINS, protocols=protocols)
    assert [r.name for r in report.results] == ["utk", "morph"]
    md = report.to_markdown()
    assert "| Dataset | Gender accuracy (%) | Age accuracy (%) (8 bins) | 1-off (%) | MAE (years) | n |" in md
    assert "| utk | 50.00 | 33.33 | 100.00 | 10.50 (n=2) | 3 |" in md
    for number in ("92.25", "73.12", "97.92", "77.17", "97.74", "69.83"):
        assert number in md
    assert "| Adience (paper's number, EfficientNet-B4 on GPU) | 92.25 | 73.12 | – | – | – |" in md
    assert "| Protocol | age accuracy (%) |" in md and "| Adience 5-fold | 60.00 ± 14.14 |" in md
    data = json.loads(report.to_json())
    assert data["datasets"][1]["metrics"]["age_accuracy"] is None  # NaN -> null
    assert data["datasets"][0]["age_confusion"][0][:2] == [1, 1]
    paths = write_report(report, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == [
        "confusion_age_morph.png",
        "confusion_age_utk.png",
        "confusion_gender_morph.png",
        "confusion_gender_utk.png",
        "report.json",
        "report.md",
    ]
    for path in paths:
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.verify()
                assert image.format == "PNG" and min(image.size) > 100
    assert "![age confusion](confusion_age_utk.png)" in (tmp_path / "out" / "report.md").read_text()


def test_report_gender_and_calibration(pred):
    report = build_report(pred.by_dataset(), PAPER_BINS)
    utk, morph = report.results
    # utk's known genders: .9 right (bin (.867, .933]) and .7 wrong (bin (.667, .733]): ECE (.1 + .7) / 2.
    assert utk.calibration["gender_ece"] == pytest.approx(0.4)
    # utk's known age bins: onehot(0) right, .6 wrong, onehot(7) wrong: (0 + .6 + 1) / 3.
    assert utk.calibration["age_ece"] == pytest.approx(1.6 / 3)
    assert utk.children == {"gender_accuracy": 1.0, "n": 1}  # the 2-year-old; the other faces are adults or unknown
    assert [(r["race"], r["n"], r["gender_accuracy"]) for r in utk.by_race] == [("black", 1, 0.0), ("white", 2, 1.0)]
    assert [(r["age_bin"], r["n"]) for r in utk.by_age_bin] == [("0-2", 2), ("46-59", 1)]
    assert morph.by_race == [] and morph.by_age_bin == []  # no race and no known age bin: no rows, not an "all" row
    assert morph.children["n"] == 0 and math.isnan(morph.children["gender_accuracy"])
    md = report.to_markdown()
    assert "| Dataset | Gender ECE (%) | Age-bin ECE (%) | Children (0-12) gender accuracy (%) | n children |" in md
    assert "| utk | 40.00 | 53.33 | 100.00 | 1 |" in md and "| morph | 20.00 | – | – | 0 |" in md
    assert "| race black | 1 | 0.00 |" in md and "| age 0-2 | 2 | 50.00 |" in md
    data = json.loads(report.to_json())["datasets"]
    assert data[0]["calibration"]["gender_ece"] == pytest.approx(0.4) and data[1]["children"]["gender_accuracy"] is None
    assert data[0]["by_race"][1]["race"] == "white"


def test_report_reads_the_probabilities_predict_gives_after_the_temperatures(pred):
    # A release's temperatures change predict's expected age and confidences, not its classes: the report scales
    # the probabilities the same way, so its MAE and ECEs are those of predict's answers.
    temperature = {"age": 2.0, "gender": 0.5}
    plain, scaled = (
        build_report(pred.by_dataset(), PAPER_BINS),
        build_report(pred.by_dataset(), PAPER_BINS, temperature=temperature),
    )
    by_hand = pred.scaled(temperature).select([1])  # the utk face with an age spread over two bins
    assert by_hand.age_probs[0, 1] == pytest.approx(0.6**0.5 / (0.6**0.5 + 0.4**0.5))
    assert by_hand.gender_probs[0, 1] == pytest.approx(0.49 / (0.49 + 0.09))
    rep_ages = np.asarray(plain.rep_ages)
    utk_scaled = pred.scaled(temperature).by_dataset()["utk"]
    known = ~np.isnan(utk_scaled.exact_ages)
    mae = np.abs(expected_ages(utk_scaled.age_probs, rep_ages) - utk_scaled.exact_ages)[known].mean()
    assert scaled.results[0].metrics["mae"] == pytest.approx(mae)
    for a, b in zip(plain.results, scaled.results):
        for key in ("gender_accuracy", "age_accuracy", "age_one_off"):
            assert a.metrics[key] == b.metrics[key] or (math.isnan(a.metrics[key]) and math.isnan(b.metrics[key]))
    assert scaled.results[0].calibration["gender_ece"] != pytest.approx(plain.results[0].calibration["gender_ece"])
    assert scaled.temperature == temperature and json.loads(scaled.to_json())["temperature"] == temperature
    assert "calibration temperatures (age 2.000, gender 0.500)" in scaled.to_markdown()
    # T = 1 (a release without temperatures) reports the probabilities as they are, and says nothing of them.
    same = build_report(pred.by_dataset(), PAPER_BINS, temperature={"age": 1.0, "gender": 1.0})
    assert same.to_dict() == plain.to_dict() and "temperatures" not in same.to_markdown()


def test_children_gender_accuracy_uses_the_age_range():
    # FairFace-style ranges: 3-9 is a child, 10-19 is not (it may be 19); an exact 12 is, 13 is not.
    gender = [[0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.9, 0.1]]
    p = Predictions(
        [onehot(0)] * 6,
        gender,
        [IGNORE] * 6,
        [0, 0, 1, 0, 1, IGNORE],
        exact_ages=[NAN, NAN, 12, 13, NAN, 5],
        max_ages=[9, 2, 12, 13, 19, 5],
    )
    # Children with a known gender: 3-9 (right), 0-2 and 12 (wrong).
    assert children_gender_accuracy(p) == {"gender_accuracy": pytest.approx(1 / 3), "n": 3}
    assert children_gender_accuracy(p, max_age=2) == {"gender_accuracy": 0.0, "n": 1}
    # Without max_ages they follow the exact ages: only the 12-year-old (and the 5-year-old of unknown gender).
    np.testing.assert_array_equal(Predictions([onehot(0)], [[1, 0]], [0], [0], exact_ages=[4]).max_ages, [4])
    no_range = Predictions(p.age_probs, p.gender_probs, p.age_targets, p.gender_targets, p.exact_ages)
    assert children_gender_accuracy(no_range) == {"gender_accuracy": 0.0, "n": 1}
    assert children_gender_accuracy(p.select([3, 4]))["n"] == 0


def test_flip_consistency():
    age = [onehot(0), onehot(3), onehot(5), onehot(7)]
    crop = Predictions(age, [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]], [0, 3, IGNORE, 7], [0, 0, 1, IGNORE])
    mirror_age = [onehot(0), onehot(4), onehot(5), onehot(6)]
    mirror = Predictions(
        mirror_age, [[0.8, 0.2], [0.4, 0.6], [0.1, 0.9], [0.4, 0.6]], [0, 3, IGNORE, 7], [0, 0, 1, IGNORE]
    )
    # Gender: same, flipped, same, same; age bin: same, other, same, other. Labels play no part.
    assert flip_consistency(crop, mirror) == {"gender": 0.75, "age_bin": 0.5, "n": 4}
    assert flip_consistency(crop, crop) == {"gender": 1.0, "age_bin": 1.0, "n": 4}
    with pytest.raises(ValueError, match="same items in the same order; got 4 and 3 items"):
        flip_consistency(crop, mirror.select([0, 1, 2]))
    with pytest.raises(ValueError, match="with other targets"):
        flip_consistency(crop, mirror.select([1, 0, 2, 3]))


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.age = nn.Linear(12, 8)
        self.gender = nn.Linear(12, 2)
        self.dropout = nn.Dropout(0.5)  # would make outputs random if eval mode were not set

    def forward(self, x):
        x = self.dropout(x.flatten(1))
        return self.age(x), self.gender(x)


def test_predict_dataset_tensor_dataset():
    model = TinyModel().train()
    images = torch.rand(5, 3, 2, 2)
    dataset = TensorFaceDataset(images, torch.tensor([0, 1, 7, IGNORE, 3]), torch.tensor([0, 1, IGNORE, 1, 0]))
    pred = predict_dataset(model, dataset, batch_size=2)
    assert model.training  # mode restored
    with torch.no_grad():
        model.eval()
        age_logits, gender_logits = model(images)
    np.testing.assert_allclose(pred.age_probs, age_logits.double().softmax(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(pred.gender_probs, gender_logits.double().softmax(1).numpy(), atol=1e-6)
    np.testing.assert_array_equal(pred.age_targets, [0, 1, 7, IGNORE, 3])
    np.testing.assert_array_equal(pred.gender_targets, [0, 1, IGNORE, 1, 0])
    assert np.isnan(pred.exact_ages).all() and list(pred.races) == [None] * 5


def test_predict_dataset_keeps_record_metadata(tmp_path):
    records = [
        FaceRecord(tmp_path / "a.jpg", "utkface", 30, 30, 0, "white"),
        FaceRecord(tmp_path / "b.jpg", "adience", 25, 32, 1, None),
        FaceRecord(tmp_path / "c.jpg", "utkface", 70, 70, None, "asian"),
    ]
    dataset = FaceDataset(records, PAPER_BINS, lambda r: np.zeros((2, 2, 3), np.uint8))
    pred = predict_dataset(TinyModel(), dataset, batch_size=2)
    np.testing.assert_array_equal(pred.exact_ages, [30, NAN, 70])
    np.testing.assert_array_equal(pred.max_ages, [30, 32, 70])  # Adience's 25-32 range ends at 32
    assert list(pred.races) == ["white", None, "asian"] and list(pred.datasets) == ["utkface", "adience", "utkface"]
    np.testing.assert_array_equal(pred.age_targets, [4, 4, 7])
    np.testing.assert_array_equal(pred.gender_targets, [0, 1, IGNORE])
    view = predict_dataset(TinyModel(), FilteredDataset(dataset, {7}))
    assert list(view.datasets) == ["utkface"] and view.exact_ages.tolist() == [70]


def test_flip_averaged_mirrors_the_width_axis():
    images = np.arange(2 * 1 * 2 * 3, dtype=np.float32).reshape(2, 1, 2, 3)
    seen = []

    def run(batch):
        seen.append(batch.copy())
        return (batch[:, 0, 0, :],)  # first row's pixels, as if they were "probabilities"

    [out] = flip_averaged(run, images)
    assert seen[0].shape == (4, 1, 2, 3)  # one batch of 2N: the images, then their mirrors
    np.testing.assert_array_equal(seen[0][2:], images[..., ::-1])
    np.testing.assert_array_equal(out, (images[:, 0, 0, :] + images[:, 0, 0, ::-1]) / 2)
    [tensor_out] = flip_averaged(lambda b: (b[:, 0, 0, :],), torch.from_numpy(images))
    np.testing.assert_array_equal(tensor_out.numpy(), out)


def test_predict_dataset_flip_and_mirror():
    model = TinyModel()
    images = torch.rand(5, 3, 2, 2)
    dataset = TensorFaceDataset(images, torch.tensor([0, 1, 7, IGNORE, 3]), torch.tensor([0, 1, IGNORE, 1, 0]))
    plain = predict_dataset(model, dataset, batch_size=2)
    mirrored = predict_dataset(model, dataset, batch_size=2, mirror=True)
    flipped = predict_dataset(model, dataset, batch_size=2, flip=True)
    with torch.no_grad():
        model.eval()
        age_logits, gender_logits = model(images.flip(-1))
    np.testing.assert_allclose(mirrored.age_probs, age_logits.double().softmax(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(mirrored.gender_probs, gender_logits.double().softmax(1).numpy(), atol=1e-6)
    assert not np.allclose(plain.age_probs, mirrored.age_probs)  # the model sees the difference
    # The average of the probabilities (not of the logits) of the two views.
    np.testing.assert_allclose(flipped.age_probs, (plain.age_probs + mirrored.age_probs) / 2, atol=1e-6)
    np.testing.assert_allclose(flipped.gender_probs, (plain.gender_probs + mirrored.gender_probs) / 2, atol=1e-6)
    np.testing.assert_array_equal(flipped.age_targets, plain.age_targets)
    assert flip_consistency(plain, mirrored)["n"] == 5
    # Mirror-symmetric images: flipping changes nothing.
    symmetric = TensorFaceDataset(
        images[..., :1].expand(-1, -1, -1, 2).contiguous(), torch.zeros(5, dtype=int), torch.zeros(5, dtype=int)
    )
    np.testing.assert_allclose(
        predict_dataset(model, symmetric, flip=True).age_probs, predict_dataset(model, symmetric).age_probs, atol=1e-6
    )


@st.composite
def probs_and_targets(draw):
    n, k = draw(st.integers(1, 20)), draw(st.integers(1, 10))
    raw = np.array(draw(st.lists(st.floats(0.01, 1), min_size=n * k, max_size=n * k))).reshape(n, k)
    targets = draw(st.lists(st.sampled_from([IGNORE, *range(k)]), min_size=n, max_size=n))
    return raw / raw.sum(1, keepdims=True), np.array(targets)


@settings(max_examples=40)
@given(probs_and_targets())
def test_accuracies_are_fractions(data):
    probs, targets = data
    for value in (accuracy(probs, targets), one_off_accuracy(probs, targets)):
        assert math.isnan(value) if (targets == IGNORE).all() else 0 <= value <= 1
    if not (targets == IGNORE).all():
        assert accuracy(probs, targets) <= one_off_accuracy(probs, targets)


@settings(max_examples=40)
@given(
    st.lists(st.integers(0, 99), unique=True, max_size=9).map(sorted),
    st.lists(st.integers(0, 120), unique=True, min_size=2, max_size=16).map(sorted),
    st.lists(st.floats(0.01, 1), min_size=10, max_size=10),
)
def test_converted_probabilities_sum_to_one(boundaries, edges, weights):
    bins = AgeBins(tuple(boundaries))
    groups = list(zip(edges[0::2], edges[1::2]))
    probs = np.array(weights[: len(bins)])[None] / sum(weights[: len(bins)])
    out = convert_probs(probs, bins, groups)
    assert out.shape == (1, len(groups)) and (out >= 0).all()
    np.testing.assert_allclose(out.sum(1), 1)
