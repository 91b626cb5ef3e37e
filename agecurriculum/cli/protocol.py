"""``agecurriculum protocol adience``: the Adience benchmark's 5-fold protocol, one training run per fold."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from agecurriculum.cli import run_tabulated
from agecurriculum.cli.train import _CONFIG_HELP, _add_set, in_distributed_session, settings_epilog
from agecurriculum.evaluation.metrics import format_number
from agecurriculum.train.adience_folds import FOLD_RESULT, FOLDS, LISTS, FoldResult, run_adience_folds


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
    adience.set_defaults(func=run_protocol)


def _progress(fold: FoldResult) -> None:
    found = sum(fold.coverage[name]["found"] for name in LISTS)
    entries = sum(fold.coverage[name]["entries"] for name in LISTS)
    head = f"fold {fold.fold}: {found} of {entries} list entries found in the data"
    if not fold.scored:
        print(f"{head}; not scored: {fold.note}", flush=True)
        return
    m = fold.metrics
    done = (
        f"scored before ({FOLD_RESULT}), not trained again"
        if fold.resumed
        else f"trained {fold.epochs_trained} epoch(s) in {fold.seconds:.0f} s"
    )
    age, one_off, gender = (format_number(m[key], True) for key in ("age_accuracy", "one_off", "gender_accuracy"))
    print(
        f"{head}; {done}; age accuracy {age}%, 1-off {one_off}% (n {m['n_age']}), gender accuracy {gender}% "
        f"(n {m['n_gender']}); run: {fold.run_dir}",
        flush=True,
    )


def run_protocol(args: argparse.Namespace) -> int:
    """Runs ``protocol adience``; returns the exit status."""
    return run_tabulated(
        args,
        lambda config: in_distributed_session(
            lambda: run_adience_folds(config, folds=args.folds, resume=args.resume, on_fold=_progress)
        ),
        ("adience_5fold.md", "adience_5fold.json"),
    )
