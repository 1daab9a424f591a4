"""Reading pushed data (files, Arrow, pandas, Ray) and writing/reading a commit's Parquet parts.

Every source becomes an ``Ingest``: an Arrow schema plus an iterator of record batches, so a large
file is converted batch by batch and never held whole in memory. Parts are Parquet files of about
``PART_TARGET_BYTES`` (uncompressed Arrow bytes) each, written into the artifact store: the Parquet
bytes are built in memory, then streamed through staging into ``objects/`` by ``put_stream``, which
hashes them while writing (each part is hashed once). Reads verify every part's sha256.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.ipc as paipc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dlplatform.errors import IntegrityError, InvalidInput
from dlplatform.metadata import CommitPart

if TYPE_CHECKING:
    from dlplatform.metadata.artifacts import ArtifactStore

PART_TARGET_BYTES = 48 * 1024 * 1024
READ_BLOCK_BYTES = 16 * 1024 * 1024
WRITE_THREADS = 2
FORMATS = ("parquet", "csv", "jsonl", "arrow")
_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".arrows": "arrow",
}
_ROW_RE = re.compile(r"Row #(\d+)")

Progress = Callable[[int, int], None]


@dataclass
class Ingest:
    """Data to push: its schema, its batches, and its size in bytes when known (for progress)."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    total_bytes: int = 0
    label: str = "data"


# --- sources -------------------------------------------------------------------------------------


def detect_format(path: Path, declared: str | None = None) -> str:
    """The file's format: ``declared``, else by extension, else by magic bytes.

    Raises:
        InvalidInput: unknown format, an empty file, or content that does not match the format.
    """
    if declared is not None:
        fmt = declared.lower().lstrip(".")
        fmt = {"json": "jsonl", "ndjson": "jsonl", "ipc": "arrow", "feather": "arrow"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise InvalidInput(f"unsupported format {declared!r}: use one of {', '.join(FORMATS)}")
    else:
        fmt = _EXTENSIONS.get(path.suffix.lower(), "")
    if not path.is_file():
        raise InvalidInput(f"{path.name} is not a file")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name} is empty")
    with path.open("rb") as f:
        head = f.read(8)
    sniffed = ""
    if head[:4] == b"PAR1":
        sniffed = "parquet"
    elif head[:6] == b"ARROW1" or head[:4] == b"\xff\xff\xff\xff":
        sniffed = "arrow"
    if not fmt:
        if not sniffed and head.lstrip()[:1] == b"{":
            sniffed = "jsonl"
        if not sniffed:
            raise InvalidInput(
                f"unsupported file type {path.suffix or '(no extension)'} of {path.name}: push "
                "Parquet (.parquet), CSV (.csv), JSON lines (.jsonl) or Arrow IPC (.arrow)"
            )
        return sniffed
    if fmt in ("parquet", "arrow") and sniffed != fmt:
        raise InvalidInput(f"{path.name} is not a valid {fmt} file")
    return fmt


def _csv_error(name: str, exc: pa.ArrowException) -> InvalidInput:
    text = str(exc)
    match = _ROW_RE.search(text)
    if match:
        detail = _ROW_RE.sub("", text).replace("CSV parse error: :", "").strip(" :")
        detail = detail.removeprefix("CSV parse error:").strip()
        return InvalidInput(f"{name}: malformed CSV at line {match.group(1)}: {detail}")
    return InvalidInput(f"{name}: invalid CSV: {text}")


def _csv_batches(path: Path, hint: pa.Schema | None) -> Ingest:
    column_types = {f.name: f.type for f in hint} if hint is not None else None
    try:
        reader = pacsv.open_csv(
            path,
            # Single-threaded parsing reports the line number of a malformed row.
            read_options=pacsv.ReadOptions(use_threads=False, block_size=READ_BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(column_types=column_types),
        )
    except pa.ArrowException as exc:
        if "Empty CSV file" in str(exc):
            raise InvalidInput(f"{path.name} is empty") from exc
        raise _csv_error(path.name, exc) from exc

    def batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowException as exc:
                raise _csv_error(path.name, exc) from exc
            yield batch

    return Ingest(reader.schema, batches(), path.stat().st_size, path.name)


def _jsonl_batches(path: Path) -> Ingest:
    try:
        reader = pajson.open_json(
            path, read_options=pajson.ReadOptions(block_size=READ_BLOCK_BYTES)
        )
    except pa.ArrowException as exc:
        raise InvalidInput(f"{path.name}: invalid JSON lines: {exc}") from exc

    def batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowException as exc:
                raise InvalidInput(f"{path.name}: invalid JSON lines: {exc}") from exc
            yield batch

    return Ingest(reader.schema, batches(), path.stat().st_size, path.name)


def _parquet_batches(path: Path) -> Ingest:
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise InvalidInput(f"{path.name}: invalid Parquet file: {exc}") from exc

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for i in range(pf.num_row_groups):
                yield from pf.read_row_group(i).to_batches()
        except pa.ArrowException as exc:
            raise InvalidInput(f"{path.name}: invalid Parquet file: {exc}") from exc

    return Ingest(pf.schema_arrow, batches(), path.stat().st_size, path.name)


def _arrow_batches(path: Path) -> Ingest:
    source = pa.memory_map(str(path))
    try:
        with path.open("rb") as f:
            is_file = f.read(6) == b"ARROW1"
        reader: Any = paipc.open_file(source) if is_file else paipc.open_stream(source)
    except pa.ArrowException as exc:
        raise InvalidInput(f"{path.name}: invalid Arrow IPC file: {exc}") from exc

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            if is_file:
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
            else:
                yield from reader
        except pa.ArrowException as exc:
            raise InvalidInput(f"{path.name}: invalid Arrow IPC file: {exc}") from exc

    return Ingest(reader.schema, batches(), path.stat().st_size, path.name)


def from_file(path: Path, fmt: str | None = None, hint: pa.Schema | None = None) -> Ingest:
    """Read a local file (the format from ``fmt``, its extension or its content).

    ``hint`` (the dataset's schema) types CSV columns; binary formats carry their own types.
    """
    kind = detect_format(path, fmt)
    if kind == "csv":
        return _csv_batches(path, hint)
    if kind == "jsonl":
        return _jsonl_batches(path)
    if kind == "parquet":
        return _parquet_batches(path)
    return _arrow_batches(path)


def from_table(table: pa.Table, label: str = "table") -> Ingest:
    return Ingest(table.schema, iter(table.to_batches()), table.nbytes, label)


def from_object(data: Any, hint: pa.Schema | None = None) -> Ingest:
    """An ``Ingest`` from a pa.Table, pa.RecordBatch, pandas DataFrame, ray Dataset or a path."""
    if isinstance(data, pa.Table):
        return from_table(data)
    if isinstance(data, pa.RecordBatch):
        return from_table(pa.Table.from_batches([data]))
    if isinstance(data, str | Path):
        return from_file(Path(data), None, hint)
    module = type(data).__module__
    if module.startswith("pandas"):
        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise InvalidInput(f"cannot convert the DataFrame to Arrow: {exc}") from exc
        return from_table(table, "dataframe")
    if module.startswith("ray.data"):
        return _from_ray(data)
    raise InvalidInput(
        f"cannot push a {type(data).__name__}: push a pyarrow Table, a pandas DataFrame, a "
        "ray.data.Dataset or a file path"
    )


def _from_ray(ds: Any) -> Ingest:
    # The schema comes from the first block: asking the Dataset for it may execute the plan twice.
    batches = (
        b for t in ds.iter_batches(batch_size=None, batch_format="pyarrow") for b in t.to_batches()
    )
    first = next(batches, None)
    if first is None:
        raise InvalidInput("the Ray Dataset is empty")
    return Ingest(first.schema, _chain([first], batches), 0, "ray dataset")


def _chain(*its: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for it in its:
        yield from it


# --- parts ---------------------------------------------------------------------------------------


def chunk_tables(
    batches: Iterable[pa.RecordBatch],
    convert: Callable[[pa.Table], pa.Table],
    target_bytes: int | None = None,
) -> Iterator[pa.Table]:
    """Group batches into tables of at most about ``target_bytes`` each (one table per part).

    A batch larger than the target is cut into equal slices, so a large push becomes several
    parts of similar size that readers can read in parallel. The cut depends only on the data and
    its batches, so the same data pushed the same way gives the same parts.
    """
    target_bytes = target_bytes or PART_TARGET_BYTES
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if batch.nbytes > target_bytes and batch.num_rows > 1:
            k = -(-batch.nbytes // target_bytes)
            rows = -(-batch.num_rows // k)
            pieces = [batch.slice(i, rows) for i in range(0, batch.num_rows, rows)]
        else:
            pieces = [batch]
        for piece in pieces:
            if pending and size + piece.nbytes > target_bytes:
                yield convert(pa.Table.from_batches(pending))
                pending, size = [], 0
            pending.append(piece)
            size += piece.nbytes
    if pending:
        yield convert(pa.Table.from_batches(pending))


def write_part(artifacts: ArtifactStore, table: pa.Table) -> CommitPart:
    """Write ``table`` as one Parquet part into the artifact store (through staging)."""
    sink = pa.BufferOutputStream()
    # Dictionary encoding rarely pays for floats and costs most of the write time: keep it for
    # the other columns only.
    dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    pq.write_table(table, sink, row_group_size=max(table.num_rows, 1), use_dictionary=dictionary)
    buf = sink.getvalue()
    ref = artifacts.put_stream([memoryview(buf)])
    return CommitPart(sha256=ref.sha256, row_count=table.num_rows, size_bytes=ref.size_bytes)


def write_parts(
    artifacts: ArtifactStore,
    tables: Iterator[pa.Table],
    *,
    total_bytes: int = 0,
    progress: Progress | None = None,
) -> list[CommitPart]:
    """Write each table as a part, ``WRITE_THREADS`` at a time; parts keep the tables' order."""
    parts: list[CommitPart] = []
    done = 0
    with ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="dlp-part") as pool:
        inflight: list[tuple[Future[CommitPart], int]] = []

        def drain(keep: int) -> None:
            nonlocal done
            while len(inflight) > keep:
                fut, nbytes = inflight.pop(0)
                parts.append(fut.result())
                done += nbytes
                if progress is not None:
                    progress(done, max(total_bytes, done))

        try:
            for table in tables:
                inflight.append((pool.submit(write_part, artifacts, table), table.nbytes))
                drain(WRITE_THREADS)
            drain(0)
        except BaseException:
            for fut, _ in inflight:
                fut.cancel()
            raise
    return parts


_HASHER = ThreadPoolExecutor(2, thread_name_prefix="dlp-verify")
"""Hashes parts while they are parsed (hashlib releases the GIL on large buffers)."""


def read_part(
    fs: pafs.FileSystem,
    path: str,
    sha256: str,
    columns: list[str] | None = None,
    *,
    verify: bool = True,
) -> pa.Table:
    """One part as a table, returned only once its bytes match the sha256 they are named by.

    A local part is memory-mapped: hashed and parsed from the same pages, without a copy, and
    the hash runs on another thread while Parquet decodes, so verifying costs little wall time.
    """
    if isinstance(fs, pafs.LocalFileSystem):
        buf = pa.memory_map(path).read_buffer()
    else:
        with fs.open_input_file(path) as f:
            buf = f.read_buffer()
    if not verify:
        return pq.read_table(pa.BufferReader(buf), columns=columns)
    return verified_part(buf, sha256, columns)


def verified_part(
    buf: Any, sha256: str, columns: list[str] | None = None, digest: Future[str] | None = None
) -> pa.Table:
    """A part's Parquet bytes (``buf``: a pyarrow Buffer or anything bytes-like) as a table,
    returned only once they match ``sha256``; the hash runs while Parquet decodes. ``digest``:
    the bytes' sha256 (hex) as the caller computes it, e.g. while they arrived."""
    buf = pa.py_buffer(buf) if not isinstance(buf, pa.Buffer) else buf
    if digest is None:
        digest = _HASHER.submit(lambda: hashlib.sha256(memoryview(buf)).hexdigest())
    try:
        table = pq.read_table(pa.BufferReader(buf), columns=columns)
    except (pa.ArrowException, OSError) as exc:
        _check_digest(sha256, digest.result())
        raise IntegrityError(f"dataset part {sha256} cannot be read: {exc}") from exc
    _check_digest(sha256, digest.result())
    return table


def _check_digest(expected: str, actual: str) -> None:
    if actual != expected:
        raise IntegrityError(
            f"dataset part {expected} is corrupt: expected sha256 {expected}, got {actual}"
        )
