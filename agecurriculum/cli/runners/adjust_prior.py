"""What ``agecurriculum adjust-prior`` does (its options: :mod:`agecurriculum.cli.adjust_prior`)."""

from __future__ import annotations

import argparse

from agecurriculum.config import apply_overrides, load_config
from agecurriculum.train.run import adjust_age_prior


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    config = apply_overrides(load_config(args.config), args.overrides)
    adjustment = adjust_age_prior(args.release, config, args.out, args.strength)
    offsets = ", ".join(f"{v:+.2f}" for v in adjustment.offsets)
    print(
        f"wrote {args.out}: {args.release} with age-logit offsets [{offsets}] (strength {adjustment.strength:g}, "
        f"undoing the draws of {adjustment.dataset}: {adjustment.sampling}), bin ages and temperatures fitted on the "
        "validation parts"
    )
    return 0
