"""The training-spec options ``dlp train submit`` and ``dlp tune submit`` share, defined once,
and the one function that builds a ``TrainingJobSpec`` from them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from dlplatform.cli._common import parse_model
from dlplatform.errors import InvalidInput

if TYPE_CHECKING:
    from dlplatform.train.spec import TrainingJobSpec

DatasetOpt = typer.Option(..., "--dataset", help="NAME or NAME@COMMIT (pinned at submit).")
LabelOpt = typer.Option(..., "--label", help="Label column.")
ModelOpt = typer.Option("mlp", "--model", help="mlp, cnn, text, or user code module:function.")
FeatureOpt = typer.Option([], "--feature", help="Feature column (repeatable; default all).")
ParamOpt = typer.Option([], "--param", help="Hyperparameter KEY=VALUE (repeatable).")
BatchSizeOpt = typer.Option(64, "--batch-size")
LrOpt = typer.Option(1e-3, "--lr")
SeedOpt = typer.Option(0, "--seed")
ValidationFractionOpt = typer.Option(0.2, "--validation-fraction")
PriorityOpt = typer.Option(0, "--priority", help="Higher starts first.")
ModelNameOpt = typer.Option(None, "--model-name", help="Registry name.")


def workers_opt(default: int, help: str) -> Any:
    """``--workers`` (a training job's default differs from a search's, per trial)."""
    return typer.Option(default, "--workers", help=help)


def epochs_opt(default: int) -> Any:
    return typer.Option(default, "--epochs")


def parse_param(text: str) -> tuple[str, Any]:
    """``K=V`` → (K, V) with V as bool, int, float or string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--param {text!r} is not KEY=VALUE")
    value: Any = raw
    if raw.lower() in {"true", "false"}:
        value = raw.lower() == "true"
    else:
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
    return key, value


def training_spec(
    *, dataset: str, label: str, model: str, feature: list[str], param: list[str], **fields: Any
) -> TrainingJobSpec:
    """The spec the shared options (and a command's own ``fields``) give.

    Raises:
        InvalidInput: a malformed ``--param`` or a value the spec rejects (named).
    """
    from dlplatform.train.spec import TrainingJobSpec  # `dlp --help` loads no spec module

    return parse_model(
        TrainingJobSpec, dataset=dataset, label=label, model=model,
        features=tuple(feature) or None, params=dict(parse_param(x) for x in param), **fields,
    )  # fmt: skip
