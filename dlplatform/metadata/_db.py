"""DuckDB connection handling: migrations, one lock, transactions, a read cache, row mapping.

The read cache: DuckDB spends about a millisecond on even a one-row lookup, and a gateway request
makes one or two of them. The process that opens the file is its only writer (the metadata actor
in a running platform), so it can remember read results and know exactly when they go stale:
every statement's SQL names the tables it reads (``FROM``/``JOIN``) or writes
(``INSERT INTO``/``UPDATE``/``DELETE FROM``); each write bumps its tables' generation, and a
remembered result is used only while the generations of all the tables it read are unchanged.
Anything the parser cannot place (DDL, a bulk Arrow insert, a method of the raw connection it does
not know) bumps every table. Reads inside a transaction, reads of volatile functions (``now()``)
and table functions are never cached.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from dlplatform.errors import AlreadyExists, BackendUnavailable, DLPlatformError, InvalidInput
from dlplatform.metadata._generation import SUFFIX as GENERATION_SUFFIX
from dlplatform.metadata._generation import SharedGeneration

R = TypeVar("R")

READ_CACHE_ENTRIES = 4096
"""Remembered read results per database file (least recently used go first)."""
READ_CACHE_MAX_ROWS = 500
"""Larger results are not remembered (they are rare and would crowd out the hot lookups)."""

_ALL = "*"  # the generation every write bumps, and every cached read checks
_WORD = r'"?([A-Za-z_][A-Za-z0-9_]*)"?'
_WRITE_WORD = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|CREATE|ALTER|DROP|COPY|TRUNCATE|ATTACH|DETACH|IMPORT|"
    r"EXPORT|CHECKPOINT|VACUUM|INSTALL|LOAD|CALL|PRAGMA)\b",
    re.IGNORECASE,
)
_WRITE_TARGET = re.compile(
    r"\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+" + _WORD, re.IGNORECASE
)
_PLAIN_WRITE = re.compile(
    r"\b(MERGE|CREATE|ALTER|DROP|COPY|TRUNCATE|ATTACH|DETACH|IMPORT|CALL)\b", re.I
)
_READ_SOURCE = re.compile(r"\b(?:FROM|JOIN)\s+" + _WORD + r"(\s*\()?", re.IGNORECASE)
_VOLATILE = re.compile(
    r"\b(now|current_timestamp|current_date|current_time|random|gen_random_uuid|uuid|nextval|"
    r"get_current_timestamp|today)\b",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SET|RESET|SHOW)\b", re.IGNORECASE)


@dataclass(frozen=True)
class _Statement:
    """What one SQL text does to the cache: the tables it writes (``_ALL`` for anything the
    parser cannot place), and for a plain read the tables it reads (None: not cacheable)."""

    writes: frozenset[str]
    reads: frozenset[str] | None


@functools.lru_cache(maxsize=2048)
def _classify(sql: str) -> _Statement:
    if _CONTROL.match(sql):
        return _Statement(frozenset(), None)
    if _WRITE_WORD.search(sql):
        targets = {t.lower() for t in _WRITE_TARGET.findall(sql)}
        if not targets or _PLAIN_WRITE.search(sql):
            return _Statement(frozenset({_ALL}), None)
        return _Statement(frozenset(targets), None)
    sources = _READ_SOURCE.findall(sql)
    if not sources or any(call for _, call in sources) or _VOLATILE.search(sql):
        return _Statement(frozenset(), None)
    return _Statement(frozenset(), frozenset(t.lower() for t, _ in sources))


@dataclass
class _CacheState:
    """Generations and remembered reads of one database file, shared by every ``Database`` of
    this process that opened it (DuckDB gives them one database instance)."""

    generations: dict[str, int] = field(default_factory=dict)
    entries: OrderedDict[tuple[str, str, tuple[Any, ...]], tuple[tuple[int, ...], Any]] = field(
        default_factory=OrderedDict
    )
    hits: int = 0
    misses: int = 0
    shared: SharedGeneration | None = None  # published for other processes (the actor's)

    def bump(self, tables: frozenset[str]) -> None:
        if not tables:
            return
        if self.shared is not None:
            self.shared.bump()
        gens = self.generations
        for table in tables:
            gens[table] = gens.get(table, 0) + 1
        if _ALL in tables:
            self.entries.clear()

    def stamp(self, reads: frozenset[str]) -> tuple[int, ...]:
        gens = self.generations
        return (gens.get(_ALL, 0), *(gens.get(t, 0) for t in sorted(reads)))


_STATES: dict[str, _CacheState] = {}
_STATES_LOCK = threading.Lock()


def _state_for(path: str) -> _CacheState:
    if path == ":memory:":
        return _CacheState()  # a private database: nobody else can write it
    key = str(Path(path).resolve())
    with _STATES_LOCK:
        return _STATES.setdefault(key, _CacheState())


class _Tracked:
    """The connection as ``tx()`` and ``raw()`` hand it out: every statement it runs bumps the
    generations of the tables it writes; any other method bumps them all."""

    def __init__(self, con: duckdb.DuckDBPyConnection, state: _CacheState) -> None:
        self._con = con
        self._state = state

    def execute(self, sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        self._state.bump(_classify(sql).writes)
        return self._con.execute(sql, params) if params is not None else self._con.execute(sql)

    def executemany(self, sql: str, params: Any) -> duckdb.DuckDBPyConnection:
        self._state.bump(_classify(sql).writes)
        return self._con.executemany(sql, params)

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        self._state.bump(_classify(query).writes)
        return self._con.sql(query)

    def register(self, name: str, obj: Any) -> duckdb.DuckDBPyConnection:
        return self._con.register(name, obj)  # a view of this connection only: no table changes

    def unregister(self, name: str) -> duckdb.DuckDBPyConnection:
        return self._con.unregister(name)

    def __getattr__(self, name: str) -> Any:
        self._state.bump(frozenset({_ALL}))
        return getattr(self._con, name)


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("dlplatform.metadata") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text()))
    return sorted(found)


def newest_schema_version() -> int:
    """The version of the newest migration this dlplatform knows."""
    return max(version for version, _ in _migrations())


class Database:
    """One DuckDB file, migrated on open, used under one lock.

    DuckDB admits one read-write process per file; inside that process we serialise access with a
    lock, which is simpler than per-thread cursors and costs nothing measurable at our call sizes
    (every hot path is batched).
    """

    def __init__(self, path: str | Path, *, cache_entries: int = READ_CACHE_ENTRIES) -> None:
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
        self._cache = _state_for(self.path)
        self._cache_entries = cache_entries
        self._in_tx = 0
        self._migrate()
        self._cache.bump(frozenset({_ALL}))  # a migration may have changed anything

    def _migrate(self) -> None:
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            rows = self._con.execute("SELECT max(version) FROM schema_version").fetchall()
            current = (rows[0][0] if rows else None) or 0
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

    def snapshot(self, dest: str | Path) -> None:
        """Copy the database file to ``dest`` as it is between two statements.

        Under the lock no statement runs and no transaction is open; ``CHECKPOINT`` then moves
        the write-ahead log into the file, so the file alone holds every committed transaction
        and its copy opens like the original. Other callers wait for the copy (a local disk
        copies about a gigabyte a second). The read cache stays valid: no data changes.

        Raises:
            InvalidInput: the database is in memory.
        """
        if self.path == ":memory:":
            raise InvalidInput("an in-memory metadata database has no file to copy")
        with self._lock:
            self._con.execute("CHECKPOINT")
            shutil.copyfile(self.path, dest)

    @contextlib.contextmanager
    def tx(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction: everything inside commits together or not at all."""
        with self._lock:
            cur = self._con
            cur.execute("BEGIN TRANSACTION")
            self._in_tx += 1
            try:
                yield _Tracked(cur, self._cache)  # type: ignore[misc]
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
            finally:
                self._in_tx -= 1

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            self._cache.bump(_classify(sql).writes)
            try:
                self._con.execute(sql, list(params))
            except duckdb.Error as exc:
                raise _translate(exc) from exc

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            rows = self._cached("one", sql, params, self._fetch_one)
            return rows[0] if rows else None

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._cached("dicts", sql, params, self._fetch_dicts)
            return [dict(r) for r in rows]  # the caller may change its copy

    def _fetch_one(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        # fetchall, not fetchone: DuckDB 2 refuses a relation (``sql()``) on a connection
        # whose last result was not read to its end. Every caller reads one row.
        rows = self._con.execute(sql, params).fetchall()
        return rows[:1]

    def _fetch_dicts(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        cur = self._con.execute(sql, params)
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _cached(self, kind: str, sql: str, params: Sequence[Any], fetch: Any) -> list[Any]:
        """``fetch(sql, params)``, or its remembered result while the tables it read are
        unchanged (call with the lock held)."""
        stmt = _classify(sql)
        self._cache.bump(stmt.writes)
        args = list(params)
        if stmt.reads is None or self._in_tx or not self._cache_entries:
            return fetch(sql, args)  # type: ignore[no-any-return]
        try:
            key = (kind, sql, tuple(args))
            hash(key)
        except TypeError:  # a list parameter
            return fetch(sql, args)  # type: ignore[no-any-return]
        cache = self._cache
        stamp = cache.stamp(stmt.reads)
        hit = cache.entries.get(key)
        if hit is not None and hit[0] == stamp:
            cache.entries.move_to_end(key)
            cache.hits += 1
            return hit[1]  # type: ignore[no-any-return]
        cache.misses += 1
        rows = fetch(sql, args)
        if len(rows) <= READ_CACHE_MAX_ROWS:
            cache.entries[key] = (stamp, rows)
            cache.entries.move_to_end(key)
            while len(cache.entries) > self._cache_entries:
                cache.entries.popitem(last=False)
        return rows  # type: ignore[no-any-return]

    def publish_generation(self) -> SharedGeneration:
        """Publish this file's write generation beside it (``_generation``), for readers in
        other processes on this machine; every later write moves it before it returns."""
        if self.path == ":memory:":
            raise InvalidInput("an in-memory metadata database has no file to publish beside")
        with self._lock:
            if self._cache.shared is None:
                self._cache.shared = SharedGeneration(self.path + GENERATION_SUFFIX)
            return self._cache.shared

    def generation_publisher(self) -> SharedGeneration | None:
        return self._cache.shared

    def cache_counts(self) -> tuple[int, int]:
        """(hits, misses) of the read cache of this database file, for tests and benchmarks."""
        return self._cache.hits, self._cache.misses

    def raw(self) -> duckdb.DuckDBPyConnection:
        """The connection, for bulk Arrow inserts; hold ``lock`` while using it. Statements run
        on it invalidate the read cache of the tables they write."""
        return _Tracked(self._con, self._cache)  # type: ignore[return-value]

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
