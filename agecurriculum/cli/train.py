"""``agecurriculum train`` and ``agecurriculum evaluate``: a whole run from a config file (see examples/configs)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from agecurriculum.cli import Runner
from agecurriculum.config import EVALUATION_PARTS, RUN_CONFIG_FILE, settings_help

_CONFIG_HELP = (
    "The config file (YAML or TOML) sets any of the settings listed below; --set overrides them. Ready-made files: "
    "examples/configs/cpu.yaml (minutes on a laptop CPU) and examples/configs/paper.yaml (the paper's setup, needs "
    "a GPU)."
)


def settings_epilog() -> str:
    """The ``--help`` epilog: every setting with its default and meaning."""
    return "settings (name = default: meaning):\n" + "\n".join(f"  {line}" for line in settings_help())


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one config value, parsed as YAML (e.g. --set data.root=/data --set "
        "trainer.lr=3e-4 --set bins=paper); repeatable, applied in order",
    )


def _add_data_config(parser: argparse.ArgumentParser) -> None:
    # --config FILE (required) and --set: the data and split a release was trained with, for the commands that
    # refit a release on its validation parts (interpolate, adjust-prior).
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the configuration the release was trained with: its data and split (the run's run_config.yaml, or "
        "examples/configs/release.yaml)",
    )
    _add_set(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``train`` and ``evaluate`` sub-commands."""
    train_parser = subparsers.add_parser(
        "train",
        help="train a model over a curriculum from a config file, then save a release and a test report",
        description=textwrap.fill(
            "Prepares the data (seeded subsample, subject-disjoint split, face crops in the cache, age "
            "bins, balancing), trains a DualClassifier over the curriculum, and writes into out_dir: checkpoint.pt, "
            "metrics.csv, training curves, run_config.yaml, resolved_config.json, release/ and report/. "
            + _CONFIG_HELP
            + " Under torchrun (torchrun --nproc_per_node N -m agecurriculum train ...) every process "
            "trains its share of each epoch and only rank 0 writes.",
            width=100,
        ),
        epilog=settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train_parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="run configuration, .yaml/.yml or .toml (see examples/configs)",
    )
    _add_set(train_parser)
    train_parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from out_dir/checkpoint.pt after an interruption (a finished run trains "
        "no more epochs and only rewrites the release and the report)",
    )
    train_parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the configuration, build the schedule and the model, and print the plan "
        "(model, bins, curriculum and epochs, loss, LR and early-stopping policy, release, "
        "balancing) without preparing data, training or writing anything",
    )
    train_parser.set_defaults(func=Runner("agecurriculum.cli.runners.train", "run_train"))

    eval_parser = subparsers.add_parser(
        "evaluate",
        help="re-evaluate a finished run's release on the test splits",
        description=textwrap.fill(
            "Reloads RUN/release (or --checkpoint) and the run's configuration (RUN/"
            + RUN_CONFIG_FILE
            + "), rebuilds the "
            "same test splits and writes the report (Table III form, JSON, confusion matrices). " + _CONFIG_HELP,
            width=100,
        ),
        epilog=settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    eval_parser.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="a run folder written by agecurriculum train (its out_dir); its run_config.yaml "
        "says where the data is and how it is split",
    )
    eval_parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="with --compare: take the data and split from this config file instead of a run "
        "folder's (default: the run_config.yaml beside the candidate release, if any)",
    )
    eval_parser.add_argument(
        "--compare",
        type=Path,
        metavar="CANDIDATE",
        help="the release gate: score the release CANDIDATE and the shipped one (or --baseline) "
        "on the same faces, print the metrics side by side and exit with status 1 when any "
        "falls by more than its noise margin (docs/gate.rst)",
    )
    eval_parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="with --compare: the release to compare against (default: the shipped model)",
    )
    eval_parser.add_argument(
        "--no-flip",
        dest="gate_flip",
        action="store_false",
        help="with --compare: score without flip averaging (default: with it, as predict runs)",
    )
    _add_set(eval_parser)
    eval_parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="evaluate this training checkpoint of the run (e.g. RUN/checkpoint.pt, or "
        "RUN/best.pt: the epoch with the best validation loss) instead of RUN/release",
    )
    eval_parser.add_argument(
        "--release",
        type=Path,
        metavar="DIR",
        help="evaluate this release (e.g. an ensemble from `agecurriculum ensemble`, or another "
        "run's release with the same bins) on the run's test splits instead of RUN/release",
    )
    eval_parser.add_argument(
        "--part",
        choices=EVALUATION_PARTS,
        default="test",
        help="score the test parts (default), or the validation parts: choose between models "
        "on these, and read test only for the one chosen",
    )
    eval_parser.add_argument(
        "--flip",
        action="store_true",
        help="average every face's probabilities with those of its mirror image (as predict --flip)",
    )
    eval_parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the report (default: RUN/evaluation, or RUN/evaluation-NAME for "
        "--release NAME; -val and -flip are appended for --part val and --flip)",
    )
    eval_parser.set_defaults(func=Runner("agecurriculum.cli.runners.train", "run_evaluate"))
