"""``agecurriculum predict``: every face's gender and age group in photos, as text or JSON lines.

Its options, and how its PATH arguments expand to files; what it runs: :mod:`agecurriculum.cli.runners.predict`.
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

from agecurriculum.cli import Runner
from agecurriculum.data.images import DEFAULT_MAX_BYTES, is_image_name
from agecurriculum.inference.defaults import (
    BACKENDS,
    DEFAULT_RELEASE_DIR,
    PROCESSES_FROM,
    UPSAMPLE_MIN_SIDE,
    VERIFY_BELOW,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``predict`` sub-command."""
    parser = subparsers.add_parser(
        "predict",
        help="estimate the gender and age group of every face in photos",
        description="Finds every face (dlib's HOG detector, upsampled where the photo needs it; in photos with "
        "several boxes, those it is unsure of confirmed by dlib's CNN detector), aligns it as the model was trained, "
        "and prints its box, gender and probability, likeliest age group, the age-group probabilities and the "
        "expected age in years. Unreadable inputs are reported and skipped; the exit status is 0 unless no input "
        "path matches at all (2, as for any error; see docs/errors.rst).",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="image files, folders (their image files, recursively, sorted) or glob patterns "
        "(quoted, e.g. 'photos/**/*.jpg')",
    )
    parser.add_argument(
        "--model",
        metavar="DIR",
        help="release folder written by `agecurriculum train` (RUN/release), or with --backend onnx "
        "an .onnx file from `agecurriculum export` (default: the installed model, "
        f"{DEFAULT_RELEASE_DIR})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print exactly one JSON object per input on stdout: {path, faces: [{box, score, gender, "
        "gender_prob, age_bin, age_range, age_probs, age, warning}], error}; error is null, or why "
        "the input failed (then faces is [], unless only its --draw copy could not be written); a "
        "folder or pattern matching no image gets a line with its error too; progress goes to stderr",
    )
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="the inputs are already aligned face crops (e.g. UTKFace, FairFace): no detection, "
        "one face per input whose box is the whole image",
    )
    parser.add_argument(
        "--draw",
        type=Path,
        metavar="DIR",
        help="also write a copy of every readable input into DIR with each face's box and label",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="run the network with PyTorch (the release's weights) or ONNX Runtime (the .onnx file "
        "given as --model, MODEL/model.onnx, or else MODEL exported once, in about 10 s, into "
        "~/.cache/agecurriculum/onnx; see `agecurriculum export`); auto (default): ONNX Runtime "
        "on a CPU when installed, else PyTorch",
    )
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="faces per forward pass (default: 32)")
    parser.add_argument(
        "--upsample",
        type=_upsample,
        default=None,
        metavar="N|auto",
        help="HOG detector upsamplings for every photo: 0 finds faces down to about 80 px, 1 down to "
        "about 40 px at about 4x the time; auto (default): 0, or 1 in photos of at least "
        f"{UPSAMPLE_MIN_SIDE} px; a smaller photo where 0 found no face is searched again "
        "enlarged 1.1x (the face sizes between those of the first search)",
    )
    parser.add_argument(
        "--verify-below",
        type=float,
        default=VERIFY_BELOW,
        metavar="SCORE",
        help="in photos where the HOG search found several boxes, re-check those scoring below SCORE "
        "with dlib's CNN face detector and drop those it does not confirm (default: "
        f"{VERIFY_BELOW}, above every false box seen; 'inf' re-checks every box, slower)",
    )
    parser.add_argument(
        "--verify-lone",
        action="store_true",
        help="also re-check a doubtful box that is alone in its photo (by default a lone box is kept: "
        "false boxes come beside real faces, and the CNN rejects some real lone faces); for "
        "photos that may hold no face at all, at about 60-120 ms a check",
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="keep every HOG box, re-checking none: faster, but face-like patterns (e.g. the mission "
        "patch in the astronaut photo) come out too",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="threads (or processes) decoding photos and finding faces at the same time, output still "
        "in input order (default: one per CPU core)",
    )
    parser.add_argument(
        "--processes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="find faces in worker processes instead of threads: 1.2-1.5x the photos/s on 2 cores, after "
        f"about 0.2 s to start them (default: on from {PROCESSES_FROM} inputs, off below)",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help="largest input file read, in bytes; larger ones are that input's error (default: "
        f"{DEFAULT_MAX_BYTES} = {DEFAULT_MAX_BYTES // 2**20} MiB)",
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="test-time flip averaging (default: on): run every face also mirrored left-right and "
        "average the two probabilities (the network's work doubles; the output fields stay the "
        "same); --no-flip runs each face once",
    )
    parser.add_argument("--device", default="cpu", help="where the network runs: cpu, cuda, cuda:1, ... (default: cpu)")
    parser.set_defaults(func=Runner("agecurriculum.cli.runners.predict"))


def expand_paths(patterns: list[str]) -> tuple[list[str], list[str]]:
    """The input files the PATH arguments name, in order, without duplicates; and the arguments matching nothing.

    A folder gives its image files (recursively, sorted); a pattern with glob characters its matches (sorted,
    ``**`` crosses folders but, like a folder, not through links to folders, so that a link cycle neither hangs nor
    repeats files); anything else is taken as a file name, so a missing file is reported as that input's error.
    A file reached under several names (links) is kept once, under the first. A missing file, a pattern with no
    match and a folder without images all count as matching nothing.
    """
    files: dict[str, None] = {}
    seen: set[object] = set()  # the files kept: (st_dev, st_ino), or the real path where a file system has no inodes
    unmatched: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = _images_in(pattern)
        elif any(c in pattern for c in "*?[") and not os.path.exists(pattern):
            found = []
            for match in sorted(set(_glob(pattern))):
                found += _images_in(match) if os.path.isdir(match) else [match]
        else:
            found = [pattern]
            if not os.path.exists(pattern):
                unmatched.append(pattern)
        if not found:
            unmatched.append(pattern)
        for path in found:
            try:
                status = os.stat(path)
            except OSError:  # missing or unreadable: kept by name, to be reported as that input's error
                files[path] = None
                continue
            identity = (status.st_dev, status.st_ino) if status.st_ino else os.path.realpath(path)
            if identity not in seen:
                seen.add(identity)
                files.setdefault(path)
    return list(files), unmatched


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that ``**`` does not enter links to folders.

    ``glob`` follows them: a link to ``.`` repeats every file until the path is too long to resolve (40 levels),
    and two such links make 2**40 paths, which never finish.
    """
    parts = pattern.replace(os.altsep, os.sep).split(os.sep) if os.altsep else pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)
    at = parts.index("**")
    prefix, rest = os.sep.join(parts[:at]), os.sep.join(parts[at + 1 :])
    if at and not prefix:  # the pattern starts at the root: "/**/..."
        prefix = os.sep
    tops = [top for top in glob.glob(prefix) if os.path.isdir(top)] if prefix else [""]
    matches = []
    for top in tops:
        for folder in _folders_under(top):
            if rest:
                matches += _glob(os.path.join(glob.escape(folder), rest))
            else:  # a trailing "**": the folders themselves and what they hold
                matches += [folder or os.curdir, *glob.glob(os.path.join(glob.escape(folder), "*"))]
    return matches


def _folders_under(top: str) -> list[str]:
    """``top`` and the folders below it, as ``**`` matches them: no hidden ones, and none through a link."""
    folders, stack = [], [top]
    while stack:
        folder = stack.pop()
        folders.append(folder)
        try:
            with os.scandir(folder or os.curdir) as entries:
                names = [e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
        except OSError:  # unreadable: holds nothing, as for glob
            continue
        stack += [os.path.join(folder, name) for name in sorted(names, reverse=True)]
    return folders


def _upsample(text: str) -> int | None:
    """``--upsample``'s value: None for ``auto``, else an integer >= 0."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be auto or at least 0, got {value}")
    return value


def _images_in(folder: str) -> list[str]:
    # A folder argument expands to its image files (IMAGE_SUFFIXES); a file named explicitly is tried whatever its name.
    paths = (p for p in Path(folder).rglob("*") if is_image_name(p.name) and p.is_file())
    return sorted(str(p) for p in paths)
