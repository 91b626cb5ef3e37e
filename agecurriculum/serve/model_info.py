"""What ``GET /model`` says about the served model: its bins, preprocessing, versions and model card summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agecurriculum._version import __version__
from agecurriculum.inference import Predictor
from agecurriculum.release import GENDER_NAMES

__all__ = ["MODEL_CARD", "model_info", "model_card_summary"]

# The model card a release folder may hold (the shipped default model has one).
MODEL_CARD = "MODEL_CARD.md"


def model_info(predictor: Predictor, release: Path, backend: str) -> dict[str, Any]:
    """The ``GET /model`` document of the served model.

    Args:
        predictor: the loaded predictor; its :class:`~agecurriculum.release.ReleaseInfo` gives bins and
            preprocessing.
        release: the release folder (or ``.onnx`` file) it was loaded from; only its model card is read, the path
            itself is not shown (the server's file layout is nobody's business).
        backend: ``"torch"`` or ``"onnx"``.
    """
    info = predictor.release
    card_dir = release if release.is_dir() else release.parent
    return {
        "library_version": __version__,
        "release_library_version": info.config.get("library_version"),
        "architecture": info.architecture,
        "backend": backend,
        "age_bins": info.bins.to_dict(),
        "age_labels": info.bins.labels(),
        "age_ranges": [[int(lo), int(hi)] for lo, hi in info.bins.groups],
        "rep_ages": [round(float(a), 4) for a in info.rep_ages],
        "genders": [GENDER_NAMES[k] for k in sorted(GENDER_NAMES)],  # class order
        "preprocessing": info.preprocessing.to_dict(),
        "temperature": dict(info.temperature),
        "datasets": list(info.datasets),
        "model_card": model_card_summary(card_dir / MODEL_CARD),
    }


def model_card_summary(path: Path) -> dict[str, str] | None:
    """``{"title", "summary"}``: the card's first heading and first paragraph (one line each); None without a card.

    The whole card is for people reading the repository; a client showing the model needs a line or two.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    title, paragraph = None, []
    for line in text.splitlines():
        stripped = line.strip()
        if title is None:
            if stripped.startswith("#"):
                title = stripped.lstrip("#").strip()
            continue
        if stripped and not stripped.startswith(("#", "|", "```")):
            paragraph.append(stripped)
        elif paragraph:  # the first paragraph ends at a blank line, heading, table or code block
            break
    if title is None:
        return None
    return {"title": title, "summary": " ".join(paragraph)}
