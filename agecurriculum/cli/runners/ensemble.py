"""What ``agecurriculum ensemble`` does (its options: :mod:`agecurriculum.cli.ensemble`)."""

from __future__ import annotations

import argparse

import torch

from agecurriculum.inference.ensemble import ensemble_releases


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    out = ensemble_releases(args.releases, args.out, torch.float32 if args.float32 else torch.float16)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {out}: ensemble of {len(args.releases)} releases ({size / 2**20:.1f} MiB)")
    return 0
