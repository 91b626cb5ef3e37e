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
"""

from agecurriculum.inference.annotate import draw_faces, face_label
from agecurriculum.inference.backends import OnnxBackend, TorchBackend
from agecurriculum.inference.ensemble import ensemble_releases, interpolate_releases
from agecurriculum.inference.export import export_onnx
from agecurriculum.inference.finder import RETRY_SCALE, UPSAMPLE_MIN_SIDE, VERIFY_BELOW, FaceFinder
from agecurriculum.inference.mobile import convert_to_ort, export_coreml
from agecurriculum.inference.predictor import ONNX_FILE, Predictor, default_backend, default_workers
from agecurriculum.inference.quantize import cpu_has_vnni, quantize_onnx
from agecurriculum.inference.release import DEFAULT_RELEASE_DIR, resolve_release
from agecurriculum.inference.verify import FaceVerifier, VerifyConfig
from agecurriculum.release import ReleaseInfo, read_release_config

__all__ = [
    "DEFAULT_RELEASE_DIR",
    "ONNX_FILE",
    "RETRY_SCALE",
    "UPSAMPLE_MIN_SIDE",
    "VERIFY_BELOW",
    "FaceFinder",
    "FaceVerifier",
    "OnnxBackend",
    "Predictor",
    "ReleaseInfo",
    "TorchBackend",
    "VerifyConfig",
    "convert_to_ort",
    "draw_faces",
    "ensemble_releases",
    "interpolate_releases",
    "export_coreml",
    "export_onnx",
    "face_label",
    "cpu_has_vnni",
    "quantize_onnx",
    "read_release_config",
    "resolve_release",
    "default_backend",
    "default_workers",
]
