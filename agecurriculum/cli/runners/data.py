"""What ``agecurriculum data`` does (its options: :mod:`agecurriculum.cli.data`)."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from agecurriculum.cli.sources import load_sources
from agecurriculum.data.cache import CropCache, preprocess
from agecurriculum.data.faces import AlignConfig, FaceAligner
from agecurriculum.data.sources import DATASETS, histogram_datasets, why_not_histogram
from agecurriculum.data.summary import build_data_report


def run_preprocess(args: argparse.Namespace) -> int:
    aligner = FaceAligner(AlignConfig(size=args.size, padding=args.padding, upsample=args.upsample))
    cache = CropCache(args.cache)
    failures = []
    for name, loaded in load_sources(args, require_images=True).items():
        mode = DATASETS[name].framing
        print(f"{name}: {len(loaded.records)} images, mode {mode}", file=sys.stderr)
        result = preprocess(loaded.records, aligner, cache, mode=mode, workers=args.workers)
        counts = ", ".join(f"{n} {reason}" for reason, n in result.failure_counts.items()) or "none"
        print(f"{name}: {len(result.succeeded)} crops ({result.cached} already cached), failed: {counts}")
        failures += [(name, path, reason) for path, reason in result.failed]
    if args.failures is not None:
        with open(args.failures, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("dataset", "path", "reason"), *failures])
    return 0


def run_report(args: argparse.Namespace) -> int:
    images = load_sources(args, require_images=True)
    labels = load_sources(args, require_images=False, datasets=histogram_datasets())
    if not labels:
        # Only datasets the bins are not fitted on (FairFace): its counts are still worth seeing, in the paper's bins.
        why_not = why_not_histogram()
        why = "".join(f"; {name}: {why_not[name]}" for name in images if name in why_not)
        print(
            f"agecurriculum data report: note: the counts are in the paper's bins, since none of "
            f"{', '.join(histogram_datasets())} is given to fit the bins on{why}",
            file=sys.stderr,
        )
    report = build_data_report(images, labels, straddle=args.straddle)
    plots = report.write_plots(args.out)
    if args.json:
        print(json.dumps({**report.to_dict(), "plots": [str(p) for p in plots]}))
    else:
        print(report.to_text())
        print("\nwrote " + ", ".join(str(p) for p in plots))
    return 0
