"""A loaded model version: input validation against its signature, encoding, prediction.

The request path calls ``encode`` (JSON rows → one array, or a 422 saying what was expected) and
``predict`` (array → outputs, class values or numbers). Encoding is ``dlplatform.models``'
``encode_columns``, the one training uses, so a served model sees inputs as it saw them there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlplatform.errors import InvalidInput, TooLarge
from dlplatform.models.spec import ModelSignature

_NUMBER = (int, float)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, _NUMBER):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_number(value: Any, dtype: str) -> bool:
    if isinstance(value, bool):
        return dtype == "bool"
    if isinstance(value, int):  # any size: the float32 range is checked on the array
        return True
    return isinstance(value, float) and math.isfinite(value)


@dataclass
class ServedModel:
    """One model version in a replica: the torch module plus its signature and config."""

    model: str
    version: int
    module: Any  # torch.nn.Module
    signature: ModelSignature
    params: dict[str, Any]
    max_rows: int

    def __post_init__(self) -> None:
        sig = self.signature
        self.features: tuple[str, ...] = tuple(sig.features)
        self.dtypes: tuple[str, ...] = tuple(sig.dtypes)
        self.kind: str = sig.kind
        self.shape: tuple[int, ...] = tuple(int(s) for s in sig.input_shape)
        self.width = int(np.prod(self.shape)) if self.shape else 1
        self.list_column = self.kind == "image" and len(self.features) == 1
        self.module.eval()

    # --- validation ---------------------------------------------------------------------------

    def expected(self) -> str:
        """What one input row looks like, for error messages."""
        if self.kind == "text":
            return f"a string (feature {self.features[0]!r}), or {{{self.features[0]!r}: string}}"
        if self.list_column:
            return (
                f"a list of {self.width} numbers (feature {self.features[0]!r}, image "
                f"{'x'.join(str(s) for s in self.shape)}), or {{{self.features[0]!r}: [...]}}"
            )
        shown = ", ".join(self.features[:8]) + (", ..." if len(self.features) > 8 else "")
        return f"a list of {len(self.features)} numbers or an object with keys {shown}"

    def _rows(self, inputs: Any) -> list[Any]:
        if not isinstance(inputs, list):
            raise InvalidInput(
                f"'inputs' must be a list of rows, got {_type_name(inputs)}; each row: "
                f"{self.expected()}"
            )
        if not inputs:
            raise InvalidInput(f"'inputs' is empty: send at least one row ({self.expected()})")
        if len(inputs) > self.max_rows:
            raise TooLarge(
                f"{len(inputs)} rows exceed the limit of {self.max_rows} rows per request"
            )
        return inputs

    def _numeric_row(self, i: int, row: Any) -> list[Any]:
        # The common case, checked in one pass: a list of plain numbers of the right length
        # (bool is not int's type). Finiteness is checked on the encoded array.
        if (
            type(row) is list
            and len(row) == len(self.features)
            and all(type(v) is float or type(v) is int for v in row)
        ):
            return row
        return self._checked_numeric_row(i, row)

    def _checked_numeric_row(self, i: int, row: Any) -> list[Any]:
        k = len(self.features)
        if isinstance(row, dict):
            missing = [f for f in self.features if f not in row]
            if missing:
                raise InvalidInput(
                    f"row {i}: missing feature(s) {', '.join(missing[:8])}; expected "
                    f"{self.expected()}"
                )
            row = [row[f] for f in self.features]
        elif not isinstance(row, list):
            raise InvalidInput(f"row {i}: got {_type_name(row)}; expected {self.expected()}")
        if len(row) != k:
            raise InvalidInput(f"row {i}: got {len(row)} values; expected {self.expected()}")
        for j, value in enumerate(row):
            if not _is_number(value, self.dtypes[j]):
                raise InvalidInput(
                    f"row {i}, feature {self.features[j]!r}: expected a number "
                    f"({self.dtypes[j]}), got {_type_name(value)}"
                )
        return row

    def _image_row(self, i: int, row: Any) -> list[Any]:
        if isinstance(row, dict):
            if self.features[0] not in row:
                raise InvalidInput(
                    f"row {i}: missing feature {self.features[0]!r}; expected {self.expected()}"
                )
            row = row[self.features[0]]
        if not isinstance(row, list) or len(row) != self.width:
            got = f"{len(row)} values" if isinstance(row, list) else _type_name(row)
            raise InvalidInput(f"row {i}: got {got}; expected {self.expected()}")
        for value in row:
            if not _is_number(value, "float"):
                raise InvalidInput(
                    f"row {i}: expected numbers in {self.features[0]!r}, got {_type_name(value)}"
                )
        return row

    def _text_row(self, i: int, row: Any) -> str:
        if isinstance(row, dict):
            if self.features[0] not in row:
                raise InvalidInput(
                    f"row {i}: missing feature {self.features[0]!r}; expected {self.expected()}"
                )
            row = row[self.features[0]]
        elif isinstance(row, list) and len(row) == 1:
            row = row[0]
        if not isinstance(row, str):
            raise InvalidInput(f"row {i}: got {_type_name(row)}; expected {self.expected()}")
        return row

    def encode(self, inputs: Any) -> np.ndarray:
        """Validate JSON rows and encode them as one model input array.

        Raises:
            InvalidInput: a row of the wrong shape or type, a missing feature (says what was
                expected), or no rows.
            TooLarge: more rows than ``max_rows``.
        """
        from dlplatform.models.encoding import encode_columns  # torch: the gateway imports us

        rows = self._rows(inputs)
        if self.kind == "text":
            texts = [self._text_row(i, r) for i, r in enumerate(rows)]
            return encode_columns({self.features[0]: texts}, self.signature, self.params)
        check = self._image_row if self.list_column else self._numeric_row
        checked = [check(i, r) for i, r in enumerate(rows)]
        try:
            with np.errstate(over="ignore"):
                x: np.ndarray | None = np.asarray(checked, dtype=np.float32)
        except OverflowError:  # an integer too large for any float
            x = None
        if x is None or not np.isfinite(x).all():
            slow = self._image_row if self.list_column else self._checked_numeric_row
            for i, r in enumerate(rows):
                slow(i, r)  # raises for a NaN or Infinity, naming its row and feature
            raise InvalidInput("a value is beyond the float32 range of the model (±3.4e38)")
        return x.reshape((-1, *self.shape))

    # --- prediction ---------------------------------------------------------------------------

    def predict(self, x: np.ndarray) -> list[Any]:
        """Outputs for an encoded batch: class values (classification) or numbers."""
        from dlplatform.models.encoding import predict  # torch: the gateway imports us

        return predict(self.module, self.signature, x)

    def predict_columns(self, columns: dict[str, Sequence[Any]]) -> list[Any]:
        """Outputs for a batch given as columns (batch inference over a dataset)."""
        from dlplatform.models.encoding import encode_columns  # torch: the gateway imports us

        if self.kind == "text" or self.list_column:
            x = encode_columns(columns, self.signature, self.params)
        else:
            missing = [f for f in self.features if f not in columns]
            if missing:
                raise InvalidInput(f"the dataset lacks feature column(s) {', '.join(missing)}")
            x = np.stack(
                [np.asarray(columns[f], dtype=np.float32) for f in self.features], axis=1
            ).reshape((-1, *self.shape))
        return self.predict(x)


def load_served_model(backend: Any, model: str, version: int, *, max_rows: int) -> ServedModel:
    """Load ``model@version`` through the registry (the artifact's hash is verified).

    Raises:
        NotFound: no such version.
        IntegrityError: the artifact does not match its recorded hash.
    """
    from dlplatform.models.artifact import load_model  # torch: the gateway imports this module

    module, signature = load_model(backend, model, str(version))
    record = backend.store.get_model_version(model, version)
    config = json.loads(record.config_json or "{}")
    params = dict((config.get("model_config") or {}).get("params") or {})
    return ServedModel(
        model=model,
        version=version,
        module=module,
        signature=signature,
        params=params,
        max_rows=max_rows,
    )
