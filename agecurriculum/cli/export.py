"""``agecurriculum export``: a release as a self-contained ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from agecurriculum.inference import DEFAULT_RELEASE_DIR, export_onnx, resolve_release


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="export a release to ONNX",
        description="Writes the release's network as an ONNX file (atomically): input `images` (N, 3, S, S) "
        "float32, aligned face crops normalised with the release's mean/std, N dynamic; outputs `age_probs` "
        "(N, K) and `gender_probs` (N, 2; 0 male, 1 female), softmax probabilities. The release's config.json is "
        "embedded as the metadata entry agecurriculum.release, so `agecurriculum predict --backend onnx --model "
        "FILE` needs nothing else. Save it as MODEL/model.onnx to have `--backend onnx --model MODEL` find it.",
    )
    parser.add_argument("--model", metavar="DIR",
                        help=f"release folder to export (default: the installed model, {DEFAULT_RELEASE_DIR})")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="output format (default: onnx)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="the file to write, e.g. model.onnx (replaced if it exists; its folder is created)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    out = export_onnx(resolve_release(args.model), args.out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0
