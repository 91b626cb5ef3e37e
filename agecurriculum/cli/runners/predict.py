"""What ``agecurriculum predict`` does (its options: :mod:`agecurriculum.cli.predict`)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from agecurriculum.cli import CLIError, describe_error
from agecurriculum.cli.predict import expand_paths
from agecurriculum.data.images import ImageLoadError, load_image
from agecurriculum.fileio import atomic_write
from agecurriculum.inference import Predictor, draw_faces, face_label
from agecurriculum.inference.defaults import PROCESSES_FROM
from agecurriculum.inference.results import failed_result, results_json

# Formats --draw writes as they are; anything else becomes a PNG.
_DRAW_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def run(args: argparse.Namespace) -> int:
    """Runs the sub-command; returns the exit status."""
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    if math.isnan(args.verify_below):
        raise CLIError("--verify-below must be a number ('inf' re-checks every box), got nan")
    if args.max_bytes < 1:
        raise CLIError(f"--max-bytes must be at least 1, got {args.max_bytes}")
    files, unmatched = expand_paths(args.paths)
    if len(unmatched) == len(args.paths):
        raise CLIError(f"no input matches {', '.join(unmatched)}")
    # A folder or pattern that names no image still gets its line (a missing file gets its own from the predictor).
    empty = [failed_result(pattern, "matches no image file") for pattern in unmatched if pattern not in files]
    for result in empty:
        _print(result, args.json)
    predictor = Predictor.from_release(
        args.model,
        backend=args.backend,
        device=args.device,
        batch_size=args.batch_size,
        verify=args.verify,
        upsample=args.upsample,
        verify_below=args.verify_below,
        verify_lone=args.verify_lone,
        workers=args.workers,
        max_bytes=args.max_bytes,
        flip=args.flip,
        processes=len(files) >= PROCESSES_FROM if args.processes is None else args.processes,
    )
    start, faces, errors, drawn_names = time.perf_counter(), 0, len(empty), set()
    with predictor:  # shuts its worker processes down, if it has any, before the summary line
        for done, result in enumerate(predictor.iter_predict(files, aligned=args.aligned), 1):
            if args.draw is not None and result["error"] is None:
                # Drawn before printing: a drawing that cannot be written is this input's error, and the run goes on.
                result["error"] = _draw(result, args.draw, drawn_names)
            faces += len(result["faces"])
            errors += result["error"] is not None
            _print(result, args.json)
            if args.json and sys.stderr.isatty():  # text mode: the lines themselves show the progress
                print(f"\r{done}/{len(files)} inputs", end="", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    if args.json and sys.stderr.isatty():
        print(file=sys.stderr)
    print(
        f"agecurriculum predict: {len(files)} input(s), {faces} face(s), {errors} error(s), in {seconds:.1f} s "
        f"({len(files) / max(seconds, 1e-9):.1f} inputs/s)",
        file=sys.stderr,
    )
    return 0


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(results_json(result), flush=True)
        return
    path = result["path"]
    if result["error"] is not None:
        print(f"{path}: error: {result['error']}")
    elif not result["faces"]:
        print(f"{path}: no face found")
    for i, face in enumerate(result["faces"], 1):
        x0, y0, x1, y1 = face["box"]
        warning = f" (warning: {face['warning']})" if face.get("warning") else ""
        print(f"{path}: face {i} at ({x0}, {y0})-({x1}, {y1}): {face_label(face)}{warning}")


def _draw(result: dict, folder: Path, used: set[str]) -> str | None:
    """Writes the annotated copy of one input; returns why it could not, or None."""
    try:
        image = load_image(result["path"])
    except ImageLoadError as err:  # changed since it was read
        return f"--draw: {err}"
    source = Path(result["path"])
    suffix = source.suffix.lower() if source.suffix.lower() in _DRAW_SUFFIXES else ".png"
    name, n = source.stem + suffix, 1
    while name in used:  # inputs from different folders may share a name
        n += 1
        name = f"{source.stem}_{n}{suffix}"
    used.add(name)
    picture = draw_faces(image, result["faces"])
    image_format = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix, suffix[1:].upper())
    try:
        atomic_write(folder / name, lambda f: picture.save(f, format=image_format), durable=False)
    except (OSError, ValueError) as err:  # a full disk, a read-only folder, a file where the folder should be
        return f"--draw: cannot write the annotated photo: {describe_error(err)}"
    return None
