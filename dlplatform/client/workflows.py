"""``p.workflows`` over HTTP: start, inspect, cancel and resume runs; schedules and triggers."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from dlplatform.client._http import HttpClient
from dlplatform.client.training import poll_until
from dlplatform.errors import IntegrityError
from dlplatform.metadata import WorkflowRun, WorkflowTrigger, records
from dlplatform.metadata.records import WorkflowRegistration
from dlplatform.workflows.spec import Factory, WorkflowRunDetail, factory_path


def _seg(value: object) -> str:
    return quote(str(value), safe="")


class WorkflowsClient:
    """Start, inspect, cancel and resume workflow runs; register schedules and commit triggers;
    register workflow factories (admin).

    >>> run = p.workflows.run("train_and_deploy", {...})
    >>> p.workflows.wait(run.id).run.status
    """

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def run(
        self, factory: Factory, params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> WorkflowRun:
        """Start a run; it is driven by the platform's manager and outlives this client.

        The run id is chosen here unless given, so a start retried after a lost connection or a
        gateway or manager restart makes one run, not two (the same caller, workflow and params
        with a taken id get that run back).
        """
        run_id = run_id or f"wf-{uuid.uuid4().hex[:12]}"
        body = {"workflow": factory_path(factory), "params": params or {}, "run_id": run_id}
        return self._http.call("POST", "workflows/runs", WorkflowRun, json_body=body,
                               headers={"Idempotency-Key": run_id})  # fmt: skip

    def get(self, run_id: str) -> WorkflowRun:
        return self.status(run_id).run

    def status(self, run_id: str) -> WorkflowRunDetail:
        """The run and its step table (status, attempts, timing, error of each step)."""
        return self._http.get(f"workflows/runs/{_seg(run_id)}", WorkflowRunDetail)

    def list(self, limit: int = 50, offset: int = 0) -> list[WorkflowRun]:
        return self._http.get("workflows/runs", list[WorkflowRun], limit=limit, offset=offset)

    def wait(
        self,
        run_id: str,
        timeout_s: float | None = None,
        *,
        on_update: Callable[[WorkflowRunDetail], None] | None = None,
    ) -> WorkflowRunDetail:
        """Block until the run ends (or ``timeout_s`` passes: TimeoutError)."""
        return poll_until(  # type: ignore[no-any-return]
            lambda: self.status(run_id), lambda d: d.run.status.is_final, timeout_s,
            on_update, f"workflow run {run_id}",
        )  # fmt: skip

    def resume(self, run_id: str) -> WorkflowRun:
        return self._http.post(f"workflows/runs/{_seg(run_id)}/resume", WorkflowRun)

    def cancel(self, run_id: str) -> WorkflowRun:
        return self._http.post(f"workflows/runs/{_seg(run_id)}/cancel", WorkflowRun)

    def schedule(
        self, factory: Factory, cron: str, params: dict[str, Any] | None = None
    ) -> WorkflowTrigger:
        body = {"workflow": factory_path(factory), "cron": cron, "params": params or {}}
        return self._http.post("workflows/triggers", WorkflowTrigger, body)

    def on_commit(
        self, dataset: str, factory: Factory, params: dict[str, Any] | None = None
    ) -> WorkflowTrigger:
        body = {"workflow": factory_path(factory), "dataset": dataset, "params": params or {}}
        return self._http.post("workflows/triggers", WorkflowTrigger, body)

    def triggers(self) -> list[WorkflowTrigger]:
        return self._http.get("workflows/triggers", list[WorkflowTrigger])

    def delete_trigger(self, trigger_id: str) -> None:
        self._http.delete(f"workflows/triggers/{_seg(trigger_id)}")

    def register(self, name: str, target: str, description: str = "") -> WorkflowRegistration:
        """Let runs name the ``@workflow`` factory at ``target`` (MODULE:FACTORY) as ``name``
        (admin only). The gateway imports nothing: the workflow manager imports the factory when
        a run starts, and a factory that does not load fails that run with the reason."""
        body = {"name": name, "target": target, "description": description}
        return self._http.post("workflows/registry", WorkflowRegistration, body)

    def registered(self) -> list[WorkflowRegistration]:
        """The workflows runs may name (built-ins, admins' registrations, entry points)."""
        return self._http.get("workflows/registry", list[WorkflowRegistration])

    def unregister(self, name: str) -> None:
        """Remove an admin's registration (admin only)."""
        self._http.delete(f"workflows/registry/{_seg(name)}")

    def load_output(self, run_id: str, step_id: str) -> Any:
        """The output of a finished step: a pyarrow Table, a JSON value or a platform record.

        Its bytes are checked against the sha256 the step recorded. A pickled output (any other
        Python object) is not sent over HTTP: loading a pickle runs code.

        Raises:
            IntegrityError: the bytes do not match the recorded hash.
            Conflict: the step has no output, or it is a pickle.
        """
        path = f"workflows/runs/{_seg(run_id)}/steps/{_seg(step_id)}/output"
        with self._http.stream("GET", path) as response:
            data = response.read()
            fmt = response.headers.get("X-DLP-Output-Format", "")
            kind = response.headers.get("X-DLP-Output-Type", "")
            digest = response.headers.get("X-DLP-Sha256", "")
        return decode_output(fmt, kind, digest, data, f"{run_id}/{step_id}")


def decode_output(fmt: str, kind: str, digest: str, data: bytes, what: str) -> Any:
    """A step output from its stored bytes (see ``dlplatform.workflows._persist``)."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise IntegrityError(f"output of {what} does not match its recorded sha256")
    if fmt == "parquet":
        import pyarrow.parquet as pq  # heavy: pyarrow

        return pq.read_table(io.BytesIO(data))
    if fmt == "json":
        return json.loads(data)
    record = getattr(records, kind, None) if fmt == "record" else None
    if isinstance(record, type) and issubclass(record, BaseModel):
        return record.model_validate_json(data)
    raise IntegrityError(f"output of {what} has an unknown format {fmt!r} ({kind!r})")
