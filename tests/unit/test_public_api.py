"""The public face of each package: every package of ``dlplatform`` lists its public names in
``__all__``, and those lists match the snapshot checked in beside this file
(``public_api.json``), so a public name cannot appear or disappear unannounced.

A change on purpose: regenerate the snapshot with ``python tests/unit/test_public_api.py
--update`` and commit it with the change (the diff of the JSON is the announcement).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("public_api.json")
UPDATE = "python tests/unit/test_public_api.py --update"


def packages() -> list[str]:
    """Every package under ``dlplatform/`` (a folder with ``__init__.py``), the root included."""
    found = (p.parent.relative_to(ROOT) for p in (ROOT / "dlplatform").rglob("__init__.py"))
    return sorted(".".join(p.parts) for p in found)


def public_api() -> dict[str, list[str] | None]:
    """Each package's ``__all__``, sorted (None: it has none)."""
    found: dict[str, list[str] | None] = {}
    for name in packages():
        exported = getattr(importlib.import_module(name), "__all__", None)
        found[name] = None if exported is None else sorted(exported)
    return found


def differences(old: dict[str, list[str] | None], new: dict[str, list[str] | None]) -> list[str]:
    """What changed from ``old`` to ``new``, one line per package."""
    lines = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            lines.append(f"{name}: a new package, exporting {new[name]}")
        elif name not in new:
            lines.append(f"{name}: the package is gone (it exported {old[name]})")
        elif old[name] != new[name]:
            before, after = set(old[name] or ()), set(new[name] or ())
            added, removed = sorted(after - before), sorted(before - after)
            parts = [f"added {added}" if added else "", f"removed {removed}" if removed else ""]
            lines.append(f"{name}: " + ", ".join(p for p in parts if p))
    return lines


def test_every_package_lists_its_public_names() -> None:
    missing = [name for name, exported in public_api().items() if exported is None]
    assert missing == [], f"these packages have no __all__ in their __init__.py: {missing}"


def test_the_public_names_match_the_snapshot() -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    changed = differences(snapshot, public_api())
    assert changed == [], (
        "the public API changed:\n  "
        + "\n  ".join(changed)
        + f"\nIf that is on purpose, regenerate the snapshot ({UPDATE}) and commit "
        "tests/unit/public_api.json with the change."
    )


def main(argv: list[str]) -> int:
    current = public_api()
    if argv == ["--update"]:
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        print(f"wrote {SNAPSHOT.relative_to(ROOT)} ({len(current)} packages)")
        return 0
    if argv:
        print(f"usage: {UPDATE}   (no argument: show what changed)", file=sys.stderr)
        return 2
    changed = differences(json.loads(SNAPSHOT.read_text()), current)
    print("\n".join(changed) or "the public API matches the snapshot")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script from a checkout: import this dlplatform
    sys.exit(main(sys.argv[1:]))
