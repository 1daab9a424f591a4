"""Box C, the model trainer: job specs, the queue and scheduler, the Ray Train runner, built-in
models and the model registry.

Submit with ``submit(backend, principal, TrainingJobSpec(...))`` (or ``dlp train submit``, the
SDK's ``p.training.submit``, ``POST /api/v1/training/jobs``, or ``ray job submit -- python -m
dlplatform.train.entrypoint --spec-json ...``). A successful run registers a model version;
``load_model`` gives it back as a torch module after verifying its hash.
"""

from dlplatform.train.registry import (
    alias_history,
    get_version,
    list_models,
    list_versions,
    load_model,
    promote,
    resolve_version,
)
from dlplatform.train.service import (
    cancel_job,
    count_jobs,
    epoch_table,
    get_job,
    get_logs,
    get_metrics,
    list_jobs,
    read_logs,
    submit,
    wait_job,
)
from dlplatform.train.spec import BUILTIN_MODELS, ModelSignature, TrainingJob, TrainingJobSpec
from dlplatform.train.tune import TrialSummary, TuningJob, TuningJobSpec, parse_distribution

__all__ = [
    "BUILTIN_MODELS",
    "ModelSignature",
    "TrainingJob",
    "TrainingJobSpec",
    "TrialSummary",
    "TuningJob",
    "TuningJobSpec",
    "alias_history",
    "cancel_job",
    "count_jobs",
    "epoch_table",
    "get_job",
    "get_logs",
    "get_metrics",
    "get_version",
    "list_jobs",
    "list_models",
    "list_versions",
    "load_model",
    "parse_distribution",
    "promote",
    "read_logs",
    "resolve_version",
    "submit",
    "wait_job",
]
