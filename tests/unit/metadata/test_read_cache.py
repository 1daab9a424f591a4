"""The metadata database's read cache: remembered reads, and every way a write makes them stale."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from dlplatform.metadata._db import Database, _classify


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(tmp_path / "m.duckdb")
    d.run("CREATE TABLE t (k VARCHAR PRIMARY KEY, v INTEGER)")
    d.run("CREATE TABLE u (k VARCHAR, v INTEGER)")
    d.run("INSERT INTO t VALUES ('a', 1)")
    return d


def _v(db: Database) -> int:
    return db.dicts("SELECT v FROM t WHERE k = ?", ["a"])[0]["v"]


def test_a_repeated_read_is_answered_from_memory(db: Database) -> None:
    assert _v(db) == 1
    hits, misses = db.cache_counts()
    assert _v(db) == 1 and db.one("SELECT v FROM t WHERE k = ?", ["a"]) == (1,)
    assert db.one("SELECT v FROM t WHERE k = ?", ["a"]) == (1,)
    assert db.cache_counts() == (hits + 2, misses + 1)


def test_the_caller_gets_its_own_copy(db: Database) -> None:
    db.dicts("SELECT v FROM t WHERE k = ?", ["a"])[0]["v"] = 99
    assert _v(db) == 1


@pytest.mark.parametrize(
    "write",
    [
        lambda db: db.run("UPDATE t SET v = 2 WHERE k = 'a'"),
        lambda db: db.one("UPDATE t SET v = 2 WHERE k = 'a' RETURNING v"),
        lambda db: db.run("DELETE FROM \"t\"; INSERT INTO t VALUES ('a', 2)"),
        lambda db: _in_tx(db, "UPDATE t SET v = 2 WHERE k = ?", ["a"]),
        lambda db: db.raw().execute("INSERT OR REPLACE INTO t VALUES ('a', 2)"),
        lambda db: _arrow_insert(db),
        lambda db: db.raw().executemany("UPDATE t SET v = ? WHERE k = ?", [[2, "a"]]),
        lambda db: db.run("ALTER TABLE t ADD COLUMN w INTEGER; UPDATE t SET v = 2"),
    ],
    ids=["run", "one-returning", "delete-insert", "tx", "raw", "arrow", "executemany", "ddl"],
)
def test_every_kind_of_write_makes_the_read_stale(db: Database, write) -> None:  # type: ignore[no-untyped-def]
    assert _v(db) == 1
    write(db)
    assert _v(db) == 2


def _in_tx(db: Database, sql: str, params: list[object]) -> None:
    with db.tx() as cur:
        cur.execute(sql, params)
        # a read inside the transaction sees the transaction's own write, not a remembered row
        assert db.dicts("SELECT v FROM t WHERE k = 'a'")[0]["v"] == 2


def _arrow_insert(db: Database) -> None:
    con = db.raw()
    con.register("_batch", pa.table({"k": ["a"], "v": [2]}))
    try:
        con.execute("DELETE FROM t WHERE k = 'a'")
        con.execute("INSERT INTO t SELECT * FROM _batch")
    finally:
        con.unregister("_batch")


def test_a_write_to_another_table_keeps_the_read(db: Database) -> None:
    _v(db)
    hits, _ = db.cache_counts()
    db.run("INSERT INTO u VALUES ('x', 1)")
    _v(db)
    assert db.cache_counts()[0] == hits + 1


def test_a_rolled_back_transaction_leaves_nothing_stale(db: Database) -> None:
    _v(db)
    with pytest.raises(RuntimeError), db.tx() as cur:
        cur.execute("UPDATE t SET v = 5 WHERE k = 'a'")
        raise RuntimeError("abort")
    assert _v(db) == 1


def test_two_handles_of_one_file_share_the_generations(db: Database) -> None:
    other = Database(db.path)
    assert _v(db) == 1
    other.run("UPDATE t SET v = 2 WHERE k = 'a'")
    assert _v(db) == 2


def test_joins_track_every_table_read(db: Database) -> None:
    sql = "SELECT t.v, count(u.k) AS n FROM t LEFT JOIN u ON u.k = t.k GROUP BY t.v"
    assert db.dicts(sql)[0]["n"] == 0
    db.run("INSERT INTO u VALUES ('a', 7)")
    assert db.dicts(sql)[0]["n"] == 1


def test_what_is_never_cached() -> None:
    assert _classify("SELECT now() FROM t").reads is None
    assert _classify("SELECT * FROM read_parquet('x.parquet')").reads is None
    assert _classify("UPDATE t SET v = 1").writes == frozenset({"t"})
    assert _classify("CREATE TABLE z (a INT)").writes == frozenset({"*"})
    assert _classify("SELECT * FROM t JOIN u USING (k)").reads == frozenset({"t", "u"})


def test_cache_off(tmp_path: Path) -> None:
    d = Database(tmp_path / "n.duckdb", cache_entries=0)
    d.run("CREATE TABLE t (k VARCHAR, v INTEGER)")
    d.dicts("SELECT * FROM t")
    d.dicts("SELECT * FROM t")
    assert d.cache_counts()[0] == 0
