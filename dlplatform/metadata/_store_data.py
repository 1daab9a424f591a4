"""Datasets and commits in DuckDB."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from dlplatform.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from dlplatform.metadata._db import Database, insert
from dlplatform.metadata.records import (
    Commit,
    CommitPart,
    Dataset,
    LineageEdge,
    invalid_input,
    utcnow,
)


class DatasetTables:
    _db: Database

    def _add_edges_in(self, cur: Any, edges: list[LineageEdge]) -> None:
        raise NotImplementedError  # provided by the core store

    def create_dataset(self, dataset: Dataset) -> Dataset:
        """Raises AlreadyExists (also for a soft-deleted dataset of the same name)."""
        with self._db.tx() as cur:
            insert(cur, "datasets", dataset.model_dump(mode="python"), f"dataset {dataset.name!r}")
        return dataset

    def get_dataset(self, name: str, *, include_deleted: bool = False) -> Dataset:
        rows = self._db.dicts("SELECT * FROM datasets WHERE name = ?", [name])
        if not rows or (rows[0]["deleted_at"] is not None and not include_deleted):
            raise NotFound(f"dataset {name!r} does not exist")
        return Dataset(**rows[0])

    def list_datasets(self, *, include_deleted: bool = False) -> list[Dataset]:
        where = "" if include_deleted else "WHERE deleted_at IS NULL"
        return [
            Dataset(**r) for r in self._db.dicts(f"SELECT * FROM datasets {where} ORDER BY name")
        ]

    def update_dataset(self, name: str, **changes: Any) -> Dataset:
        """Change description, tags, groups or arrow_schema of a dataset."""
        allowed = {"description", "tags", "groups", "arrow_schema", "type"}
        bad = set(changes) - allowed
        if bad:
            raise InvalidInput(f"cannot change {sorted(bad)} of a dataset")
        current = self.get_dataset(name)
        try:
            updated = Dataset.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            raise invalid_input(exc, f"change of dataset {name!r}") from exc
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            values = [getattr(updated, k) for k in changes]
            self._db.run(f"UPDATE datasets SET {sets} WHERE name = ?", [*values, name])
        return self.get_dataset(name)

    def delete_dataset(self, name: str) -> Dataset:
        """Soft delete: the dataset disappears from listings; its commits stay for lineage."""
        self.get_dataset(name)
        self._db.run("UPDATE datasets SET deleted_at = ? WHERE name = ?", [utcnow(), name])
        return self.get_dataset(name, include_deleted=True)

    def purge_dataset(self, name: str) -> list[str]:
        """Remove a soft-deleted dataset's rows; returns the part hashes it referenced."""
        ds = self.get_dataset(name, include_deleted=True)
        if ds.deleted_at is None:
            raise Conflict(f"dataset {name!r} is not deleted; delete it before purging")
        with self._db.tx() as cur:
            shas = [
                r[0]
                for r in cur.execute(
                    "SELECT DISTINCT p.sha256 FROM commit_parts p JOIN commits c ON c.id = p.commit_id "
                    "WHERE c.dataset = ?",
                    [name],
                ).fetchall()
            ]
            cur.execute(
                "DELETE FROM commit_parts WHERE commit_id IN (SELECT id FROM commits WHERE dataset = ?)",
                [name],
            )
            cur.execute("DELETE FROM commits WHERE dataset = ?", [name])
            cur.execute("DELETE FROM push_keys WHERE dataset = ?", [name])
            cur.execute("DELETE FROM datasets WHERE name = ?", [name])
        return shas

    def add_commit(
        self,
        commit: Commit,
        *,
        expected_head: str | None,
        edges: list[LineageEdge] | None = None,
        dataset_arrow_schema: str | None = None,
        idempotency_key: str | None = None,
    ) -> Commit:
        """Make ``commit`` (with its parts and lineage edges) the dataset's new head, atomically.

        Args:
            idempotency_key: Recorded for (``commit.author``, ``commit.dataset``) in the same
                transaction, so the commit and its key become visible together or not at all.

        Raises:
            AlreadyExists: ``idempotency_key`` was recorded already (its commit stands; look it
                up with ``get_commit_by_push_key``). Nothing was written.
            Conflict: the dataset's head is no longer ``expected_head``.
            NotFound: the dataset does not exist.
        """
        with self._db.tx() as cur:
            row = cur.execute(
                "SELECT head, deleted_at FROM datasets WHERE name = ?", [commit.dataset]
            ).fetchone()
            if row is None or row[1] is not None:
                raise NotFound(f"dataset {commit.dataset!r} does not exist")
            if idempotency_key is not None:
                # Checked before the head, so that a duplicate does not rebase and retry.
                done = cur.execute(
                    "SELECT commit_id FROM push_keys WHERE user_name = ? AND dataset = ? AND key = ?",
                    [commit.author, commit.dataset, idempotency_key],
                ).fetchone()
                if done is not None:
                    raise AlreadyExists(
                        f"push key {idempotency_key!r} of {commit.author!r} on dataset "
                        f"{commit.dataset!r} already made commit {done[0]}"
                    )
            if row[0] != expected_head:
                raise Conflict(
                    f"dataset {commit.dataset!r} head moved: expected {expected_head}, it is {row[0]}"
                )
            values = commit.model_dump(mode="python", exclude={"parts"})
            insert(cur, "commits", values, f"commit {commit.id!r}")
            for idx, part in enumerate(commit.parts):
                cur.execute(
                    "INSERT INTO commit_parts VALUES (?, ?, ?, ?, ?)",
                    [commit.id, idx, part.sha256, part.row_count, part.size_bytes],
                )
            if dataset_arrow_schema is not None:
                cur.execute(
                    "UPDATE datasets SET head = ?, arrow_schema = ? WHERE name = ?",
                    [commit.id, dataset_arrow_schema, commit.dataset],
                )
            else:
                cur.execute(
                    "UPDATE datasets SET head = ? WHERE name = ?", [commit.id, commit.dataset]
                )
            self._add_edges_in(cur, edges or [])
            if idempotency_key is not None:
                # A concurrent duplicate that got past the check above fails here (or at COMMIT
                # on the primary key) and rolls the whole commit back.
                key_row = {
                    "user_name": commit.author,
                    "dataset": commit.dataset,
                    "key": idempotency_key,
                    "commit_id": commit.id,
                    "created_at": utcnow(),
                }
                insert(cur, "push_keys", key_row, f"push key {idempotency_key!r}")
        return commit

    def get_commit_by_push_key(self, user: str, dataset: str, key: str) -> Commit:
        """The commit a push by ``user`` to ``dataset`` with idempotency ``key`` made.

        Raises:
            NotFound: no push recorded that key.
        """
        row = self._db.one(
            "SELECT commit_id FROM push_keys WHERE user_name = ? AND dataset = ? AND key = ?",
            [user, dataset, key],
        )
        if row is None:
            raise NotFound(f"no push by {user!r} to dataset {dataset!r} with key {key!r}")
        return self.get_commit(row[0])

    def get_commit(self, commit_id: str) -> Commit:
        rows = self._db.dicts("SELECT * FROM commits WHERE id = ?", [commit_id])
        if not rows:
            raise NotFound(f"commit {commit_id!r} does not exist")
        parts = self._db.dicts(
            "SELECT sha256, row_count, size_bytes FROM commit_parts WHERE commit_id = ? ORDER BY idx",
            [commit_id],
        )
        return Commit(**rows[0], parts=tuple(CommitPart(**p) for p in parts))

    def list_commits(self, dataset: str, *, limit: int = 1000, offset: int = 0) -> list[Commit]:
        """Newest first, without parts (use ``get_commit`` for a commit's parts)."""
        self.get_dataset(dataset, include_deleted=True)
        rows = self._db.dicts(
            "SELECT * FROM commits WHERE dataset = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            [dataset, limit, offset],
        )
        return [Commit(**r) for r in rows]

    def list_commits_page(
        self, dataset: str, *, limit: int = 1000, offset: int = 0
    ) -> tuple[list[Commit], int]:
        """One page of ``list_commits`` and the total, in one call (one actor round trip)."""
        return self.list_commits(dataset, limit=limit, offset=offset), self.count_commits(dataset)

    def count_commits(self, dataset: str) -> int:
        """How many commits ``list_commits`` pages through."""
        self.get_dataset(dataset, include_deleted=True)
        row = self._db.one("SELECT count(*) FROM commits WHERE dataset = ?", [dataset])
        return int(row[0]) if row else 0

    def set_commit_stats(self, commit_id: str, stats_json: str) -> None:
        self.get_commit(commit_id)
        self._db.run("UPDATE commits SET stats_json = ? WHERE id = ?", [stats_json, commit_id])
