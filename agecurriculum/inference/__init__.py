"""Running a trained model on photos: :class:`Predictor`, the torch and ONNX backends, ONNX export.

- :class:`Predictor`: photos (paths or arrays) -> every face's box, gender, age group and expected age.
- :class:`FaceVerifier`: dlib's CNN detector confirming each HOG face box, so face-like patterns are dropped.
- :class:`TorchBackend`, :class:`OnnxBackend`: where the network runs.
- :func:`export_onnx`: a release -> a self-contained ONNX file; :func:`quantize_onnx`: that file in int8.
- :func:`ensemble_releases`: several releases -> one release averaging their models.
- :data:`DEFAULT_RELEASE_DIR`: where the library's own trained model is installed.
"""

from agecurriculum.inference.annotate import draw_faces, face_label
from agecurriculum.inference.backends import OnnxBackend, TorchBackend
from agecurriculum.inference.ensemble import ensemble_releases
from agecurriculum.inference.export import export_onnx
from agecurriculum.inference.predictor import ONNX_FILE, Predictor
from agecurriculum.inference.quantize import quantize_onnx
from agecurriculum.inference.release import DEFAULT_RELEASE_DIR, ReleaseInfo, read_release_config, resolve_release
from agecurriculum.inference.verify import FaceVerifier, VerifyConfig

__all__ = [
    "DEFAULT_RELEASE_DIR",
    "ONNX_FILE",
    "FaceVerifier",
    "OnnxBackend",
    "Predictor",
    "ReleaseInfo",
    "TorchBackend",
    "VerifyConfig",
    "draw_faces",
    "ensemble_releases",
    "export_onnx",
    "face_label",
    "quantize_onnx",
    "read_release_config",
    "resolve_release",
]
