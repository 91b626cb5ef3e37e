"""``agecurriculum adjust-prior``: a release's age logits moved from its sampler's age proportions to the data's."""

from __future__ import annotations

import argparse
from pathlib import Path

from agecurriculum.cli import Runner
from agecurriculum.cli.train import _add_data_config


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``adjust-prior`` sub-command."""
    parser = subparsers.add_parser(
        "adjust-prior",
        help="undo the training sampler's age proportions in a release's age logits, bin ages and temperatures "
        "refitted",
        description="Writes RELEASE again with its age logits adjusted to the data's age proportions: a model trained "
        "on draws that favour rare age groups (trainer.sampling) learned the drawn proportions as its prior; adding "
        "-S x log(drawn share / data's share) of each bin to its age logits undoes that (post-hoc logit adjustment, "
        "the setting logit_adjust of a run). --config must be the configuration the release was trained with; its "
        "representative bin ages and calibration temperatures are then fitted on that data's validation parts. "
        "Compare it with the release on validation numbers (agecurriculum evaluate --compare DIR --part val).",
    )
    parser.add_argument("release", type=Path, metavar="RELEASE", help="a release trained without logit_adjust")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the new release folder")
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="S",
        help="the share of the shift undone, > 0 (default 1: all of it)",
    )
    _add_data_config(parser)
    parser.set_defaults(func=Runner("agecurriculum.cli.runners.adjust_prior", "run"))
