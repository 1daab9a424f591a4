"""Lazy package exports: a package's public names, each loaded from its module on first use.

Why: the SDK and the CLI are HTTP clients that use the packages' contracts (records, specs)
without loading Ray, torch or DuckDB. A package ``__init__`` that imported its service modules
eagerly would load all three for ``import dlplatform.train.spec``. Each package lists its public
names in one explicit table instead (name -> module), and ``__all__`` is that table's keys.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` resolving each name in ``table`` from its
    module (a module path, absolute) on first access; the value is then cached in the package."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(table))

    return __getattr__, __dir__
