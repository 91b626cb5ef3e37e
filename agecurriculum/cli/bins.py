"""``agecurriculum bins``: find the unified age bins with the most even group sizes."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agecurriculum.bins import (
    ADIENCE_GROUPS,
    AGE_CEILING,
    MAX_AGE,
    AgeBinOptimizer,
    BinSolution,
    histogram_from_ages,
    parse_age_label,
    parse_groups,
)
from agecurriculum.cli import CLIError
from agecurriculum.cli.sources import add_source_arguments, load_sources, paused_cyclic_gc
from agecurriculum.data.distribution import age_distribution
from agecurriculum.data.sources import DATASETS, discover, histogram_datasets, load_dataset, why_not_histogram
from agecurriculum.data.sources.common import read_table


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``bins`` sub-command."""
    parser = subparsers.add_parser(
        "bins",
        help="optimise the unified age bins",
        description="Choose age-group boundaries that contain the constraint groups and minimise the variance "
        "of the group sizes (exact, OR-Tools CP-SAT). From datasets, the labels of UTKFace, Adience and MORPH-II "
        "are used; FairFace's decade labels cannot fix bin boundaries, so FairFace is not. With --n-bins K the "
        "bins come from the labels alone (no constraint groups): K contiguous bins that keep every labelled range "
        "whole and then have the most even sizes (exact dynamic programme).",
    )
    # Where the ages come from: a file of ages, or the label view of real datasets (--data and/or per-dataset flags).
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--ages",
        type=Path,
        metavar="FILE",
        help='JSON file: a list of exact ages, or {"ages": [...], "group_counts": {"25-32": n, ...}}; ages and '
        'counts are integers (20.0 counts as 20; true, "20" and 20.5 are refused)',
    )
    source.add_argument(
        "--csv",
        type=Path,
        action="append",
        metavar="FILE",
        help="an annotation table (comma or, when its header line has a tab, tab separated); repeat for several. "
        "Its --age-column holds ages (35), ranges (20-29, (25, 32)) or open ranges (70+, more than 70)",
    )
    add_source_arguments(parser, data_group=source, used=histogram_datasets())
    default_groups = ",".join(f"{lo}-{hi}" for lo, hi in ADIENCE_GROUPS)
    parser.add_argument("--groups", help=f"constraint groups (default: {default_groups}); not with --n-bins")
    csv_options = parser.add_argument_group("annotation tables (--csv)")
    csv_options.add_argument("--age-column", default="age", metavar="COL", help="the age label column (default: age)")
    csv_options.add_argument(
        "--group-column",
        metavar="COL",
        help="a second label column, read where the age column is empty (e.g. an age group)",
    )
    csv_options.add_argument(
        "--age-offset",
        type=int,
        default=0,
        metavar="YEARS",
        help="added to every age read, e.g. 16 for MORPH-II's tables (default: 0)",
    )
    auto = parser.add_argument_group("bins from the labels alone")
    auto.add_argument("--n-bins", type=int, metavar="K", help="find K bins without constraint groups")
    auto.add_argument("--min-width", type=int, metavar="W", help="fewest ages in a bin (default: 1)")
    auto.add_argument(
        "--allow-left-out",
        action="store_true",
        help="accept bins that cut a labelled range; its images are left out (said on stderr)",
    )
    parser.add_argument("--max-age", type=int, default=MAX_AGE, help=f"last age of the last group (default: {MAX_AGE})")
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS", help="solver budget (default: 60)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    # The records of every labelled image live until the bins are fitted: the cycle collector, left on, would walk
    # them over and over while CP-SAT loads, and they hold no cycles for it to free.
    with paused_cyclic_gc():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    optimizer = _optimizer(args)
    dataset_flags = [f"--{name}" for name in DATASETS if getattr(args, name) is not None]
    if (args.ages or args.csv) and dataset_flags:
        raise CLIError(f"{'--ages' if args.ages else '--csv'} cannot be combined with {', '.join(dataset_flags)}")
    if args.ages is not None:
        histogram, group_counts = _load_ages_file(args.ages, optimizer.max_age)
        source = str(args.ages)
    elif args.csv:
        counts = read_annotations(args.csv, args.age_column, args.group_column, args.age_offset, optimizer.max_age)
        source = ", ".join(map(str, args.csv))
        if not counts.histogram.any() and not counts.group_counts:
            columns = " or ".join(repr(c) for c in (args.age_column, args.group_column) if c)
            raise CLIError(f"{source}: no ages in column {columns} ({sum(counts.skipped.values())} row(s) without one)")
        skipped = {path: n for path, n in counts.skipped.items() if n}
        if skipped:
            where = ", ".join(f"{path}: {n}" for path, n in skipped.items())
            print(
                f"agecurriculum bins: note: {sum(skipped.values())} row(s) without an age skipped ({where})",
                file=sys.stderr,
            )
        histogram, group_counts = counts.histogram, counts.group_counts
    elif args.data is not None or dataset_flags:
        if optimizer.constraint_groups is None:
            raise CLIError(
                "--n-bins reads --csv or --ages; for a dataset folder, list its labels in a CSV "
                "(docs/bins_from_annotations.rst)"
            )
        # The label view: UTKFace names, all Adience fold rows, all MORPH-II table rows, images or not.
        results = load_sources(args, require_images=False, datasets=histogram_datasets())
        _explain_unused(args, fitted=bool(results))
        records = [record for result in results.values() for record in result.records]
        distribution = age_distribution(records, optimizer.constraint_groups, optimizer.max_age)
        histogram, group_counts = distribution.histogram, distribution.group_counts or None
        source = ", ".join(results)
    else:
        raise CLIError("give --ages FILE, --csv FILE, or --data ROOT (or per-dataset folders such as --utkface DIR)")
    try:
        solution = optimizer.fit(histogram, group_counts)
    except ValueError as err:
        raise CLIError(f"{source}: {err}") from None
    if solution.left_out:
        print(
            f"agecurriculum bins: note: {solution.left_out} image(s) labelled with a range that the bins cut are "
            "left out of the sizes",
            file=sys.stderr,
        )
    print(json.dumps(solution.to_dict()) if args.json else _table(solution))
    return 0


def _optimizer(args: argparse.Namespace) -> AgeBinOptimizer:
    """The optimizer the options ask for: Adience's (or --groups) constraint groups, or --n-bins from the labels."""
    if args.n_bins is None:
        unused = [
            flag
            for flag, value in (("--min-width", args.min_width), ("--allow-left-out", args.allow_left_out))
            if value
        ]
        if unused:
            raise CLIError(f"{', '.join(unused)} needs --n-bins (bins from the labels alone)")
        try:
            groups = parse_groups(args.groups) if args.groups is not None else ADIENCE_GROUPS
        except ValueError as err:
            raise CLIError(f"--groups: {err}") from None
        try:
            return AgeBinOptimizer(groups, args.max_age, args.time_limit)
        except ValueError as err:
            raise CLIError(f"invalid options: {err}") from None
    if args.groups is not None:
        raise CLIError("--groups and --n-bins exclude each other: the constraint groups fix the number of bins")
    try:
        return AgeBinOptimizer(
            None,
            args.max_age,
            args.time_limit,
            n_bins=args.n_bins,
            min_width=1 if args.min_width is None else args.min_width,
            allow_left_out=args.allow_left_out,
        )
    except ValueError as err:
        raise CLIError(f"--n-bins {args.n_bins}: {err}") from None


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


@dataclass(frozen=True)
class AnnotationCounts:
    """What annotation tables say about ages, in the form :meth:`AgeBinOptimizer.fit` takes.

    Attributes:
        histogram: ``histogram[a]`` = rows with the exact age ``a``.
        group_counts: ``{(lo, hi): rows}`` for rows labelled with a range (open ranges end at ``max_age``).
        skipped: rows without an age (blank or a missing marker such as ``None``, ``NA``) per file, in order.
    """

    histogram: np.ndarray
    group_counts: dict[tuple[int, int], int]
    skipped: dict[str, int]


def read_annotations(
    paths: Iterable[str | Path],
    age_column: str = "age",
    group_column: str | None = None,
    age_offset: int = 0,
    max_age: int = MAX_AGE,
) -> AnnotationCounts:
    """Counts the age labels of annotation tables (CSV, or tab separated when the header line has a tab).

    Each data row's ``age_column`` is read by :func:`~agecurriculum.bins.parse_age_label`; where it is empty and
    ``group_column`` is given, that column is read instead. ``age_offset`` is added to both ends of every label (16
    for MORPH-II's tables, whose age column holds the age minus 16). Rows without any age are skipped and counted.

    Raises:
        ValueError: naming the file when it cannot be read, is empty or lacks a column; naming the file, line and
            column for a label that is not understood, an age below 0 or above the plausible ages after the
            offset, or a row with another number of fields than the header.
    """
    columns = [age_column] + ([group_column] if group_column else [])
    ages: Counter[int] = Counter()
    ranges: Counter[tuple[int, int]] = Counter()
    skipped: dict[str, int] = {}
    for path in map(Path, paths):
        header, rows = read_table(path, columns, delimiter=_delimiter(path))
        skipped[str(path)] = 0
        for line, row in rows:
            if row is None:
                raise ValueError(f"{path}, line {line}: another number of fields than the {len(header)} of the header")
            label = _row_label(path, line, row, columns, age_offset, max_age)
            if label is None:
                skipped[str(path)] += 1
            elif label[0] == label[1]:
                ages[label[0]] += 1
            else:
                ranges[label] += 1
    histogram = np.zeros(max(ages, default=0) + 1, dtype=np.int64)
    for age, n in ages.items():
        histogram[age] = n
    return AnnotationCounts(histogram, dict(ranges), skipped)


def _delimiter(path: Path) -> str:
    """Tab when the header line holds one (Adience's fold files), else comma."""
    try:
        with path.open("rb") as file:
            first = file.readline()
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror or err}") from None
    return "\t" if b"\t" in first else ","


def _row_label(
    path: Path, line: int, row: Mapping[str, str], columns: list[str], age_offset: int, max_age: int
) -> tuple[int, int] | None:
    """The ``(lo, hi)`` label of a row from the first of ``columns`` that holds one, offset; None if none does."""
    for column in columns:
        try:
            label = parse_age_label(row[column], max_age)
        except ValueError as err:
            raise ValueError(f"{path}, line {line}, column {column!r}: {err}") from None
        if label is None:
            continue
        lo, hi = label[0] + age_offset, label[1] + age_offset
        ceiling = max(AGE_CEILING, max_age)
        if lo < 0 or hi > ceiling:
            raise ValueError(
                f"{path}, line {line}, column {column!r}: age {row[column]!r} with offset {age_offset} "
                f"is outside 0..{ceiling}"
            )
        return lo, hi
    return None


def _table(solution: BinSolution) -> str:
    rows = [f"{'group':>9}  {'size':>10}"]
    rows += [f"{label:>9}  {size:>10}" for label, size in zip(solution.bins.labels(), solution.sizes)]
    rows.append(f"variance of group sizes: {solution.objective:.4f}")
    if solution.left_out:
        rows.append(f"left out (labelled with a range the bins cut): {solution.left_out}")
    return "\n".join(rows)
