"""``agecurriculum export``: a release as a self-contained ONNX file (float32 or int8), or a model for phones: ONNX
Runtime's mobile format (``.ort``, float32 or int8) or CoreML (``.mlpackage``, float32)."""

from __future__ import annotations

import argparse
from pathlib import Path

from agecurriculum.cli import Runner
from agecurriculum.inference.defaults import DEFAULT_RELEASE_DIR

FORMATS = ("onnx", "ort", "coreml")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="export a release to ONNX, ONNX Runtime Mobile (.ort) or CoreML (float32, or int8 with --int8)",
        description="Writes the release's network as an ONNX file (atomically): input `images` (N, 3, S, S) "
        "float32, aligned face crops normalised with the release's mean/std, N dynamic; outputs `age_probs` "
        "(N, K) and `gender_probs` (N, 2; 0 male, 1 female), softmax probabilities. The release's config.json is "
        "embedded as the metadata entry agecurriculum.release, so `agecurriculum predict --backend onnx --model "
        "FILE` needs nothing else. Save it as MODEL/model.onnx to have `--backend onnx --model MODEL` find it. "
        "With --int8 the weights and activations are quantized to 8 bits (the network about twice as fast on a CPU, "
        "accuracy within a few test faces of float32), with activation ranges measured on the faces of --calibration. "
        "--format ort writes the same model (float32 or int8) in ONNX Runtime's mobile format for iOS and Android "
        "(FILE.ort); --format coreml a CoreML ML program (FILE.mlpackage, float32; needs coremltools: pip install "
        "'agecurriculum[coreml]'). The app must find and align the face first: see the docs' mobile page.",
    )
    parser.add_argument(
        "--model", metavar="DIR", help=f"release folder to export (default: the installed model, {DEFAULT_RELEASE_DIR})"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="output format: onnx, ort (ONNX Runtime Mobile) or coreml (default: onnx)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="the file to write, e.g. model.onnx, model.ort or model.mlpackage (replaced if it exists; "
        "its folder is created)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="quantize to int8 (static, per channel), calibrated on the faces of --calibration (--format onnx or ort)",
    )
    parser.add_argument(
        "--calibration",
        nargs="+",
        metavar="PATH",
        help="with --int8: photos like those you will predict on (files, folders or globs, as for "
        "predict); their faces are found and aligned as predict does",
    )
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="the --calibration images are aligned face crops already (as `predict --aligned`)",
    )
    parser.add_argument(
        "--reduce-range",
        action="store_true",
        help="with --int8: 7-bit weights, for CPUs without VNNI (AVX2 only, e.g. AMD Zen 2/3), where "
        "8-bit weights can saturate ONNX Runtime's kernels; costs some accuracy",
    )
    parser.add_argument(
        "--calibration-faces",
        type=int,
        default=256,
        metavar="N",
        help="faces to calibrate on, from the inputs in a seeded random order (default: 256)",
    )
    parser.set_defaults(func=Runner("agecurriculum.cli.runners.export", "run"))
