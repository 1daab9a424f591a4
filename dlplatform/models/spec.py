"""What a model is, in plain data: its ``ModelSignature`` and the names of the built-in models.

Light (pydantic only, no torch or Ray): the SDK, the CLI and the training specs import it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

BUILTIN_MODELS = ("mlp", "cnn", "text")
"""Names of the built-in models (see ``dlplatform.models.builtin``)."""

_USER_CODE = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)

ParamValue = bool | int | float | str
"""A hyperparameter or a class value: one JSON scalar."""


def is_code_path(value: str) -> bool:
    """Whether ``value`` has the form of a user-code path ``package.module:function``. Only the
    form: whether it imports is known only where it runs (a job, a model replica)."""
    return bool(_USER_CODE.fullmatch(value))


class ModelSignature(BaseModel, frozen=True, extra="forbid"):
    """What a model takes and returns, recorded for serving."""

    kind: Literal["tabular", "image", "text"]
    features: tuple[str, ...] = Field(description="Input columns, in order.")
    dtypes: tuple[str, ...] = Field(description="Arrow type of each input column.")
    input_shape: tuple[int, ...] = Field(description="Shape of one example given to the model.")
    task: Literal["classification", "regression"]
    label: str
    classes: tuple[ParamValue, ...] = Field(
        default=(), description="Class value of each output index (classification)."
    )
