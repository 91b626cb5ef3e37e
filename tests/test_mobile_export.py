"""Tests of the models for phones: ``agecurriculum export --format ort`` (float32, int8) and ``--format coreml``."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fs_faults import tmpfs
from inference_helpers import ASTRONAUT_FACE, astronaut, make_release
from PIL import Image
from torch import nn

from agecurriculum.cli.main import main
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.transforms import normalise_crops
from agecurriculum.errors import describe_error
from agecurriculum.inference import (
    DEFAULT_RELEASE_DIR,
    OnnxBackend,
    TorchBackend,
    convert_to_ort,
    cpu_has_vnni,
    export_onnx,
    quantize_onnx,
    read_release_config,
)
from agecurriculum.inference.mobile import COREML_MAX_BATCH, _replace_folder
from agecurriculum.release import load_release

onnxruntime = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow  # each export takes seconds
ORT_MAGIC = b"ORTM"  # the flatbuffer file identifier of ONNX Runtime's format, bytes 4-8 of a .ort file


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory):
    """Aligned 64 px face crops (the astronaut's face, shifted, scaled and mirrored) as PNG files."""
    folder = tmp_path_factory.mktemp("crops")
    image = astronaut()
    x0, y0, x1, y1 = ASTRONAUT_FACE
    aligner = FaceAligner(AlignConfig(size=64))
    for i, (dx, dy, grow) in enumerate([(0, 0, 0), (8, 0, 10), (-8, 4, 20), (0, -6, -10), (4, 4, 30), (-4, -4, 5)]):
        box = (x0 + dx - grow, y0 + dy - grow, x1 + dx + grow, y1 + dy + grow)
        crop = aligner.align(image, box).crop
        Image.fromarray(crop[:, ::-1] if i % 2 else crop).save(folder / f"face{i}.png")
    return folder


def network_inputs(folder, release) -> np.ndarray:
    """The files of ``folder`` as the network's input, normalised as ``release`` says."""
    pre = read_release_config(release)["preprocessing"]
    crops = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]
    return normalise_crops(crops, pre["mean"], pre["std"])


def assert_same_outputs(expected, got, atol):
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, atol=atol)


def test_ort_export_matches_torch(release, crops_dir, tmp_path):
    out = tmp_path / "model.ort"
    assert main(["export", "--model", str(release), "--format", "ort", "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[4:8] == ORT_MAGIC  # ONNX Runtime's own format, not an ONNX protobuf renamed
    ort_backend, torch_backend = OnnxBackend(out), TorchBackend(release)
    assert ort_backend.config == read_release_config(release)  # the release config travels in the .ort file
    session = ort_backend.session
    assert [(i.name, i.shape[1:], i.type) for i in session.get_inputs()] == [("images", [3, 64, 64], "tensor(float)")]
    assert [o.name for o in session.get_outputs()] == ["age_probs", "gender_probs"]
    random_images = np.random.default_rng(0).normal(size=(5, 3, 64, 64)).astype(np.float32)
    for images in (random_images, random_images[:1], network_inputs(crops_dir, release)):
        expected = torch_backend(images)
        assert_same_outputs(expected, ort_backend(images), atol=1e-4)
        assert len(images) == 1 or expected[0].std(0).max() > 1e-3  # the outputs differ between images


def test_shipped_model_as_ort_matches_torch(tmp_path):
    out = convert_to_ort(export_onnx(DEFAULT_RELEASE_DIR, tmp_path / "model.onnx"), tmp_path / "model.ort")
    images = np.random.default_rng(1).normal(size=(4, 3, 160, 160)).astype(np.float32)
    expected, got = TorchBackend(DEFAULT_RELEASE_DIR)(images), OnnxBackend(out)(images)
    assert_same_outputs(expected, got, atol=1e-4)
    assert out.stat().st_size > 10 * 2**20  # float32 weights: about 4 bytes for each of the 4 M parameters


def test_int8_ort_export(release, crops_dir, tmp_path):
    out = tmp_path / "int8.ort"
    # Without VNNI, 8-bit weights can saturate ONNX Runtime's kernels (see agecurriculum.inference.quantize).
    reduce = cpu_has_vnni() is False
    argv = [
        "export",
        "--model",
        str(release),
        "--format",
        "ort",
        "--int8",
        "--calibration",
        str(crops_dir),
        "--aligned",
        "--out",
        str(out),
        *(["--reduce-range"] if reduce else []),
    ]
    assert main(argv) == 0
    assert out.read_bytes()[4:8] == ORT_MAGIC
    int8 = OnnxBackend(out)
    meta = int8.session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["agecurriculum.quantization"])["calibration_faces"] == 6
    # The same int8 model as ONNX, from the same calibration faces: the .ort file is that graph, optimised.
    images = network_inputs(crops_dir, release)
    onnx_int8 = quantize_onnx(
        export_onnx(release, tmp_path / "f32.onnx"), tmp_path / "int8.onnx", images, reduce_range=reduce
    )
    assert_same_outputs(OnnxBackend(onnx_int8)(images), int8(images), atol=2e-3)
    age, gender = int8(images)
    torch_age, torch_gender = TorchBackend(release)(images)
    np.testing.assert_allclose(age.sum(1), 1, atol=1e-5)  # the softmaxes stay float32
    assert np.abs(age - torch_age).max() < 0.2 and np.abs(gender - torch_gender).max() < 0.2
    assert (age.argmax(1) == torch_age.argmax(1)).mean() >= 0.5
    assert out.stat().st_size < 0.5 * (tmp_path / "f32.onnx").stat().st_size  # int8 weights: a quarter the bytes


def test_ort_refuses_foreign_files_and_keeps_the_old_file(tmp_path):
    onnx = pytest.importorskip("onnx")
    plain = tmp_path / "plain.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(plain))
    out = tmp_path / "model.ort"
    out.write_bytes(b"previous")
    with pytest.raises(ValueError, match="no agecurriculum.release metadata"):
        convert_to_ort(plain, out)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        convert_to_ort(tmp_path / "missing.onnx", out)
    with pytest.raises(ValueError, match="must end in .ort"):
        convert_to_ort(plain, tmp_path / "model.onnx")
    assert out.read_bytes() == b"previous"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--format", "ort", "--out", "model.onnx"], "--format ort writes a .ort file"),
        (["--format", "coreml", "--out", "model.onnx"], "--format coreml writes a .mlpackage file"),
        (["--format", "coreml", "--int8", "--out", "m.mlpackage"], "--int8 applies to --format onnx and ort"),
        (["--format", "ort", "--aligned", "--out", "m.ort"], "only apply to --int8"),
    ],
)
def test_export_argument_errors(argv, message, release, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", str(release), *argv]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--format", "tflite", "--out", "model.tflite"])
    assert exit_info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_coreml_without_coremltools_is_one_line(release, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # what `import coremltools` meets when it is absent
    out = tmp_path / "model.mlpackage"
    assert main(["export", "--model", str(release), "--format", "coreml", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CoreML export needs coremltools" in err
    assert "pip install 'agecurriculum[coreml]'" in err and not out.exists()


@pytest.fixture(scope="module")
def coreml_package(release, tmp_path_factory):
    pytest.importorskip("coremltools", reason="coremltools not installed (pip install 'agecurriculum[coreml]')")
    out = tmp_path_factory.mktemp("coreml") / "model.mlpackage"
    assert main(["export", "--model", str(release), "--format", "coreml", "--out", str(out)]) == 0
    return out


def test_coreml_spec(coreml_package, release):
    import coremltools as ct

    spec = ct.utils.load_spec(str(coreml_package))
    assert spec.WhichOneof("Type") == "mlProgram"
    array = ct.proto.FeatureTypes_pb2.ArrayFeatureType
    [images] = spec.description.input
    assert images.name == "images" and images.type.multiArrayType.dataType == array.FLOAT32
    ranges = [(r.lowerBound, r.upperBound) for r in images.type.multiArrayType.shapeRange.sizeRanges]
    assert ranges == [(1, COREML_MAX_BATCH), (3, 3), (64, 64), (64, 64)]
    assert [(o.name, o.type.multiArrayType.dataType) for o in spec.description.output] == [
        ("age_probs", array.FLOAT32),
        ("gender_probs", array.FLOAT32),
    ]
    assert json.loads(spec.description.metadata.userDefined["agecurriculum.release"]) == read_release_config(release)
    # Every layer was converted: as many convolutions and linear layers as the network has, its ReLU6s as clips.
    model, _ = load_release(release)
    main_fn = spec.mlProgram.functions["main"]
    ops = Counter(op.type for op in main_fn.block_specializations[main_fn.opset].operations)
    assert ops["conv"] == sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 0
    assert ops["linear"] == sum(isinstance(m, nn.Linear) for m in model.modules()) > 0
    assert ops["clip"] > 0 and ops["softmax"] >= 2
    assert list(main_fn.block_specializations[main_fn.opset].outputs) == ["age_probs", "gender_probs"]


def test_coreml_failure_names_the_versions_and_keeps_the_old_package(release, tmp_path, monkeypatch):
    pytest.importorskip("coremltools", reason="coremltools not installed (pip install 'agecurriculum[coreml]')")
    import torch

    from agecurriculum.inference import export_coreml

    def broken(*args, **kwargs):
        raise ValueError("unsupported op 'frobnicate'\nmore detail")

    monkeypatch.setattr(torch.export, "export", broken)  # fails fast; ct.convert's failures go the same way
    out = tmp_path / "model.mlpackage"
    (out / "old").mkdir(parents=True)
    with pytest.raises(
        RuntimeError,
        match=r"coremltools \S+ could not convert .* \(torch \S+\): ValueError: "
        r"unsupported op 'frobnicate'$",
    ):
        export_coreml(release, out)
    assert [p.name for p in tmp_path.iterdir()] == ["model.mlpackage"] and (out / "old").is_dir()


def test_a_package_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model.mlpackage"
    (out / "old").mkdir(parents=True)

    def write(path):
        Path(path, "new").mkdir(parents=True)

    _replace_folder(out, write)
    assert [p.name for p in out.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["model.mlpackage"]

    def fail(path):
        Path(path, "partial").mkdir(parents=True)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        _replace_folder(out, fail)
    assert [p.name for p in out.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["model.mlpackage"]
    (tmp_path / "file.mlpackage").write_bytes(b"x")
    with pytest.raises(NotADirectoryError) as caught:
        _replace_folder(tmp_path / "file.mlpackage", write)
    assert describe_error(caught.value).endswith("file.mlpackage: is a file, not a folder (a .mlpackage is a folder)")


def full_disk_copytree(source, destination, *args, **kwargs):
    """shutil.copytree on a full disk: it copies what it can and raises one shutil.Error listing the failures."""
    Path(destination, "Data").mkdir(parents=True)
    failed = f"{destination}/Data/weight.bin"
    raise shutil.Error([(f"{source}/Data/weight.bin", failed, f"[Errno 28] No space left on device: '{failed}'")])


def test_package_write_errors_name_the_package_not_temporary_files(tmp_path):
    # Issue 30.5: a full disk gave str() of shutil.Error, a Python list of tuples naming temporary files.
    out = tmp_path / "model.mlpackage"
    (out / "old").mkdir(parents=True)
    with pytest.raises(OSError) as caught:
        _replace_folder(out, lambda folder: full_disk_copytree("/tmp/tmpab12.mlpackage", folder))
    assert describe_error(caught.value) == f"{out}: No space left on device"
    assert [p.name for p in out.iterdir()] == ["old"] and [p.name for p in tmp_path.iterdir()] == ["model.mlpackage"]

    def unreadable(folder):
        raise shutil.Error([("/tmp/a", f"{folder}/a", "some other trouble"), ("/tmp/b", f"{folder}/b", "more")])

    with pytest.raises(OSError) as caught:
        _replace_folder(out, unreadable)
    assert describe_error(caught.value) == f"{out}: could not copy 2 file(s) of the package"
    # A file where a folder should be: ONNX's message ("afile is a file, not a folder"), not "afile: File exists".
    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(NotADirectoryError) as caught:
        _replace_folder(tmp_path / "afile" / "m.mlpackage", lambda folder: None)
    afile = tmp_path / "afile"
    assert describe_error(caught.value) == f"{afile / 'm.mlpackage'}: {afile} is a file, not a folder"


def test_coreml_write_errors_read_as_the_other_formats(release, tmp_path, capsys, monkeypatch):
    # Issue 30.5: --out afile/m.mlpackage said "afile: File exists", and a full disk printed shutil.Error's list.
    pytest.importorskip("coremltools", reason="coremltools not installed (pip install 'agecurriculum[coreml]')")
    import torch

    monkeypatch.chdir(tmp_path)
    Path("afile").write_bytes(b"x")

    def error(*argv):
        assert main(["export", "--model", str(release), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        return err.strip().removeprefix("agecurriculum export: error: ")

    assert error("--out", "afile/m.onnx") == "afile/m.onnx: afile is a file, not a folder"
    coreml = ["--format", "coreml", "--out"]
    assert error(*coreml, "afile/m.mlpackage") == "afile/m.mlpackage: afile is a file, not a folder"

    def full_temporary_folder(*args, **kwargs):  # coremltools writes its package to the temporary folder first
        raise OSError(28, "No space left on device", "/tmp/tmpab12.mlpackage/Data/weight.bin")

    with monkeypatch.context() as patch:
        patch.setattr(torch.export, "export", full_temporary_folder)
        assert error(*coreml, "m.mlpackage") == f"{tempfile.gettempdir()}: No space left on device"
    Path("m.mlpackage", "old").mkdir(parents=True)
    with monkeypatch.context() as patch:
        patch.setattr(shutil, "copytree", full_disk_copytree)  # how coremltools saves a package
        assert error(*coreml, "m.mlpackage") == "m.mlpackage: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "m.mlpackage"]
    assert [p.name for p in Path("m.mlpackage").iterdir()] == ["old"]
    with tmpfs(tmp_path / "small", size="64k"):  # a real full disk: the same line as ONNX's
        assert error(*coreml, "small/m.mlpackage") == "small/m.mlpackage: No space left on device"
        assert error("--out", "small/m.onnx") == "small/m.onnx: No space left on device"
        assert list(Path("small").iterdir()) == []
