"""Static int8 quantization of an exported ONNX model, for faster CPU inference with ONNX Runtime.

The float32 graph of :func:`~agecurriculum.inference.export_onnx` becomes a QDQ graph (ONNX Runtime's
``quantize_static``): weights int8 per output channel, activations uint8 with ranges measured on calibration faces.
EfficientNet-Lite was designed for this (ReLU6, no squeeze-excitation), and on a 2-core CPU the shipped model's
network runs about twice as fast, with test accuracies within a few faces of float32; ``docs/benchmarks.md`` has
the measured numbers.

Activation ranges are the ``percentile`` of the calibration activations rather than their extremes, so that one
outlier face does not stretch a range and cost every other face its resolution. Calibrate on faces like the ones
you will predict on, aligned as the model expects: :meth:`~agecurriculum.inference.Predictor.network_inputs` makes
them from photos or aligned crops.

**CPUs without VNNI.** ONNX Runtime multiplies uint8 activations by int8 weights. On x86 CPUs with VNNI
(``avx512_vnni`` or ``avx_vnni``: Intel since Cascade Lake / Alder Lake, AMD since Zen 4) and on ARM this is exact;
on AVX2-only CPUs (AMD Zen 2/3, older Intel) its kernel adds pairs of products in 16 bits, which can saturate and
move the outputs (a tiny test model moved 0.09 in mean probability there, 0.02-0.04 with VNNI).
``reduce_range=True`` quantizes the weights to 7 bits, which cannot saturate: the same outputs on every CPU, at some
accuracy (``docs/benchmarks.md``). Quantize for the CPUs the file will run on; :func:`cpu_has_vnni` says which kind
this one is.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agecurriculum.fileio import atomic_write
from agecurriculum.inference.backends import ONNX_INPUT, ONNX_RELEASE_KEY
from agecurriculum.release import ReleaseInfo

__all__ = ["ONNX_QUANTIZATION_KEY", "cpu_has_vnni", "quantize_onnx"]

ONNX_QUANTIZATION_KEY = "agecurriculum.quantization"  # metadata entry saying how the file was quantized
CALIBRATION_BATCH = 32  # faces per calibration forward pass
# The network's layers. The softmaxes and the ensemble's averaging stay float32: a uint8 probability would be a
# multiple of 1/255, and the expected age and the probabilities' sum would show it.
QUANTIZED_OPS = ("Conv", "Gemm", "Clip", "Relu", "Add", "ReduceMean")


def quantize_onnx(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray,
    percentile: float = 99.99,
    reduce_range: bool = False,
) -> Path:
    """Writes an int8 copy of an exported model, atomically (a failed run leaves ``out_path`` as it was).

    Args:
        onnx_path: a float32 file written by :func:`~agecurriculum.inference.export_onnx`.
        out_path: the ``.onnx`` file to (over)write; its folder is created.
        calibration: ``(N, 3, S, S)`` float32 face crops, preprocessed as the model expects (see
            :meth:`~agecurriculum.inference.Predictor.network_inputs`); a few hundred are plenty.
        percentile: activation ranges cover this percentile of the calibration activations (0 < p <= 100).
        reduce_range: 7-bit weights, for CPUs without VNNI (see the module's notes): no saturation on any CPU, at
            some accuracy.

    Returns:
        ``out_path`` as a Path. It keeps the release config (metadata entry ``agecurriculum.release``), so
        :class:`~agecurriculum.inference.OnnxBackend` and ``agecurriculum predict --backend onnx --model FILE`` run
        it as they run the float32 file, and records the settings under ``agecurriculum.quantization``.

    Raises:
        FileNotFoundError: ``onnx_path`` is missing.
        ValueError: not an exported model, no calibration faces, crops of the wrong shape, or a bad percentile.
    """
    import onnx  # here: only export and quantization need them
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    model = onnx.load(str(onnx_path))
    metadata = {p.key: p.value for p in model.metadata_props}
    if ONNX_RELEASE_KEY not in metadata:
        raise ValueError(f"{onnx_path}: no {ONNX_RELEASE_KEY} metadata; export it with `agecurriculum export`")
    if ONNX_QUANTIZATION_KEY in metadata:
        raise ValueError(f"{onnx_path}: quantized already; quantize the float32 export")
    size = ReleaseInfo.from_config(json.loads(metadata[ONNX_RELEASE_KEY]), str(onnx_path)).image_size
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or calibration.shape[1:] != (3, size, size):
        raise ValueError(
            f"calibration: expected (N, 3, {size}, {size}) face crops for {onnx_path}, got shape {calibration.shape}"
        )
    if len(calibration) == 0:
        raise ValueError("calibration: no face crops; quantization measures activation ranges on real faces")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                np.array_split(calibration, range(CALIBRATION_BATCH, len(calibration), CALIBRATION_BATCH))
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {ONNX_INPUT: np.ascontiguousarray(batch)}

    settings = {
        "weights": f"int{7 if reduce_range else 8} per channel",
        "activations": "uint8",
        "format": "QDQ",
        "ops": list(QUANTIZED_OPS),
        "calibration": f"percentile {percentile}",
        "calibration_faces": len(calibration),
    }
    # redirect_stdout: ONNX Runtime's calibrator prints its histogram settings, which would mix with a caller's output.
    with (
        tempfile.TemporaryDirectory(prefix="agecurriculum-quantize-") as tmp,
        contextlib.redirect_stdout(io.StringIO()),
        _without_preprocessing_advice(),
    ):
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(onnx_path),
            str(quantized),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
            reduce_range=reduce_range,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": percentile},
        )
        proto = onnx.load(str(quantized))
    onnx.helper.set_model_props(proto, {**metadata, ONNX_QUANTIZATION_KEY: json.dumps(settings)})
    proto.doc_string = f"{model.doc_string} Quantized to int8: {json.dumps(settings)}."
    atomic_write(out_path, proto.SerializeToString())
    return out_path


def cpu_has_vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this x86 CPU has VNNI (see the module's notes); None where ``cpuinfo`` cannot tell (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    return None if flags is None else bool({"avx512_vnni", "avx_vnni"} & set(flags))


class _PreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    # quantize_static logs (twice, on the root logger) that the model should go through ONNX Runtime's quantization
    # pre-processing: shape inference and graph fusion. export_onnx's graph has both already (the exporter folds
    # every BatchNorm into its Conv and records the shapes), so the advice would only confuse a user.
    advice = _PreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)
