"""Datasets and their commits: create, push, rollback, resolve, delete, gc.

Every function takes the ``Backend`` and the calling ``Principal``, checks permissions (with the
dataset's groups) and audits what it did.

Commits: APPEND = parent's parts + new parts; OVERWRITE = new parts only. The version hash is
``sha256("dlp-commit-v1\\n" + "\\n".join(part sha256s, in order))``: it depends on the ordered parts
only, so the same data pushed the same way (same source, same mode, same parent content) gives the
same hash, and a rollback has the hash of the commit it restores. Parts are written before the
metadata transaction; a crash in between leaves unreferenced objects that ``gc`` removes.

Concurrent pushes: ``add_commit`` is atomic and checks the expected head. When the head moved,
APPEND rebases on the new head (if the schemas still match) and retries; OVERWRITE with an
explicit ``parent`` that is no longer the head fails with ``Conflict``.

Idempotent pushes: a push with an ``idempotency_key`` records (author, dataset, key) → commit in
the transaction that adds the commit. A push whose key is recorded already writes nothing and
returns that commit; two concurrent pushes with one key both write parts, but only the first
commits and the second returns the first's commit (its parts are left to ``gc``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import BaseModel

from dlplatform.access import Permission, Principal, audit, authorize, is_member
from dlplatform.data import _io
from dlplatform.data._read import sample, to_arrow, to_ray
from dlplatform.data._schema import conform, reconcile, schema_from_json, schema_to_json
from dlplatform.data._stats import CommitStats, compute_stats
from dlplatform.errors import AlreadyExists, Conflict, InvalidInput, NotFound, SchemaMismatch
from dlplatform.metadata import Commit, CommitMode, CommitPart, Dataset, DatasetType, LineageEdge
from dlplatform.metadata.artifacts import ArtifactRef
from dlplatform.metadata.records import build, check_id, check_idempotency_key, check_name, utcnow

if TYPE_CHECKING:
    from dlplatform.context import Backend

log = logging.getLogger("dlplatform.data")
MAX_REBASES = 20
STATS_INLINE_MAX_BYTES = 32 * 1024 * 1024
MAX_SAMPLE_ROWS = 10_000
Progress = Callable[[int, int], None]


# --- names and refs ------------------------------------------------------------------------------


def _name(value: str) -> str:
    try:
        return check_name(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _commit_id(value: str) -> str:
    try:
        return check_id(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid commit id: {exc}") from None


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``"name"`` or ``"name@commit"`` → (name, commit id or None).

    Raises:
        InvalidInput: a malformed name or commit id.
    """
    if not isinstance(ref, str):
        raise InvalidInput(f"dataset reference must be a string, got {type(ref).__name__}")
    name, sep, commit = ref.partition("@")
    return _name(name), (_commit_id(commit) if sep else None)


def _target(name: str) -> str:
    return f"dataset:{name}"


def _dataset(backend: Backend, principal: Principal, name: str, permission: Permission) -> Dataset:
    """The dataset, if the caller has ``permission`` on it. One restricted to groups the caller
    is in none of is answered exactly as a missing one (``authorize``)."""
    ds = backend.store.get_dataset(_name(name))
    authorize(backend.store, principal, permission, _target(ds.name), groups=ds.groups)
    return ds


def _shown(principal: Principal, commit: Commit) -> Commit:
    """``commit`` as a caller who may only view its dataset sees it: its statistics without data
    values (min, max, mean, most frequent strings) unless the caller may read the data."""
    if commit.stats_json is None or principal.can(Permission.DATASET_READ):
        return commit
    try:
        stats = CommitStats.model_validate_json(commit.stats_json)
    except ValueError:  # not ours: show nothing rather than values
        return commit.model_copy(update={"stats_json": None})
    return commit.model_copy(update={"stats_json": stats.without_values().model_dump_json()})


def _commit_of(backend: Backend, ds: Dataset, commit_id: str | None) -> Commit:
    if commit_id is None:
        if ds.head is None:
            raise NotFound(f"dataset {ds.name!r} has no commits yet")
        return backend.store.get_commit(ds.head)
    missing = NotFound(f"commit {commit_id!r} does not exist in dataset {ds.name!r}")
    try:
        commit = backend.store.get_commit(_commit_id(commit_id))
    except NotFound:
        raise missing from None  # the same answer as for another dataset's commit
    if commit.dataset != ds.name:
        raise missing
    return commit


# --- datasets ------------------------------------------------------------------------------------


def parse_schema(spec: Any) -> pa.Schema:
    """A schema from a ``pa.Schema``, a stored schema JSON string, or ``[{"name", "type",
    "nullable"?}]`` / ``{"fields": [...]}`` with Arrow type names (``int64``, ``float32``,
    ``string``, ``timestamp[us]``, ...).

    Raises:
        InvalidInput: an unknown type name or a malformed spec.
    """
    if isinstance(spec, pa.Schema):
        return spec
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise InvalidInput(f"schema is not JSON: {exc}") from None
    if isinstance(spec, dict) and "ipc" in spec:
        return schema_from_json(json.dumps(spec))
    fields = spec.get("fields") if isinstance(spec, dict) else spec
    if not isinstance(fields, list) or not fields:
        raise InvalidInput('schema must be a non-empty list of {"name": ..., "type": ...}')
    out = []
    for f in fields:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            raise InvalidInput(f"schema field {str(f)[:80]} needs a name and a type")
        try:
            typ = pa.type_for_alias(str(f.get("type")))
        except (ValueError, KeyError):
            raise InvalidInput(
                f"schema field {f['name']!r} has unknown type {f.get('type')!r}"
            ) from None
        out.append(pa.field(f["name"], typ, nullable=bool(f.get("nullable", True))))
    if len({f.name for f in out}) != len(out):
        raise InvalidInput("schema has duplicate column names")
    return pa.schema(out)


def create_dataset(
    backend: Backend,
    principal: Principal,
    name: str,
    *,
    description: str = "",
    type: DatasetType | str = DatasetType.TABULAR,
    tags: Sequence[str] = (),
    groups: Sequence[str] = (),
    schema: Any = None,
) -> Dataset:
    """Create an empty dataset; ``schema`` (optional) fixes its columns before the first push.

    Raises:
        InvalidInput: a bad name, type, group or schema.
        AlreadyExists: the name is taken (also by a deleted dataset).
        PermissionDenied: the caller lacks ``dataset.write``.
    """
    name = _name(name)
    authorize(backend.store, principal, Permission.DATASET_WRITE, _target(name))
    for g in groups:
        _name(g)
    arrow = schema_to_json(parse_schema(schema)) if schema is not None else None
    ds = build(
        Dataset,
        name=name,
        description=description,
        type=type,
        tags=tuple(tags),
        groups=tuple(groups),
        arrow_schema=arrow,
        created_at=utcnow(),
        created_by=principal.name,
    )
    ds = backend.store.create_dataset(ds)
    audit(backend.store, principal, "dataset.create", _target(name), f"groups={','.join(groups)}")
    return ds


def list_datasets(backend: Backend, principal: Principal) -> list[Dataset]:
    """The datasets the caller may see (restricted ones only for their groups)."""
    authorize(backend.store, principal, Permission.DATASET_VIEW, "datasets")
    return [ds for ds in backend.store.list_datasets() if is_member(principal, ds.groups)]


def get_dataset(backend: Backend, principal: Principal, name: str) -> Dataset:
    """One dataset's metadata (``dataset.view``; restricted datasets only for their groups)."""
    return _dataset(backend, principal, name, Permission.DATASET_VIEW)


def list_commits(
    backend: Backend, principal: Principal, name: str, *, limit: int = 1000, offset: int = 0
) -> list[Commit]:
    """The dataset's commits, newest first (without parts); one page of ``limit``."""
    if limit < 1 or offset < 0:
        raise InvalidInput(f"limit must be positive and offset not negative, got {limit}, {offset}")
    ds = _dataset(backend, principal, name, Permission.DATASET_VIEW)
    page = backend.store.list_commits(ds.name, limit=limit, offset=offset)
    return [_shown(principal, c) for c in page]


def list_commits_page(
    backend: Backend, principal: Principal, name: str, *, limit: int = 1000, offset: int = 0
) -> tuple[list[Commit], int]:
    """``list_commits`` and ``count_commits`` at once: one permission check, one store call."""
    if limit < 1 or offset < 0:
        raise InvalidInput(f"limit must be positive and offset not negative, got {limit}, {offset}")
    ds = _dataset(backend, principal, name, Permission.DATASET_VIEW)
    page, total = backend.store.list_commits_page(ds.name, limit=limit, offset=offset)
    return [_shown(principal, c) for c in page], int(total)


def count_commits(backend: Backend, principal: Principal, name: str) -> int:
    """How many commits the dataset has (what ``list_commits`` pages through)."""
    ds = _dataset(backend, principal, name, Permission.DATASET_VIEW)
    return backend.store.count_commits(ds.name)


def get_commit(
    backend: Backend, principal: Principal, name: str, commit_id: str | None = None
) -> Commit:
    """One commit's metadata with its parts (the head when ``commit_id`` is None); its
    statistics carry data values only for callers with ``dataset.read``."""
    ds = _dataset(backend, principal, name, Permission.DATASET_VIEW)
    return _shown(principal, _commit_of(backend, ds, commit_id))


def resolve(backend: Backend, principal: Principal, ref: str) -> Commit:
    """The commit ``ref`` names (``"name"`` = head, or ``"name@<commit id>"``), for reading rows.

    Checks ``dataset.read`` (with the dataset's groups) and audits the read.

    Raises:
        InvalidInput: a malformed reference.
        NotFound: no such dataset or commit, or the dataset has no commits.
        PermissionDenied: the caller may not read the dataset.
    """
    name, commit_id = parse_ref(ref)
    ds = _dataset(backend, principal, name, Permission.DATASET_READ)
    commit = _commit_of(backend, ds, commit_id)
    audit(backend.store, principal, "dataset.read", _target(name), f"commit={commit.id}")
    return commit


def check_writable(backend: Backend, principal: Principal, name: str) -> Dataset:
    """The dataset, if the caller may push to it (checked before an upload is read).

    Raises:
        NotFound, PermissionDenied, InvalidInput: as ``push`` would.
    """
    return _dataset(backend, principal, name, Permission.DATASET_WRITE)


def find_pushed_commit(
    backend: Backend, principal: Principal, name: str, idempotency_key: str | None
) -> Commit | None:
    """The commit an earlier push by the caller with ``idempotency_key`` made, else None.

    Checks ``dataset.write`` first, like ``check_writable``: the gateway calls it before it reads
    an upload, so a retried upload is answered without being read. A found commit is audited as
    a replayed ``dataset.write``.

    Raises:
        InvalidInput: a malformed key.
        NotFound, PermissionDenied: as ``push`` would.
    """
    key = check_idempotency_key(idempotency_key) if idempotency_key is not None else None
    ds = _dataset(backend, principal, name, Permission.DATASET_WRITE)
    return _replayed(backend, principal, ds.name, key) if key is not None else None


def _replayed(backend: Backend, principal: Principal, name: str, key: str) -> Commit | None:
    try:
        commit = backend.store.get_commit_by_push_key(principal.name, name, key)
    except NotFound:
        return None
    audit(
        backend.store,
        principal,
        "dataset.write",
        _target(name),
        f"commit={commit.id} replayed idempotency_key={key}",
    )
    return commit


def delete_dataset(backend: Backend, principal: Principal, name: str) -> Dataset:
    """Soft delete: hidden from listings; its commits stay for lineage until ``gc``."""
    ds = _dataset(backend, principal, name, Permission.DATASET_WRITE)
    out = backend.store.delete_dataset(ds.name)
    audit(backend.store, principal, "dataset.delete", _target(ds.name))
    return out


# --- commits -------------------------------------------------------------------------------------


def version_hash(parts: Sequence[CommitPart]) -> str:
    """The version hash of an ordered list of parts (see the module docstring)."""
    text = "dlp-commit-v1\n" + "\n".join(p.sha256 for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()


def _new_commit(
    ds_name: str,
    parent: Commit | None,
    mode: CommitMode,
    parts: Sequence[CommitPart],
    schema_json: str,
    *,
    message: str,
    author: str,
    notes: str,
) -> Commit:
    return build(
        Commit,
        id=uuid.uuid4().hex[:16],
        dataset=ds_name,
        parent=parent.id if parent else None,
        mode=mode,
        message=message,
        author=author,
        created_at=utcnow(),
        row_count=sum(p.row_count for p in parts),
        size_bytes=sum(p.size_bytes for p in parts),
        version_hash=version_hash(parts),
        arrow_schema=schema_json,
        notes=notes,
        parts=tuple(parts),
    )


def _edges(commit: Commit, extra: Sequence[tuple[str, str]] = ()) -> list[LineageEdge]:
    dst = f"commit:{commit.id}"
    edges = [LineageEdge(src=f"dataset:{commit.dataset}", dst=dst, relation="version")]
    if commit.parent:
        edges.append(LineageEdge(src=f"commit:{commit.parent}", dst=dst, relation="parent"))
    edges += [LineageEdge(src=src, dst=dst, relation=rel) for src, rel in extra]
    return edges


def _mode(mode: CommitMode | str) -> CommitMode:
    try:
        return CommitMode(mode)
    except ValueError:
        raise InvalidInput(f"mode must be append or overwrite, got {str(mode)[:20]!r}") from None


def push(
    backend: Backend,
    principal: Principal,
    name: str,
    data: Any,
    *,
    mode: CommitMode | str = CommitMode.APPEND,
    message: str = "",
    parent: str | None = None,
    format: str | None = None,
    progress: Progress | None = None,
    compute_stats: bool | None = None,
    idempotency_key: str | None = None,
    _lineage: Sequence[tuple[str, str]] = (),
    _notes: Sequence[str] = (),
) -> Commit:
    """Commit ``data`` (pa.Table, pandas DataFrame, ray Dataset, or a file path) to ``name``.

    Args:
        mode: ``append`` (parent's parts + new parts) or ``overwrite`` (new parts only).
        parent: The commit this push builds on (default: the head). APPEND rebases when the head
            moved; OVERWRITE with a stale explicit parent raises Conflict.
        format: A file's format (parquet, csv, jsonl, arrow) when its name does not say.
        progress: Called with (bytes done, bytes total) as parts are written.
        compute_stats: Compute and store the new commit's column statistics now. ``None``
            (default): now when the commit holds at most ``STATS_INLINE_MAX_BYTES`` of Parquet,
            else on the first ``describe`` (stored then), so large pushes run at write speed.
        idempotency_key: 1-128 characters of ``A-Z a-z 0-9 _ . : -`` naming this push. When
            the caller already pushed to ``name`` with this key, nothing is read or written
            and the commit that push made is returned (see the module docstring).

    Raises:
        InvalidInput: unreadable, empty or unsupported data; a bad mode, parent or key.
        SchemaMismatch: the data's columns or types do not fit the dataset.
        Conflict: OVERWRITE on a stale explicit parent, or the head kept moving.
        PermissionDenied: the caller lacks ``dataset.write``.
    """
    store = backend.store
    mode = _mode(mode)
    key = check_idempotency_key(idempotency_key) if idempotency_key is not None else None
    ds = _dataset(backend, principal, name, Permission.DATASET_WRITE)
    if key is not None and (done := _replayed(backend, principal, ds.name, key)) is not None:
        return done
    if parent is not None:
        base = _commit_of(backend, ds, parent)
        if mode is CommitMode.OVERWRITE and base.id != ds.head:
            raise Conflict(
                f"parent {base.id} is not the head of dataset {ds.name!r} (head is {ds.head}); "
                "pull the new head and push again"
            )
    expected = schema_from_json(ds.arrow_schema) if ds.arrow_schema else None
    sources = list(data) if isinstance(data, list | tuple) else [data]
    if not sources:
        raise InvalidInput("nothing to push")
    ingests = [
        _io.from_file(Path(src), format, expected)
        if isinstance(src, str | Path)
        else _io.from_object(src, expected)
        for src in sources
    ]
    overwrite = mode is CommitMode.OVERWRITE
    part_schema, ds_schema, notes = reconcile(expected, ingests[0].schema, overwrite=overwrite)
    for other in ingests[1:]:
        fitted, _, more = reconcile(part_schema, other.schema, overwrite=False)
        if fitted != part_schema:
            raise SchemaMismatch(f"{other.label} does not match the schema of {ingests[0].label}")
        notes += more

    def batches() -> Any:
        for ingest in ingests:
            for batch in ingest.batches:
                yield from conform(pa.Table.from_batches([batch]), part_schema).to_batches()

    total_bytes = sum(i.total_bytes for i in ingests)
    tables = _io.chunk_tables(batches(), lambda t: t)
    new_parts = _io.write_parts(
        backend.artifacts, tables, total_bytes=total_bytes, progress=progress
    )
    if progress is not None:
        progress(max(total_bytes, 1), max(total_bytes, 1))
    if not new_parts:
        raise InvalidInput(f"{', '.join(i.label for i in ingests)}: no rows to push")
    notes = [*notes, *_notes]
    for _ in range(MAX_REBASES):
        head = store.get_commit(ds.head) if ds.head else None
        commit_schema = ds_schema
        if head is not None and not overwrite:
            # Appending to the (possibly new) head: its schema must take these parts as they are.
            head_schema = schema_from_json(head.arrow_schema)
            # Narrower parts are fine: readers cast every part to the commit's schema.
            _, commit_schema, _ = reconcile(head_schema, part_schema, overwrite=False)
        parts = [*(head.parts if head is not None and not overwrite else ()), *new_parts]
        commit = _new_commit(
            ds.name,
            head,
            mode,
            parts,
            schema_to_json(commit_schema),
            message=message,
            author=principal.name,
            notes="; ".join(dict.fromkeys(notes)),
        )
        try:
            store.add_commit(
                commit,
                expected_head=ds.head,
                edges=_edges(commit, _lineage),
                dataset_arrow_schema=commit.arrow_schema,
                idempotency_key=key,
            )
            break
        except AlreadyExists:
            # A concurrent push with the same key committed first: answer with its commit.
            if key is None or (done := _replayed(backend, principal, ds.name, key)) is None:
                raise
            return done
        except Conflict:
            if overwrite and parent is not None:
                raise
            ds = store.get_dataset(ds.name)
    else:
        raise Conflict(f"dataset {ds.name!r} head kept moving; push again")
    audit(
        store,
        principal,
        "dataset.write",
        _target(ds.name),
        f"commit={commit.id} mode={mode.value} rows={commit.row_count}",
    )
    if compute_stats is None:
        compute_stats = commit.size_bytes <= STATS_INLINE_MAX_BYTES
    if compute_stats:
        try:
            commit = _store_stats(backend, commit)
        except Exception:  # the commit stands; describe() computes the stats later
            log.warning("statistics of commit %s failed", commit.id, exc_info=True)
    return commit


def rollback(
    backend: Backend, principal: Principal, name: str, commit_id: str, *, message: str = ""
) -> Commit:
    """A new head commit whose content (parts, schema, version hash) equals ``commit_id``'s.

    Raises:
        NotFound: no such dataset or commit.
        InvalidInput: the commit belongs to another dataset.
    """
    store = backend.store
    ds = _dataset(backend, principal, name, Permission.DATASET_WRITE)
    target = store.get_commit(_commit_id(commit_id))
    if target.dataset != ds.name:
        try:
            other = store.get_dataset(target.dataset, include_deleted=True)
        except NotFound:
            other = None
        if other is None or not is_member(principal, other.groups):  # never name a hidden one
            raise NotFound(f"commit {target.id!r} does not exist")
        raise InvalidInput(
            f"commit {target.id} belongs to dataset {target.dataset!r}, not {ds.name!r}; "
            "roll back only to a commit of the same dataset"
        )
    for _ in range(MAX_REBASES):
        head = store.get_commit(ds.head) if ds.head else None
        commit = _new_commit(
            ds.name,
            head,
            CommitMode.OVERWRITE,
            target.parts,
            target.arrow_schema,
            message=message or f"rollback to {target.id}",
            author=principal.name,
            notes=f"rollback to {target.id}",
        )
        commit = commit.model_copy(update={"stats_json": target.stats_json})
        try:
            store.add_commit(
                commit,
                expected_head=ds.head,
                edges=_edges(commit, [(f"commit:{target.id}", "rollback")]),
                dataset_arrow_schema=commit.arrow_schema,
            )
            break
        except Conflict:
            ds = store.get_dataset(ds.name)
    else:
        raise Conflict(f"dataset {ds.name!r} head kept moving; roll back again")
    audit(
        store, principal, "dataset.rollback", _target(ds.name), f"commit={commit.id} to={target.id}"
    )
    return commit


def _store_stats(backend: Backend, commit: Commit) -> Commit:
    stats = compute_stats(to_arrow(backend, commit, verify=False))
    text = stats.model_dump_json()
    backend.store.set_commit_stats(commit.id, text)
    return commit.model_copy(update={"stats_json": text})


# --- reads through the service layer (authorized and audited) ------------------------------------


def describe(backend: Backend, principal: Principal, ref: str) -> CommitStats:
    """Per-column statistics of a commit (``dataset.view``); computed and stored on first use.

    Min, max, mean and the most frequent strings are data: only callers with ``dataset.read``
    get them; others get names, types and counts (``values_hidden``).
    """
    name, commit_id = parse_ref(ref)
    ds = _dataset(backend, principal, name, Permission.DATASET_VIEW)
    commit = _commit_of(backend, ds, commit_id)
    if commit.stats_json is None:
        commit = _store_stats(backend, commit)
    assert commit.stats_json is not None
    stats = CommitStats.model_validate_json(commit.stats_json)
    return stats if principal.can(Permission.DATASET_READ) else stats.without_values()


def read_sample(
    backend: Backend, principal: Principal, ref: str, n: int = 10, *, seed: int = 0
) -> pa.Table:
    """``n`` rows of a commit drawn uniformly by ``seed`` (``dataset.read``, audited)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InvalidInput(f"seed must be an integer from 0 to 2**63-1, got {str(seed)[:30]}")
    if not 1 <= n <= MAX_SAMPLE_ROWS:
        raise InvalidInput(f"n must be between 1 and {MAX_SAMPLE_ROWS}, got {n}")
    return sample(backend, resolve(backend, principal, ref), n, seed=seed)


def export(
    backend: Backend,
    principal: Principal,
    ref: str,
    directory: str | Path,
    *,
    progress: Progress | None = None,
) -> list[Path]:
    """Copy a commit's parts (verified) to ``directory`` as ``part-00000.parquet``, ...

    Needs ``dataset.export``; audited. The directory must be empty or missing.

    Raises:
        AlreadyExists: ``directory`` holds files.
    """
    name, commit_id = parse_ref(ref)
    ds = _dataset(backend, principal, name, Permission.DATASET_EXPORT)
    commit = _commit_of(backend, ds, commit_id)
    out = Path(directory)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AlreadyExists(f"{out} exists and is not an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    total = commit.size_bytes
    done = 0
    files = []
    for i, part in enumerate(commit.parts):
        ref_ = ArtifactRef(sha256=part.sha256, size_bytes=part.size_bytes)
        files.append(backend.artifacts.get_file(ref_, out / f"part-{i:05d}.parquet"))
        done += part.size_bytes
        if progress is not None:
            progress(done, total)
    audit(backend.store, principal, "dataset.export", _target(ds.name), f"commit={commit.id}")
    return files


# --- garbage collection --------------------------------------------------------------------------


class DatasetGcReport(BaseModel, frozen=True, extra="forbid"):
    """What ``gc`` did: datasets purged, objects deleted and bytes freed."""

    purged_datasets: list[str]
    kept_datasets: list[str]
    deleted: int
    freed_bytes: int
    kept: int


def _referenced_from_outside(backend: Backend, name: str) -> bool:
    commits = backend.store.list_commits(name, limit=1_000_000)
    own = {f"commit:{c.id}" for c in commits}
    for c in commits:
        for node in backend.store.downstream(f"commit:{c.id}", 1):
            if node.entity not in own:
                return True
    return False


def gc(backend: Backend, principal: Principal, *, min_age_s: float = 3600) -> DatasetGcReport:
    """Purge deleted datasets nothing in lineage points at, then delete unreferenced objects
    (and staging files) older than ``min_age_s`` from the artifact store."""
    store = backend.store
    authorize(store, principal, Permission.DATASET_WRITE, "datasets")
    purged, kept = [], []
    for ds in store.list_datasets(include_deleted=True):
        if ds.deleted_at is None:
            continue
        if _referenced_from_outside(backend, ds.name):
            kept.append(ds.name)
        else:
            store.purge_dataset(ds.name)
            purged.append(ds.name)
    report = backend.artifacts.gc(store.referenced_artifacts(), min_age_s=min_age_s)
    audit(
        store,
        principal,
        "dataset.gc",
        "datasets",
        f"purged={','.join(purged)} deleted={report.deleted} freed={report.freed_bytes}",
    )
    return DatasetGcReport(
        purged_datasets=purged,
        kept_datasets=kept,
        deleted=report.deleted,
        freed_bytes=report.freed_bytes,
        kept=report.kept,
    )


# --- transforms ----------------------------------------------------------------------------------


def code_identity(fn: Callable[..., Any]) -> str:
    """``module:qualname sha256=<hash of its source>`` (``source=unavailable`` without source)."""
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn)
    module = getattr(target, "__module__", "?")
    qualname = getattr(target, "__qualname__", type(fn).__name__)
    try:
        source = inspect.getsource(target)
        digest = f"sha256={hashlib.sha256(source.encode()).hexdigest()}"
    except (OSError, TypeError):
        digest = "source=unavailable"
    return f"{module}:{qualname} {digest}"


def transform(
    backend: Backend,
    principal: Principal,
    source_ref: str,
    fn: Callable[[Any], Any],
    output: str,
    *,
    batch_format: str = "pyarrow",
    batch_size: int | None = None,
    mode: CommitMode | str = CommitMode.OVERWRITE,
    message: str = "",
    create: bool = True,
    progress: Progress | None = None,
) -> Commit:
    """Run ``fn`` over a version with Ray Data ``map_batches`` and commit the result to ``output``.

    The output commit gets a lineage edge ``commit:<source>`` → ``commit:<output>`` (relation
    ``transform``) and the function's code identity in its notes and message.

    Raises:
        NotFound: no such source; ``output`` does not exist and ``create`` is False.
        PermissionDenied: the caller may not read the source or write the output.
    """
    source = resolve(backend, principal, source_ref)
    out_name = _name(output)
    try:
        backend.store.get_dataset(out_name)
    except NotFound:
        if not create:
            raise
        src_ds = backend.store.get_dataset(source.dataset)
        create_dataset(
            backend,
            principal,
            out_name,
            description=f"derived from {source.dataset}@{source.id}",
            type=src_ds.type,
            groups=src_ds.groups,
        )
    identity = code_identity(fn)
    ds = to_ray(backend, source).map_batches(fn, batch_format=batch_format, batch_size=batch_size)
    return push(
        backend,
        principal,
        out_name,
        ds,
        mode=mode,
        message=message or f"transform {source.dataset}@{source.id} with {identity.split()[0]}",
        progress=progress,
        _lineage=[(f"commit:{source.id}", "transform")],
        _notes=[f"transform of commit {source.id} by {identity}"],
    )
