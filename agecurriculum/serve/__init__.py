"""``agecurriculum serve``: the model behind an HTTP API and a web page (the optional ``serve`` extra).

- :mod:`agecurriculum.serve.app`: the Starlette app (``POST /predict``, ``GET /health``, ``GET /model``, the page
  at ``/``) and the uvicorn server; importing it needs ``pip install agecurriculum[serve]``.
- :class:`~agecurriculum.serve.limits.ServeLimits`: request size, images, pixels, queue and batching limits.
- :mod:`agecurriculum.serve.batcher`: requests that arrive together share one prediction call.

This package's ``__init__`` imports nothing of the extra, so the other commands and ``import agecurriculum`` work
without it; :func:`missing_extra` says whether it is installed.
"""

from __future__ import annotations

import importlib.util

from agecurriculum.serve.limits import ServeLimits

__all__ = ["EXTRA_MODULES", "INSTALL_HINT", "ServeLimits", "missing_extra"]

# The serve extra's packages, by import name: the web framework, the server, the multipart form parser.
EXTRA_MODULES = ("starlette", "uvicorn", "python_multipart")
INSTALL_HINT = "pip install agecurriculum[serve]"


def missing_extra() -> list[str]:
    """The import names of :data:`EXTRA_MODULES` that are not installed (empty when the extra is)."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
