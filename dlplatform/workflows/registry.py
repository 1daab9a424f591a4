"""Which workflows can run: names, each standing for a factory ``module:factory``.

A run, a schedule or a commit trigger names a registered workflow (``train_and_deploy``); nothing
named in a request is imported. Names come from three places, looked up in this order:

1. the built-in pipelines (``BUILTIN``);
2. factories an admin registered (``dlp workflows register NAME MODULE:FACTORY``), rows of the
   metadata store;
3. factories that installed packages declare in the entry point group ``dlplatform.workflows``
   (``[project.entry-points."dlplatform.workflows"] churn = "pkg.flows:churn"``), read from the
   packages' metadata without importing them.

``resolve`` only reads those lists: an unknown name gets the same answer whether or not a module
of that name exists. The factory is imported by the workflow manager, where the run executes
(``dag.load_factory``); a factory that does not load fails its run with the reason.

A registered target's full path is accepted in place of its name, so the built-ins' old paths
(``dlplatform.workflows.pipelines:train_and_deploy``) keep working; runs record the name.

Light on purpose (no Ray): the SDK's request models validate names with ``check_reference``.
"""

from __future__ import annotations

import logging
import re
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata.records import WorkflowRegistration, check_name
from dlplatform.workflows.dag import check_path

if TYPE_CHECKING:
    from dlplatform.metadata import MetadataStore

ENTRY_POINT_GROUP = "dlplatform.workflows"
BUILTIN: dict[str, tuple[str, str]] = {  # name -> (target, description)
    "train_and_deploy": (
        "dlplatform.workflows.pipelines:train_and_deploy",
        "train on a commit, evaluate, gate, promote to production and deploy",
    ),
    "monitor": (
        "dlplatform.workflows.pipelines:monitor",
        "accuracy from feedback and input drift of a deployment; alerts and an optional webhook",
    ),
    "quality_check": (
        "dlplatform.lab.examples:quality_check",
        "example: fails on purpose when the data's mean is below a threshold",
    ),
}
_REFERENCE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")
log = logging.getLogger("dlplatform.workflows")


def check_reference(value: str) -> str:
    """A registered workflow's name, or a registered target's ``module:factory`` (an alias).

    Only the form is checked here; ``resolve`` says whether it is registered.

    Raises:
        InvalidInput: neither form.
    """
    if isinstance(value, str) and _REFERENCE.fullmatch(value):
        if ":" in value:
            return check_path(value)
        try:
            return check_name(value)
        except ValueError:
            pass
    raise InvalidInput(
        f"invalid workflow {str(value)[:80]!r}: expected the name of a registered workflow, "
        "e.g. train_and_deploy (`dlp workflows registered` lists them)"
    )


def check_registration_name(value: str) -> str:
    """Raises InvalidInput: not a name (lowercase a-z 0-9 . _ -, at most 63 characters)."""
    try:
        return check_name(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid workflow name: {exc}") from None


def builtin_registrations() -> list[WorkflowRegistration]:
    return [
        WorkflowRegistration(name=name, target=target, source="builtin", description=text)
        for name, (target, text) in BUILTIN.items()
    ]


def entry_point_registrations() -> list[WorkflowRegistration]:
    """The group's entry points, from package metadata (nothing is imported). Malformed ones
    are skipped with a warning."""
    found: list[WorkflowRegistration] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            name, target = check_name(ep.name), check_path(ep.value)
        except (ValueError, InvalidInput):
            log.warning("entry point %r = %r of %s is not NAME = MODULE:FACTORY; skipped",
                        ep.name, ep.value, ENTRY_POINT_GROUP)  # fmt: skip
            continue
        dist = getattr(ep, "dist", None)
        source = f"package {dist.name}" if dist is not None else "a package"
        found.append(
            WorkflowRegistration(
                name=name, target=target, source="entry_point", description=f"from {source}"
            )
        )
    return found


def list_registrations(store: MetadataStore) -> list[WorkflowRegistration]:
    """Every workflow that can run, in lookup order; a name is listed once (its first source)."""
    listed: dict[str, WorkflowRegistration] = {}
    for reg in [
        *builtin_registrations(),
        *store.list_workflow_registrations(),
        *entry_point_registrations(),
    ]:
        listed.setdefault(reg.name, reg)
    return list(listed.values())


def find(store: MetadataStore, name: str) -> WorkflowRegistration | None:
    """The registration of ``name`` (a name, not a path), or None."""
    if name in BUILTIN:
        target, text = BUILTIN[name]
        return WorkflowRegistration(name=name, target=target, source="builtin", description=text)
    try:
        return store.get_workflow_registration(name)
    except NotFound:
        pass
    return next((r for r in entry_point_registrations() if r.name == name), None)


def resolve(store: MetadataStore, reference: str) -> WorkflowRegistration:
    """The registration a run, schedule or trigger names. Reads the registry; imports nothing.

    Raises:
        InvalidInput: a malformed reference, or one that is not registered (the same message
            whether or not a module of that name exists).
    """
    reference = check_reference(reference)
    if ":" in reference:
        found = next((r for r in list_registrations(store) if r.target == reference), None)
    else:
        found = find(store, reference)
    if found is None:
        raise InvalidInput(
            f"workflow {reference!r} is not registered; `dlp workflows registered` lists the "
            "workflows you can run, and an admin can register more"
        )
    return found
