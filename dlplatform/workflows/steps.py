"""Workflow steps: the ``@step`` decorator and the nodes that ``.bind()`` builds.

A step is a plain function with options (retries, which exceptions to retry, a timeout, Ray
resources). Binding a step to values and to other nodes builds a DAG node; nodes passed as
arguments, also inside lists, tuples and dict values, become dependencies, which gives fan-out
(one node used by many) and fan-in (many nodes passed to one)::

    @step(retries=2, retry_exceptions=(ConnectionError,), timeout_s=600, num_cpus=1)
    def load(commit: str) -> pa.Table: ...

    def my_workflow(commit: str) -> StepNode:          # the factory, registered as "pkg.mod:my_workflow"
        table = load.bind(commit)
        parts = [score.bind(table, k) for k in range(4)]  # fan-out
        return report.bind(parts)                         # fan-in
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Generic, ParamSpec, TypeVar

from dlplatform.errors import InvalidInput
from dlplatform.metadata.records import check_name

P = ParamSpec("P")
R = TypeVar("R")

RetryExceptions = bool | tuple[type[BaseException], ...]


@dataclass(frozen=True)
class StepOptions:
    """How a step runs. ``retry_exceptions``: () retries only crashes of the worker process,
    True every exception, a tuple of classes only those. ``timeout_s`` counts from submission."""

    name: str
    retries: int = 0
    retry_exceptions: RetryExceptions = ()
    timeout_s: float | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        try:
            check_name(self.name)
        except ValueError as exc:
            raise InvalidInput(f"step name: {exc}") from None
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise InvalidInput(f"step {self.name}: retries must be an integer >= 0")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise InvalidInput(f"step {self.name}: timeout_s must be > 0, got {self.timeout_s}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise InvalidInput(f"step {self.name}: num_cpus and num_gpus must be >= 0")
        if not isinstance(self.retry_exceptions, bool):
            bad = [
                e
                for e in self.retry_exceptions
                if not (isinstance(e, type) and issubclass(e, Exception))
            ]
            if bad:
                raise InvalidInput(
                    f"step {self.name}: retry_exceptions must be exception classes, got {bad!r}"
                )

    def ray_options(self) -> dict[str, Any]:
        """The options of the Ray task that runs the step."""
        retry: bool | list[type[BaseException]]
        if isinstance(self.retry_exceptions, bool):
            retry = self.retry_exceptions
        else:
            retry = list(self.retry_exceptions) or False
        return {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "max_retries": self.retries,
            "retry_exceptions": retry,
        }


class Step(Generic[P, R]):
    """A function marked as a workflow step. Calling it runs the function directly."""

    def __init__(self, fn: Callable[P, R], options: StepOptions) -> None:
        self.fn = fn
        self.step_options = options
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return self.step_options.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def bind(self, *args: Any, **kwargs: Any) -> StepNode:
        """A DAG node running this step on ``args``; other nodes among them are dependencies."""
        return StepNode(self, args, kwargs)

    def options(self, **changes: Any) -> Step[P, R]:
        """The same step with some options changed, e.g. ``train.options(num_gpus=1)``."""
        unknown = set(changes) - set(StepOptions.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown step options {sorted(unknown)}")
        return Step(self.fn, replace(self.step_options, **changes))

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # A step defined at module level travels by reference (the worker imports its module),
        # so that its function is not pickled by value with the module's globals.
        module_name = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", "")
        module = sys.modules.get(module_name or "")
        if (
            module_name != "__main__"
            and module is not None
            and getattr(module, qualname, None) is self
        ):
            return (_import_step, (module_name, qualname))
        return (Step, (self.fn, self.step_options))


def _import_step(module_name: str, qualname: str) -> Step[Any, Any]:
    step = getattr(importlib.import_module(module_name), qualname)
    if not isinstance(step, Step):
        raise TypeError(f"{module_name}:{qualname} is not a workflow step")
    return step


def step(
    fn: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_exceptions: RetryExceptions = (),
    timeout_s: float | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> Any:
    """Mark a function as a workflow step; usable as ``@step`` or ``@step(retries=2, ...)``.

    The step's name defaults to the function name, lowercased, with ``-`` for ``_``. The function must be
    importable by module path (defined at module level) so Ray workers can load it.

    Raises:
        InvalidInput: an option is out of range.
    """

    def wrap(f: Callable[P, R]) -> Step[P, R]:
        default = re.sub(r"[^a-z0-9.-]+", "-", f.__name__.lower()).strip("-.")[:63]
        step_name = name or default or "step"
        options = StepOptions(
            name=step_name,
            retries=retries,
            retry_exceptions=retry_exceptions,
            timeout_s=timeout_s,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        return Step(f, options)

    return wrap(fn) if fn is not None else wrap


F = TypeVar("F", bound=Callable[..., Any])
WORKFLOW_MARK = "__dlp_workflow__"


def workflow(fn: F) -> F:
    """Mark a function as a workflow factory: it takes the run's parameters as keyword
    arguments and returns the output node(s). Only marked functions can be run by import path,
    so that a path cannot name an arbitrary callable (``os:system``)."""
    setattr(fn, WORKFLOW_MARK, True)
    return fn


class StepNode:
    """One call of a step in a DAG: the step, its arguments and its dependencies."""

    def __init__(self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.step = step
        self.args = args
        self.kwargs = kwargs
        self.ordering: list[StepNode] = []

    def after(self, *nodes: StepNode) -> StepNode:
        """Run this node only after ``nodes`` finished, without passing their outputs."""
        for node in nodes:
            if not isinstance(node, StepNode):
                raise InvalidInput(f"after() takes step nodes, got {type(node).__name__}")
            self.ordering.append(node)
        return self

    def upstream(self) -> list[StepNode]:
        """The nodes this one depends on: in arguments first, then ``after`` nodes; no repeats."""
        seen: dict[int, StepNode] = {}
        for node in _nodes_in((self.args, self.kwargs)):
            seen.setdefault(id(node), node)
        for node in self.ordering:
            seen.setdefault(id(node), node)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"<node {self.step.name}>"


def _nodes_in(value: Any) -> Iterator[StepNode]:
    if isinstance(value, StepNode):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _nodes_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nodes_in(item)
