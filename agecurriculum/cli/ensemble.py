"""``agecurriculum ensemble``: several releases as one model that averages their probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from agecurriculum.inference.ensemble import ensemble_releases


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``ensemble`` sub-command."""
    parser = subparsers.add_parser(
        "ensemble",
        help="combine releases into one ensemble release",
        description="Writes a release whose model runs every given release's model on the same face and averages "
        "their age and gender probabilities: more accurate than each, slower by their number. The members must "
        "predict the same age bins from the same preprocessing (e.g. the same configuration trained with other "
        "seeds). The result works wherever a release does: predict --model DIR, export, evaluation.",
    )
    parser.add_argument(
        "releases", nargs="+", type=Path, metavar="RELEASE", help="release folders (e.g. RUN/release), two or more"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the ensemble's release folder")
    parser.add_argument(
        "--float32",
        action="store_true",
        help="store the weights in float32 (default: float16, half the size; probabilities move by up to about 0.01)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    out = ensemble_releases(args.releases, args.out, torch.float32 if args.float32 else torch.float16)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {out}: ensemble of {len(args.releases)} releases ({size / 2**20:.1f} MiB)")
    return 0
