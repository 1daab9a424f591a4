"""DuckDB connection handling: migrations, one lock, transactions, row → record mapping."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from dlplatform.errors import AlreadyExists, BackendUnavailable, DLPlatformError, InvalidInput

R = TypeVar("R")


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("dlplatform.metadata") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text()))
    return sorted(found)


class Database:
    """One DuckDB file, migrated on open, used under one lock.

    DuckDB admits one read-write process per file; inside that process we serialise access with a
    lock, which is simpler than per-thread cursors and costs nothing measurable at our call sizes
    (every hot path is batched).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            raise BackendUnavailable(
                f"cannot open metadata database {self.path}: {exc}. Another process owns it; "
                "use the platform's metadata actor instead of opening the file."
            ) from exc
        self._con.execute("SET TimeZone='UTC'")
        self._lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            row = self._con.execute("SELECT max(version) FROM schema_version").fetchone()
            current = (row[0] if row else None) or 0
            for version, sql in _migrations():
                if version <= current:
                    continue
                self._con.execute("BEGIN TRANSACTION")
                try:
                    self._con.execute(sql)
                    self._con.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
                    self._con.execute("COMMIT")
                except Exception:
                    self._con.execute("ROLLBACK")
                    raise

    def schema_version(self) -> int:
        row = self.one("SELECT max(version) FROM schema_version")
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction: everything inside commits together or not at all."""
        with self._lock:
            cur = self._con
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except duckdb.Error as exc:
                cur.execute("ROLLBACK")
                raise _translate(exc) from exc
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                try:
                    cur.execute("COMMIT")
                except duckdb.Error as exc:
                    with contextlib.suppress(duckdb.Error):
                        cur.execute("ROLLBACK")
                    raise _translate(exc) from exc

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            try:
                self._con.execute(sql, list(params))
            except duckdb.Error as exc:
                raise _translate(exc) from exc

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            return self._con.execute(sql, list(params)).fetchone()

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._con.execute(sql, list(params))
            names = [d[0] for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def raw(self) -> duckdb.DuckDBPyConnection:
        """The connection, for bulk Arrow inserts; hold ``lock`` while using it."""
        return self._con

    @property
    def lock(self) -> threading.RLock:
        return self._lock


def _translate(exc: duckdb.Error) -> DLPlatformError:
    text = str(exc)
    if "NOT NULL constraint" in text:
        return InvalidInput(text.split("\n")[0])
    if isinstance(exc, duckdb.ConstraintException) or "Duplicate key" in text:
        return AlreadyExists(text.split("\n")[0])
    if isinstance(exc, duckdb.ConversionException | duckdb.InvalidInputException):
        return InvalidInput(text.split("\n")[0])
    return DLPlatformError(f"metadata database error: {text.splitlines()[0] if text else exc}")


def insert(cur: duckdb.DuckDBPyConnection, table: str, row: dict[str, Any], what: str) -> None:
    """Insert one row given as a column → value mapping (column names come from our records).

    Raises:
        AlreadyExists: the primary key is taken; the message names ``what``.
    """
    cols = ", ".join(f'"{c}"' for c in row)
    marks = ", ".join("?" for _ in row)
    try:
        cur.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
    except duckdb.ConstraintException as exc:
        raise AlreadyExists(f"{what} already exists") from exc
