"""``agecurriculum ablate``: the paper's loss (Table VII) and curriculum (Table VIII) ablations, hard versus soft
gender conditioning, and the adaptive curriculum on one image budget, from a config file."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from agecurriculum.cli import run_tabulated
from agecurriculum.cli.train import _CONFIG_HELP, _add_set, in_distributed_session, settings_epilog
from agecurriculum.train.ablation import (
    ADAPTIVE_VARIANTS,
    CONDITIONINGS,
    CURRICULA,
    LOSS_VARIANTS,
    AblationRow,
    run_ablation,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``ablate`` sub-command."""
    parser = subparsers.add_parser(
        "ablate",
        help="train the loss, curriculum and conditioning ablations (the paper's Tables VII and VIII, hard vs "
        "soft conditioning) and tabulate them",
        description=textwrap.fill(
            f"Trains one run per variant, each into its own folder under out_dir, with everything else of the "
            f"configuration identical (data, splits, bins, seed): the loss study keeps the config's schedule and "
            f"trains each loss ({', '.join(LOSS_VARIANTS)}) into out_dir/loss-NAME; the curriculum study keeps the "
            f"config's loss and trains each of the paper's curricula ({', '.join(CURRICULA)}, which use utkface, "
            f"adience and morph2) into out_dir/curriculum-NAME; the conditioning study keeps both and trains each "
            f"gender conditioning of the age head ({', '.join(CONDITIONINGS)}) into out_dir/conditioning-NAME; the "
            f"adaptive study (only with --study adaptive) trains {', '.join(ADAPTIVE_VARIANTS)} on one image budget "
            f"(the original curriculum's images, early stopping off) into out_dir/adaptive-NAME. A "
            f"variant identical to one trained before it reuses "
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
    parser.set_defaults(func=run_ablate)


def _progress(row: AblationRow) -> None:
    print(
        f"{row.study}-{row.variant}: trained {row.epochs_trained} epoch(s) in {row.seconds:.0f} s; run: {row.run_dir}",
        flush=True,
    )


def run_ablate(args: argparse.Namespace) -> int:
    """Runs ``ablate``; returns the exit status."""
    return run_tabulated(
        args,
        lambda config: in_distributed_session(
            lambda: run_ablation(config, study=args.study, resume=args.resume, on_run=_progress)
        ),
        ("ablation.md", "ablation.json"),
    )
