"""``agecurriculum ablate``: the paper's loss (Table VII) and curriculum (Table VIII) ablations, hard versus soft
gender conditioning, and the adaptive curriculum on one image budget, from a config file."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from agecurriculum.cli import Runner
from agecurriculum.cli.train import _CONFIG_HELP, _add_set, settings_epilog
from agecurriculum.config import CONDITIONING_MODES, LOSS_NAMES
from agecurriculum.schedule import PRESETS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``ablate`` sub-command."""
    parser = subparsers.add_parser(
        "ablate",
        help="train the loss, curriculum and conditioning ablations (the paper's Tables VII and VIII, hard vs "
        "soft conditioning) and tabulate them",
        description=textwrap.fill(
            f"Trains one run per variant, each into its own folder under out_dir, with everything else of the "
            f"configuration identical (data, splits, bins, seed): the loss study keeps the config's schedule and "
            f"trains each loss ({', '.join(LOSS_NAMES)}) into out_dir/loss-NAME; the curriculum study keeps the "
            f"config's loss and trains each of the paper's curricula ({', '.join(PRESETS)}, which use utkface, "
            f"adience and morph2) into out_dir/curriculum-NAME; the conditioning study keeps both and trains each "
            f"gender conditioning of the age head ({', '.join(CONDITIONING_MODES)}) into "
            f"out_dir/conditioning-NAME; the adaptive study (only with --study adaptive) trains the paper's curricula, "
            f"mixed training and the adaptive curriculum on one image budget (the original curriculum's images, "
            f"early stopping off) into out_dir/adaptive-NAME. A variant identical to one trained before it reuses "
            f"that run. Writes out_dir/ablation.md and out_dir/ablation.json (gender and age-bin accuracy per test "
            f"dataset and their mean, one row per variant) after every run, and prints the tables. " + _CONFIG_HELP,
            width=100,
        ),
        epilog=settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="base run configuration, .yaml/.yml or .toml (see examples/configs); its out_dir is the ablation folder",
    )
    _add_set(parser)
    parser.add_argument(
        "--study",
        choices=("all", "loss", "curriculum", "conditioning", "adaptive"),
        default="all",
        help="which ablation to run: loss (Table VII), curriculum (Table VIII), conditioning (hard "
        "vs soft, a Table VII-style row) or all, in that order (default: all); adaptive (the "
        "adaptive curriculum against the paper's curricula and mixed training on one image budget, "
        "test and validation tables) runs only when named",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted ablation: every run goes on from its own checkpoint, and "
        "finished runs train no more epochs (they are only re-evaluated)",
    )
    parser.set_defaults(func=Runner("agecurriculum.cli.runners.ablate", "run_ablate"))
