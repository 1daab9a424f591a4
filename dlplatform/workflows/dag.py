"""From a workflow factory to a validated DAG, before anything runs.

A workflow factory is named by its import path ``module:factory``; it is called with the run's
parameters and returns the output node(s). Which paths may be imported is the registry's decision
(``registry.py``): a request names a registered workflow, never a path, and only the workflow
manager, where runs execute, imports a factory (``load_factory``). ``build_workflow`` imports it,
calls it and checks the result: unloadable factories raise ``FactoryUnavailable``; unaccepted
parameters, non-node results and cycles raise ``InvalidInput``.

Step ids are given in a deterministic order (depth-first from the outputs): the step's name, then
``name-2``, ``name-3`` for further calls of the same step. The same factory with the same
parameters therefore yields the same ids, which is what lets ``resume`` match a rebuilt DAG with
the steps already recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlplatform.errors import DLPlatformError, InvalidInput
from dlplatform.workflows.steps import WORKFLOW_MARK, Step, StepNode

if TYPE_CHECKING:
    from dlplatform.config import Settings

MAX_STEPS = 10_000
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
# Called code may raise these too (``sys.exit()`` in a module body); they must fail the one
# workflow, not end the process that imports it. GeneratorExit is no error of called code.
CALLED_CODE_ERRORS = (Exception, SystemExit, KeyboardInterrupt)
_BUILDING: contextvars.ContextVar[Settings | None] = contextvars.ContextVar(
    "dlp_workflow_build", default=None
)


class FactoryUnavailable(InvalidInput):
    """A registered factory cannot be loaded: its module fails to import, lacks the name, or the
    name is not a ``@workflow``. The manager fails the run with this reason."""


def building_settings() -> Settings | None:
    """The settings of the platform whose manager is building a DAG right now, for factories
    that check their parameters against configuration (e.g. the monitor's allowed webhook
    hosts); None when a DAG is built outside of a platform (tests, notebooks)."""
    return _BUILDING.get()


@contextlib.contextmanager
def _building(settings: Settings | None) -> Iterator[None]:
    token = _BUILDING.set(settings)
    try:
        yield
    finally:
        _BUILDING.reset(token)


@dataclass(frozen=True)
class Ref:
    """Placeholder for an upstream step's output inside a step's argument template."""

    step_id: str


@dataclass(frozen=True)
class DagStep:
    step_id: str
    step: Step[Any, Any]
    deps: tuple[str, ...]  # every upstream step (data and ordering)
    args: tuple[Any, ...]  # templates: upstream nodes replaced by Ref
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Dag:
    steps: dict[str, DagStep]  # in topological order
    outputs: tuple[str, ...]

    def downstream(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {sid: [] for sid in self.steps}
        for s in self.steps.values():
            for dep in s.deps:
                out[dep].append(s.step_id)
        return out


def check_path(path: str) -> str:
    """Check the form ``package.module:factory``.

    Raises:
        InvalidInput: anything else (also paths with slashes, dots at the end, spaces).
    """
    if not isinstance(path, str) or len(path) > 200 or not _PATH.fullmatch(path):
        raise InvalidInput(
            f"invalid workflow {str(path)[:80]!r}: expected an import path MODULE:FACTORY, "
            "e.g. dlplatform.workflows.pipelines:train_and_deploy"
        )
    return path


def load_factory(path: str) -> Callable[..., Any]:
    """Import the factory named by ``module:factory``.

    Importing runs the module's code: call this only with a registered target, and only where
    workflows run (the workflow manager), never in the gateway.

    Raises:
        FactoryUnavailable: the module does not import (whatever it raised, ``SystemExit``
            included), has no such attribute, or it is not a ``@workflow`` factory.
    """
    module_name, _, attr = check_path(path).partition(":")
    try:
        module = importlib.import_module(module_name)
    except CALLED_CODE_ERRORS as exc:
        raise FactoryUnavailable(
            f"workflow {path}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    try:  # a module's __getattr__ is called code too
        factory = getattr(module, attr, None)
        is_factory = callable(factory) and getattr(factory, WORKFLOW_MARK, False) is True
    except CALLED_CODE_ERRORS as exc:
        raise FactoryUnavailable(f"workflow {path}: {type(exc).__name__}: {exc}") from exc
    if factory is None:
        raise FactoryUnavailable(f"workflow {path}: module {module_name!r} has no {attr!r}")
    if not is_factory:
        raise FactoryUnavailable(
            f"workflow {path}: {attr!r} is not a workflow factory (mark it with @workflow)"
        )
    return factory  # type: ignore[no-any-return]


def check_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Parameters must be a JSON object (they are stored and replayed on resume)."""
    if params is None:
        return {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise InvalidInput("workflow params must be a mapping with string keys")
    try:
        text = json.dumps(dict(params), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"workflow params must be JSON values: {exc}") from None
    if len(text) > 64 * 1024:
        raise InvalidInput("workflow params are larger than 64 KiB")
    return dict(params)


def build_workflow(
    path: str, params: Mapping[str, Any] | None = None, *, settings: Settings | None = None
) -> Dag:
    """Import the factory at ``path``, call it with ``params`` and validate the DAG.

    ``path`` is a registered target (see ``load_factory``); ``settings`` are those of the
    platform building it (``building_settings`` inside the factory).

    Raises:
        FactoryUnavailable: the factory cannot be loaded.
        InvalidInput: parameters the factory does not accept, a factory that fails or returns
            no step nodes, a cycle.
    """
    factory = load_factory(path)
    return build_dag(factory, check_params(params), what=path, settings=settings)


def build_dag(
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    *,
    what: str = "",
    settings: Settings | None = None,
) -> Dag:
    """Call ``factory(**params)`` and validate what it returns (see ``build_workflow``)."""
    what = what or getattr(factory, "__name__", "workflow")
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        raise InvalidInput(
            f"workflow {what} does not accept params {sorted(params)}: {exc}"
        ) from None
    except ValueError:
        pass  # no signature available (some builtins): let the call decide
    try:
        with _building(settings):
            result = factory(**params)
    except DLPlatformError:
        raise
    except CALLED_CODE_ERRORS as exc:
        raise InvalidInput(
            f"workflow {what}: the factory failed: {type(exc).__name__}: {exc}"
        ) from exc
    return dag_of(result, what=what)


def dag_of(result: Any, *, what: str = "DAG") -> Dag:
    """The DAG reachable from ``result``: a node, or a list/tuple/dict of nodes."""
    if isinstance(result, StepNode):
        outputs = [result]
    elif isinstance(result, list | tuple):
        outputs = list(result)
    elif isinstance(result, dict):
        outputs = list(result.values())
    else:
        outputs = []
    if not outputs or not all(isinstance(n, StepNode) for n in outputs):
        raise InvalidInput(
            f"workflow {what} must return a step node (step.bind(...)) or a list of them, "
            f"got {type(result).__name__}"
        )
    ids: dict[int, str] = {}
    counts: dict[str, int] = {}
    order: list[StepNode] = []
    state: dict[int, int] = {}  # 1 visiting, 2 done

    def finish(node: StepNode) -> None:
        state[id(node)] = 2
        name = node.step.name
        counts[name] = counts.get(name, 0) + 1
        ids[id(node)] = name if counts[name] == 1 else f"{name}-{counts[name]}"
        order.append(node)
        if len(order) > MAX_STEPS:
            raise InvalidInput(f"workflow {what} has more than {MAX_STEPS} steps")

    for out in outputs:  # depth-first, iterative: long chains must not hit the recursion limit
        if state.get(id(out)) == 2:
            continue
        state[id(out)] = 1
        stack: list[tuple[StepNode, Iterator[StepNode]]] = [(out, iter(out.upstream()))]
        while stack:
            node, pending = stack[-1]
            dep = next(pending, None)
            if dep is None:
                stack.pop()
                finish(node)
            elif state.get(id(dep)) == 1:
                path = [n for n, _ in stack]
                start = next(i for i, n in enumerate(path) if n is dep)
                cycle = " -> ".join(n.step.name for n in [*path[start:], dep])
                raise InvalidInput(f"workflow {what} has a cycle: {cycle}")
            elif state.get(id(dep)) is None:
                state[id(dep)] = 1
                stack.append((dep, iter(dep.upstream())))

    def template(value: Any) -> Any:
        if isinstance(value, StepNode):
            return Ref(ids[id(value)])
        if isinstance(value, list):
            return [template(v) for v in value]
        if isinstance(value, tuple):
            return tuple(template(v) for v in value)
        if isinstance(value, dict):
            return {k: template(v) for k, v in value.items()}
        return value

    steps: dict[str, DagStep] = {}
    for node in order:
        sid = ids[id(node)]
        steps[sid] = DagStep(
            step_id=sid,
            step=node.step,
            deps=tuple(ids[id(d)] for d in node.upstream()),
            args=template(node.args),
            kwargs=template(node.kwargs),
        )
    return Dag(steps=steps, outputs=tuple(dict.fromkeys(ids[id(n)] for n in outputs)))


def fill(value: Any, outputs: Mapping[str, Any]) -> Any:
    """Replace each ``Ref`` in a template by the upstream output."""
    if isinstance(value, Ref):
        return outputs[value.step_id]
    if isinstance(value, list):
        return [fill(v, outputs) for v in value]
    if isinstance(value, tuple):
        return tuple(fill(v, outputs) for v in value)
    if isinstance(value, dict):
        return {k: fill(v, outputs) for k, v in value.items()}
    return value
