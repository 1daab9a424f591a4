"""Arrow schemas of datasets: serialization and the checks every push goes through.

A schema is stored as JSON: ``{"fields": [{"name", "type", "nullable"}], "ipc": <base64>}``.
The ``fields`` list is for people (``dlp datasets show``, HTTP); ``ipc`` is the exact schema.

Rules of a push against the dataset's schema (``reconcile``):

- the same columns with the same types: accepted (columns are reordered to the dataset's order);
- a narrower integer or float in the push (int32 into int64, float32 into float64): the pushed
  column is cast up, recorded in the commit notes;
- a wider integer or float in the push (int64 into int32): the dataset's schema is widened,
  recorded; older parts are read with the commit's (wider) schema;
- a column the dataset lacks: rejected on APPEND; on OVERWRITE accepted when nullable, recorded;
- a missing column, or any other type difference: ``SchemaMismatch`` naming the column and both
  types.
"""

from __future__ import annotations

import base64
import json

import pyarrow as pa

from dlplatform.errors import IntegrityError, SchemaMismatch

_INT_ORDER = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
_UINT_ORDER = [pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
_FLOAT_ORDER = [pa.float16(), pa.float32(), pa.float64()]
_STRING = {pa.string(), pa.large_string()}


def schema_to_json(schema: pa.Schema) -> str:
    """The stored form of ``schema`` (metadata such as pandas' index info is dropped)."""
    schema = schema.remove_metadata()
    fields = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
    ipc = base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")
    return json.dumps({"fields": fields, "ipc": ipc}, separators=(",", ":"))


def schema_from_json(text: str) -> pa.Schema:
    """Parse a stored schema.

    Raises:
        IntegrityError: the text is not a stored schema.
    """
    try:
        data = json.loads(text)
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["ipc"])))
    except (ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise IntegrityError(f"stored arrow schema is unreadable: {exc}") from exc


def schema_fields(schema: pa.Schema) -> list[dict[str, object]]:
    """``[{"name", "type", "nullable"}]`` for display."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def _rank(t: pa.DataType) -> tuple[int, int] | None:
    for family, order in enumerate((_INT_ORDER, _UINT_ORDER, _FLOAT_ORDER)):
        if t in order:
            return family, order.index(t)
    return None


def _same(a: pa.DataType, b: pa.DataType) -> bool:
    return a == b or (a in _STRING and b in _STRING)


def reconcile(
    expected: pa.Schema | None, actual: pa.Schema, *, overwrite: bool
) -> tuple[pa.Schema, pa.Schema, list[str]]:
    """Check a push's schema against the dataset's.

    Returns:
        ``(part_schema, dataset_schema, notes)``: the schema the pushed data is cast to before it
        is written, the dataset's schema after this push, and what was widened or added.

    Raises:
        SchemaMismatch: a missing column, an extra column (on APPEND, or not nullable), or a
            type that is neither equal nor a safe widening.
    """
    actual = actual.remove_metadata()
    if expected is None:
        return actual, actual, []
    expected = expected.remove_metadata()
    names = set(actual.names)
    if len(names) != len(actual.names):
        dup = sorted({n for n in actual.names if actual.names.count(n) > 1})
        raise SchemaMismatch(f"push has duplicate columns: {', '.join(dup)}")
    notes: list[str] = []
    part_fields: list[pa.Field] = []
    dataset_fields: list[pa.Field] = []
    for field in expected:
        if field.name not in names:
            raise SchemaMismatch(
                f"column {field.name!r} is missing: the dataset has {field.name}: {field.type}, "
                "the push has no such column"
            )
        got = actual.field(field.name)
        if _same(field.type, got.type):
            part_fields.append(field)
            dataset_fields.append(field)
            continue
        want_rank, got_rank = _rank(field.type), _rank(got.type)
        if want_rank and got_rank and want_rank[0] == got_rank[0]:
            if got_rank[1] < want_rank[1]:
                notes.append(f"cast {field.name} {got.type}->{field.type}")
                part_fields.append(field)
                dataset_fields.append(field)
            else:
                notes.append(f"widened {field.name} {field.type}->{got.type}")
                part_fields.append(field.with_type(got.type))
                dataset_fields.append(field.with_type(got.type))
            continue
        raise SchemaMismatch(
            f"column {field.name!r} has type {got.type} in the push but {field.type} in the dataset"
        )
    extra = [f for f in actual if f.name not in set(expected.names)]
    for field in extra:
        if not overwrite:
            raise SchemaMismatch(
                f"column {field.name!r} ({field.type}) is not in the dataset; add columns with an "
                "overwrite push"
            )
        if not field.nullable:
            raise SchemaMismatch(
                f"column {field.name!r} ({field.type}) is new and not nullable; only nullable "
                "columns may be added"
            )
        notes.append(f"added nullable column {field.name} {field.type}")
        part_fields.append(field)
        dataset_fields.append(field)
    return pa.schema(part_fields), pa.schema(dataset_fields), notes


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns, order and types (after ``reconcile`` accepted it)."""
    table = table.select(schema.names)
    if table.schema.remove_metadata().equals(schema, check_metadata=False):
        return table.replace_schema_metadata(None)
    columns = []
    for field, column in zip(schema, table.columns, strict=True):
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)
