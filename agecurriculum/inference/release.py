"""Where inference finds a release: the path given, or the library's own model.

A release is the folder :func:`~agecurriculum.release.save_release` writes (``model.safetensors`` + ``config.json``;
the format, :class:`~agecurriculum.release.ReleaseInfo` and the calibration temperatures are in
:mod:`agecurriculum.release`); ``agecurriculum train`` leaves one in ``RUN/release``. The library's own trained model
is meant to ship as a release inside the package, at :data:`.DEFAULT_RELEASE_DIR`; every inference entry point takes
a release path and falls back to that folder when given none.
"""

from __future__ import annotations

from pathlib import Path

from agecurriculum.inference.defaults import DEFAULT_RELEASE_DIR
from agecurriculum.release import RELEASE_CONFIG

__all__ = ["resolve_release"]


def resolve_release(path: str | Path | None) -> Path:
    """The release folder or file to use: ``path``, or :data:`.DEFAULT_RELEASE_DIR` when it is None.

    Raises:
        FileNotFoundError: ``path`` is None and no default model is installed (the message says so), or
            ``path`` does not exist.
    """
    if path is None:
        if not (DEFAULT_RELEASE_DIR / RELEASE_CONFIG).is_file():
            raise FileNotFoundError(
                f"no default model is installed (expected a release in {DEFAULT_RELEASE_DIR}); pass a release "
                "folder instead, e.g. the RUN/release folder that `agecurriculum train` writes (--model DIR)"
            )
        return DEFAULT_RELEASE_DIR
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    return path
