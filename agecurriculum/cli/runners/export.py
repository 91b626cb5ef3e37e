"""What ``agecurriculum export`` does (its options: :mod:`agecurriculum.cli.export`)."""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
from pathlib import Path

import numpy as np

from agecurriculum.cli import CLIError
from agecurriculum.cli.predict import expand_paths
from agecurriculum.fileio import check_writable_file
from agecurriculum.inference import (
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


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    # The output's suffix first: a wrong one would otherwise fail only after the export's seconds of work.
    suffix = {"ort": ".ort", "coreml": ".mlpackage"}.get(args.format)
    if suffix and args.out.suffix.lower() != suffix:
        raise CLIError(f"--out {args.out}: --format {args.format} writes a {suffix} file; name it so")
    if args.format == "coreml" and args.int8:
        raise CLIError("--int8 applies to --format onnx and ort; the CoreML export is float32")
    if args.format != "coreml":  # (export_coreml checks its folder itself)
        check_writable_file(args.out)  # a file in the way or a read-only disk fails now, not after the export
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
