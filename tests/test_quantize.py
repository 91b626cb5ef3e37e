"""Tests of int8 quantization (quantize_onnx, `agecurriculum export --int8`) and Predictor.network_inputs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from inference_helpers import astronaut, make_release
from PIL import Image
from skimage import data as skdata

from agecurriculum.cli.main import main
from agecurriculum.inference import (
    OnnxBackend,
    Predictor,
    TorchBackend,
    cpu_has_vnni,
    export_onnx,
    quantize_onnx,
    read_release_config,
)

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402  (onnx is optional)

pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow  # an export and a calibration take several seconds each


def face_like_crops(count: int, seed: int) -> list[np.ndarray]:
    """Square crops of scikit-image's photos (the astronaut's face region and others) at random places and sizes."""
    rng = np.random.default_rng(seed)
    photos = [astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(60, min(photo.shape[:2])))
        top, left = (int(rng.integers(0, photo.shape[k] - side + 1)) for k in (0, 1))
        crops.append(photo[top : top + side, left : left + side])
    return crops


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """(release folder, its float32 ONNX file, an int8 copy and a 7-bit-weight copy calibrated on 64 crops)."""
    folder = tmp_path_factory.mktemp("quantize")
    release_dir = make_release(folder / "release")
    float32 = export_onnx(release_dir, folder / "float32.onnx")
    predictor = Predictor(OnnxBackend(float32), verify=False)
    calibration = np.stack(list(predictor.network_inputs(face_like_crops(64, seed=0), aligned=True)))
    return (
        release_dir,
        float32,
        quantize_onnx(float32, folder / "int8.onnx", calibration),
        quantize_onnx(float32, folder / "int7.onnx", calibration, reduce_range=True),
    )


def outputs_of(float32, quantized_file):
    """(float32 outputs, quantized outputs) on 40 crops other than the calibration ones."""
    backend = OnnxBackend(quantized_file)
    images = np.stack(list(Predictor(backend, verify=False).network_inputs(face_like_crops(40, seed=1), aligned=True)))
    return OnnxBackend(float32)(images), backend(images)


def assert_close_to_float32(expected, got, mean_diff):
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        np.testing.assert_allclose(g.sum(1), 1, atol=1e-4)
        assert np.abs(g - e).mean() < mean_diff
        assert (g.argmax(1) == e.argmax(1)).mean() >= 0.8
    assert expected[0].std(0).max() > 0.05  # the outputs differ between images, so the agreement means something


def test_int8_file_is_a_quantized_copy_with_the_release(quantized):
    release_dir, float32, int8, int7 = quantized
    model = onnx.load(str(int8))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)
    assert int8.stat().st_size < 0.5 * float32.stat().st_size
    metadata = {p.key: p.value for p in model.metadata_props}
    settings = json.loads(metadata["agecurriculum.quantization"])
    assert settings["calibration_faces"] == 64 and settings["weights"] == "int8 per channel"
    assert OnnxBackend(int8).config == read_release_config(release_dir)  # nothing else is needed to run it

    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(int7)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and t.dims and len(t.dims) == 4
    ]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64  # 7 bits: no saturation
    int7_metadata = {p.key: p.value for p in onnx.load(str(int7)).metadata_props}
    assert json.loads(int7_metadata["agecurriculum.quantization"])["weights"] == "int7 per channel"


def test_reduced_range_file_runs_like_the_float32_one(quantized):
    # 7-bit weights cannot saturate ONNX Runtime's kernels: the same outputs on every CPU.
    _, float32, _, int7 = quantized
    assert_close_to_float32(*outputs_of(float32, int7), mean_diff=0.08)


@pytest.mark.skipif(
    cpu_has_vnni() is False,
    reason="this CPU has no VNNI: ONNX Runtime's uint8 x int8 kernels "
    "can saturate on it (use reduce_range; tested above)",
)
def test_int8_file_runs_like_the_float32_one(quantized):
    _, float32, int8, _ = quantized
    assert_close_to_float32(*outputs_of(float32, int8), mean_diff=0.05)


def test_cpu_has_vnni_reads_the_flags(tmp_path):
    (tmp_path / "vnni").write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    (tmp_path / "avx2").write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert cpu_has_vnni(tmp_path / "vnni") is True and cpu_has_vnni(tmp_path / "avx2") is False
    assert cpu_has_vnni(tmp_path / "arm") is None and cpu_has_vnni(tmp_path / "missing") is None


def test_network_inputs_are_the_faces_predict_runs(tmp_path):
    release_dir = make_release(tmp_path / "release")
    predictor = Predictor(TorchBackend(release_dir), verify=False, flip=False)  # the raw network: compared below
    crops = face_like_crops(3, seed=2)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    inputs = [crops[0], tmp_path / "junk.jpg", crops[1], crops[2]]
    images = np.stack(list(predictor.network_inputs(inputs, aligned=True)))
    assert images.shape == (3, 3, 64, 64) and images.dtype == np.float32  # the unreadable file gives nothing
    results = predictor.predict(inputs, aligned=True)
    age, _ = predictor.backend(images)
    expected = [r["faces"][0]["age_probs"] for r in results if r["faces"]]
    np.testing.assert_allclose(age, expected, atol=1e-5)
    photos = [astronaut(), skdata.coffee()]  # her face (and the mission patch: no verifier here); no face in coffee
    assert len(list(predictor.network_inputs(photos))) == sum(len(r["faces"]) for r in predictor.predict(photos))


def test_quantize_rejects_bad_input_and_keeps_the_old_file(quantized, tmp_path):
    _, float32, int8, _ = quantized
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous")
    good = np.zeros((4, 3, 64, 64), np.float32)
    with pytest.raises(ValueError, match=r"expected \(N, 3, 64, 64\) face crops.*got shape \(4, 3, 32, 32\)"):
        quantize_onnx(float32, out, np.zeros((4, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="no face crops"):
        quantize_onnx(float32, out, good[:0])
    with pytest.raises(ValueError, match="percentile must be in"):
        quantize_onnx(float32, out, good, percentile=0)
    with pytest.raises(ValueError, match="quantized already"):
        quantize_onnx(int8, out, good)
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        quantize_onnx(tmp_path / "missing.onnx", out, good)
    assert out.read_bytes() == b"previous"


def test_export_int8_command(tmp_path, capsys, monkeypatch, caplog):
    monkeypatch.setenv("AGECURRICULUM_CACHE", str(tmp_path / "cache"))
    release_dir = make_release(tmp_path / "release")
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, crop in enumerate(face_like_crops(12, seed=3)):
        Image.fromarray(crop).save(crops / f"{i:02d}.png")
    out = tmp_path / "int8.onnx"
    base = ["export", "--model", str(release_dir), "--out", str(out)]
    with caplog.at_level(logging.WARNING):
        assert main([*base, "--int8", "--calibration", str(crops), "--aligned", "--calibration-faces", "8"]) == 0
    assert "int8, calibrated on 8 face(s) from 12 input(s)" in capsys.readouterr().out
    # ONNX Runtime's advice to pre-process the graph does not apply to our exports (fused and shape-inferred).
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()], caplog.text
    assert (
        json.loads(OnnxBackend(out).session.get_modelmeta().custom_metadata_map["agecurriculum.quantization"])[
            "calibration_faces"
        ]
        == 8
    )
    argv = ["predict", "--json", "--aligned", "--backend", "onnx", "--model", str(out), str(crops / "00.png")]
    assert main(argv) == 0
    [face] = json.loads(capsys.readouterr().out)["faces"]
    assert sum(face["age_probs"]) == pytest.approx(1, abs=1e-3)

    before = out.read_bytes()
    scenery = tmp_path / "scenery"
    scenery.mkdir()
    Image.fromarray(skdata.coffee()).save(scenery / "coffee.png")
    for args, message in (
        ([], "--int8 needs --calibration"),
        (["--calibration", str(scenery)], "no face found in 1 input(s); nothing written"),
        (["--calibration", str(tmp_path / "none")], "no input matches"),
        (["--calibration", str(crops), "--calibration-faces", "0"], "must be at least 1"),
    ):
        assert main([*base, "--int8", *args]) == 2
        assert message in capsys.readouterr().err
    for args in (["--calibration", str(crops)], ["--reduce-range"]):
        assert main([*base, *args]) == 2
        assert "only apply to --int8" in capsys.readouterr().err
    assert out.read_bytes() == before

    int7 = tmp_path / "int7.onnx"
    assert (
        main(
            [
                "export",
                "--model",
                str(release_dir),
                "--out",
                str(int7),
                "--int8",
                "--reduce-range",
                "--calibration",
                str(crops),
                "--aligned",
                "--calibration-faces",
                "8",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        json.loads(OnnxBackend(int7).session.get_modelmeta().custom_metadata_map["agecurriculum.quantization"])[
            "weights"
        ]
        == "int7 per channel"
    )
