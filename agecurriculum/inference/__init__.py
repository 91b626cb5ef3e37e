"""Running a trained model on photos: :class:`Predictor`, the torch and ONNX backends, ONNX export.

- :class:`Predictor`: photos (paths or arrays) -> every face's box, gender, age group and expected age.
- :class:`FaceFinder`: how faces are found in a photo (HOG search, upsampled where needed, doubtful boxes
  re-checked by :class:`FaceVerifier`, dlib's CNN detector, so face-like patterns are dropped).
- :class:`TorchBackend`, :class:`OnnxBackend`: where the network runs.
- :func:`export_onnx`: a release -> a self-contained ONNX file; :func:`quantize_onnx`: that file in int8.
- :func:`convert_to_ort`: an exported file -> ONNX Runtime Mobile's ``.ort``; :func:`export_coreml`: a release ->
  CoreML.
- :func:`ensemble_releases`: several releases -> one release averaging their models; :func:`interpolate_releases`:
  two releases -> one network with weights in between.
- :data:`DEFAULT_RELEASE_DIR`: where the library's own trained model is installed.

The names are imported on first use (PEP 562), as in :mod:`agecurriculum`: ``agecurriculum predict --help`` reads
:mod:`~agecurriculum.inference.defaults` alone, not torch, ONNX Runtime or dlib.
"""

from __future__ import annotations

from agecurriculum._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("draw_faces", "face_label"), "agecurriculum.inference.annotate"),
    **dict.fromkeys(("OnnxBackend", "TorchBackend"), "agecurriculum.inference.backends"),
    **dict.fromkeys(
        ("BACKENDS", "DEFAULT_RELEASE_DIR", "PROCESSES_FROM", "RETRY_SCALE", "UPSAMPLE_MIN_SIDE", "VERIFY_BELOW"),
        "agecurriculum.inference.defaults",
    ),
    **dict.fromkeys(("ensemble_releases", "interpolate_releases"), "agecurriculum.inference.ensemble"),
    "export_onnx": "agecurriculum.inference.export",
    "FaceFinder": "agecurriculum.inference.finder",
    **dict.fromkeys(("convert_to_ort", "export_coreml"), "agecurriculum.inference.mobile"),
    **dict.fromkeys(("ONNX_FILE", "FaceScorer", "Predictor", "default_backend"), "agecurriculum.inference.predictor"),
    **dict.fromkeys(("cpu_has_vnni", "quantize_onnx"), "agecurriculum.inference.quantize"),
    "resolve_release": "agecurriculum.inference.release",
    **dict.fromkeys(("FaceVerifier", "VerifyConfig"), "agecurriculum.inference.verify"),
    **dict.fromkeys(("FaceJob", "FacePool", "Found", "default_workers"), "agecurriculum.inference.workers"),
    **dict.fromkeys(("ReleaseInfo", "read_release_config"), "agecurriculum.release"),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
