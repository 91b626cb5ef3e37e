"""``agecurriculum data``: ``report`` (counts, cleaning, bins, histograms) and ``preprocess`` (the crop cache)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agecurriculum.cli import Runner
from agecurriculum.cli.sources import add_source_arguments
from agecurriculum.data.faces import AlignConfig  # dlib, but not torch: the crop settings' defaults
from agecurriculum.data.records import STRADDLE_RULES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets", description=__doc__)
    data_commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    report = data_commands.add_parser(
        "report",
        help="per-dataset counts by age bin x gender, cleaning reports, the optimal bins, histogram PNGs",
        description="Prints, per dataset, image counts by age bin x gender and the label-cleaning report, and the "
        "unified age bins that AgeBinOptimizer finds over the labels of UTKFace, Adience and MORPH-II together "
        "(all Adience fold rows and all MORPH-II table rows, images or not; the paper's bins when none of them is "
        "given, e.g. for FairFace alone, whose decade labels cannot fix bin boundaries); writes histogram PNGs "
        "before and after the paper's balancing.",
    )
    add_source_arguments(report)
    report.add_argument(
        "--out", type=Path, default=Path("data-report"), help="folder for the PNGs (default: %(default)s)"
    )
    report.add_argument(
        "--straddle",
        choices=STRADDLE_RULES,
        default="ignore",
        help="what an age range that straddles bins becomes (default: %(default)s)",
    )
    report.add_argument("--json", action="store_true", help="print the report as one JSON object instead of text")
    report.set_defaults(func=Runner("agecurriculum.cli.runners.data", "run_report"))

    prep = data_commands.add_parser(
        "preprocess",
        help="detect, align and cache the face crops of datasets (parallel, resumable)",
        description="Fills the crop cache with one aligned face crop per image, in parallel with a progress bar. "
        "Interrupt it at any time: a rerun does only what is left, and training reads the cache. Images that "
        "cannot be read or show no face are counted and listed, and the run goes on.",
    )
    add_source_arguments(prep)
    prep.add_argument("--cache", type=Path, required=True, help="the crop cache folder")
    prep.add_argument("--size", type=int, default=AlignConfig.size, help="crop side in pixels (default: %(default)s)")
    prep.add_argument(
        "--padding",
        type=float,
        default=AlignConfig.padding,
        help="border around the face, as a fraction of its size (default: %(default)s)",
    )
    prep.add_argument(
        "--upsample",
        type=int,
        default=AlignConfig.upsample,
        help="HOG detector upsamplings: more finds smaller faces, slower (default: %(default)s)",
    )
    prep.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: %(default)s)")
    prep.add_argument("--failures", type=Path, help="write every failed image and its reason to this CSV")
    prep.set_defaults(func=Runner("agecurriculum.cli.runners.data", "run_preprocess"))
