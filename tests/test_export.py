"""Tests of ONNX export (``agecurriculum export``, export_onnx) and the onnx backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
from inference_helpers import ASTRONAUT_FACE, astronaut, make_release
from PIL import Image

from agecurriculum.cli.main import main
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.transforms import eval_transform
from agecurriculum.inference import OnnxBackend, Predictor, TorchBackend, export_onnx, read_release_config

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

pytestmark = pytest.mark.slow  # one export takes several seconds


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(release folder, its model.onnx written by `agecurriculum export`)."""
    release_dir = make_release(tmp_path_factory.mktemp("release"))
    out = release_dir / "model.onnx"
    assert main(["export", "--model", str(release_dir), "--format", "onnx", "--out", str(out)]) == 0
    return release_dir, out


def aligned_face(config) -> np.ndarray:
    pre = config["preprocessing"]
    face = FaceAligner(AlignConfig(size=pre["image_size"])).align(astronaut(), ASTRONAUT_FACE)
    return eval_transform(pre["image_size"], pre["mean"], pre["std"])(face.crop).numpy()[None]


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_torch(exported, batch):
    release_dir, onnx_path = exported
    torch_backend, onnx_backend = TorchBackend(release_dir), OnnxBackend(onnx_path)
    size = torch_backend.config["preprocessing"]["image_size"]
    random_images = np.random.default_rng(batch).normal(size=(batch, 3, size, size)).astype(np.float32)
    face = aligned_face(torch_backend.config)
    real_images = np.concatenate([face, random_images[: batch - 1]])  # the real face first, then random ones
    for images in (random_images, real_images):
        expected, got = torch_backend(images), onnx_backend(images)
        for e, g in zip(expected, got):
            assert g.shape == e.shape == (batch, e.shape[1])
            np.testing.assert_allclose(g, e, atol=1e-4)
        assert expected[0].std(0).max() > 1e-3 or batch == 1  # the outputs differ between images


def test_onnx_file_is_self_contained(exported):
    release_dir, onnx_path = exported
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata["agecurriculum.release"]) == read_release_config(release_dir)
    [graph_input] = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "images" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    assert [o.name for o in model.graph.output] == ["age_probs", "gender_probs"]


def test_predict_with_onnx_backend(exported, capsys, tmp_path):
    release_dir, onnx_path = exported
    crops = [astronaut()[76:167, 175:266], astronaut()[40:200, 150:300]]
    expected = Predictor.from_release(release_dir, backend="torch", verify=False).predict(crops, aligned=True)
    for model in (release_dir, onnx_path):  # a release folder holding model.onnx, or the file alone
        got = Predictor.from_release(model, backend="onnx", verify=False).predict(crops, aligned=True)
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g["faces"][0]["age_probs"], e["faces"][0]["age_probs"], atol=1e-4)
            assert g["faces"][0]["gender"] == e["faces"][0]["gender"]
    Image.fromarray(crops[0]).save(tmp_path / "face.png")
    argv = ["predict", str(tmp_path / "face.png"), "--aligned", "--backend", "onnx", "--model", str(onnx_path)]
    assert main([*argv, "--json"]) == 0
    [face] = json.loads(capsys.readouterr().out)["faces"]
    np.testing.assert_allclose(face["age_probs"], expected[0]["faces"][0]["age_probs"], atol=1e-4)


def test_failed_export_leaves_the_file_alone(tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")
    with pytest.raises(FileNotFoundError, match="config.json"):
        export_onnx(tmp_path / "no-release", out)
    assert out.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_onnx_backend_thread_count(exported):
    _, onnx_path = exported
    for threads in (1, 3):
        backend = OnnxBackend(onnx_path, threads=threads)
        assert backend.session.get_session_options().intra_op_num_threads == threads
    assert OnnxBackend(onnx_path).session.get_session_options().intra_op_num_threads == 0  # ONNX Runtime's choice
    for kwargs, value in (({}, "0"), ({"spin_wait": True}, "1")):  # no busy-waiting unless asked for
        options = OnnxBackend(onnx_path, **kwargs).session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == value
    with pytest.raises(ValueError, match="threads must be >= 1"):
        OnnxBackend(onnx_path, threads=0)


def test_onnx_backend_rejects_foreign_files(tmp_path):
    plain = tmp_path / "plain.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(plain))
    with pytest.raises(ValueError, match="no agecurriculum.release metadata"):
        OnnxBackend(plain)
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        OnnxBackend(tmp_path / "junk.onnx")


def test_a_release_without_model_onnx_is_exported_once_into_the_cache(tmp_path, monkeypatch):
    # The default model ships read-only inside the package: --backend onnx must still work, exporting on first use.
    monkeypatch.setenv("AGECURRICULUM_CACHE", str(tmp_path / "cache"))
    release_dir = make_release(tmp_path / "release")
    crop = (aligned_face(read_release_config(release_dir))[0].transpose(1, 2, 0) * 0 + 128).astype(np.uint8)
    first = Predictor.from_release(release_dir, backend="onnx", verify=False)
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and not (release_dir / "model.onnx").exists()
    stamp = cached[0].stat().st_mtime_ns
    second = Predictor.from_release(release_dir, backend="onnx", verify=False)
    assert cached[0].stat().st_mtime_ns == stamp  # reused, not exported again
    torch_result = Predictor.from_release(release_dir, backend="torch", verify=False).predict([crop], aligned=True)
    for got in (first.predict([crop], aligned=True), second.predict([crop], aligned=True)):
        np.testing.assert_allclose(got[0]["faces"][0]["age_probs"], torch_result[0]["faces"][0]["age_probs"], atol=1e-4)
