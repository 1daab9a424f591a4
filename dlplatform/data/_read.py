"""Reading a commit: Arrow, pandas, an Arrow IPC stream, a streaming Ray Dataset, splits, samples.

A commit is an ordered list of Parquet parts. Readers open exactly those parts (by sha256, through
``ArtifactStore.path_for``), verify each part's hash, and cast to the commit's schema (a commit
whose schema was widened may hold older, narrower parts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as paipc

from dlplatform.data._io import read_part, verified_part
from dlplatform.data._schema import conform, schema_from_json
from dlplatform.errors import InvalidInput
from dlplatform.metadata import Commit

if TYPE_CHECKING:
    import pandas as pd
    import ray.data

    from dlplatform.context import Backend

READ_THREADS = 4
STREAM_BATCH_BYTES = 4 * 1024 * 1024  # about this much Arrow data per chunk of an IPC stream
PART_CHUNK_BYTES = 1024 * 1024  # a raw part download is read and sent in chunks of this size
SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "validation", "test")}


def arrow_schema(commit: Commit) -> pa.Schema:
    """The commit's Arrow schema."""
    return schema_from_json(commit.arrow_schema)


def part_paths(backend: Backend, commit: Commit) -> tuple[pafs.FileSystem, list[str]]:
    """The filesystem and the paths of the commit's Parquet parts, in order.

    The files are content-addressed and immutable; readers that bypass ``to_arrow``/``to_ray``
    should cast to ``arrow_schema(commit)`` (older parts of a widened commit are narrower).
    """
    artifacts = backend.artifacts
    return artifacts.filesystem, [artifacts.path_for(p.sha256) for p in commit.parts]


def _columns(schema: pa.Schema, columns: Sequence[str] | None) -> pa.Schema:
    if columns is None:
        return schema
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise InvalidInput(
            f"no column {', '.join(map(repr, missing))} in this commit; it has {', '.join(schema.names)}"
        )
    return pa.schema([schema.field(c) for c in columns])


def _read_conformed(
    fs: pafs.FileSystem, path: str, sha: str, schema: pa.Schema, verify: bool
) -> pa.Table:
    return conform(read_part(fs, path, sha, schema.names, verify=verify), schema)


def to_arrow(
    backend: Backend, commit: Commit, columns: list[str] | None = None, *, verify: bool = True
) -> pa.Table:
    """The commit's rows as one Arrow table (parts read in parallel, each hash verified)."""
    schema = _columns(arrow_schema(commit), columns)
    fs, paths = part_paths(backend, commit)
    if not paths:
        return schema.empty_table()
    shas = [p.sha256 for p in commit.parts]
    if len(paths) == 1:
        return _read_conformed(fs, paths[0], shas[0], schema, verify)
    with ThreadPoolExecutor(min(READ_THREADS, len(paths))) as pool:
        tables = list(
            pool.map(
                lambda ps: _read_conformed(fs, ps[0], ps[1], schema, verify),
                zip(paths, shas, strict=True),
            )
        )
    return pa.concat_tables(tables)


def to_pandas(backend: Backend, commit: Commit, columns: list[str] | None = None) -> pd.DataFrame:
    """The commit's rows as a pandas DataFrame."""
    return to_arrow(backend, commit, columns).to_pandas()


def _read_task_fn(fs: pafs.FileSystem, path: str, sha: str, schema: pa.Schema) -> Any:
    def read() -> Iterable[pa.Table]:
        return [_read_conformed(fs, path, sha, schema, True)]

    return read


def commit_datasource(backend: Backend, commit: Commit, columns: list[str] | None = None) -> Any:
    """A ``ray.data.Datasource`` with one read task per part of ``commit`` (used by ``to_ray``)."""
    fs, paths = part_paths(backend, commit)
    return parts_datasource(fs, paths, commit, columns)


def parts_datasource(
    fs: pafs.FileSystem, paths: Sequence[str], commit: Commit, columns: list[str] | None = None
) -> Any:
    """A ``ray.data.Datasource`` over ``commit``'s parts at ``paths`` on ``fs``, in order: one
    read task per part, each verifying the part's sha256 and casting to the commit's schema.

    Shared by the reads from the artifact store (``to_ray``) and from a read grant.
    """
    # ray: importing this module must not load Ray
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    if len(paths) != len(commit.parts):
        raise InvalidInput(f"{len(paths)} paths for the {len(commit.parts)} parts of the commit")
    schema = _columns(arrow_schema(commit), columns)
    parts = list(zip(paths, commit.parts, strict=True))
    label = f"Commit({commit.dataset}@{commit.id})"

    class CommitDatasource(Datasource):  # type: ignore[misc]
        def estimate_inmemory_data_size(self) -> int | None:
            return sum(p.size_bytes for _, p in parts) * 2

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list[ReadTask]:
            return [
                ReadTask(
                    _read_task_fn(fs, path, part.sha256, schema),
                    BlockMetadata(
                        num_rows=part.row_count,
                        size_bytes=part.size_bytes,
                        exec_stats=None,
                        input_files=None,
                    ),
                    schema=schema,
                    per_task_row_limit=per_task_row_limit,
                )
                for path, part in parts
            ]

        def get_name(self) -> str:
            return label

    return CommitDatasource()


def to_ray(
    backend: Backend,
    commit: Commit,
    columns: list[str] | None = None,
    *,
    runtime_env: dict[str, Any] | None = None,
    num_cpus: float | None = None,
) -> ray.data.Dataset:
    """A lazy, streaming ``ray.data.Dataset`` over exactly the commit's parts.

    One read task per part reads it with pyarrow (hash verified, cast to the commit's schema), so
    the parts of a large push are read in parallel, without Ray Data's file listing, metadata
    prefetch and sampling. ``runtime_env`` and ``num_cpus`` go to the read tasks (e.g. a
    runtime_env carrying object-store credentials the workers lack).
    """
    fs, paths = part_paths(backend, commit)
    return parts_to_ray(fs, paths, commit, columns, runtime_env=runtime_env, num_cpus=num_cpus)


def parts_to_ray(
    fs: pafs.FileSystem,
    paths: Sequence[str],
    commit: Commit,
    columns: list[str] | None = None,
    *,
    runtime_env: dict[str, Any] | None = None,
    num_cpus: float | None = None,
) -> ray.data.Dataset:
    """``to_ray`` over ``commit``'s parts at ``paths`` on ``fs`` (see ``parts_datasource``)."""
    import ray.data  # here: importing this module must not load Ray

    if not commit.parts:
        return ray.data.from_arrow(_columns(arrow_schema(commit), columns).empty_table())
    return ray.data.read_datasource(
        parts_datasource(fs, paths, commit, columns),
        override_num_blocks=len(commit.parts),
        runtime_env=runtime_env,
        num_cpus=num_cpus,
    )


# --- an Arrow IPC stream of a commit, part by part ------------------------------------------------

_CUT = b"\xff\xff\xff\xff\x08\x00\x00\x00"
"""Sent last when a stream fails: the header of an 8-byte message that never comes. Arrow
readers take a stream that simply stops (no end-of-stream marker) as complete, so a reader that
misses the cut connection would see the rows so far as the whole commit; this makes it fail."""


class _Pending:
    """A write-only file for ``pyarrow.ipc.new_stream`` that hands out what was written so far."""

    closed = False

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        return len(chunk)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def arrow_stream(
    backend: Backend, commit: Commit, columns: list[str] | None = None
) -> Iterator[bytes]:
    """The commit's rows as the bytes of an Arrow IPC stream, produced one part at a time.

    Each part is read and its sha256 verified (``read_part``) before any of its batches is
    written, so at most one part is in memory. The end-of-stream marker follows only once every
    part was sent; a part that fails raises out of the iterator after the bytes of a truncated
    message, so no reader can take a partial stream for a whole one.

    Raises:
        InvalidInput: an unknown column (raised here, before the first byte).
    """
    schema = _columns(arrow_schema(commit), columns)
    fs, paths = part_paths(backend, commit)
    shas = [p.sha256 for p in commit.parts]
    return _ipc_chunks(fs, list(zip(paths, shas, strict=True)), schema)


def part_bytes(backend: Backend, commit: Commit) -> Iterator[bytes]:
    """The commit's Parquet parts, byte for byte and in order, in chunks of at most
    ``PART_CHUNK_BYTES``: nothing is decoded or re-encoded on the way.

    The reader checks each part against its sha256 (``part_table``), so a part damaged in
    the store, or on the way, is caught where the rows are used. A part that cannot be read raises
    out of the iterator, which cuts the response short of its ``Content-Length``.
    """
    fs, paths = part_paths(backend, commit)
    for path in paths:
        with fs.open_input_stream(path) as f:
            while chunk := f.read(PART_CHUNK_BYTES):
                yield chunk


def part_table(
    commit: Commit, index: int, data: Any, digest: Future[str] | None = None
) -> pa.Table:
    """Part ``index`` of the commit from its bytes (a pyarrow Buffer or anything bytes-like), as
    ``to_arrow`` reads a part: verified against its sha256 (``digest``: the bytes' own, when the
    caller hashed them already), cast to the commit's schema.

    Raises:
        IntegrityError: the bytes are not the ones the part's sha256 names.
    """
    schema = arrow_schema(commit)
    return conform(verified_part(data, commit.parts[index].sha256, schema.names, digest), schema)


def _ipc_chunks(
    fs: pafs.FileSystem, parts: list[tuple[str, str]], schema: pa.Schema
) -> Iterator[bytes]:
    pending = _Pending()
    # Not ``with``: closing the writer writes the end-of-stream marker, which must not follow a
    # failed part.
    writer = paipc.new_stream(pending, schema)
    # The next part is read and verified on a second thread while this one's batches are sent.
    with ThreadPoolExecutor(1, thread_name_prefix="dlp-ipc-read") as pool:

        def read(i: int) -> Future[pa.Table] | None:
            if i >= len(parts):
                return None
            return pool.submit(_read_conformed, fs, parts[i][0], parts[i][1], schema, True)

        upcoming = read(0)
        try:
            yield pending.take()
            for i in range(len(parts)):
                assert upcoming is not None
                table = upcoming.result()
                upcoming = read(i + 1)
                rows = max(1, STREAM_BATCH_BYTES * table.num_rows // max(table.nbytes, 1))
                for batch in table.to_batches(max_chunksize=rows):
                    writer.write_batch(batch)
                    yield pending.take()
                del table
        except Exception:
            yield _CUT
            raise
        writer.close()
        yield pending.take()


def _uniform(seed: int, n: int, start: int = 0) -> np.ndarray:
    """Deterministic uniform [0, 1) values for row indices ``start..start+n`` (splitmix64)."""
    with np.errstate(over="ignore"):
        x = np.arange(start, start + n, dtype=np.uint64) + np.uint64(
            seed & 0xFFFFFFFFFFFFFFFF
        ) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_names(fractions: Sequence[float]) -> tuple[str, ...]:
    return SPLIT_NAMES.get(len(fractions), tuple(f"split_{i}" for i in range(len(fractions))))


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) < 2 or any(not 0 < f <= 1 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise InvalidInput(
            f"fractions must be 2 or more values in (0, 1] summing to 1, got {list(fr)}"
        )
    return fr


def split_masks(seed: int, n: int, fractions: Sequence[float]) -> list[np.ndarray]:
    """For each fraction, a boolean mask over rows ``0..n``: row ``i`` goes to the split whose
    cumulative-fraction interval holds ``u(seed, i)``. A row's split depends only on the seed and
    its index, so rows appended later never move earlier rows between splits."""
    fr = check_fractions(fractions)
    u = _uniform(seed, n)
    edges = np.cumsum(fr)
    edges[-1] = 1.0 + 1e-9
    bucket = np.searchsorted(edges, u, side="right")
    return [bucket == i for i in range(len(fr))]


def split(
    backend: Backend,
    commit: Commit,
    *,
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    columns: list[str] | None = None,
) -> dict[str, pa.Table]:
    """A deterministic split of the commit's rows: ``{"train", "validation", "test"}`` for three
    fractions, ``{"train", "test"}`` for two, ``split_<i>`` otherwise."""
    names = split_names(fractions)
    masks = split_masks(seed, commit.row_count, fractions)
    table = to_arrow(backend, commit, columns)
    return {name: table.filter(pa.array(mask)) for name, mask in zip(names, masks, strict=True)}


def sample(backend: Backend, commit: Commit, n: int, *, seed: int = 0) -> pa.Table:
    """``n`` rows drawn uniformly without replacement (deterministic by seed), in row order.

    Only the parts holding the drawn rows are read.
    """
    if n < 1:
        raise InvalidInput(f"n must be at least 1, got {n}")
    total = commit.row_count
    if total == 0:
        return arrow_schema(commit).empty_table()
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
    starts = np.cumsum([0] + [p.row_count for p in commit.parts])
    fs, paths = part_paths(backend, commit)
    schema = arrow_schema(commit)
    pieces = []
    for i, part in enumerate(commit.parts):
        lo, hi = starts[i], starts[i + 1]
        local = picks[(picks >= lo) & (picks < hi)] - lo
        if len(local):
            table = _read_conformed(fs, paths[i], part.sha256, schema, True)
            pieces.append(table.take(pa.array(local)))
    return pa.concat_tables(pieces)
