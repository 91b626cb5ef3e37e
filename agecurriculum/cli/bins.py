"""``agecurriculum bins``: find the unified age bins with the most even group sizes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agecurriculum.bins import (
    ADIENCE_GROUPS,
    MAX_AGE,
    AgeBinOptimizer,
    BinSolution,
    histogram_from_ages,
    parse_groups,
)
from agecurriculum.cli import CLIError
from agecurriculum.cli.data import add_source_arguments, load_sources
from agecurriculum.data.sources import DATASETS, discover, histogram_datasets, load_dataset, why_not_histogram
from agecurriculum.data.summary import age_distribution


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``bins`` sub-command."""
    parser = subparsers.add_parser(
        "bins",
        help="optimise the unified age bins",
        description="Choose age-group boundaries that contain the constraint groups and minimise the variance "
        "of the group sizes (exact, OR-Tools CP-SAT). From datasets, the labels of UTKFace, Adience and MORPH-II "
        "are used; FairFace's decade labels cannot fix bin boundaries, so FairFace is not.",
    )
    # Where the ages come from: a file of ages, or the label view of real datasets (--data and/or per-dataset flags).
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--ages",
        type=Path,
        metavar="FILE",
        help='JSON file: a list of exact ages, or {"ages": [...], "group_counts": {"25-32": n, ...}}; ages and '
        "counts are integers (20.0 counts as 20; true, \"20\" and 20.5 are refused)",
    )
    add_source_arguments(parser, data_group=source, used=histogram_datasets())
    default_groups = ",".join(f"{lo}-{hi}" for lo, hi in ADIENCE_GROUPS)
    parser.add_argument("--groups", default=default_groups, help=f"constraint groups (default: {default_groups})")
    parser.add_argument("--max-age", type=int, default=MAX_AGE, help=f"last age of the last group (default: {MAX_AGE})")
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS", help="solver budget (default: 60)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    try:
        groups = parse_groups(args.groups)
    except ValueError as err:
        raise CLIError(f"--groups: {err}") from None
    try:
        optimizer = AgeBinOptimizer(groups, args.max_age, args.time_limit)
    except ValueError as err:
        raise CLIError(f"invalid options: {err}") from None
    dataset_flags = [f"--{name}" for name in DATASETS if getattr(args, name) is not None]
    if args.ages is not None:
        if dataset_flags:
            raise CLIError(f"--ages cannot be combined with {', '.join(dataset_flags)}")
        histogram, group_counts = _load_ages_file(args.ages, optimizer.max_age)
        source = str(args.ages)
    elif args.data is not None or dataset_flags:
        # The label view: UTKFace names, all Adience fold rows, all MORPH-II table rows, images or not.
        results = load_sources(args, require_images=False, datasets=histogram_datasets())
        _explain_unused(args, fitted=bool(results))
        records = [record for result in results.values() for record in result.records]
        distribution = age_distribution(records, optimizer.constraint_groups, optimizer.max_age)
        histogram, group_counts = distribution.histogram, distribution.group_counts or None
        source = ", ".join(results)
    else:
        raise CLIError("give --ages FILE, or --data ROOT (or per-dataset folders such as --utkface DIR)")
    try:
        solution = optimizer.fit(histogram, group_counts)
    except ValueError as err:
        raise CLIError(f"{source}: {err}") from None
    print(json.dumps(solution.to_dict()) if args.json else _table(solution))
    return 0


def _explain_unused(args: argparse.Namespace, fitted: bool) -> None:
    """Says why datasets outside histogram_datasets() are not fitted on: an error if nothing else is, else a note."""
    # A flagged folder is still checked, so a wrong path is reported as such rather than as unusable labels.
    why_not = why_not_histogram()
    flagged = [name for name in why_not if getattr(args, name) is not None]
    for name in flagged:
        load_dataset(name, getattr(args, name), require_images=False)
    histogram_flags = ", ".join(f"--{name}" for name in histogram_datasets())
    if not fitted:
        # load_sources found none of histogram_datasets(), and raised unless the sources hold another dataset.
        present = flagged or list(discover(args.data, require_images=False, datasets=list(why_not)))
        why = "; ".join(f"{name}: {why_not[name]}" for name in present)
        raise CLIError(f"{why}; give at least one of {histogram_flags}, or --ages FILE")
    for name in flagged:
        print(f"agecurriculum bins: note: --{name} is not used: {why_not[name]}", file=sys.stderr)


def _load_ages_file(path: Path, max_age: int) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Reads a ``--ages`` file into an age histogram and optional group counts."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CLIError(f"{path}: cannot read: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CLIError(f"{path}: not valid JSON: {err}") from None
    group_counts = None
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"ages", "group_counts"})
        if unknown:
            raise CLIError(f"{path}: unknown field(s) {unknown}; expected 'ages' and optionally 'group_counts'")
        if "ages" not in data:
            raise CLIError(f"{path}: missing field 'ages'")
        group_counts = data.get("group_counts")
        if group_counts is not None and not isinstance(group_counts, dict):
            raise CLIError(f"{path}: field 'group_counts' must be an object like {{\"25-32\": 120}}")
        data = data["ages"]
        field = "field 'ages'"
    else:
        field = "top level"
    if not isinstance(data, list):
        raise CLIError(f"{path}: {field} must be a list of ages, got {type(data).__name__}")
    try:
        return histogram_from_ages(data, max_age), group_counts
    except ValueError as err:
        raise CLIError(f"{path}: {field}: {err}") from None


def _table(solution: BinSolution) -> str:
    rows = [f"{'group':>9}  {'size':>10}"]
    rows += [f"{label:>9}  {size:>10}" for label, size in zip(solution.bins.labels(), solution.sizes)]
    rows.append(f"variance of group sizes: {solution.objective:.4f}")
    return "\n".join(rows)
