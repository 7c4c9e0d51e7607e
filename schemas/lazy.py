"""A package's names imported when first asked for (PEP 562), for the packages whose façade would otherwise
import most of the engine (``resolver``) or build every pydantic model (``schemas``) at the first import of
any of their modules: a command that needs only the errors or the log's readers starts in a fraction of the
time."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_names(package: str, names: dict[str, str], into: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``names`` (name -> module) at their first use and
    keeps each in ``into`` (the package's globals), so it is looked up the usual way afterwards."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = into[name] = getattr(importlib.import_module(names[name]), name)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
