"""Patches of Ray Serve 2.60 internals, for what it offers no setting for (``_ingress`` and
``_metrics`` say which and why).

Each patched name is declared as a ``Target``: where it lives, and which names Ray's own code
around it must still use for the replacement to take effect (a function Ray no longer calls, or
attributes it no longer keeps, would leave a patch that silently does nothing). ``patch_once``
checks its target every time and raises ``RayPatchError`` when Ray's internals look different:
a replica then refuses to start, and says why, instead of serving without the patch. ``dlp up``
checks every target before it starts a head (``_ingress.replica_patch_problems``), and
``tests/unit/serve/test_serve_raypatch.py`` checks them against the installed Ray.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import CodeType, FunctionType, ModuleType
from typing import Any

_MARK = "_dlp_patched"


class RayPatchError(RuntimeError):
    """A Ray internal the platform patches or relies on is missing or changed: this Ray is not
    the version the platform was built against."""


@dataclass(frozen=True)
class Target:
    """A callable in Ray's internals that the platform replaces.

    Args:
        module: the module holding it, e.g. ``ray.serve._private.replica``.
        path: its dotted path in the module (``name`` or ``Class.method``).
        uses: names Ray's code in ``module`` (in the class, for a method) must still reference:
            the patched name itself where Ray calls it through a module global, and the
            attributes the replacement reads.
        why: what the patch is for (quoted in the error).
    """

    module: str
    path: str
    uses: tuple[str, ...]
    why: str

    def __str__(self) -> str:
        return f"{self.module}.{self.path}"


def problems(target: Target) -> list[str]:
    """What is missing in the installed Ray for ``target`` to work (empty: nothing)."""
    try:
        module = importlib.import_module(target.module)
    except ImportError as exc:
        return [f"{target}: module {target.module} cannot be imported ({exc})"]
    owner, name = _owner(module, target.path)
    found = getattr(owner, name, None) if owner is not None else None
    if found is None or not callable(found):
        return [f"{target} is missing ({target.why})"]
    scope = owner if inspect.isclass(owner) else module
    used = _referenced_names(scope, module.__name__)
    absent = [n for n in target.uses if n not in used]
    if absent:
        where = getattr(scope, "__qualname__", None) or module.__name__
        return [f"{target}: {where} no longer uses {', '.join(absent)} ({target.why})"]
    return []


def patch_once(target: Target, wrap: Callable[[Any], Any]) -> None:
    """Replace ``target`` with ``wrap(original)``, once per process.

    Raises:
        RayPatchError: the target is missing, or Ray's code around it changed.
    """
    found = problems(target)
    if found:
        import ray

        raise RayPatchError(
            f"Ray {ray.__version__} differs from the Ray Serve 2.60 internals the platform "
            f"patches: {'; '.join(found)}. Install the Ray version in pyproject.toml."
        )
    owner, name = _owner(importlib.import_module(target.module), target.path)
    original = getattr(owner, name)
    if getattr(original, _MARK, False):
        return
    patched = wrap(original)
    setattr(patched, _MARK, True)
    setattr(owner, name, patched)


def _owner(module: ModuleType, path: str) -> tuple[Any, str]:
    """The object holding the last name of ``path``, and that name (owner None: not found)."""
    *parents, name = path.split(".")
    owner: Any = module
    for part in parents:
        owner = getattr(owner, part, None)
        if owner is None:
            return None, name
    return owner, name


def _referenced_names(scope: Any, module_name: str) -> set[str]:
    """Every global and attribute name the code of ``scope`` (a class, or a module's own
    functions and classes) refers to, nested functions included."""
    names: set[str] = set()
    for code in _codes(scope, module_name):
        names.update(code.co_names)
    return names


def _codes(scope: Any, module_name: str) -> Iterator[CodeType]:
    for value in vars(scope).values():
        func = getattr(value, "__func__", value)  # staticmethod, classmethod
        func = getattr(func, "fget", func)  # property
        if isinstance(func, FunctionType) and func.__module__ == module_name:
            yield from _nested(func.__code__)
        elif inspect.ismodule(scope) and inspect.isclass(value) and value.__module__ == module_name:
            yield from _codes(value, module_name)  # a module's classes, not a class's own


def _nested(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _nested(const)
