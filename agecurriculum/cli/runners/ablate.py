"""What ``agecurriculum ablate`` does (its options: :mod:`agecurriculum.cli.ablate`)."""

from __future__ import annotations

import argparse

from agecurriculum.cli import run_tabulated
from agecurriculum.cli.runners.train import in_distributed_session
from agecurriculum.train.ablation import AblationRow, run_ablation


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
