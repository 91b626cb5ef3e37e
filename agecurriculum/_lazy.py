"""Names of a package imported on first use (PEP 562), so that importing the package stays cheap.

``agecurriculum``, ``agecurriculum.data`` and ``agecurriculum.model`` map each public name to the module that
defines it and hand that map here; ``import agecurriculum`` then loads no torch, and the command line starts at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names are imported on first use.

    Args:
        package: the package's ``__name__`` (for the error message).
        exports: public name -> the module that defines it.
        namespace: the package's ``globals()``; a name once imported is stored there, so the next lookup is plain.

    Returns:
        ``(__getattr__, __dir__)``, to be bound to those names in the package's ``__init__``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # the next lookup does not come here again
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
