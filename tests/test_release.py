"""The release format (agecurriculum.release): Preprocessing, and releases written by earlier versions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from agecurriculum.bins import PAPER_BINS
from agecurriculum.data.sources import DATASETS, PHOTO_FRAMING, alignment_record
from agecurriculum.inference import DEFAULT_RELEASE_DIR, Predictor
from agecurriculum.model import DualClassifier
from agecurriculum.release import (
    Preprocessing,
    ReleaseInfo,
    load_release,
    preprocessing_mismatch,
    read_release_config,
    save_release,
)

FULL = {
    "image_size": 160,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "padding": 0.3,
    "alignment": {"utkface": "aligned", "other": "detect"},
}


def test_preprocessing_round_trips_the_json_a_release_holds():
    pre = Preprocessing.from_dict(FULL)
    assert pre == Preprocessing(
        160, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0.3, {"utkface": "aligned", "other": "detect"}
    )
    assert pre.to_dict() == FULL and list(pre.to_dict()) == list(FULL)  # same keys, same order as before
    assert pre.photo_framing == "detect"


def test_preprocessing_of_older_releases_and_unknown_entries():
    old = Preprocessing.from_dict({"image_size": 112.0, "mean": [0, 0, 0], "std": [1, 1, 1], "later_field": 1})
    assert old.padding == 0.25 and old.alignment is None and old.photo_framing is None  # what they were made with
    assert old.image_size == 112 and old.mean == (0.0, 0.0, 0.0)
    assert old.to_dict() == {"image_size": 112, "mean": [0.0] * 3, "std": [1.0] * 3, "padding": 0.25}


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"mean": [0.5] * 3, "std": [0.5] * 3}, "my.json: preprocessing needs image_size, mean and std"),
        ({"image_size": 0, "mean": [0.5] * 3, "std": [0.5] * 3}, "my.json: preprocessing needs image_size >= 1"),
        ({"image_size": 112.7, "mean": [0.5] * 3, "std": [0.5] * 3}, "image_size must be an integer, got 112.7"),
        ({"image_size": "112", "mean": [0.5] * 3, "std": [0.5] * 3}, "image_size must be an integer, got '112'"),
        ({"image_size": 64, "mean": [0.5] * 2, "std": [0.5] * 3}, "3 means"),
        ({"image_size": 64, "mean": [0.5] * 3, "std": [0.5, 0.5, 0]}, "positive stds"),
        ({"image_size": 64, "mean": 0.5, "std": [0.5] * 3}, "needs image_size, mean and std"),
        ({"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "alignment": "detect"}, "alignment must be a mapping"),
        ([1, 2], "preprocessing must be a mapping"),
    ],
)
def test_malformed_preprocessing_is_named(entry, match):
    with pytest.raises(ValueError, match=match):
        Preprocessing.from_dict(entry, "my.json")


def test_mismatch_takes_typed_and_json_forms():
    pre = Preprocessing.from_dict(FULL)
    assert preprocessing_mismatch(pre, FULL) is None
    assert preprocessing_mismatch(pre, {**FULL, "image_size": 112}) == "image_size"
    assert preprocessing_mismatch(pre, {**FULL, "alignment": {"fairface": "aligned", "other": "detect"}}) is None
    assert preprocessing_mismatch(pre, {**FULL, "alignment": {"other": "aligned"}}) == "alignment"


def test_alignment_record_is_read_from_the_dataset_traits():
    record = alignment_record()
    assert record["other"] == PHOTO_FRAMING
    framed = {name for name, source in DATASETS.items() if source.framing != PHOTO_FRAMING}
    assert {name for name in record if name != "other"} == framed


def test_a_typed_release_reads_back_as_it_was_written(tmp_path):
    torch.manual_seed(0)
    model = DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16).eval()
    pre = Preprocessing(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), alignment=alignment_record())
    save_release(model, tmp_path / "r", PAPER_BINS, pre, extra={"rep_ages": list(range(8))})
    info = ReleaseInfo.from_config(read_release_config(tmp_path / "r"))
    assert info.preprocessing == pre and (info.image_size, info.padding, info.mean) == (64, 0.25, (0.5,) * 3)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["preprocessing"] == pre.to_dict()


def test_the_shipped_release_config_reads_and_writes_unchanged():
    config = read_release_config(DEFAULT_RELEASE_DIR)
    info = ReleaseInfo.from_config(config)
    assert info.preprocessing.to_dict() == config["preprocessing"]
    assert info.preprocessing.photo_framing == "detect"


def test_a_release_written_before_padding_and_alignment_were_recorded_still_predicts(tmp_path):
    # The oldest config.json form: no padding, no alignment, no rep_ages, an older library version.
    old = tmp_path / "old"
    shutil.copytree(DEFAULT_RELEASE_DIR, old)
    config = json.loads((old / "config.json").read_text())
    config["library_version"] = "0.0.1"
    config["preprocessing"] = {k: config["preprocessing"][k] for k in ("image_size", "mean", "std")}
    config["extra"] = {}
    (old / "config.json").write_text(json.dumps(config), encoding="utf-8")
    model, info = load_release(old)
    assert info.config == config and not model.training
    assert info.bins == ReleaseInfo.from_config(config).bins
    assert info.padding == 0.25 and info.preprocessing.alignment is None
    # Without rep_ages: the bins' midpoints, in predict and evaluate alike (one rule), and it says so.
    np.testing.assert_array_equal(info.rep_ages, [1.0, 4.5, 10.5, 19.0, 29.0, 40.0, 52.5, 70.0])
    assert info.rep_ages_method == "midpoints" and info.datasets == ()
    crop = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    [result] = Predictor.from_release(old, backend="torch", verify=False).predict([crop], aligned=True)
    [face] = result["faces"]
    assert sum(face["age_probs"]) == pytest.approx(1, abs=1e-5) and face["gender"] in ("male", "female")
