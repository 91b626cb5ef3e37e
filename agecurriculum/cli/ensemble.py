"""``agecurriculum ensemble``: several releases as one model that averages their probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path

from agecurriculum.cli import Runner


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
    parser.set_defaults(func=Runner("agecurriculum.cli.runners.ensemble", "run"))
