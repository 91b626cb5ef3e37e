"""Run logs people can read: a metrics CSV, TensorBoard scalars, the resolved config as JSON, and PNG curves.

Every logger is a callback for :class:`~agecurriculum.train.CurriculumTrainer` (a callable taking an
:class:`~agecurriculum.train.EpochRecord`)::

    loggers = default_loggers(run_dir)                   # metrics.csv, plus TensorBoard when it is installed
    save_resolved_config({"trainer": config, "schedule": schedule}, run_dir / "config.json")
    trainer = CurriculumTrainer(..., callbacks=[*loggers, PlotCallback(run_dir)])

The module is named ``run_logs`` rather than ``logging`` so that it never shadows the standard library's module.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import numbers
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agecurriculum._version import __version__
from agecurriculum.fileio import atomic_write
from agecurriculum.train.trainer import EpochRecord, EvalResult

__all__ = [
    "METRICS_FILE",
    "METRICS_COLUMNS",
    "CSVLogger",
    "TensorBoardLogger",
    "default_loggers",
    "read_metrics",
    "save_resolved_config",
    "load_resolved_config",
    "plot_training_curves",
    "plot_task_weights",
    "PlotCallback",
]

METRICS_FILE = "metrics.csv"  # name of the CSV inside a run directory
TASKS = ("age", "gender")  # the tasks whose loss weights EpochRecord.task_weights reports


def _metrics_columns() -> list[str]:
    """The columns of :meth:`EpochRecord.to_dict`, in field order, with every optional column present.

    Fixed in advance rather than taken from the first row: the first dataset may have no validation set (no val_*
    keys) while later ones do, and a CSV cannot grow columns.
    """
    columns = []
    for f in dataclasses.fields(EpochRecord):
        if f.name == "task_weights":
            columns += [f"weight_{task}" for task in TASKS]
        elif f.name == "val":
            columns += [f"val_{g.name}" for g in dataclasses.fields(EvalResult)]
        else:
            columns.append(f.name)
    return columns


METRICS_COLUMNS: tuple[str, ...] = tuple(_metrics_columns())


class CSVLogger:
    """Appends one row per epoch (:meth:`EpochRecord.to_dict`) to a CSV file.

    Each row is flushed and synced as it is written, so a killed run keeps every finished epoch. A resumed run
    appends to the existing file; rows of epochs that the resumed run repeats stay in the file and
    :func:`read_metrics` keeps only the newest of them. Missing values (no validation set) are empty cells.

    Args:
        path: the CSV file, usually ``run_dir / METRICS_FILE``; parent folders are created.

    Raises:
        ValueError: ``path`` exists with a different header (another run's or another version's log).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                try:
                    header = next(reader, [])
                except csv.Error as err:  # e.g. a field over csv.field_size_limit()
                    raise ValueError(f"{self.path}, line {reader.line_num}: not a metrics log: {err}") from None
            if tuple(header) != METRICS_COLUMNS:
                raise ValueError(
                    f"{self.path}: existing header {header} differs from this version's {list(METRICS_COLUMNS)}; "
                    "log to a new file or move the old one away"
                )
        else:  # new (or empty, when killed before the header was written)
            self._append(METRICS_COLUMNS)

    def __call__(self, record: EpochRecord) -> None:
        """Append ``record`` as one row."""
        row = record.to_dict()
        unknown = sorted(set(row) - set(METRICS_COLUMNS))
        if unknown:
            raise ValueError(f"{self.path}: record has values for columns not in the header: {unknown}")
        self._append(["" if row.get(c) is None else row[c] for c in METRICS_COLUMNS])

    def _append(self, cells: Sequence[Any]) -> None:
        # Open per row: nothing to close at the end of training, and every row reaches the disk on its own.
        with self.path.open("a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(cells)
            f.flush()
            os.fsync(f.fileno())


def _parse_cell(column: str, text: str) -> Any:
    if text == "":
        return None
    if column == "dataset":  # a dataset named "2019" is still a name
        return text
    try:
        return int(text)
    except ValueError:
        return float(text)  # floats are written by repr, so this reads them back exactly ("nan" included)


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a :class:`CSVLogger` file as dicts (numbers parsed, empty cells None).

    When a resumed run repeated epochs, only the newest timeline is kept: a row for global epoch ``g`` drops every
    earlier row with ``global_epoch >= g``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file lacks a column the logs need, a cell is not a number, or the csv module gives up on
            a line (a field over ``csv.field_size_limit()``); the message names the file.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            return _metrics_rows(path, reader)
        except csv.Error as err:  # e.g. a field over csv.field_size_limit(): name the file and line, no traceback
            raise ValueError(f"{path}, line {reader.reader.line_num}: {err}") from None  # DictReader.line_num lags


def _metrics_rows(path: Path, reader: csv.DictReader) -> list[dict[str, Any]]:
    missing = [c for c in ("stage", "dataset", "global_epoch") if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: not a metrics log, missing columns {missing}")
    rows: list[dict[str, Any]] = []
    for line, raw in enumerate(reader, start=2):
        try:
            row = {k: _parse_cell(k, v) for k, v in raw.items() if k is not None}
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}, line {line}: {e}") from e
        while rows and rows[-1]["global_epoch"] >= row["global_epoch"]:
            rows.pop()
        rows.append(row)
    return rows


class TensorBoardLogger:
    """Writes each epoch's numbers as TensorBoard scalars (step = global epoch), flushed every epoch.

    Tags are grouped: ``train/loss``, ``val/age_accuracy``, ``task_weight/age``, ``epoch/lr``, ...

    Args:
        log_dir: the event-file folder, e.g. ``run_dir / "tensorboard"``.

    Raises:
        ImportError: the optional ``tensorboard`` package is not installed (``pip install tensorboard``).
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(
                "TensorBoardLogger needs the optional tensorboard package: pip install tensorboard "
                "(metrics.csv from CSVLogger has the same numbers)"
            ) from e
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def __call__(self, record: EpochRecord) -> None:
        """Write ``record``'s numeric values."""
        for key, value in record.to_dict().items():
            if key in ("dataset", "epoch", "global_epoch") or value is None:
                continue  # text, or the step itself
            group, _, name = key.partition("_")
            tag = {"train": "train", "val": "val", "weight": "task_weight"}.get(group)
            self.writer.add_scalar(f"{tag}/{name}" if tag else f"epoch/{key}", value, record.global_epoch)
        self.writer.flush()  # a killed run keeps its scalars

    def close(self) -> None:
        """Close the event file (optional: every epoch is already flushed)."""
        self.writer.close()


def default_loggers(
    run_dir: str | os.PathLike[str], tensorboard: bool | Literal["auto"] = "auto"
) -> list[CSVLogger | TensorBoardLogger]:
    """The standard loggers of a run: ``run_dir/metrics.csv`` and TensorBoard in ``run_dir/tensorboard``.

    Args:
        run_dir: the run's folder.
        tensorboard: True requires TensorBoard, False skips it, ``"auto"`` uses it when it is installed.

    Raises:
        ImportError: ``tensorboard=True`` and the package is missing.
    """
    if tensorboard not in (True, False, "auto"):
        raise ValueError(f"tensorboard must be True, False or 'auto', got {tensorboard!r}")
    run_dir = Path(run_dir)
    loggers: list[CSVLogger | TensorBoardLogger] = [CSVLogger(run_dir / METRICS_FILE)]
    if tensorboard:
        try:
            loggers.append(TensorBoardLogger(run_dir / "tensorboard"))
        except ImportError:
            if tensorboard is True:
                raise
    return loggers


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as JSON types; ``where`` names the field in errors."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):  # numpy integers too
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Enum):
        return _jsonable(value.value, where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (torch.device, torch.dtype)):
        return str(value)
    for method in ("to_dicts", "to_dict"):  # schedules and stages know their own canonical form
        if callable(getattr(value, method, None)):
            return _jsonable(getattr(value, method)(), where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}  # not asdict: keep to_dict hooks
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v, where) for v in value)  # sorted: the same config gives the same file
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"config field {where!r}: cannot store a {type(value).__name__} in JSON")


def _find_seed(config_objects: Mapping[str, Any]) -> int | None:
    for obj in config_objects.values():
        seed = obj.get("seed") if isinstance(obj, Mapping) else getattr(obj, "seed", None)
        if isinstance(seed, numbers.Integral):
            return int(seed)
    return None


def save_resolved_config(
    config_objects: Mapping[str, Any], path: str | os.PathLike[str], *, seed: int | None = None
) -> Path:
    """Write the run's resolved configuration as JSON, atomically, so the run can be repeated and audited.

    The file holds ``{"config": {name: object}, "seed", "agecurriculum_version", "torch_version",
    "python_version", "command", "created"}``. Objects are converted recursively: ``to_dicts()``/``to_dict()``
    when they have one (schedules), dataclasses field by field, paths to strings, sets to sorted lists.

    Args:
        config_objects: name -> configuration object, e.g. ``{"trainer": TrainerConfig(), "schedule": schedule}``.
        path: the JSON file; parent folders are created.
        seed: the run's seed; by default the first ``seed`` field among ``config_objects`` (TrainerConfig's).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: a value has no JSON form; the message names the field.
    """
    document = {
        "config": {str(name): _jsonable(obj, str(name)) for name, obj in config_objects.items()},
        "seed": seed if seed is not None else _find_seed(config_objects),
        "agecurriculum_version": __version__,
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "command": list(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(path)
    atomic_write(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    return path


def load_resolved_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`save_resolved_config`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not JSON or has no ``config`` object; the message names the file.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from e
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise ValueError(f"{path}: not a resolved config (no 'config' object)")
    return document


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    return np.array([math.nan if r.get(name) is None else float(r[name]) for r in rows])


def _segments(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, float, float]]:
    """Consecutive runs of the same (stage, dataset) as ``(stage, dataset, first epoch, last epoch)``."""
    segments: list[tuple[int, str, float, float]] = []
    for r in rows:
        if segments and segments[-1][:2] == (r["stage"], r["dataset"]):
            segments[-1] = (*segments[-1][:3], r["global_epoch"])
        else:
            segments.append((r["stage"], r["dataset"], r["global_epoch"], r["global_epoch"]))
    return segments


def _mark_curriculum(strip: Axes, axes: Sequence[Axes], segments: list[tuple[int, str, float, float]]) -> None:
    """Shade every other stage, draw stage (solid) and dataset (dotted) boundaries, and name the datasets in
    ``strip``, a thin panel above the curves (labels inside a panel would hide the curves)."""
    span = segments[-1][3] - segments[0][2] + 1
    strip_pt = strip.figure.get_figwidth() * 72 * 0.85  # about the plotting width: the layout is not yet drawn
    for i, (stage, dataset, first, last) in enumerate(segments):
        new_stage = i == 0 or segments[i - 1][0] != stage
        for ax in (strip, *axes):
            if stage % 2:  # alternate shading makes the stages visible at a glance
                ax.axvspan(first - 0.5, last + 0.5, color="0.9", zorder=0, lw=0)
            if i:
                ax.axvline(first - 0.5, color="0.35", lw=1.0 if new_stage else 0.6, ls="-" if new_stage else ":")
        label = f"S{stage} {dataset}"
        fits = 0.6 * 7 * len(label) < strip_pt * (last - first + 1) / span  # 7 pt text is ~0.6 pt wide per pt
        strip.text(
            (first + last) / 2,
            0.5,
            label,
            rotation=0 if fits else 90,
            ha="center",
            va="center",
            fontsize=7 if fits else 5.5,
            clip_on=True,
        )
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.set_ylabel("stage", rotation=0, ha="right", va="center")


def _plot_setup(
    csv_path: str | os.PathLike[str], figsize: tuple[float, float]
) -> tuple[list[dict[str, Any]], np.ndarray, Figure]:
    """The metrics rows, their global epochs (the x axis) and an empty figure on the Agg canvas (no pyplot)."""
    rows = read_metrics(csv_path)
    if not rows:
        raise ValueError(f"{csv_path}: no epochs logged yet")
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return rows, _column(rows, "global_epoch"), fig


def _save(fig: Figure, png_path: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    path = Path(png_path)
    atomic_write(path, buf.getvalue())  # an image viewer refreshing mid-run never reads half a PNG
    return path


def plot_training_curves(csv_path: str | os.PathLike[str], png_path: str | os.PathLike[str]) -> Path:
    """Plot a metrics CSV: train/val loss, val age and gender accuracy, and the learning rate (log scale).

    The x axis is the global epoch; curriculum stages are shaded alternately, stage boundaries are solid lines,
    dataset changes within a stage dotted lines, and each segment is labelled ``S<stage> <dataset>``. Drawn with
    the Agg canvas, not pyplot: no display needed, the caller's figures are left alone.

    Returns:
        ``png_path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the CSV has no rows or is not a metrics log.
    """
    rows, x, fig = _plot_setup(csv_path, (9, 9))
    strip, loss_ax, acc_ax, lr_ax = fig.subplots(4, 1, sharex=True, height_ratios=[0.8, 3, 3, 2])
    style = {"marker": "o", "ms": 3, "lw": 1.3}  # markers: a lone epoch between gaps is still visible
    loss_ax.plot(x, _column(rows, "train_loss"), label="train", **style)
    loss_ax.plot(x, _column(rows, "val_loss"), label="validation", **style)
    loss_ax.set_ylabel("total loss per image")
    acc_ax.plot(x, 100 * _column(rows, "val_age_accuracy"), label="age (8 bins)", color="tab:green", **style)
    acc_ax.plot(x, 100 * _column(rows, "val_gender_accuracy"), label="gender", color="tab:purple", **style)
    acc_ax.set_ylabel("validation accuracy (%)")
    if all(r.get("val_loss") is None for r in rows):  # say why the panel is empty rather than leave it blank
        acc_ax.text(0.5, 0.5, "no validation set so far", transform=acc_ax.transAxes, ha="center", color="0.4")
    lrs = _column(rows, "lr")
    lr_ax.plot(x, lrs, color="tab:red", drawstyle="steps-mid", lw=1.3)
    if (lrs > 0).all():  # a log axis cannot show a learning rate of 0 (a frozen run)
        lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("global epoch")
    for ax in (loss_ax, acc_ax):
        ax.legend(fontsize=8, loc="center left")
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)
    _mark_curriculum(strip, [loss_ax, acc_ax, lr_ax], _segments(rows))
    fig.suptitle(f"Training curves: {Path(csv_path).parent.name or Path(csv_path).name}")
    return _save(fig, png_path)


def plot_task_weights(csv_path: str | os.PathLike[str], png_path: str | os.PathLike[str]) -> Path:
    """Plot the loss's task weights ``exp(-p_age)`` and ``exp(-p_gender)`` over global epochs, stages marked.

    Returns ``png_path`` as a :class:`~pathlib.Path`; raises ValueError as :func:`plot_training_curves` does.
    """
    rows, x, fig = _plot_setup(csv_path, (9, 4.5))
    strip, ax = fig.subplots(2, 1, sharex=True, height_ratios=[0.8, 4])
    for task in TASKS:
        ax.plot(x, _column(rows, f"weight_{task}"), marker="o", ms=3, lw=1.3, label=f"{task}: exp(-p_{task})")
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")  # the initial weight (p = 0)
    ax.set_xlabel("global epoch")
    ax.set_ylabel("task weight")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    _mark_curriculum(strip, [ax], _segments(rows))
    fig.suptitle("Learned task weights")
    return _save(fig, png_path)


class PlotCallback:
    """Redraws ``training_curves.png`` and ``task_weights.png`` in ``run_dir`` from its metrics CSV after epochs.

    Redrawing reads the whole CSV and renders two small figures, about half a second; reading the CSV (not in-memory
    records) keeps the epochs before a resume in the plots. Against epochs of minutes every epoch is drawn; epochs
    that end less than ``min_interval`` seconds after the last drawing are left to the next one, and
    :meth:`on_fit_end` (which :meth:`CurriculumTrainer.fit <agecurriculum.train.CurriculumTrainer.fit>` calls) draws
    what is left, so a run of many short epochs does not spend most of its time drawing. Put it after the
    :class:`CSVLogger` in the callback list so the CSV already has the epoch.

    Args:
        run_dir: the run's folder, holding ``metrics.csv``.
        csv_path: the metrics CSV when it is elsewhere.
        min_interval: seconds from the end of one drawing before an epoch is drawn again; 0 draws every epoch.
        clock: seconds from a monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        csv_path: str | os.PathLike[str] | None = None,
        min_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.csv_path = Path(csv_path) if csv_path is not None else self.run_dir / METRICS_FILE
        self.min_interval = min_interval
        self.clock = clock
        self._drawn_at: float | None = None  # when the last drawing ended; None: nothing drawn yet
        self._pending = False  # an epoch is logged that the PNGs do not show yet

    def __call__(self, record: EpochRecord) -> None:
        """Redraw both figures (``record`` itself is read back from the CSV), unless the last drawing is too recent."""
        if not self.csv_path.is_file():
            raise FileNotFoundError(f"{self.csv_path}: no metrics CSV; put a CSVLogger writing it before PlotCallback")
        self._pending = True
        if self._drawn_at is None or self.clock() - self._drawn_at >= self.min_interval:
            self.draw()

    def on_fit_end(self) -> None:
        """Draw the epochs logged since the last drawing, if any."""
        if self._pending:
            self.draw()

    def draw(self) -> None:
        """Redraw both figures now."""
        plot_training_curves(self.csv_path, self.run_dir / "training_curves.png")
        plot_task_weights(self.csv_path, self.run_dir / "task_weights.png")
        self._pending, self._drawn_at = False, self.clock()
