"""``agecurriculum export``: a release as a self-contained ONNX file (float32 or int8), or a model for phones: ONNX
Runtime's mobile format (``.ort``, float32 or int8) or CoreML (``.mlpackage``, float32)."""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
from pathlib import Path

import numpy as np

from agecurriculum.cli import CLIError
from agecurriculum.cli.predict import expand_paths
from agecurriculum.inference import (
    DEFAULT_RELEASE_DIR,
    OnnxBackend,
    Predictor,
    convert_to_ort,
    export_coreml,
    export_onnx,
    quantize_onnx,
    resolve_release,
)
from agecurriculum.inference.export import cached_onnx
from agecurriculum.inference.mobile import model_bytes

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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    # The output's suffix first: a wrong one would otherwise fail only after the export's seconds of work.
    suffix = {"ort": ".ort", "coreml": ".mlpackage"}.get(args.format)
    if suffix and args.out.suffix.lower() != suffix:
        raise CLIError(f"--out {args.out}: --format {args.format} writes a {suffix} file; name it so")
    if args.format == "coreml" and args.int8:
        raise CLIError("--int8 applies to --format onnx and ort; the CoreML export is float32")
    release = resolve_release(args.model)
    if not args.int8:
        if args.calibration or args.aligned or args.reduce_range:
            raise CLIError("--calibration, --aligned and --reduce-range only apply to --int8")
        if args.format == "coreml":
            try:
                out = export_coreml(release, args.out)
            except ImportError as e:
                raise CLIError(str(e)) from None
            print(f"wrote {out} ({model_bytes(out) / 2**20:.1f} MiB): CoreML ML program, float32")
            return 0
        out = (
            export_onnx(release, args.out) if args.format == "onnx" else convert_to_ort(cached_onnx(release), args.out)
        )
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        return 0
    if not args.calibration:
        raise CLIError(
            "--int8 needs --calibration PATH...: photos (or with --aligned, face crops) to measure the "
            "activation ranges on"
        )
    if args.calibration_faces < 1:
        raise CLIError(f"--calibration-faces must be at least 1, got {args.calibration_faces}")
    files, unmatched = expand_paths(args.calibration)
    if len(unmatched) == len(args.calibration):
        raise CLIError(f"--calibration: no input matches {', '.join(unmatched)}")
    random.Random(0).shuffle(files)  # a varied sample when there are more faces than --calibration-faces
    float32 = cached_onnx(release)
    faces = Predictor(OnnxBackend(float32)).network_inputs(files, aligned=args.aligned)
    crops = list(itertools.islice(faces, args.calibration_faces))
    if not crops:
        raise CLIError(f"--calibration: no face found in {len(files)} input(s); nothing written")
    if args.format == "onnx":
        out = quantize_onnx(float32, args.out, np.stack(crops), reduce_range=args.reduce_range)
    else:  # the int8 ONNX file is only a step on the way to the .ort file
        with tempfile.TemporaryDirectory(prefix="agecurriculum-export-") as tmp:
            out = convert_to_ort(
                quantize_onnx(float32, Path(tmp) / "int8.onnx", np.stack(crops), reduce_range=args.reduce_range),
                args.out,
            )
    print(
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): int8, calibrated on {len(crops)} face(s) from "
        f"{len(files)} input(s)"
    )
    return 0
