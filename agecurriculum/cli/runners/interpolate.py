"""What ``agecurriculum interpolate`` does (its options: :mod:`agecurriculum.cli.interpolate`)."""

from __future__ import annotations

import argparse

from agecurriculum.config import apply_overrides, load_config
from agecurriculum.inference.ensemble import interpolate_releases
from agecurriculum.train.run import refit_release


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    config = apply_overrides(load_config(args.config), args.overrides)
    out = interpolate_releases(args.start, args.end, args.weight, args.out)
    refit_release(out, config)
    print(
        f"wrote {out}: {1 - args.weight:g} x {args.start} + {args.weight:g} x {args.end}, bin ages and "
        "temperatures fitted on the validation parts"
    )
    return 0
