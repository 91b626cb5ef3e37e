"""``agecurriculum train`` and ``agecurriculum evaluate``: a whole run from a config file (see examples/configs)."""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from agecurriculum.cli import CLIError, describe_error
from agecurriculum.config import apply_overrides, load_config, settings_help
from agecurriculum.fileio import atomic_write
from agecurriculum.inference.release import DEFAULT_RELEASE_DIR
from agecurriculum.release import RELEASE_CONFIG
from agecurriculum.train.distributed import distributed_session
from agecurriculum.train.plan import describe_run
from agecurriculum.train.run import EVALUATION_PARTS, RUN_CONFIG_FILE, compare_releases, evaluate_run, train

T = TypeVar("T")

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
    train_parser.set_defaults(func=run_train)

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
    eval_parser.set_defaults(func=run_evaluate)


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
