"""``p.datasets`` over HTTP: create, push (streamed, idempotent), history, rollback, and reads.

```python
ds = p.datasets.create("digits", description="8x8 handwritten digits")
c = ds.push(table_or_dataframe_or_path, message="first batch")   # one commit, retried safely
v = ds.get(c.id)                  # a pinned version
v.to_arrow(); v.to_pandas(); v.iter_batches()   # streamed from the gateway, hash-checked
v.to_ray()                        # on the cluster only: Ray Data reads the parts directly
```
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dlplatform.client._http import HttpClient
from dlplatform.errors import BackendUnavailable, IntegrityError, InvalidInput
from dlplatform.metadata import Commit, CommitMode, Dataset, DatasetType

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    import httpx
    import pandas as pd
    import pyarrow as pa
    import ray.data

    from dlplatform.data import CommitStats, DatasetGcReport

CHUNK_BYTES = 1 << 20
HASH_SLICE_BYTES = 4 << 20
"""A downloaded part is hashed in slices of this size while the rest of it arrives."""
Progress = Callable[[int, int], None]
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
             ".ndjson": "jsonl", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}  # fmt: skip


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _file_chunks(path: Path, progress: Progress | None, total: int) -> Iterator[bytes]:
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            done += len(chunk)
            if progress is not None:
                progress(done, total)
            yield chunk


def _bytes_chunks(data: bytes, progress: Progress | None) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK_BYTES):
        chunk = data[start : start + CHUNK_BYTES]
        if progress is not None:
            progress(start + len(chunk), len(data))
        yield chunk


def _read_file(path: Path, fmt: str | None) -> pa.Table:
    # heavy: pyarrow (0.2 s), loaded by the calls that read or write tables
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet as pq

    kind = fmt or _SUFFIXES.get(path.suffix.lower())
    if kind == "parquet":
        return pq.read_table(path)
    if kind == "csv":
        return pyarrow.csv.read_csv(path)
    if kind == "jsonl":
        return pyarrow.json.read_json(path)
    if kind == "arrow":
        with pa.memory_map(str(path)) as src:
            try:
                return pa.ipc.open_file(src).read_all()
            except pa.ArrowInvalid:
                src.seek(0)
                return pa.ipc.open_stream(src).read_all()
    raise InvalidInput(f"{path}: unknown format; pass format= (parquet, csv, jsonl or arrow)")


def _as_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq  # heavy: pyarrow

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _to_table(data: Any) -> pa.Table:
    import pyarrow as pa  # heavy: pyarrow

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise InvalidInput(
        f"cannot push {type(data).__name__}: pass a file path, a list of paths, a pyarrow Table "
        "or a pandas DataFrame (a Ray Dataset: write it to Parquet or push from the cluster)"
    )


class _IpcReader(io.RawIOBase):
    """A file over a streamed HTTP body, for ``pyarrow.ipc.open_stream``.

    ``read(n)`` returns ``n`` bytes unless the body ends first: pyarrow reads a message body in
    one call and takes a short answer for a cut-off stream, so a record batch larger than one
    network chunk must be gathered across chunks (a raw file's one-chunk short read is not enough).
    """

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_bytes()  # as they arrive: read() gathers, no re-chunking
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Make the buffer non-empty; False at the end of the body."""
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._buffer = memoryview(chunk)
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            rest = [self._buffer, *self._chunks]
            self._buffer = memoryview(b"")
            return b"".join(rest)
        parts: list[memoryview] = []
        need = size
        while need > 0 and self._fill():
            n = min(need, len(self._buffer))
            parts.append(self._buffer[:n])
            self._buffer = self._buffer[n:]
            need -= n
        return b"".join(parts)

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


class VersionHandle:
    """One commit of a dataset, read from the gateway (each read is checked and audited there)."""

    def __init__(self, http: HttpClient, commit: Commit) -> None:
        self._http = http
        self.commit = commit

    @property
    def id(self) -> str:
        return self.commit.id

    @property
    def ref(self) -> str:
        """``"name@commit"``: what training pins."""
        return f"{self.commit.dataset}@{self.commit.id}"

    @property
    def entity_ref(self) -> str:
        return f"commit:{self.commit.id}"

    def _path(self, tail: str) -> str:
        return f"datasets/{_seg(self.commit.dataset)}/commits/{_seg(self.commit.id)}/{tail}"

    def iter_batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The version's rows as Arrow record batches, streamed (Arrow IPC over HTTP).

        Raises:
            IntegrityError: the download was cut off or its row count is not the commit's; a
                partial download is never passed off as complete.
        """
        yield from self._batches(columns, None)

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The whole version as one Arrow table (complete, or an ``IntegrityError``).

        All columns come as the version's Parquet parts, byte for byte, which this process
        verifies against their sha256 and decodes, each part while the next one arrives; a subset
        of columns comes as an Arrow IPC stream, projected by the gateway.
        """
        if columns is None:
            return self._from_parts()
        import pyarrow as pa  # heavy: pyarrow

        schema: list[pa.Schema] = []
        batches = list(self._batches(columns, schema.append))
        return pa.Table.from_batches(batches, schema=schema[0])

    def _from_parts(self) -> pa.Table:
        from dlplatform.data import part_table  # heavy: pyarrow

        with (
            ThreadPoolExecutor(1, thread_name_prefix="dlp-parts") as decoder,
            ThreadPoolExecutor(1, thread_name_prefix="dlp-hash") as hasher,
            self._http.stream("GET", self._path("parquet")) as resp,
        ):
            # Each part is hashed while it arrives and decoded while the next one does.
            tables = [
                decoder.submit(part_table, self.commit, i, buf, digest)
                for i, (buf, digest) in enumerate(self._part_buffers(resp, hasher))
            ]
            return _concat([t.result() for t in tables], self.commit)

    def _part_buffers(
        self, resp: httpx.Response, hasher: Executor
    ) -> Iterator[tuple[pa.Buffer, Future[str]]]:
        """The response's bytes cut into the commit's parts (by their sizes), each with its
        sha256, computed on ``hasher`` a slice at a time as the bytes arrive. The parts' buffers
        come from Arrow's memory pool (reused from one download to the next, not zero-filled).

        Raises:
            IntegrityError: the body ended before the last part, or ran past it.
        """
        import pyarrow as pa  # heavy: pyarrow

        total = sum(p.size_bytes for p in self.commit.parts)
        coded = resp.headers.get("content-encoding", "identity") != "identity"
        chunks = resp.iter_bytes() if coded else resp.iter_raw()  # raw: as they arrive
        pending = memoryview(b"")
        received = 0
        try:
            for part in self.commit.parts:
                buf = pa.allocate_buffer(part.size_bytes)
                view, filled, hashed = memoryview(buf).cast("B"), 0, 0
                sha = hashlib.sha256()
                while filled < part.size_bytes:
                    if not pending:
                        chunk = next(chunks, None)
                        if chunk is None:
                            raise IntegrityError("the body ended early")
                        pending = memoryview(chunk)
                    n = min(part.size_bytes - filled, len(pending))
                    view[filled : filled + n] = pending[:n]
                    pending, filled, received = pending[n:], filled + n, received + n
                    if filled - hashed >= HASH_SLICE_BYTES or filled == part.size_bytes:
                        hasher.submit(sha.update, view[hashed:filled])
                        hashed = filled
                yield buf, hasher.submit(sha.hexdigest)
            extra = len(pending) + sum(len(c) for c in chunks)
        except Exception as exc:
            raise IntegrityError(
                f"download of {self.ref} was cut off after {received} of {total} bytes "
                f"({_first_line(exc)})"
            ) from None
        if extra:
            raise IntegrityError(f"download of {self.ref} ran {extra} bytes past its parts")

    def _batches(
        self, columns: list[str] | None, on_schema: Callable[[pa.Schema], None] | None
    ) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa  # heavy: pyarrow

        with self._http.stream("GET", self._path("arrow"), params={"columns": columns}) as resp:
            expected = int(resp.headers.get("X-DLP-Row-Count", self.commit.row_count))
            rows = 0
            try:
                reader = pa.ipc.open_stream(_IpcReader(resp))
                if on_schema is not None:
                    on_schema(reader.schema)
                for batch in reader:
                    rows += batch.num_rows
                    yield batch
            except Exception as exc:
                raise IntegrityError(
                    f"download of {self.ref} was cut off after {rows} of {expected} rows "
                    f"({_first_line(exc)})"
                ) from None
        if rows != expected:
            raise IntegrityError(
                f"download of {self.ref} returned {rows} rows, the commit has {expected}"
            )

    def to_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.to_arrow(columns).to_pandas()

    def to_ray(self, columns: list[str] | None = None) -> ray.data.Dataset:
        """A Ray Dataset reading the version's Parquet parts directly (Ray Data).

        Works where this process runs on the platform's Ray cluster (a training job, a workflow
        step, the lab on the head node): the gateway authorizes and audits the read and names the
        parts. Elsewhere use ``to_arrow()``, ``to_pandas()`` or ``iter_batches()``.
        """
        if not _on_cluster():
            raise BackendUnavailable(
                "to_ray() reads the parts through Ray Data and works only on the platform's Ray "
                "cluster (a training job, a workflow step, the lab on the head node); here use "
                "to_arrow(), to_pandas() or iter_batches()"
            )
        from dlplatform.data import ReadGrant, grant_to_ray  # ray: on the cluster only

        grant = self._http.get(self._path("parts"), ReadGrant)
        return grant_to_ray(grant, columns)

    def sample(self, n: int = 10, *, seed: int = 0) -> pa.Table:
        import pyarrow as pa  # heavy: pyarrow

        answer = self._http.get(self._path("sample"), dict[str, Any], n=n, seed=seed)
        return pa.Table.from_pylist(answer["rows"]) if answer["rows"] else pa.table(
            {c: pa.array([], pa.null()) for c in answer["columns"]}
        )  # fmt: skip

    def describe(self) -> CommitStats:
        """Per-column statistics of the version (counts, nulls, min/max/mean, top values)."""
        from dlplatform.data import CommitStats  # pyarrow comes with it: only when asked

        return self._http.get(self._path("stats"), CommitStats)

    def export(self, directory: str | Path, *, progress: Progress | None = None) -> list[Path]:
        """Write the version as one Parquet file under ``directory`` (created if missing),
        batch by batch as it streams in; ``progress(rows_done, rows_total)`` follows it. The
        file appears complete or not at all."""
        import pyarrow.parquet as pq  # heavy: pyarrow

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{self.commit.dataset}-{self.commit.id}.parquet"
        tmp = target.with_name(f".{target.name}.tmp")
        writers: list[pq.ParquetWriter] = []
        total = self.commit.row_count
        done = 0
        try:
            for batch in self._batches(None, lambda s: writers.append(pq.ParquetWriter(tmp, s))):
                writers[0].write_batch(batch)
                done += batch.num_rows
                if progress is not None:
                    progress(done, max(total, done))
            writers[0].close()
            tmp.replace(target)
        except BaseException:
            for w in writers:
                w.close()
            tmp.unlink(missing_ok=True)
            raise
        return [target]

    def __repr__(self) -> str:
        return f"<Version {self.ref} rows={self.commit.row_count} hash={self.commit.version_hash[:12]}>"


def _concat(tables: list[pa.Table], commit: Commit) -> pa.Table:
    import pyarrow as pa  # heavy: pyarrow

    if tables:
        return pa.concat_tables(tables)
    from dlplatform.data import arrow_schema  # heavy: pyarrow

    return arrow_schema(commit).empty_table()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _on_cluster() -> bool:
    """Whether Ray is, or can be, joined from here without extra configuration."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return True
    return bool(os.environ.get("RAY_ADDRESS"))


class DatasetHandle:
    """A dataset: push, history, rollback, versions."""

    def __init__(self, http: HttpClient, dataset: Dataset) -> None:
        self._http = http
        self.dataset = dataset

    @property
    def name(self) -> str:
        return self.dataset.name

    def _path(self, tail: str = "") -> str:
        return f"datasets/{_seg(self.name)}{'/' + tail if tail else ''}"

    def refresh(self) -> DatasetHandle:
        self.dataset = self._http.get(self._path(), Dataset)
        return self

    def push(
        self,
        data: Any,
        mode: CommitMode | str = "append",
        message: str = "",
        parent: str | None = None,
        *,
        format: str | None = None,
        progress: Progress | None = None,
        idempotency_key: str | None = None,
    ) -> Commit:
        """Commit a file path (or a list of them), a pyarrow Table or a pandas DataFrame.

        One push is one commit: a single file is streamed as it is; several files, tables and
        DataFrames are sent as Parquet. The push carries an idempotency key (a new one unless
        given), so a retry after a lost connection returns the same commit instead of a second.
        """
        key = idempotency_key or uuid.uuid4().hex
        params: dict[str, Any] = {"mode": CommitMode(mode).value, "message": message,
                                  "parent": parent}  # fmt: skip
        paths = _paths(data)
        if paths is not None and len(paths) == 1:
            path = paths[0]
            total = path.stat().st_size
            params |= {
                "format": format or _SUFFIXES.get(path.suffix.lower()),
                "filename": path.name,
            }
            body = lambda: _file_chunks(path, progress, total)  # noqa: E731
        else:
            if paths is not None:
                import pyarrow as pa  # heavy: pyarrow

                table = pa.concat_tables([_read_file(p, format) for p in paths],
                                         promote_options="default")  # fmt: skip
            else:
                table = _to_table(data)
            blob = _as_parquet(table)
            params["format"] = "parquet"
            body = lambda: _bytes_chunks(blob, progress)  # noqa: E731
        commit: Commit = self._http.call(
            "POST",
            self._path("commits"),
            Commit,
            params=params,
            body=body,
            headers={"Idempotency-Key": key, "Content-Type": "application/octet-stream"},
            timeout_s=600.0,
        )
        self.refresh()
        return commit

    def commits(self, limit: int = 1000, offset: int = 0) -> list[Commit]:
        return self._http.get(self._path("commits"), list[Commit], limit=limit, offset=offset)

    def rollback(self, commit_id: str, message: str = "") -> Commit:
        commit: Commit = self._http.post(
            self._path("rollback"), Commit, {"commit": commit_id, "message": message}
        )
        self.refresh()
        return commit

    def get(self, commit_id: str | None = None) -> VersionHandle:
        """The head (or ``commit_id``) as a readable version."""
        commit = self._http.get(self._path(f"commits/{_seg(commit_id or 'head')}"), Commit)
        return VersionHandle(self._http, commit)

    def describe(self, commit_id: str | None = None) -> CommitStats:
        """Column statistics of the head (or ``commit_id``)."""
        from dlplatform.data import CommitStats  # pyarrow comes with it: only when asked

        path = self._path(f"commits/{_seg(commit_id or 'head')}/stats")
        return self._http.get(path, CommitStats)

    def delete(self) -> Dataset:
        return self._http.delete(self._path(), Dataset)

    def __repr__(self) -> str:
        return f"<Dataset {self.name} head={self.dataset.head}>"


def _paths(data: Any) -> list[Path] | None:
    items: Sequence[Any] | None = None
    if isinstance(data, str | os.PathLike):
        items = [data]
    elif (
        isinstance(data, list | tuple)
        and data
        and all(isinstance(d, str | os.PathLike) for d in data)
    ):
        items = data
    if items is None:
        return None
    paths = [Path(p) for p in items]
    for p in paths:
        if not p.is_file():
            raise InvalidInput(f"{p} is not a file")
    return paths


class DatasetsClient:
    """``p.datasets``."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def create(
        self,
        name: str,
        *,
        description: str = "",
        type: DatasetType | str = DatasetType.TABULAR,
        schema: Any = None,
        groups: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> DatasetHandle:
        """Create an empty dataset; ``schema`` is a list of ``{"name", "type"}`` or its JSON."""
        body: dict[str, Any] = {"name": name, "description": description,
                                "type": DatasetType(type).value, "groups": list(groups),
                                "tags": list(tags)}  # fmt: skip
        if schema is not None:
            body["schema"] = _schema_fields(schema)
        return DatasetHandle(self._http, self._http.post("datasets", Dataset, body))

    def get(self, name: str) -> DatasetHandle:
        return DatasetHandle(self._http, self._http.get(f"datasets/{_seg(name)}", Dataset))

    def list(self) -> list[Dataset]:
        return self._http.get("datasets", list[Dataset])

    def resolve(self, ref: str) -> VersionHandle:
        """``"name"`` or ``"name@commit"`` as a readable version."""
        name, _, commit = ref.partition("@")
        return DatasetHandle(self._http, _stub(name)).get(commit or None)

    def gc(self, *, min_age_s: float = 3600) -> DatasetGcReport:
        """Purge deleted datasets nothing references, then delete unreferenced artifacts older
        than ``min_age_s`` (needs ``dataset.write`` on all datasets: an admin)."""
        from dlplatform.data import DatasetGcReport  # pyarrow comes with it: only when asked

        return self._http.post("datasets/gc", DatasetGcReport, min_age_s=min_age_s)


def _stub(name: str) -> Dataset:
    """A handle's dataset before it is fetched (reads of a version need only the name)."""
    return Dataset.model_construct(name=name)


def _schema_fields(schema: Any) -> Iterable[Any]:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise InvalidInput(f"schema is not JSON: {exc}") from None
    if isinstance(schema, dict):
        schema = [{"name": k, "type": v} for k, v in schema.items()]
    if not isinstance(schema, list):
        raise InvalidInput('schema: expected [{"name": ..., "type": ...}, ...]')
    return schema
