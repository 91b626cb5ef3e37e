"""``agecurriculum interpolate``: one network between a release and its fine-tuned successor, refitted on validation."""

from __future__ import annotations

import argparse
from pathlib import Path

from agecurriculum.cli import Runner
from agecurriculum.cli.train import _add_data_config


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``interpolate`` sub-command."""
    parser = subparsers.add_parser(
        "interpolate",
        help="weights between a release and one fine-tuned from it, with bin ages and temperatures refitted",
        description="Writes a release whose weights are (1 - W) * START + W * END (weight-space ensembling: the "
        "network part of the way from a release to one fine-tuned from it keeps much of the gain and loses less of "
        "the rest), then fits its representative bin ages and calibration temperatures on the validation parts of "
        "--config's data. Choose W on validation numbers (agecurriculum evaluate --compare DIR --part val).",
    )
    parser.add_argument("start", type=Path, metavar="START", help="the release fine-tuning started from")
    parser.add_argument("end", type=Path, metavar="END", help="the fine-tuned release")
    parser.add_argument("--weight", type=float, required=True, metavar="W", help="0 gives START, 1 gives END")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the new release folder")
    _add_data_config(parser)
    parser.set_defaults(func=Runner("agecurriculum.cli.runners.interpolate", "run"))
