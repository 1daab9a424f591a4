"""The README's tour as a remote user runs it: HTTP only, no Ray, no torch, in a process of its own.

Run by ``test_client_remote.py`` as ``python remote_tour.py`` with ``DLP_URL`` and ``DLP_TOKEN``
(and no ``RAY_ADDRESS``), plus ``TOUR_DIR`` (holding ``day1.csv`` and ``day2.parquet``) and
``TOUR_NAME`` (a fresh dataset name). Each step asserts what it got back; the last line printed
is ``TOUR-SUMMARY {json}`` for the test to check. The deployment is undeployed on the way out.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import dlplatform as dlp
from dlplatform.errors import BackendUnavailable

JOB_TIMEOUT_S = float(os.environ.get("TOUR_JOB_TIMEOUT_S", "420"))
SUMMARY_MARK = "TOUR-SUMMARY "


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(c, "ascending") for c in table.column_names])


def _step(summary: dict[str, Any], name: str, started: float) -> None:
    summary["steps_s"][name] = round(time.monotonic() - started, 2)


def tour(summary: dict[str, Any]) -> None:
    folder = Path(os.environ["TOUR_DIR"])
    name = os.environ["TOUR_NAME"]
    day1 = pacsv.read_csv(folder / "day1.csv")
    day2 = pq.read_table(folder / "day2.parquet")

    with dlp.connect() as p:  # DLP_URL and DLP_TOKEN from the environment
        t = time.monotonic()
        summary["user"] = p.whoami().name
        ds = p.datasets.create(name, description="remote tour")
        c1 = ds.push(folder / "day1.csv", message="day 1 (csv)")
        c2 = ds.push(folder / "day2.parquet", message="day 2 (parquet)")
        assert c1.row_count == day1.num_rows and c2.row_count == day1.num_rows + day2.num_rows, (
            c1.row_count,
            c2.row_count,
        )
        assert name in [d.name for d in p.datasets.list()]
        assert [c.id for c in ds.commits()] == [c2.id, c1.id]
        assert ds.refresh().dataset.head == c2.id
        summary["commits"] = [c1.id, c2.id]
        _step(summary, "create_push_list", t)

        t = time.monotonic()
        first = ds.get(c1.id).to_arrow()
        assert first.equals(day1), (first.schema, day1.schema)
        head = p.datasets.resolve(f"{name}@{c2.id}").to_arrow()
        pushed = pa.concat_tables([day1, day2])
        assert head.num_rows == pushed.num_rows
        assert _sorted(head).equals(_sorted(pushed)), (head.schema, pushed.schema)
        summary["rows_read"] = head.num_rows
        summary["read_in_push_order"] = head.equals(pushed)
        _step(summary, "to_arrow", t)

        t = time.monotonic()
        job = p.training.submit(
            dataset=name, model="mlp", label="y", workers=1, epochs=2, batch_size=32,
            lr=0.01, seed=3, params={"hidden": 8}, model_name=f"{name}-mlp",
        )  # fmt: skip
        run = job.wait(timeout_s=JOB_TIMEOUT_S)
        summary["run_id"] = run.id
        summary["run_status"] = run.status.value
        assert run.status.value == "SUCCEEDED", run.error
        epochs = job.metrics()  # a DataFrame, one row per epoch
        summary["epochs"] = [int(e) for e in epochs["epoch"]]
        model_version = job.model_version
        assert model_version is not None
        summary["model_version"] = model_version
        _step(summary, "train", t)

        model, _, version = model_version.partition("@")
        t = time.monotonic()
        event = p.models.promote(model, int(version), "production")
        assert p.models.get(model, "production").version == int(version), event
        info = p.serving.deploy(f"{model}@production")
        summary["deployed"] = f"{info.name}@{info.version}"
        try:
            _step(summary, "promote_deploy", t)
            t = time.monotonic()
            answer = p.serving.predict(model, [[0.1, 0.2, 0.3, 0.4], [2.0, 2.0, -1.0, 0.5]])
            assert (answer.model, answer.version) == (model, int(version)), answer
            assert len(answer.outputs) == 2, answer
            assert {str(o) for o in answer.outputs} <= {"0", "1", "2"}, answer
            summary["predictions"] = answer.outputs
            _step(summary, "predict", t)

            t = time.monotonic()
            upstream = {n.entity for n in p.lineage.upstream(f"model_version:{model_version}")}
            summary["lineage_reaches_commit"] = f"commit:{c2.id}" in upstream
            summary["lineage_reaches_run"] = f"run:{run.id}" in upstream
            _step(summary, "lineage", t)

            try:
                ds.get(c2.id).to_ray()
            except BackendUnavailable as exc:
                summary["to_ray_error"] = str(exc)
            else:
                summary["to_ray_error"] = None
        finally:
            summary["undeployed"] = p.serving.undeploy(model).name == model


def main() -> int:
    summary: dict[str, Any] = {"steps_s": {}, "ok": False}
    assert "RAY_ADDRESS" not in os.environ
    try:
        tour(summary)
        summary["ok"] = True
    except Exception as exc:  # reported in the summary, and the exit status says it failed
        summary["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        summary["ray_imported"] = "ray" in sys.modules
        summary["torch_imported"] = "torch" in sys.modules
        print(SUMMARY_MARK + json.dumps(summary), flush=True)
    assert "ray" not in sys.modules and "torch" not in sys.modules, sorted(
        m for m in sys.modules if m.split(".")[0] in {"ray", "torch"}
    )[:10]
    return 0


if __name__ == "__main__":
    sys.exit(main())
