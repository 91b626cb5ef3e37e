"""The dataset options of the commands that read datasets (``data``, ``bins``), and loading what they name.

``--data ROOT`` and one ``--NAME DIR`` per dataset of :data:`~agecurriculum.data.sources.DATASETS`. Only the
loaders are imported here (no torch, no face detector), so ``agecurriculum bins`` starts at once.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
from collections.abc import Iterable, Iterator
from pathlib import Path

from agecurriculum.cli import CLIError
from agecurriculum.data.records import LoadResult
from agecurriculum.data.sources import DATASETS, discover, load_dataset

__all__ = ["add_source_arguments", "load_sources", "paused_cyclic_gc"]


def add_source_arguments(parser: argparse.ArgumentParser, data_group=None, used: Iterable[str] | None = None) -> None:
    """``--data ROOT`` (autodetect; added to ``data_group`` when given) and one ``--NAME DIR`` flag per dataset.

    ``used`` names the datasets the command uses, for the help text; default all.
    """
    names = ", ".join(DATASETS if used is None else used)
    (data_group or parser).add_argument(
        "--data",
        type=Path,
        metavar="ROOT",
        help="the data folder, one "
        f"subfolder per dataset (docs/data.rst): every dataset found under it is used "
        f"({names})",
    )
    for name, source in DATASETS.items():
        parser.add_argument(
            f"--{name}",
            type=Path,
            metavar="DIR",
            help=f"the {name} folder ({source.layout}); overrides the one found under --data",
        )


def load_sources(
    args: argparse.Namespace, require_images: bool, datasets: Iterable[str] | None = None
) -> dict[str, LoadResult]:
    """The datasets among ``datasets`` (default: all) that ``--data`` holds or a per-dataset flag names.

    With ``datasets`` given, the result is empty when the sources hold only other datasets; the caller says why it
    needs one of ``datasets``.

    Raises:
        CLIError: when neither ``--data`` nor a per-dataset flag is given.
        ValueError: when ``--data`` holds none of the datasets and no flag names one; the message lists the layouts.
    """
    wanted = list(DATASETS) if datasets is None else list(datasets)
    given = {name: getattr(args, name) for name in DATASETS if getattr(args, name, None) is not None}
    if args.data is None and not given:
        raise CLIError("give --data ROOT or at least one of " + ", ".join(f"--{n}" for n in DATASETS))
    flagged = {name: folder for name, folder in given.items() if name in wanted}
    results: dict[str, LoadResult] = {}
    with paused_cyclic_gc():
        if args.data is not None:
            autodetect = [name for name in wanted if name not in flagged]
            if autodetect:
                try:
                    results.update(discover(args.data, require_images=require_images, datasets=autodetect))
                except ValueError:
                    if not given:  # with a dataset flag, ROOT need not hold one
                        if datasets is None:
                            raise
                        # ROOT lacks the wanted datasets: "no dataset found" (listing every layout) if it lacks all.
                        discover(args.data, require_images=False)
        for name, folder in flagged.items():
            results[name] = load_dataset(name, folder, require_images=require_images)
        return {name: results[name] for name in DATASETS if name in results}


@contextlib.contextmanager
def paused_cyclic_gc() -> Iterator[None]:
    """Pauses Python's cycle collector, e.g. while labels load (nests; the state before is restored).

    The loaders make a few objects per label row and no reference cycles, and the collector would walk the growing
    record lists again and again: 0.5 s of the 1.3 s it takes to read the labels of the 94,000 images of the shared
    data, and 0.25 s more while CP-SAT (pandas) loads after them in ``agecurriculum bins``.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
