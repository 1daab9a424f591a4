"""MetadataStore on a real DuckDB file: every entity, restart, errors, transactions, lineage, export."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from dlplatform.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from dlplatform.metadata import (
    ArtifactRecord,
    Commit,
    CommitMode,
    CommitPart,
    Dataset,
    Deployment,
    Feedback,
    LineageEdge,
    MetadataStore,
    MetricPoint,
    Model,
    ModelVersion,
    Prediction,
    Role,
    Run,
    RunStatus,
    User,
    WorkflowRun,
    WorkflowStep,
)
from dlplatform.metadata._db import _migrations
from dlplatform.metadata.records import build, utcnow
from dlplatform.metadata.store import EXPORTED_TABLES, MAX_LINEAGE_DEPTH


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "meta" / "metadata.duckdb"


@pytest.fixture
def st(path: Path) -> Iterator[MetadataStore]:
    s = MetadataStore(path)
    yield s
    s.close()


def reopen(st: MetadataStore) -> MetadataStore:
    st.close()
    return MetadataStore(st.path)


def dataset(name: str = "iris") -> Dataset:
    return Dataset(name=name, created_at=utcnow(), created_by="alice", tags=("a", "b"))


def commit(cid: str, ds: str = "iris", parent: str | None = None, parts: int = 2) -> Commit:
    return Commit(
        id=cid, dataset=ds, parent=parent, mode=CommitMode.APPEND, author="alice",
        created_at=utcnow(), row_count=10 * parts, size_bytes=100 * parts,
        version_hash=hashlib.sha256(cid.encode()).hexdigest(), arrow_schema="schema",
        parts=tuple(
            CommitPart(sha256=hashlib.sha256(f"{cid}-{i}".encode()).hexdigest(), row_count=10,
                       size_bytes=100)
            for i in range(parts)
        ),
    )  # fmt: skip


def run(rid: str = "r-1", **kw: object) -> Run:
    return Run(id=rid, owner="alice", created_at=utcnow(), **kw)  # type: ignore[arg-type]


def version(model: str = "clf", run_id: str | None = "r-1") -> ModelVersion:
    return ModelVersion(
        model=model, version=0, run_id=run_id, artifact_sha256="ab" * 32, signature_json="{}",
        created_at=utcnow(),
    )  # fmt: skip


def counts(st: MetadataStore) -> dict[str, int]:
    """Row count of every table, to prove that a rejected call changed nothing."""
    out = {}
    for table in EXPORTED_TABLES:
        row = st._db.one(f"SELECT count(*) FROM {table}")
        assert row is not None
        out[table] = int(row[0])
    return out


# --- schema, restart ----------------------------------------------------------------------------


def test_schema_is_migrated_once_and_reopen_does_not_migrate_again(st: MetadataStore) -> None:
    version = st.schema_version()
    assert version == max(number for number, _ in _migrations())  # 1 plus later issues' migrations
    assert st._db.one("SELECT min(version) FROM schema_version") == (1,)
    st.create_user(User(name="alice", role=Role.ADMIN, created_at=utcnow()))
    st2 = reopen(st)
    try:
        assert st2.schema_version() == version
        row = st2._db.one("SELECT count(*) FROM schema_version")
        assert row == (len(_migrations()),)  # each once (numbers may have gaps while in review)
        assert st2.get_user("alice").role is Role.ADMIN
    finally:
        st2.close()


def test_state_survives_close_and_reopen(st: MetadataStore) -> None:
    st.create_dataset(dataset())
    st.add_commit(commit("c-1"), expected_head=None)
    st.create_run(run())
    st.log_params("r-1", {"lr": 0.1})
    st.log_metric_batch(["r-1"] * 3, ["loss"] * 3, [3.0, 2.0, 1.0], [0, 1, 2])
    st.add_model_version(version(), edges_to=[("run:r-1", "trained_by")])
    st.set_alias("clf", "prod", 1, by="alice")
    st.add_edges([LineageEdge(src="commit:c-1", dst="run:r-1", relation="trained_on")])
    st2 = reopen(st)
    try:
        assert st2.get_dataset("iris").head == "c-1"
        assert len(st2.get_commit("c-1").parts) == 2
        assert st2.get_params("r-1") == {"lr": "0.1"}
        assert [p.value for p in st2.get_metrics("r-1")] == [3.0, 2.0, 1.0]
        assert st2.resolve_alias("clf", "prod") == 1
        ups = {n.entity for n in st2.upstream("model_version:clf@1")}
        assert ups == {"run:r-1", "commit:c-1"}
    finally:
        st2.close()


def test_second_process_gets_a_clear_error(st: MetadataStore, path: Path) -> None:
    code = (
        "import sys\n"
        "from dlplatform.errors import BackendUnavailable\n"
        "from dlplatform.metadata import MetadataStore\n"
        "try:\n"
        f"    MetadataStore({str(path)!r})\n"
        "except BackendUnavailable as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "metadata actor" in proc.stdout


# --- users, tokens, audit -----------------------------------------------------------------------


def test_users_create_get_list_duplicate_notfound(st: MetadataStore) -> None:
    st.create_user(User(name="bob", role=Role.VIEWER, groups=("g1",), created_at=utcnow()))
    st.create_user(User(name="alice", role=Role.ADMIN, created_at=utcnow()))
    assert [u.name for u in st.list_users()] == ["alice", "bob"]
    assert st.get_user("bob").groups == ("g1",)
    with pytest.raises(AlreadyExists, match="bob"):
        st.create_user(User(name="bob", role=Role.ADMIN, created_at=utcnow()))
    assert st.get_user("bob").role is Role.VIEWER  # the rejected call changed nothing
    with pytest.raises(NotFound, match="carol"):
        st.get_user("carol")


def test_tokens_by_hash_revoke_and_list(st: MetadataStore) -> None:
    st.create_user(User(name="alice", role=Role.ADMIN, created_at=utcnow()))
    info = st.add_token("t-1", "alice", "hash-1", "dlp_abc")
    st.add_token("t-2", "alice", "hash-2", "dlp_def")
    user, found = st.user_for_token_hash("hash-1")
    assert user.name == "alice" and found.id == "t-1" and found.prefix == "dlp_abc"
    assert found.created_at == info.created_at
    st.touch_token("t-1")
    assert st.list_tokens("alice")[0].last_used_at is not None
    revoked = st.revoke_token("t-1")
    assert revoked.revoked_at is not None
    assert st.revoke_token("t-1").revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(NotFound):
        st.user_for_token_hash("hash-1")
    with pytest.raises(NotFound):
        st.user_for_token_hash("no-such-hash")
    assert st.user_for_token_hash("hash-2")[1].id == "t-2"
    assert [t.id for t in st.list_tokens()] == ["t-1", "t-2"]
    assert st.list_tokens("nobody") == []
    with pytest.raises(NotFound, match="t-9"):
        st.revoke_token("t-9")
    with pytest.raises(NotFound, match="ghost"):
        st.add_token("t-3", "ghost", "hash-3", "dlp_ghi")
    with pytest.raises(AlreadyExists):
        st.add_token("t-4", "alice", "hash-2", "dlp_jkl")  # same hash twice
    assert len(st.list_tokens()) == 2


def test_audit_append_filter_newest_first(st: MetadataStore) -> None:
    st.append_audit("alice", "dataset.push", "dataset:iris", "ok", "3 rows")
    st.append_audit("bob", "dataset.read", "dataset:iris", "denied")
    st.append_audit("alice", "model.alias", "model:clf", "ok", "x" * 5000)
    entries = st.list_audit()
    assert [e.action for e in entries] == ["model.alias", "dataset.read", "dataset.push"]
    assert len(entries[0].detail) == 2000  # long details are cut, not rejected
    assert [e.actor for e in st.list_audit(outcome="denied")] == ["bob"]
    assert [e.action for e in st.list_audit(actor="alice", limit=1)] == ["model.alias"]
    assert [e.action for e in st.list_audit(actor="alice", limit=1, offset=1)] == ["dataset.push"]


# --- datasets and commits -----------------------------------------------------------------------


def test_dataset_crud_soft_delete_and_purge(st: MetadataStore) -> None:
    st.create_dataset(dataset("iris"))
    st.create_dataset(dataset("mnist"))
    assert [d.name for d in st.list_datasets()] == ["iris", "mnist"]
    assert st.get_dataset("iris").tags == ("a", "b")
    with pytest.raises(AlreadyExists, match="iris"):
        st.create_dataset(dataset("iris"))
    updated = st.update_dataset("iris", description="flowers", tags=("x",))
    assert updated.description == "flowers" and updated.tags == ("x",)
    with pytest.raises(InvalidInput, match="created_by"):
        st.update_dataset("iris", created_by="mallory")
    with pytest.raises(InvalidInput, match="type"):
        st.update_dataset("iris", type="video")
    assert st.get_dataset("iris").description == "flowers"
    st.add_commit(commit("c-1", "mnist"), expected_head=None)
    with pytest.raises(Conflict, match="not deleted"):
        st.purge_dataset("mnist")
    deleted = st.delete_dataset("mnist")
    assert deleted.deleted_at is not None
    assert [d.name for d in st.list_datasets()] == ["iris"]
    assert len(st.list_datasets(include_deleted=True)) == 2
    with pytest.raises(NotFound, match="mnist"):
        st.get_dataset("mnist")
    with pytest.raises(AlreadyExists):
        st.create_dataset(dataset("mnist"))  # a soft-deleted name stays taken
    shas = st.purge_dataset("mnist")
    assert sorted(shas) == sorted(p.sha256 for p in commit("c-1", "mnist").parts)
    with pytest.raises(NotFound, match="c-1"):
        st.get_commit("c-1")
    with pytest.raises(NotFound):
        st.get_dataset("mnist", include_deleted=True)
    with pytest.raises(NotFound, match="nope"):
        st.delete_dataset("nope")


def test_commits_with_parts_head_and_listing(st: MetadataStore) -> None:
    st.create_dataset(dataset())
    st.add_commit(commit("c-1"), expected_head=None, dataset_arrow_schema="schema-1")
    c2 = commit("c-2", parent="c-1", parts=3)
    st.add_commit(
        c2, expected_head="c-1",
        edges=[LineageEdge(src="commit:c-1", dst="commit:c-2", relation="parent")],
    )  # fmt: skip
    ds = st.get_dataset("iris")
    assert ds.head == "c-2" and ds.arrow_schema == "schema-1"
    got = st.get_commit("c-2")
    assert got == c2
    assert [p.sha256 for p in got.parts] == [p.sha256 for p in c2.parts]
    listed = st.list_commits("iris")
    assert {c.id for c in listed} == {"c-1", "c-2"}
    assert all(c.parts == () for c in listed)
    assert len(st.list_commits("iris", limit=1)) == 1
    st.set_commit_stats("c-2", '{"rows": 30}')
    assert st.get_commit("c-2").stats_json == '{"rows": 30}'
    assert st.upstream("commit:c-2")[0].entity == "commit:c-1"
    with pytest.raises(NotFound, match="c-404"):
        st.get_commit("c-404")
    with pytest.raises(NotFound, match="c-404"):
        st.set_commit_stats("c-404", "{}")
    with pytest.raises(NotFound, match="ghost"):
        st.list_commits("ghost")
    with pytest.raises(NotFound, match="ghost"):
        st.add_commit(commit("c-9", "ghost"), expected_head=None)


def test_add_commit_with_stale_head_leaves_nothing(st: MetadataStore) -> None:
    st.create_dataset(dataset())
    st.add_commit(commit("c-1"), expected_head=None)
    before = counts(st)
    edge = LineageEdge(src="commit:c-1", dst="commit:c-2", relation="parent")
    with pytest.raises(Conflict, match="head moved"):
        st.add_commit(commit("c-2", parent="c-1"), expected_head=None, edges=[edge])
    with pytest.raises(Conflict):
        st.add_commit(commit("c-2", parent="c-1"), expected_head="c-0", edges=[edge])
    assert counts(st) == before
    assert st.get_dataset("iris").head == "c-1"
    with pytest.raises(NotFound):
        st.get_commit("c-2")
    assert st.downstream("commit:c-1") == []


def test_add_commit_failing_midway_leaves_nothing(st: MetadataStore) -> None:
    st.create_dataset(dataset())
    st.add_commit(commit("c-1"), expected_head=None)
    before = counts(st)
    edge = LineageEdge(src="commit:c-1", dst="commit:c-2", relation="parent")
    # the second part cannot be stored (row count beyond BIGINT): the first part, the commit row
    # and the head move must all roll back.
    good = commit("c-2", parent="c-1")
    bad_parts = (good.parts[0], CommitPart(sha256="ff" * 32, row_count=2**70, size_bytes=1))
    bad = good.model_copy(update={"parts": bad_parts})
    with pytest.raises(InvalidInput):
        st.add_commit(bad, expected_head="c-1", edges=[edge])
    assert counts(st) == before
    assert st.get_dataset("iris").head == "c-1"
    # a duplicate commit id fails at the commit row: nothing else lands either
    with pytest.raises(AlreadyExists, match="c-1"):
        st.add_commit(commit("c-1", parent="c-1", parts=5), expected_head="c-1", edges=[edge])
    assert counts(st) == before
    assert len(st.get_commit("c-1").parts) == 2
    # and the store still works afterwards
    st.add_commit(good, expected_head="c-1", edges=[edge])
    assert st.get_dataset("iris").head == "c-2"


def test_push_key_is_recorded_with_its_commit_or_not_at_all(st: MetadataStore) -> None:
    st.create_dataset(dataset())
    st.create_dataset(dataset("mnist"))
    # a commit refused for a stale head records no key either
    with pytest.raises(Conflict):
        st.add_commit(commit("c-0"), expected_head="c-9", idempotency_key="k-1")
    with pytest.raises(NotFound, match="k-1"):
        st.get_commit_by_push_key("alice", "iris", "k-1")
    st.add_commit(commit("c-1"), expected_head=None, idempotency_key="k-1")
    assert st.get_commit_by_push_key("alice", "iris", "k-1") == st.get_commit("c-1")
    before = counts(st)
    # the same key again: refused before the head check, and nothing of the commit lands
    with pytest.raises(AlreadyExists, match="c-1"):
        st.add_commit(commit("c-2", parent="c-1"), expected_head="c-1", idempotency_key="k-1")
    with pytest.raises(AlreadyExists, match="c-1"):
        st.add_commit(commit("c-2", parent="c-1"), expected_head=None, idempotency_key="k-1")
    assert counts(st) == before
    assert st.get_dataset("iris").head == "c-1"
    # the key is per (author, dataset): another dataset or author may use it
    st.add_commit(commit("c-3", "mnist"), expected_head=None, idempotency_key="k-1")
    other = commit("c-4", parent="c-1").model_copy(update={"author": "bob"})
    st.add_commit(other, expected_head="c-1", idempotency_key="k-1")
    assert st.get_commit_by_push_key("bob", "iris", "k-1").id == "c-4"
    assert st.get_commit_by_push_key("alice", "mnist", "k-1").id == "c-3"
    # a purged dataset takes its keys along
    st.delete_dataset("mnist")
    st.purge_dataset("mnist")
    with pytest.raises(NotFound):
        st.get_commit_by_push_key("alice", "mnist", "k-1")


# --- runs, params, metrics ----------------------------------------------------------------------


def test_runs_create_get_list_update(st: MetadataStore) -> None:
    st.create_run(run("r-1", kind="tune"))
    st.create_run(run("r-2", kind="trial", parent_id="r-1"))
    st.create_run(Run(id="r-3", owner="bob", created_at=utcnow()))
    with pytest.raises(AlreadyExists, match="r-1"):
        st.create_run(run("r-1"))
    assert st.get_run("r-2").parent_id == "r-1"
    assert {r.id for r in st.list_runs(kind="trial")} == {"r-2"}
    assert {r.id for r in st.list_runs(parent_id="r-1")} == {"r-2"}
    assert {r.id for r in st.list_runs(owner="bob")} == {"r-3"}
    assert st.count_runs() == 3 and st.count_runs(kind="tune") == 1
    now = utcnow()
    updated = st.update_run("r-1", status=RunStatus.RUNNING, started_at=now)
    assert updated.status is RunStatus.RUNNING
    assert st.get_run("r-1").status is RunStatus.RUNNING
    assert {r.id for r in st.list_runs(status=[RunStatus.RUNNING])} == {"r-1"}
    assert {r.id for r in st.list_runs(status=["QUEUED"])} == {"r-2", "r-3"}
    with pytest.raises(InvalidInput, match="owner"):
        st.update_run("r-1", owner="mallory")
    with pytest.raises(InvalidInput, match="status"):
        st.update_run("r-1", status="BOGUS")
    assert st.get_run("r-1").status is RunStatus.RUNNING
    with pytest.raises(NotFound, match="r-404"):
        st.get_run("r-404")
    with pytest.raises(NotFound, match="r-404"):
        st.update_run("r-404", status=RunStatus.FAILED)


def test_submit_key_is_recorded_with_its_run_or_not_at_all(st: MetadataStore) -> None:
    with pytest.raises(NotFound, match="k-1"):
        st.get_run_by_submit_key("alice", "k-1")
    st.create_run(run("r-1"), idempotency_key="k-1")
    assert st.get_run_by_submit_key("alice", "k-1") == st.get_run("r-1")
    before = counts(st)
    # the same key again: refused, and nothing of the second run lands
    with pytest.raises(AlreadyExists, match="r-1"):
        st.create_run(run("r-2"), idempotency_key="k-1")
    # a taken run id records no key either
    with pytest.raises(AlreadyExists, match="r-1"):
        st.create_run(run("r-1"), idempotency_key="k-2")
    assert counts(st) == before
    with pytest.raises(NotFound):
        st.get_run_by_submit_key("alice", "k-2")
    # the key is per user: another owner may use it
    st.create_run(Run(id="r-3", owner="bob", created_at=utcnow()), idempotency_key="k-1")
    assert st.get_run_by_submit_key("bob", "k-1").id == "r-3"
    assert st.get_run_by_submit_key("alice", "k-1").id == "r-1"
    st.create_run(run("r-4"))  # no key: as before
    assert counts(st)["submit_keys"] == 2


def test_params_and_metrics(st: MetadataStore) -> None:
    st.create_run(run())
    st.log_params("r-1", {"lr": 0.01, "layers": 3})
    st.log_params("r-1", {"lr": 0.02})
    assert st.get_params("r-1") == {"layers": "3", "lr": "0.02"}
    with pytest.raises(NotFound, match="r-404"):
        st.log_params("r-404", {"a": 1})
    assert st.log_metric_batch(["r-1"] * 4, ["loss", "loss", "acc", "acc"], [2.0, 1.0, 0.5, 0.7],
                               [0, 1, 0, 1], [1.0, 2.0, 1.0, 2.0]) == 4  # fmt: skip
    st.log_metrics([MetricPoint(run_id="r-1", key="loss", value=0.5, step=2)])
    loss = st.get_metrics("r-1", "loss")
    assert [(p.step, p.value) for p in loss] == [(0, 2.0), (1, 1.0), (2, 0.5)]
    assert loss[-1].timestamp > 1e9  # 0 means "now"
    assert st.latest_metrics("r-1") == {"loss": 0.5, "acc": 0.7}
    assert len(st.get_metrics("r-1")) == 5


def test_metric_batch_of_10000_points_in_one_call(st: MetadataStore) -> None:
    st.create_run(run())
    n = 10_000
    assert st.log_metric_batch(["r-1"] * n, ["loss"] * n, [float(i) for i in range(n)],
                               list(range(n))) == n  # fmt: skip
    points = st.get_metrics("r-1", "loss")
    assert len(points) == n
    assert [p.step for p in points] == list(range(n))
    assert sum(p.value for p in points) == sum(range(n))


def test_bad_metric_batches_store_nothing(st: MetadataStore) -> None:
    st.create_run(run())
    with pytest.raises(InvalidInput, match="same length"):
        st.log_metric_batch(["r-1"] * 2, ["a"], [1.0, 2.0], [0, 1])
    with pytest.raises(InvalidInput, match="same length"):
        st.log_metric_batch(["r-1"], ["a"], [1.0], [0], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="metric"):
        st.log_metric_batch(["r-1", "r-1"], ["a", "a"], [1.0, "high"], [0, 1])  # type: ignore[list-item]
    assert st.get_metrics("r-1") == []


# --- models, aliases, deployments, predictions, alerts ------------------------------------------


def test_models_versions_auto_numbering_and_aliases(st: MetadataStore) -> None:
    st.create_model(Model(name="reg", owner="alice", created_at=utcnow()))
    with pytest.raises(AlreadyExists, match="reg"):
        st.create_model(Model(name="reg", owner="bob", created_at=utcnow()))
    v1 = st.add_model_version(version("clf"), owner="alice", edges_to=[("run:r-1", "trained_by")])
    v2 = st.add_model_version(version("clf", run_id="r-2"))
    v3 = st.add_model_version(version("clf").model_copy(update={"version": 42}))
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)  # given numbers are ignored
    assert st.get_model("clf").owner == "alice"  # created on first version, by its owner
    assert [m.name for m in st.list_models()] == ["clf", "reg"]
    assert [v.version for v in st.list_model_versions("clf")] == [3, 2, 1]
    assert st.get_model_version("clf", 2).run_id == "r-2"
    assert st.upstream("model_version:clf@1")[0].entity == "run:r-1"
    e1 = st.set_alias("clf", "prod", 1, by="alice")
    assert e1.previous_version is None
    e2 = st.set_alias("clf", "prod", 2, by="bob")
    assert e2.previous_version == 1
    st.set_alias("clf", "staging", 2, by="bob")
    assert st.resolve_alias("clf", "prod") == 2
    assert st.get_model_version("clf", 2).aliases == ("prod", "staging")
    assert st.get_model_version("clf", 1).aliases == ()
    history = st.alias_history("clf")
    assert [(h.alias, h.version, h.previous_version, h.by) for h in history] == [
        ("prod", 1, None, "alice"), ("prod", 2, 1, "bob"), ("staging", 2, None, "bob"),
    ]  # fmt: skip
    before = counts(st)
    with pytest.raises(NotFound, match="clf@9"):
        st.set_alias("clf", "prod", 9, by="bob")
    with pytest.raises(InvalidInput, match="number"):
        st.set_alias("clf", "7", 1, by="bob")
    with pytest.raises(InvalidInput, match="alias"):
        st.set_alias("clf", "Prod/../x", 1, by="bob")
    assert counts(st) == before
    assert st.resolve_alias("clf", "prod") == 2
    with pytest.raises(NotFound, match="canary"):
        st.resolve_alias("clf", "canary")
    with pytest.raises(NotFound, match="clf@7"):
        st.get_model_version("clf", 7)
    with pytest.raises(NotFound, match="ghost"):
        st.list_model_versions("ghost")
    with pytest.raises(NotFound, match="ghost"):
        st.get_model("ghost")


def test_deployments(st: MetadataStore) -> None:
    now = utcnow()
    dep = Deployment(name="web", model="clf", version=1, created_by="alice", created_at=now,
                     updated_at=now)  # fmt: skip
    st.put_deployment(dep)
    st.put_deployment(dep.model_copy(update={"version": 2, "status": "RUNNING"}))
    got = st.get_deployment("web")
    assert (got.version, got.status) == (2, "RUNNING")
    assert [d.name for d in st.list_deployments()] == ["web"]
    st.delete_deployment("web")
    assert st.list_deployments() == []
    with pytest.raises(NotFound, match="web"):
        st.get_deployment("web")
    with pytest.raises(NotFound, match="web"):
        st.delete_deployment("web")


def test_predictions_feedback_alerts(st: MetadataStore) -> None:
    now = utcnow()
    preds = [
        Prediction(request_id=f"q-{i}", deployment="web", model="clf", version=1,
                   at=now + timedelta(seconds=i), inputs_json="[1]", outputs_json="[0]",
                   latency_ms=1.5)
        for i in range(3)
    ]  # fmt: skip
    assert st.log_predictions(preds) == 3
    st.log_predictions(preds[:1])  # idempotent per request id
    assert [p.request_id for p in st.list_predictions("web")] == ["q-2", "q-1", "q-0"]
    assert st.get_prediction("q-1").latency_ms == 1.5
    with pytest.raises(NotFound, match="q-9"):
        st.get_prediction("q-9")
    st.add_feedback(Feedback(request_id="q-1", label_json="1", by="bob", at=now))
    assert [f.label_json for f in st.list_feedback("q-1")] == ["1"]
    with pytest.raises(NotFound, match="q-9"):
        st.add_feedback(Feedback(request_id="q-9", label_json="1", by="bob", at=now))
    assert st.list_feedback("q-9") == []
    a1 = st.create_alert("drift", "deployment:web", "feature x drifted")
    a2 = st.create_alert("latency", "deployment:web", "p99 high", severity="critical")
    assert a2.id == a1.id + 1 and a2.severity == "critical"
    with pytest.raises(InvalidInput, match="severity"):
        st.create_alert("x", "y", "z", severity="bogus")
    assert [a.id for a in st.list_alerts()] == [a2.id, a1.id]
    assert st.resolve_alert(a1.id).resolved_at is not None
    assert [a.id for a in st.list_alerts()] == [a2.id]
    assert len(st.list_alerts(include_resolved=True)) == 2
    with pytest.raises(NotFound, match="999"):
        st.get_alert(999)
    with pytest.raises(NotFound, match="999"):
        st.resolve_alert(999)


# --- workflows ----------------------------------------------------------------------------------


def test_workflow_runs_and_steps(st: MetadataStore) -> None:
    wf = WorkflowRun(id="w-1", workflow="pkg.mod:make", owner="alice", created_at=utcnow())
    st.create_workflow_run(wf)
    with pytest.raises(AlreadyExists, match="w-1"):
        st.create_workflow_run(wf)
    assert st.get_workflow_run("w-1") == wf
    assert [w.id for w in st.list_workflow_runs()] == ["w-1"]
    st.update_workflow_run("w-1", status=RunStatus.RUNNING, started_at=utcnow())
    assert st.get_workflow_run("w-1").status is RunStatus.RUNNING
    with pytest.raises(InvalidInput, match="workflow"):
        st.update_workflow_run("w-1", workflow="other:x")
    with pytest.raises(InvalidInput, match="status"):
        st.update_workflow_run("w-1", status="NOPE")
    st.put_workflow_step(WorkflowStep(run_id="w-1", step_id="s1", name="prep"))
    st.put_workflow_step(
        WorkflowStep(
            run_id="w-1", step_id="s1", name="prep", status=RunStatus.SUCCEEDED, attempts=2
        )
    )
    st.put_workflow_step(WorkflowStep(run_id="w-1", step_id="s2", name="train"))
    steps = st.list_workflow_steps("w-1")
    assert [(s.step_id, s.status, s.attempts) for s in steps] == [
        ("s1", RunStatus.SUCCEEDED, 2), ("s2", RunStatus.QUEUED, 0),
    ]  # fmt: skip
    with pytest.raises(NotFound, match="w-404"):
        st.put_workflow_step(WorkflowStep(run_id="w-404", step_id="s", name="x"))
    with pytest.raises(NotFound, match="w-404"):
        st.get_workflow_run("w-404")


# --- lineage ------------------------------------------------------------------------------------


def chain(st: MetadataStore, n: int, kind: str = "commit") -> list[str]:
    nodes = [f"{kind}:n{i}" for i in range(n)]
    st.add_edges([LineageEdge(src=a, dst=b, relation="next") for a, b in itertools.pairwise(nodes)])
    return nodes


def test_lineage_any_depth_and_depth_limit(st: MetadataStore) -> None:
    nodes = chain(st, 100)
    ups = st.upstream(nodes[-1])
    assert len(ups) == MAX_LINEAGE_DEPTH  # "any depth" is bounded by the documented maximum
    assert [n.entity for n in ups[:3]] == ["commit:n98", "commit:n97", "commit:n96"]
    assert [n.depth for n in ups[:3]] == [1, 2, 3]
    assert ups[0].via == nodes[-1] and ups[1].via == "commit:n98"
    assert len(st.upstream("commit:n40")) == 40  # the whole chain above it
    assert [n.entity for n in st.upstream(nodes[-1], depth=2)] == ["commit:n98", "commit:n97"]
    downs = st.downstream("commit:n90")
    assert [n.entity for n in downs] == [f"commit:n{i}" for i in range(91, 100)]
    assert st.downstream(nodes[-1]) == []
    with pytest.raises(InvalidInput, match="depth"):
        st.upstream(nodes[-1], depth=0)
    with pytest.raises(InvalidInput, match="depth"):
        st.upstream(nodes[-1], depth=MAX_LINEAGE_DEPTH + 1)
    with pytest.raises(InvalidInput, match="entity"):
        st.upstream("bogus:x")
    with pytest.raises(InvalidInput, match="entity"):
        st.upstream("commit:../etc")


def test_lineage_dag_shortest_depth_and_relations(st: MetadataStore) -> None:
    st.add_edges([
        LineageEdge(src="dataset:iris", dst="commit:c1", relation="commit_of"),
        LineageEdge(src="commit:c1", dst="run:r1", relation="trained_on"),
        LineageEdge(src="run:r1", dst="model_version:clf@1", relation="produced"),
        LineageEdge(src="commit:c1", dst="model_version:clf@1", relation="evaluated_on"),
        LineageEdge(src="model_version:clf@1", dst="deployment:web", relation="serves"),
    ])  # fmt: skip
    assert st.add_edges([LineageEdge(src="commit:c1", dst="run:r1", relation="trained_on")]) == 1
    ups = {n.entity: (n.depth, n.relation) for n in st.upstream("deployment:web")}
    assert ups == {
        "model_version:clf@1": (1, "serves"), "run:r1": (2, "produced"),
        "commit:c1": (2, "evaluated_on"), "dataset:iris": (3, "commit_of"),
    }  # fmt: skip
    downs = [n.entity for n in st.downstream("dataset:iris")]
    assert downs == ["commit:c1", "model_version:clf@1", "run:r1", "deployment:web"]
    edges = st.edges_of(["run:r1"])
    assert {(e.src, e.dst) for e in edges} == {
        ("commit:c1", "run:r1"),
        ("run:r1", "model_version:clf@1"),
    }
    assert st.edges_of([]) == []
    with pytest.raises(ValidationError):
        LineageEdge(src="table:x", dst="run:r1", relation="x")


def test_lineage_cycles_terminate(st: MetadataStore) -> None:
    st.add_edges([
        LineageEdge(src="run:a", dst="run:b", relation="x"),
        LineageEdge(src="run:b", dst="run:c", relation="x"),
        LineageEdge(src="run:c", dst="run:a", relation="x"),
        LineageEdge(src="run:b", dst="run:b", relation="self"),
    ])  # fmt: skip
    ups = st.upstream("run:a")
    assert [(n.entity, n.depth) for n in ups] == [("run:c", 1), ("run:b", 2)]
    downs = st.downstream("run:a")
    assert [(n.entity, n.depth) for n in downs] == [("run:b", 1), ("run:c", 2)]


# --- invalid names ------------------------------------------------------------------------------

BAD_NAMES = ["a/b", "..", "a..b", "a\x00b", "a\nb", "a\tb", "Iris", "x" * 300, "", "-lead", "ä"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_invalid_names_rejected_when_building_records(st: MetadataStore, bad: str) -> None:
    before = counts(st)
    with pytest.raises(ValidationError, match="invalid name"):
        Dataset(name=bad, created_at=utcnow(), created_by="alice")
    with pytest.raises(InvalidInput, match="name"):
        build(Dataset, name=bad, created_at=utcnow(), created_by="alice")
    with pytest.raises(InvalidInput, match="name"):
        build(User, name=bad, role=Role.VIEWER, created_at=utcnow())
    with pytest.raises(InvalidInput, match="name"):
        build(Model, name=bad, owner="alice", created_at=utcnow())
    with pytest.raises(InvalidInput, match="alias"):
        st.set_alias("m", bad, 1, by="a")
    assert counts(st) == before


def test_invalid_input_message_is_clear_and_short() -> None:
    with pytest.raises(InvalidInput) as info:
        build(Dataset, name="x" * 300, created_at=utcnow(), created_by="alice")
    message = str(info.value)
    assert "name" in message and "lowercase" in message and len(message) < 400


def test_valid_names_accepted(st: MetadataStore) -> None:
    for good in ["a", "iris-v2", "my_data.set", "0abc", "x" * 63]:
        st.create_dataset(dataset(good))
    assert len(st.list_datasets()) == 5


# --- artifacts, export --------------------------------------------------------------------------


def test_artifact_records_and_references(st: MetadataStore) -> None:
    rec = ArtifactRecord(sha256="aa" * 32, size_bytes=5, purpose="checkpoint", created_at=utcnow())
    st.record_artifact(rec)
    st.record_artifact(rec.model_copy(update={"purpose": "temporary"}))  # first record kept
    st.record_artifact(ArtifactRecord(sha256="bb" * 32, size_bytes=1, purpose="temporary",
                                      created_at=utcnow()))  # fmt: skip
    st.create_dataset(dataset())
    c = commit("c-1")
    st.add_commit(c, expected_head=None)
    st.add_model_version(version())
    refs = st.referenced_artifacts()
    assert refs == {"aa" * 32, "ab" * 32, *(p.sha256 for p in c.parts)}


def test_export_parquet_writes_every_table_without_token_hashes(
    st: MetadataStore, tmp_path: Path
) -> None:
    st.create_user(User(name="alice", role=Role.ADMIN, created_at=utcnow()))
    st.add_token("t-1", "alice", "secret-hash", "dlp_abc")
    st.create_dataset(dataset())
    st.add_commit(commit("c-1"), expected_head=None)
    st.create_run(run())
    st.log_metric_batch(["r-1"] * 3, ["loss"] * 3, [1.0, 2.0, 3.0], [0, 1, 2])
    out = tmp_path / "export"
    written = st.export_parquet(out)
    assert sorted(p.name for p in written) == sorted(f"{t}.parquet" for t in EXPORTED_TABLES)
    assert {p.name for p in out.iterdir()} == {f"{t}.parquet" for t in EXPORTED_TABLES}
    tables = {t: pq.read_table(out / f"{t}.parquet") for t in EXPORTED_TABLES}
    assert tables["metrics"].num_rows == 3
    assert tables["commit_parts"].num_rows == 2
    assert tables["users"].column("name").to_pylist() == ["alice"]
    tokens = tables["tokens"]
    assert tokens.num_rows == 1 and "token_hash" not in tokens.column_names
    assert "prefix" in tokens.column_names
    assert b"secret-hash" not in (out / "tokens.parquet").read_bytes()
    # every table of the schema is exported
    names = {r["table_name"] for r in st._db.dicts(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")}  # fmt: skip
    assert names - {"schema_version"} == set(EXPORTED_TABLES)


def test_lineage_wide_fan_out_and_bulk_edges(st: MetadataStore) -> None:
    # 3,000 children (more than one IN-lookup chunk) each with a grandchild; added twice (idempotent)
    edges = [LineageEdge(src="dataset:big", dst=f"commit:c{i}", relation="commit_of")
             for i in range(3000)]  # fmt: skip
    edges += [LineageEdge(src=f"commit:c{i}", dst=f"run:r{i}", relation="trained_on")
              for i in range(3000)]  # fmt: skip
    st.add_edges(edges)
    st.add_edges(edges + edges[:5])
    row = st._db.one("SELECT count(*) FROM lineage_edges")
    assert row == (6000,)
    downs = st.downstream("dataset:big")
    assert len(downs) == 6000
    assert {n.depth for n in downs[:3000]} == {1} and {n.depth for n in downs[3000:]} == {2}
    assert len(st.downstream("dataset:big", depth=1)) == 3000
    assert [n.entity for n in st.upstream("run:r2999")] == ["commit:c2999", "dataset:big"]
