"""Bar charts of images per age bin, per dataset: before and after balancing (the paper's Figs. 2 and 3).

Figures are drawn on matplotlib's ``Figure`` with the Agg canvas directly, not through ``pyplot``: no display is
needed and the caller's global backend and open figures are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_age_histograms", "plot_counts_by_gender"]


def _grouped_panels(
    series: Mapping[str, Mapping[str, Sequence[int]]], bin_labels: Sequence[str], path: str | Path, title: str
) -> Path:
    """One panel per dataset; in each, one bar per (age bin, series name), series side by side."""
    if not series:
        raise ValueError("nothing to plot: no dataset given")
    for name, bars in series.items():
        for label, counts in bars.items():
            if len(counts) != len(bin_labels):
                raise ValueError(f"{name} {label}: {len(counts)} counts for {len(bin_labels)} age bins")
    cols = min(len(series), 2)
    rows = math.ceil(len(series) / cols)
    fig = Figure(figsize=(6.5 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    x = np.arange(len(bin_labels))
    for ax, (name, bars) in zip(axes, series.items()):
        width = 0.8 / max(len(bars), 1)
        for k, (label, counts) in enumerate(bars.items()):
            rects = ax.bar(x + (k - (len(bars) - 1) / 2) * width, counts, width, label=label)
            ax.bar_label(rects, fontsize=7, padding=2, rotation=90)  # upright numbers of
            # neighbouring bars would overlap
        _style(ax, name, x, bin_labels)
    for ax in axes[len(series) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _style(ax: Axes, name: str, x: np.ndarray, bin_labels: Sequence[str]) -> None:
    ax.set_title(name)
    ax.set_xticks(x, list(bin_labels))
    ax.set_xlabel("age bin (years)")
    ax.set_ylabel("images")
    ax.margins(y=0.22)  # room for the count labels above the tallest bar
    ax.legend(fontsize=8)


def plot_age_histograms(
    counts_before: Mapping[str, Sequence[int]],
    counts_after: Mapping[str, Sequence[int]] | None,
    bin_labels: Sequence[str],
    path: str | Path,
    title: str = "Images per age bin",
) -> Path:
    """Writes a PNG with one panel per dataset: images per age bin, before and after balancing side by side.

    Args:
        counts_before: dataset name -> images per age bin, e.g. ``BalancePlan.counts_before``.
        counts_after: the same after balancing (``BalancePlan.counts_after``), or None to plot one set of bars.
        bin_labels: names of the bins, e.g. ``AgeBins.labels()``.
        path: the PNG to write; its folder is created.
        title: figure title.

    Returns:
        ``path``.
    """
    series = {}
    for name, before in counts_before.items():
        series[name] = {"before balancing": before}
        if counts_after is not None:
            if name not in counts_after:
                raise ValueError(f"counts_after lacks the dataset {name!r}")
            series[name]["after balancing"] = counts_after[name]
    return _grouped_panels(series, bin_labels, path, title)


def plot_counts_by_gender(
    counts: Mapping[str, Mapping[str, Sequence[int]]],
    bin_labels: Sequence[str],
    path: str | Path,
    title: str = "Images per age bin and gender",
) -> Path:
    """Writes a PNG with one panel per dataset: images per age bin, one bar per gender.

    Args:
        counts: dataset name -> gender name (e.g. ``"male"``, ``"female"``, ``"unknown"``) -> images per age bin.
        bin_labels: names of the bins.
        path: the PNG to write; its folder is created.
        title: figure title.

    Returns:
        ``path``.
    """
    return _grouped_panels(counts, bin_labels, path, title)
