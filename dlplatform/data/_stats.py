"""Per-column statistics of a commit, computed with DuckDB over the Arrow table."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

TOP_VALUES = 5


class TopValue(BaseModel, frozen=True, extra="forbid"):
    value: str
    count: int


class ColumnStats(BaseModel, frozen=True, extra="forbid"):
    """Statistics of one column; numeric fields are None where they do not apply."""

    name: str
    type: str
    count: int = Field(description="Non-null values.")
    nulls: int
    min: float | str | None = None
    max: float | str | None = None
    mean: float | None = None
    approx_distinct: int | None = None
    top: list[TopValue] = Field(default_factory=list, description="Most frequent strings.")


class CommitStats(BaseModel, frozen=True, extra="forbid"):
    """Statistics of one commit, stored with it (``Commit.stats_json``)."""

    row_count: int
    columns: list[ColumnStats]
    values_hidden: bool = Field(
        default=False,
        description="True when min, max, mean and the most frequent values were left out: "
        "they are data, shown only to callers who may read the dataset (`dataset.read`).",
    )

    def without_values(self) -> CommitStats:
        """The statistics without data values: names, types, counts, nulls and distinct
        counts stay; min, max, mean and the most frequent strings go."""
        return CommitStats(
            row_count=self.row_count,
            columns=[
                ColumnStats(
                    name=c.name,
                    type=c.type,
                    count=c.count,
                    nulls=c.nulls,
                    approx_distinct=c.approx_distinct,
                )
                for c in self.columns
            ],
            values_hidden=True,
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _plain(value: Any) -> float | str | None:
    if value is None or isinstance(value, float | str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return float(value)
    return str(value)


def compute_stats(table: pa.Table) -> CommitStats:
    """Count, nulls, min/max/mean (numbers), approximate distinct count, top strings per column."""
    import duckdb  # heavy: duckdb (90 ms); the SDK imports this module for CommitStats

    con = duckdb.connect()
    try:
        con.register("t", table)
        columns: list[ColumnStats] = []
        selects: list[str] = []
        kinds: list[str] = []
        for field in table.schema:
            q = _quote(field.name)
            t = field.type
            numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
            comparable = (
                numeric
                or pa.types.is_string(t)
                or pa.types.is_large_string(t)
                or (pa.types.is_temporal(t) or pa.types.is_boolean(t))
            )
            kinds.append("num" if numeric else "cmp" if comparable else "other")
            selects.append(f"count({q})")
            if numeric or comparable:
                selects += [f"min({q})", f"max({q})"]
            else:
                selects += ["NULL", "NULL"]
            selects.append(f"avg({q})" if numeric else "NULL")
            selects.append(f"approx_count_distinct({q})" if comparable else "NULL")
        row = con.execute(f"SELECT count(*), {', '.join(selects)} FROM t").fetchone()
        assert row is not None
        total = int(row[0])
        for i, field in enumerate(table.schema):
            count, lo, hi, mean, distinct = row[1 + 5 * i : 6 + 5 * i]
            top: list[TopValue] = []
            if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                q = _quote(field.name)
                top = [
                    TopValue(value=str(v), count=int(c))
                    for v, c in con.execute(
                        f"SELECT {q}, count(*) AS c FROM t WHERE {q} IS NOT NULL "
                        f"GROUP BY {q} ORDER BY c DESC, {q} LIMIT {TOP_VALUES}"
                    ).fetchall()
                ]
            columns.append(
                ColumnStats(
                    name=field.name,
                    type=str(field.type),
                    count=int(count),
                    nulls=total - int(count),
                    min=_plain(lo),
                    max=_plain(hi),
                    mean=float(mean) if mean is not None else None,
                    approx_distinct=int(distinct) if distinct is not None else None,
                    top=top,
                )
            )
        return CommitStats(row_count=total, columns=columns)
    finally:
        con.close()
