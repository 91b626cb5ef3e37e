"""What ``agecurriculum train`` and ``evaluate`` do (their options: :mod:`agecurriculum.cli.train`)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import TypeVar

from agecurriculum.cli import CLIError, describe_error
from agecurriculum.config import RUN_CONFIG_FILE, apply_overrides, load_config
from agecurriculum.fileio import atomic_write
from agecurriculum.inference.defaults import DEFAULT_RELEASE_DIR
from agecurriculum.release import RELEASE_CONFIG
from agecurriculum.train.distributed import distributed_session
from agecurriculum.train.plan import describe_run
from agecurriculum.train.run import compare_releases, evaluate_run, train

T = TypeVar("T")


def in_distributed_session(study: Callable[[], T]) -> T:
    """Runs ``study()``; under torchrun inside the process group, left before the command exits (see
    :func:`~agecurriculum.train.distributed.distributed_session`)."""
    with distributed_session():
        return study()


def run_train(args: argparse.Namespace) -> int:
    """Runs ``train``; returns the exit status."""
    config = apply_overrides(load_config(args.config), args.overrides)
    if args.dry_run:
        print(
            f"plan of {args.config}"
            + (f" with {len(args.overrides)} override(s)" if args.overrides else "")
            + " (dry run: no data prepared, nothing trained or written):"
        )
        for line in describe_run(config):
            print(f"  {line}")
        return 0
    start = time.perf_counter()
    try:
        result = in_distributed_session(lambda: train(config, resume=args.resume))
    except OSError as err:  # a full disk, a read-only folder: the files written before are intact
        raise CLIError(
            f"{describe_error(err)} (what was written before is kept: once the cause is fixed, rerun "
            "with --resume to go on from the last checkpoint)"
        ) from err
    if result.report is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    for name, split in result.data.splits.items():
        dropped = ", ".join(f"{n} {reason}" for reason, n in result.data.failures[name].items()) or "none"
        sizes = ", ".join(f"{part} {n}" for part, n in split.sizes().items())
        print(f"{name}: {sizes}; dropped by the face pipeline: {dropped}")
    print(f"age bins: {', '.join(result.data.bins.labels())}")
    print(
        f"trained {len(result.history)} epoch(s) in {time.perf_counter() - start:.0f} s; "
        f"release: {result.release_dir}; report: {result.run_dir / 'report' / 'report.md'}"
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Runs ``evaluate``; returns the exit status."""
    if args.compare is not None:
        return run_gate(args)
    if args.run is None:
        raise CLIError("give --run DIR (a training run's folder), or --compare CANDIDATE for the release gate")
    config_file = args.run / RUN_CONFIG_FILE
    if not config_file.is_file():
        raise CLIError(f"{args.run}: not a run folder (no {RUN_CONFIG_FILE}); give the out_dir of a training run")
    if args.release is not None and args.checkpoint is not None:
        raise CLIError("give --release or --checkpoint, not both")
    config = apply_overrides(load_config(config_file), args.overrides)
    if args.release is None:
        target, default_out = args.run, args.run / "evaluation"
    else:
        target, default_out = args.release, args.run / f"evaluation-{args.release.resolve().name}"
    suffix = ("-val" if args.part == "val" else "") + ("-flip" if args.flip else "")
    out = args.out if args.out is not None else default_out.with_name(default_out.name + suffix)
    report = evaluate_run(target, config, out_dir=out, checkpoint=args.checkpoint, part=args.part, flip=args.flip)
    print(f"evaluated {', '.join(r.name for r in report.results)}; report: {out / 'report.md'}")
    return 0


def run_gate(args: argparse.Namespace) -> int:
    """Runs ``evaluate --compare``: 0 when the candidate passes the gate, 1 when a metric fell."""
    if args.release is not None or args.checkpoint is not None:
        raise CLIError("--compare scores two releases: give the other one as --baseline, not --release/--checkpoint")
    if not (args.compare / RELEASE_CONFIG).is_file():
        raise CLIError(f"{args.compare}: not a release folder (no {RELEASE_CONFIG})")
    beside = args.compare.parent / RUN_CONFIG_FILE
    if args.config is not None:
        config_file = args.config
    elif args.run is not None:
        config_file = args.run / RUN_CONFIG_FILE
    elif beside.is_file():
        config_file = beside
    else:
        raise CLIError(
            f"{args.compare}: no {RUN_CONFIG_FILE} beside it; give --config FILE (e.g. "
            "examples/configs/release.yaml) or --run DIR for the data and its split"
        )
    if not config_file.is_file():
        raise CLIError(f"{config_file}: no such config file")
    config = apply_overrides(load_config(config_file), args.overrides)
    baseline = args.baseline if args.baseline is not None else DEFAULT_RELEASE_DIR
    result = compare_releases(args.compare, baseline, config, part=args.part, flip=args.gate_flip)
    out = args.out if args.out is not None else args.compare.parent / f"gate-{args.part}"
    table = result.to_markdown(
        baseline=baseline.name if args.baseline is not None else "shipped", candidate=args.compare.name
    )
    against = args.baseline if args.baseline is not None else "the shipped model"
    header = (
        f"# Release gate: {args.compare} against {against}\n\nFaces: the {args.part} parts of {config_file}'s "
        f"data ({'with' if args.gate_flip else 'without'} flip averaging).\n\n"
    )
    atomic_write(out / "gate.md", (header + table + "\n").encode())
    atomic_write(out / "gate.json", (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    print(table)
    print(f"gate table: {out / 'gate.md'}")
    return 0 if result.passed else 1
