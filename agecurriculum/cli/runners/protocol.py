"""What ``agecurriculum protocol`` does (its options: :mod:`agecurriculum.cli.protocol`)."""

from __future__ import annotations

import argparse

from agecurriculum.cli import run_tabulated
from agecurriculum.cli.runners.train import in_distributed_session
from agecurriculum.evaluation.metrics import format_number
from agecurriculum.train.adience_folds import FOLD_RESULT, LISTS, FoldResult, run_adience_folds


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
