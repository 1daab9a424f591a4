"""Run search: a small filter language, parsed by hand into SQL with bound parameters only.

    params.lr < 0.01 and metrics.val_accuracy > 0.9 and tags.team = "vision"
    status IN ("FAILED", "CANCELLED") and created >= "2026-01-01" and dataset = "digits"

A filter is clauses joined by ``and`` (case-insensitive). A clause is ``FIELD OP VALUE``:

- FIELD: ``params.KEY``, ``metrics.KEY`` (the run's final value: the point at the highest step),
  ``tags.KEY``, or an attribute: ``id``, ``name``, ``status``, ``kind``, ``owner``, ``dataset``
  (``NAME`` or ``NAME@COMMIT``), ``created``, ``started``, ``ended`` (ISO dates or times).
  A KEY is 1-128 of ``A-Z a-z 0-9 _ . / -``; quote any other with backticks: ``params.`a b```.
- OP: ``=`` (or ``==``), ``!=`` (or ``<>``), ``<``, ``<=``, ``>``, ``>=``, ``LIKE``, ``ILIKE``,
  ``IN (v, ...)``, ``NOT IN (v, ...)``.
- VALUE: a number, or a string in double or single quotes (``\\`` escapes the next character).

Metrics compare as numbers (a NaN final value matches no comparison); a param compares as a
number when the value is a number, else as text. A key no run has matches nothing (an empty
result, not an error). The sort is ``FIELD [ASC|DESC]`` items separated by commas (default:
newest first); runs lacking a sorted metric or param come last.

Nothing a user wrote is ever put into the SQL text: field names map to fixed SQL fragments, keys
and values are bound as parameters. A malformed filter raises ``InvalidInput`` naming the
offending token and its position (0-based character offset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dlplatform.errors import InvalidInput
from dlplatform.metadata.enums import RunStatus

MAX_FILTER_CHARS = 4000
KEY_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,127}"
_KEY = re.compile(KEY_PATTERN)
_QUOTED_KEY = re.compile(r"[^`\x00-\x1f]{1,128}")  # a param key a training job may have logged
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<field>[A-Za-z_][A-Za-z0-9_]*\.(?:`[^`]*`|[A-Za-z0-9_./-]+))
    |(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z0-9_.]))
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<op><=|>=|!=|<>|==|=|<|>)
    |(?P<punct>[(),])""",
    re.VERBOSE,
)
_OPS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_WORD_OPS = {"like": "LIKE", "ilike": "ILIKE", "in": "IN"}
_ORDER_OPS = frozenset({"<", "<=", ">", ">="})
_DATASET = "(SELECT c.dataset FROM commits c WHERE c.id = r.dataset_commit)"
# attribute -> (SQL expression, type). The SQL is ours; the user's word only selects it.
_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "id": ("r.id", "text"),
    "name": ("r.name", "text"),
    "status": ("r.status", "status"),
    "kind": ("r.kind", "text"),
    "owner": ("r.owner", "text"),
    "dataset": (_DATASET, "dataset"),
    "created": ("r.created_at", "time"),
    "started": ("r.started_at", "time"),
    "ended": ("r.ended_at", "time"),
}
_ALIASES = {"created_at": "created", "started_at": "started", "ended_at": "ended",
            "run_id": "id", "user": "owner"}  # fmt: skip
_PREFIXES = {"params": "param", "param": "param", "metrics": "metric", "metric": "metric",
             "tags": "tag", "tag": "tag", "attributes": "attr", "attribute": "attr"}  # fmt: skip
_FINAL_VALUE = "CASE WHEN isnan({v}) THEN NULL ELSE {v} END"


@dataclass(frozen=True)
class Token:
    kind: str  # field, number, word, string, op, punct, end
    text: str
    pos: int
    value: Any = None


@dataclass(frozen=True)
class Field:
    """What a ``FIELD`` token names: a run attribute, or a param, metric or tag by key."""

    kind: str  # attr, param, metric, tag
    key: str
    token: Token


@dataclass(frozen=True)
class Compiled:
    """A filter and sort as SQL over ``runs r``: ``where`` and ``order`` with their parameters,
    ``joins`` (LEFT JOINs the sort needs) with theirs, bound before the WHERE's."""

    joins: str
    join_params: list[Any]
    where: str
    where_params: list[Any]
    order: str


def _error(token: Token, problem: str) -> InvalidInput:
    shown = repr(token.text[:40]) if token.kind != "end" else "end of input"
    return InvalidInput(f"invalid filter at position {token.pos} ({shown}): {problem}")


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` (whitespace dropped), ending with an ``end`` token.

    Raises:
        InvalidInput: a character no token starts with, named with its position.
    """
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidInput(f"a filter has at most {MAX_FILTER_CHARS} characters, got {len(text)}")
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            bad = Token("char", text[pos], pos)
            raise _error(bad, "unexpected character (use quotes around text values)")
        kind = match.lastgroup or ""
        word = match.group()
        if kind != "ws":
            value: Any = None
            if kind == "number":
                value = float(word)
            elif kind == "string":
                value = re.sub(r"\\(.)", r"\1", word[1:-1])
            out.append(Token(kind, word, pos, value))
        pos = match.end()
    out.append(Token("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def fail(self, token: Token, problem: str) -> InvalidInput:
        return _error(token, problem)

    def is_word(self, token: Token, *words: str) -> bool:
        return token.kind == "word" and token.text.lower() in words

    def field(self) -> Field:
        token = self.take()
        if token.kind == "field":
            prefix, _, key = token.text.partition(".")
            kind = _PREFIXES.get(prefix.lower())
            if kind is None:
                raise self.fail(token, "unknown field: use params.KEY, metrics.KEY, tags.KEY "
                                       f"or one of {', '.join(_ATTRIBUTES)}")  # fmt: skip
            quoted = key.startswith("`")
            key = key[1:-1] if quoted else key
            if kind == "attr":
                return self._attribute(token, key)
            if not (_QUOTED_KEY if quoted else _KEY).fullmatch(key):
                raise self.fail(token, f"invalid key {key[:40]!r}: 1-128 of A-Z a-z 0-9 _ . / -")
            return Field(kind, key, token)
        if token.kind == "word":
            return self._attribute(token, token.text)
        raise self.fail(token, "expected a field (params.KEY, metrics.KEY, tags.KEY, status, ...)")

    def _attribute(self, token: Token, word: str) -> Field:
        name = _ALIASES.get(word.lower(), word.lower())
        if name not in _ATTRIBUTES:
            raise self.fail(token, f"unknown attribute: use one of {', '.join(_ATTRIBUTES)}")
        return Field("attr", name, token)

    def value(self) -> Token:
        token = self.take()
        if token.kind not in ("number", "string"):
            raise self.fail(token, "expected a value: a number or a quoted string")
        return token

    def clause(self) -> tuple[str, list[Any]]:
        field = self.field()
        token = self.take()
        negate = False
        if self.is_word(token, "not"):
            negate = True
            token = self.take()
            if not self.is_word(token, "in", "like", "ilike"):
                raise self.fail(token, "expected IN, LIKE or ILIKE after NOT")
        if token.kind == "op":
            op = _OPS[token.text]
        elif token.kind == "word" and token.text.lower() in _WORD_OPS:
            op = _WORD_OPS[token.text.lower()]
        else:
            raise self.fail(token, "expected an operator: = != < <= > >= LIKE ILIKE IN")
        values = self._list() if op == "IN" else [self.value()]
        return _compile_clause(self, field, op, token, values, negate)

    def _list(self) -> list[Token]:
        opening = self.take()
        if opening.text != "(":
            raise self.fail(opening, "expected '(' to open the IN list")
        values = [self.value()]
        while True:
            token = self.take()
            if token.text == ")":
                return values
            if token.text != ",":
                raise self.fail(token, "expected ',' or ')' in the IN list")
            values.append(self.value())


def _time_value(parser: _Parser, token: Token) -> datetime:
    if token.kind != "string":
        raise parser.fail(token, 'expected a quoted ISO date or time, e.g. "2026-01-31"')
    try:
        when = datetime.fromisoformat(str(token.value))
    except ValueError:
        raise parser.fail(token, 'not an ISO date or time, e.g. "2026-01-31T12:00"') from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _compile_clause(
    parser: _Parser, field: Field, op: str, op_token: Token, values: list[Token], negate: bool
) -> tuple[str, list[Any]]:
    """One clause as SQL (a boolean over ``runs r``) and its parameters, in order."""
    numeric = all(v.kind == "number" for v in values)
    textual = all(v.kind == "string" for v in values)
    if op in ("LIKE", "ILIKE") and not textual:
        raise parser.fail(values[0], f'{op} takes a quoted pattern, e.g. "res%"')
    if not (numeric or textual):
        raise parser.fail(values[-1], "an IN list holds numbers or strings, not both")
    marks = "(" + ", ".join("?" for _ in values) + ")" if op == "IN" else "?"
    sql_op = f"NOT {op}" if negate else op
    bound: list[Any] = [v.value for v in values]

    if field.kind == "metric":
        if not numeric:
            raise parser.fail(values[0], "a metric compares with a number")
        cond = f"m.value {sql_op} {marks}"
        return (
            "EXISTS (SELECT 1 FROM run_latest_metrics m WHERE m.run_id = r.id AND m.key = ? "
            f"AND NOT isnan(m.value) AND {cond})",
            [field.key, *bound],
        )
    if field.kind == "param":
        column = "TRY_CAST(p.value AS DOUBLE)" if numeric else "p.value"
        return (
            "EXISTS (SELECT 1 FROM params p WHERE p.run_id = r.id AND p.key = ? "
            f"AND {column} {sql_op} {marks})",
            [field.key, *bound],
        )
    if field.kind == "tag":
        if not textual:
            bound = [v.text for v in values]  # a tag's value is text: compare 1 as "1"
        tag_value = "(CASE WHEN u.t = ? THEN '' ELSE substr(u.t, ?) END)"
        return (
            "EXISTS (SELECT 1 FROM (SELECT unnest(r.tags) AS t) u "
            f"WHERE (u.t = ? OR starts_with(u.t, ?)) AND {tag_value} {sql_op} {marks})",
            [field.key, f"{field.key}=", field.key, len(field.key) + 2, *bound],
        )
    column, kind = _ATTRIBUTES[field.key]
    if kind == "time":
        if op in ("LIKE", "ILIKE"):
            raise parser.fail(op_token, f"{field.key} compares with = < <= > >= or IN")
        return f"{column} {sql_op} {marks}", [_time_value(parser, v) for v in values]
    if not textual:
        raise parser.fail(values[0], f"{field.key} compares with a quoted string")
    if kind == "status" and op not in ("LIKE", "ILIKE"):
        bound = [str(b).upper() for b in bound]
        for token, status in zip(values, bound, strict=True):
            if status not in RunStatus.__members__:
                raise parser.fail(
                    token, f"unknown status: use one of {', '.join(RunStatus.__members__)}"
                )
    if kind == "dataset" and any("@" in str(b) for b in bound):
        column = f"({_DATASET} || '@' || r.dataset_commit)"
    if op in _ORDER_OPS and kind == "status":
        raise parser.fail(op_token, "status compares with = != IN or LIKE")
    return f"{column} {sql_op} {marks}", bound


def parse_filter(text: str | None) -> tuple[str, list[Any]]:
    """``text`` as a SQL condition over ``runs r`` and its parameters ("TRUE" for no filter).

    Raises:
        InvalidInput: a malformed filter, naming the offending token and its position.
    """
    if text is None or not text.strip():
        if text is not None and len(text) > MAX_FILTER_CHARS:
            raise InvalidInput(f"a filter has at most {MAX_FILTER_CHARS} characters")
        return "TRUE", []
    parser = _Parser(text)
    parts: list[str] = []
    params: list[Any] = []
    while True:
        sql, bound = parser.clause()
        parts.append(sql)
        params.extend(bound)
        token = parser.take()
        if token.kind == "end":
            return " AND ".join(f"({p})" for p in parts), params
        if parser.is_word(token, "or"):
            raise parser.fail(token, "OR is not supported: clauses are joined by AND")
        if not parser.is_word(token, "and"):
            raise parser.fail(token, "expected AND between clauses, or the end of the filter")


def parse_order(text: str | None) -> tuple[str, str, list[Any]]:
    """A sort (``metrics.val_accuracy DESC, created``) as (LEFT JOINs, ORDER BY list, the
    joins' parameters). Ties and no sort: newest first.

    Raises:
        InvalidInput: a malformed sort, naming the offending token and its position.
    """
    joins: list[str] = []
    params: list[Any] = []
    order: list[str] = []
    if text is not None and text.strip():
        parser = _Parser(text)
        while True:
            field = parser.field()
            direction = "ASC"
            token = parser.take()
            if parser.is_word(token, "asc", "desc"):
                direction = token.text.upper()
                token = parser.take()
            alias = f"s{len(joins)}"
            if field.kind == "metric":
                joins.append(f"LEFT JOIN run_latest_metrics {alias} "
                             f"ON {alias}.run_id = r.id AND {alias}.key = ?")  # fmt: skip
                params.append(field.key)
                value = _FINAL_VALUE.format(v=f"{alias}.value")
                order.append(f"{value} {direction} NULLS LAST")
            elif field.kind == "param":
                joins.append(
                    f"LEFT JOIN params {alias} ON {alias}.run_id = r.id AND {alias}.key = ?"
                )
                params.append(field.key)
                order.append(f"TRY_CAST({alias}.value AS DOUBLE) {direction} NULLS LAST")
                order.append(f"{alias}.value {direction} NULLS LAST")
            elif field.kind == "tag":
                raise parser.fail(field.token, "runs cannot be sorted by a tag")
            else:
                order.append(f"{_ATTRIBUTES[field.key][0]} {direction} NULLS LAST")
            if token.kind == "end":
                break
            if token.text != ",":
                raise parser.fail(token, "expected ASC, DESC, ',' or the end of the sort")
    order += ["r.created_at DESC", "r.id DESC"]
    return " ".join(joins), ", ".join(order), params


def compile_search(filter_text: str | None, order_by: str | None) -> Compiled:
    """The filter and the sort together (see ``parse_filter`` and ``parse_order``)."""
    where, where_params = parse_filter(filter_text)
    joins, order, join_params = parse_order(order_by)
    return Compiled(joins, join_params, where, where_params, order)
