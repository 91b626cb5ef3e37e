"""``agecurriculum protocol adience``: the Adience benchmark's 5-fold protocol, one training run per fold."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from agecurriculum.cli import Runner
from agecurriculum.cli.train import _CONFIG_HELP, _add_set, settings_epilog
from agecurriculum.data.sources.adience import FOLD_RESULT, FOLDS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``protocol`` sub-command and its ``adience`` protocol."""
    parser = subparsers.add_parser(
        "protocol",
        help="run a benchmark's own evaluation protocol (adience: the 5-fold protocol, mean ± std)",
        description="Runs a benchmark's own evaluation protocol. Protocols: adience.",
    )
    protocols = parser.add_subparsers(
        dest="protocol", metavar="PROTOCOL", required=True, help="the benchmark protocol to run"
    )
    adience = protocols.add_parser(
        "adience",
        help="the Adience 5-fold protocol: train on each fold's lists, score in the 8 native age groups",
        description=textwrap.fill(
            "For each fold K (ROOT/adience/levi_folds/test_fold_is_K), trains one run into out_dir/fold-K with "
            "Adience split by the fold's train, val and test lists (the other datasets keep their usual split and "
            "the config's schedule, which must use adience), then scores the released model on the fold's test "
            "lists: age accuracy and 1-off in Adience's native 8 groups against age_test.txt, gender accuracy "
            "against gender_test.txt. Writes out_dir/adience_5fold.md (a row per fold, mean ± sample std over "
            "the scored folds, list entries used per fold, notes) and out_dir/adience_5fold.json after every "
            "fold, and prints the table. List entries whose face is not in the data are counted; a fold with no "
            "test or no training entry left is not trained and gets a note. " + _CONFIG_HELP,
            width=100,
        ),
        epilog=settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    adience.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="base run configuration, .yaml/.yml or .toml (see examples/configs); its out_dir is "
        "the protocol folder, and data.datasets and the schedule must use adience",
    )
    _add_set(adience)
    adience.add_argument(
        "--folds",
        type=int,
        nargs="+",
        choices=FOLDS,
        default=list(FOLDS),
        metavar="K",
        help="the folds to run, among 0 1 2 3 4, in this order (default: all five)",
    )
    adience.add_argument(
        "--resume",
        action="store_true",
        help=f"continue an interrupted protocol: folds already scored (out_dir/fold-K/"
        f"{FOLD_RESULT}) are neither trained nor scored again, an interrupted fold goes on from "
        "its checkpoint",
    )
    adience.set_defaults(func=Runner("agecurriculum.cli.runners.protocol", "run_protocol"))
