"""Your own code in a job: who may run it, what its ``runtime_env`` may hold, who sees its env vars.

A built-in model (mlp, cnn, text) runs the platform's code: ``train.submit`` is enough. A
user-code model (``model="pkg.mod:fn"``, ``model_factory``, ``runtime_env``) runs the caller's
code on the cluster, where code can do whatever the cluster can (Ray's own stance), so it also
needs ``code.run``: admins and the roles of ``Settings.code_run_roles`` (default data-scientist).

A non-admin's ``runtime_env`` holds only ``RUNTIME_ENV_KEYS``: ``pip`` as a list of requirements
(no pip options such as ``-r FILE``, no local paths) and ``env_vars``. The other keys name files
of the machine that submits the Ray job, the platform's head (``working_dir``, ``py_modules``, a
requirements file), or change how workers start (``conda``, ``container``, ...): admin-only.

The values of ``env_vars`` (tokens, passwords) are shown only to the job's owner and admins;
everyone else who may view the job sees ``MASK``.

These checks run in the service layer (submit, and again in the job's driver before any user
code is imported), so the SDK, the CLI and HTTP obey the same rules.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NoReturn

from dlplatform.access import Permission, Principal, authorize, run_owner
from dlplatform.errors import PermissionDenied
from dlplatform.metadata import Run
from dlplatform.train.spec import TrainingJobSpec

if TYPE_CHECKING:
    from dlplatform.context import Backend

RUNTIME_ENV_KEYS = ("env_vars", "pip")
"""The ``runtime_env`` keys a non-admin may set."""
MASK = "***"
"""What viewers other than the owner and admins see in place of an env var's value."""
_PIP_REQUIREMENT = re.compile(r"^[A-Za-z0-9][^\s]*(\s*[;@<>=!~\[].*)?$")
"""A requirement (``torch``, ``pkg==1.2``, ``pkg @ https://...``, ``git+https://...``): it starts
with a letter or digit, so never a pip option (``-r FILE``) or a path (``/``, ``.``, ``~``)."""


def _deny(backend: Backend, principal: Principal, target: str, reason: str) -> NoReturn:
    backend.store.append_audit(principal.name, Permission.CODE_RUN.value, target, "denied", reason)
    raise PermissionDenied(f"{principal.name} may not run this job: {reason}")


def _check_pip(pip: Any) -> str | None:
    """Why a non-admin may not use ``pip`` as given, or None."""
    if not isinstance(pip, list) or not all(isinstance(r, str) for r in pip):
        return "runtime_env.pip must be a list of requirements (other forms are admin-only)"
    for requirement in pip:
        local_or_option = "file:" in requirement.lower() or re.search(r"\s-", requirement)
        if local_or_option or not _PIP_REQUIREMENT.fullmatch(requirement):
            return (
                f"runtime_env.pip entry {requirement[:80]!r} is not a plain requirement "
                "(pip options and local paths are admin-only)"
            )
    return None


def authorize_code(
    backend: Backend, principal: Principal, spec: TrainingJobSpec, target: str
) -> None:
    """Allow ``principal`` to run ``spec``'s code: nothing to check for a built-in model; else
    ``code.run``, and for a non-admin a ``runtime_env`` of ``RUNTIME_ENV_KEYS`` only. Denials
    are audited.

    Raises:
        PermissionDenied: the role lacks ``code.run``, or the ``runtime_env`` needs an admin.
    """
    if spec.is_builtin:
        return
    roles = backend.settings.code_run_roles
    authorize(backend.store, principal, Permission.CODE_RUN, target, holders=roles)
    if principal.is_admin or not spec.runtime_env:
        return
    extra = sorted(set(spec.runtime_env) - set(RUNTIME_ENV_KEYS))
    if extra:
        _deny(
            backend, principal, target,
            f"runtime_env key(s) {', '.join(extra)} are admin-only "
            f"(allowed: {', '.join(RUNTIME_ENV_KEYS)})",
        )  # fmt: skip
    if "pip" in spec.runtime_env:
        reason = _check_pip(spec.runtime_env["pip"])
        if reason is not None:
            _deny(backend, principal, target, reason)


def job_principal(backend: Backend, run: Run, spec: TrainingJobSpec) -> Principal:
    """Whom a job's driver acts as: the run's owner (``access.run_owner``), checked again for
    ``code.run`` (a role changed since submit) before any user code is imported.

    Raises:
        PermissionDenied: the owner is gone or disabled, or may no longer run this code.
    """
    principal = run_owner(backend.store, run.owner)
    authorize_code(backend, principal, spec, f"run:{run.id}")
    return principal


def may_see_env(viewer: Principal, run: Run) -> bool:
    """Whether ``viewer`` sees the run's env var values: its owner and admins."""
    return viewer.is_admin or viewer.name == run.owner


def masked_run(run: Run) -> Run:
    """``run`` with the env var values in its ``spec_json`` masked (for outputs others read, such
    as a workflow step's)."""
    spec = TrainingJobSpec.model_validate_json(run.spec_json)
    shown = masked(spec)
    return run if shown is spec else run.model_copy(update={"spec_json": shown.model_dump_json()})


def masked(spec: TrainingJobSpec) -> TrainingJobSpec:
    """``spec`` with every ``runtime_env.env_vars`` value replaced by ``MASK`` (names kept)."""
    env = (spec.runtime_env or {}).get("env_vars")
    if not env:
        return spec
    runtime_env = {**(spec.runtime_env or {}), "env_vars": dict.fromkeys(env, MASK)}
    return spec.model_copy(update={"runtime_env": runtime_env})
