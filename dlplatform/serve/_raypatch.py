"""Patches of Ray Serve 2.60 internals, for what it offers no setting for (``_ingress`` and
``_metrics`` say which and why). Each is applied once per process and leaves Ray alone when its
internals look different."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MARK = "_dlp_patched"


def patch_once(owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
    """Replace ``owner.<name>`` with ``wrap(original)``, unless it is missing or already ours."""
    original = getattr(owner, name, None)
    if original is None or getattr(original, _MARK, False):
        return
    patched = wrap(original)
    setattr(patched, _MARK, True)
    setattr(owner, name, patched)
