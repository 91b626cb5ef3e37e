"""EnsembleClassifier and ensemble releases: averaged probabilities, release round trip, errors, CLI, ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.torch
import torch
from inference_helpers import make_release

from agecurriculum.bins import AgeBins
from agecurriculum.cli.main import main
from agecurriculum.inference import OnnxBackend, ReleaseInfo, TorchBackend, ensemble_releases, export_onnx
from agecurriculum.model import DualClassifier, EnsembleClassifier, classifier_from_config
from agecurriculum.train import load_release, save_release


def members(n=2, **kwargs):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(DualClassifier(backbone="efficientnet-lite0", bottleneck_dim=16, **kwargs).eval())
    return out


def test_ensemble_averages_the_members_probabilities():
    models = members(3)
    ensemble = EnsembleClassifier(models).eval()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        outputs = [m(x) for m in models]
        got = ensemble(x)
    for task in range(2):
        want = torch.stack([o[task].softmax(1) for o in outputs]).mean(0)
        torch.testing.assert_close(got[task].softmax(1), want)
        torch.testing.assert_close(got[task].exp().sum(1), torch.ones(4))  # log-probabilities already
    assert not torch.allclose(outputs[0][0].softmax(1), outputs[1][0].softmax(1))  # the members differ


def test_ensemble_config_round_trip():
    ensemble = EnsembleClassifier(members(2)).eval()
    cfg = json.loads(json.dumps(ensemble.config()))
    clone = classifier_from_config(cfg)
    assert isinstance(clone, EnsembleClassifier) and clone.config() == cfg
    clone.load_state_dict(ensemble.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clone.eval()(x), ensemble(x))
    assert isinstance(classifier_from_config(cfg["members"][0]), DualClassifier)


def test_ensemble_errors():
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleClassifier([])
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="disagree on age_classes"):
        EnsembleClassifier(
            [*members(1), DualClassifier(age_classes=5, backbone="efficientnet-lite0", bottleneck_dim=16)]
        )
    with pytest.raises(ValueError, match="no config"):
        EnsembleClassifier([torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="members"):
        EnsembleClassifier.from_config({"members": []})


def test_float16_release_is_half_the_size_and_loads_as_float32(tmp_path):
    [model] = members(1)
    pre = {"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}
    full = save_release(model, tmp_path / "f32", AgeBins.from_dict({"boundaries": [2, 6, 14, 23, 34, 45, 59]}), pre)
    half = save_release(
        model,
        tmp_path / "f16",
        AgeBins.from_dict({"boundaries": [2, 6, 14, 23, 34, 45, 59]}),
        pre,
        weights_dtype=torch.float16,
    )
    f32, f16 = (p / "model.safetensors" for p in (full, half))
    assert f16.stat().st_size < 0.55 * f32.stat().st_size
    stored = safetensors.torch.load_file(f16)
    assert {v.dtype for k, v in stored.items() if "num_batches_tracked" not in k} == {torch.float16}
    assert stored[next(k for k in stored if "num_batches_tracked" in k)].dtype == torch.int64
    loaded, _ = load_release(half)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x)[0].softmax(1), model(x)[0].softmax(1), atol=2e-3)
    with pytest.raises(ValueError, match="floating-point"):
        save_release(model, tmp_path / "int", AgeBins((10, 20)), pre, weights_dtype=torch.int8)


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    return [make_release(root / f"m{seed}", seed=seed) for seed in (0, 1)]


def test_ensemble_release_predicts_the_mean_of_its_members(two_releases, tmp_path):
    out = ensemble_releases(two_releases, tmp_path / "ens")
    config = json.loads((out / "config.json").read_text())
    assert len(config["model"]["members"]) == 2
    assert ReleaseInfo.from_config(config).architecture == "ensemble of 2: efficientnet-lite0, efficientnet-lite0"
    assert ReleaseInfo.from_config(json.loads((two_releases[0] / "config.json").read_text())).architecture == (
        "efficientnet-lite0"
    )
    assert config["preprocessing"] == json.loads((two_releases[0] / "config.json").read_text())["preprocessing"]
    assert [m["release"] for m in config["extra"]["members"]] == [str(p) for p in two_releases]
    assert config["extra"]["rep_ages"] == json.loads((two_releases[0] / "config.json").read_text())["extra"]["rep_ages"]
    images = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    backends = [TorchBackend(p) for p in (*two_releases, out)]
    outputs = [b(images) for b in backends]
    for task in range(2):
        np.testing.assert_allclose(outputs[2][task], (outputs[0][task] + outputs[1][task]) / 2, atol=2e-3)
    assert np.abs(outputs[0][0] - outputs[1][0]).max() > 0.05  # different members: the average is not trivial


def test_ensemble_release_errors_name_the_release(two_releases, tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        ensemble_releases(two_releases[:1], tmp_path / "one")
    other_size = make_release(tmp_path / "size96", image_size=96)
    with pytest.raises(ValueError, match=r"size96.*preprocessing.image_size is 96"):
        ensemble_releases([two_releases[0], other_size], tmp_path / "bad")
    torch.manual_seed(0)
    coarse = save_release(
        DualClassifier(age_classes=3, backbone="efficientnet-lite0", bottleneck_dim=16),
        tmp_path / "coarse",
        AgeBins((20, 40)),
        json.loads((two_releases[0] / "config.json").read_text())["preprocessing"],
    )
    with pytest.raises(ValueError, match=r"coarse.*age bins"):
        ensemble_releases([two_releases[0], coarse], tmp_path / "bad")
    nested = ensemble_releases(two_releases, tmp_path / "nested")
    with pytest.raises(ValueError, match="ensemble already"):
        ensemble_releases([nested, two_releases[0]], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing written when the members do not fit together


def test_ensemble_command(two_releases, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["ensemble", *map(str, two_releases), "--out", str(out)]) == 0
    assert "ensemble of 2 releases" in capsys.readouterr().out
    model, _ = load_release(out)
    assert isinstance(model, EnsembleClassifier)
    assert main(["ensemble", str(two_releases[0]), "--out", str(tmp_path / "x")]) == 2
    assert "at least two releases" in capsys.readouterr().err


@pytest.mark.slow  # one export takes several seconds
def test_ensemble_exports_to_onnx_with_the_same_outputs(two_releases, tmp_path):
    pytest.importorskip("onnxruntime")
    release = ensemble_releases(two_releases, tmp_path / "ens")
    onnx_path = export_onnx(release, tmp_path / "ens.onnx")
    images = np.random.default_rng(1).normal(size=(3, 3, 64, 64)).astype(np.float32)
    for expected, got in zip(TorchBackend(release)(images), OnnxBackend(onnx_path)(images)):
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_interpolated_release_lies_between_its_ends(two_releases, tmp_path):
    from agecurriculum.inference import interpolate_releases
    from agecurriculum.release import update_release_extra

    start, end = two_releases
    update_release_extra(end, {"rep_ages": [1.0, 4.0, 10.0, 19.0, 29.0, 40.0, 52.0, 70.0], "note": "kept"})
    ends = [safetensors.torch.load_file(p / "model.safetensors") for p in (start, end)]
    for weight in (0.0, 0.25, 1.0):
        out = interpolate_releases(start, end, weight, tmp_path / f"w{weight}")
        got = safetensors.torch.load_file(out / "model.safetensors")
        for key, value in got.items():
            a, b = ends[0][key], ends[1][key]
            expected = a + weight * (b - a) if value.is_floating_point() else b
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
        extra = json.loads((out / "config.json").read_text())["extra"]
        # The bin ages and temperatures of the network in between are nobody's: left for refit_release.
        assert extra["interpolated"] == {"start": str(start), "end": str(end), "weight": weight}
        assert "rep_ages" not in extra and extra["note"] == "kept"
    with pytest.raises(ValueError, match="weight must be in"):
        interpolate_releases(start, end, 1.5, tmp_path / "bad")
    other_size = make_release(tmp_path / "size96", image_size=96)
    with pytest.raises(ValueError, match="preprocessing.image_size is 96"):
        interpolate_releases(start, other_size, 0.5, tmp_path / "bad")
    ensemble = ensemble_releases(two_releases, tmp_path / "ens")
    with pytest.raises(ValueError, match="is an ensemble"):
        interpolate_releases(start, ensemble, 0.5, tmp_path / "bad")


def test_a_release_that_grew_a_gender_branch_interpolates_with_its_parent(two_releases, tmp_path):
    """The parent has no branch: its side of the line is the copy of its age path the branch began as."""
    from agecurriculum.inference import interpolate_releases

    start = two_releases[0]
    parent, info = load_release(start)
    grown = DualClassifier.from_config({**parent.config(), "gender_branch": 14})
    grown.load_state_dict_growing(parent.state_dict())
    with torch.no_grad():
        for p in grown.gender_backbone.parameters():
            p.add_(0.5)
    end = save_release(grown, tmp_path / "end", info.bins, info.preprocessing, dict(info.extra))
    images = torch.randn(2, 3, 64, 64)
    parent.eval()
    for weight in (0.0, 0.5):
        model, _ = load_release(interpolate_releases(start, end, weight, tmp_path / f"w{weight}"))
        assert model.gender_branch == 14
        got, want = model.eval()(images), parent(images)
        age_path = {k: v for k, v in model.state_dict().items() if not k.startswith("gender_backbone.")}
        assert all(torch.equal(v, parent.state_dict()[k]) for k, v in age_path.items() if k in parent.state_dict())
        assert torch.allclose(got.gender_logits, want.gender_logits, atol=1e-5) == (weight == 0.0)


def test_update_release_extra_keeps_the_rest_and_refuses_what_would_not_load(two_releases, tmp_path):
    import shutil

    from agecurriculum.release import read_release_config, update_release_extra

    copy = shutil.copytree(two_releases[0], tmp_path / "copy")
    before = read_release_config(copy)
    update_release_extra(copy, {"datasets": ["utkface"]})
    after = read_release_config(copy)
    assert after["extra"] == {**before["extra"], "datasets": ["utkface"]} and after["model"] == before["model"]
    with pytest.raises(ValueError, match="extra.rep_ages has 2 values for 8 age bins"):
        update_release_extra(copy, {"rep_ages": [1.0, 2.0]})
    assert read_release_config(copy) == after  # nothing written
