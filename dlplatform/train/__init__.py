"""Box C, the model trainer: job specs, the queue and scheduler, the Ray Train runner and
tuning. What a run produces (the model registry, signatures, built-in networks, loading) lives in
``dlplatform.models``; training writes to it.

Submit with ``submit(backend, principal, TrainingJobSpec(...))`` (or ``dlp train submit``, the
SDK's ``p.training.submit``, ``POST /api/v1/training/jobs``, or ``ray job submit -- python -m
dlplatform.train.entrypoint --spec-json ...``). A successful run registers a model version;
``dlplatform.models.load_model`` gives it back as a torch module after verifying its hash.

Layers, each importing only those below it: ``spec``, ``_usercode``, ``_startup``, ``_joblog``
(records and helpers) · ``runner`` (the Ray Train loop) · ``_lifecycle`` (what training and
tuning share: a run's holding, the driver's prologue, code versions, ending, waiting) ·
``execute`` (one training run) · ``pool`` and ``scheduler`` · ``service``, ``tracking``,
``reproduce``, ``tune`` (the services) · ``tune_driver`` and ``entrypoint`` (the one Ray Job
driver of both kinds). May import ``dlplatform.models``, ``data``, ``metadata``, ``access``,
``context``, ``usage``; never ``serve``, ``workflows`` or the adapters.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.models.artifact import load_model, model_from_files, verify_version
    from dlplatform.models.registry import (
        alias_history,
        get_version,
        list_models,
        list_versions,
        promote,
        read_model_object,
        resolve_version,
    )
    from dlplatform.models.spec import BUILTIN_MODELS, ModelSignature
    from dlplatform.train._usercode import masked_run
    from dlplatform.train.reproduce import (
        compare_reproduction,
        reproduce_run,
        reproduced_by,
    )
    from dlplatform.train.service import (
        cancel_job,
        count_jobs,
        get_job,
        get_logs,
        get_metrics,
        get_metrics_page,
        list_jobs,
        log_metrics,
        read_logs,
        submit,
        wait_job,
        watch_job,
    )
    from dlplatform.train.spec import (
        Reproduction,
        TrainingJob,
        TrainingJobSpec,
        epoch_table,
    )
    from dlplatform.train.tune import TrialSummary, TuningJob, TuningJobSpec, parse_distribution

# The model names below (BUILTIN_MODELS, ModelSignature, the registry's functions) moved to
# dlplatform.models; they stay public here, re-exported from their new home, for existing callers.
_MODELS = {
    "BUILTIN_MODELS": "dlplatform.models.spec",
    "ModelSignature": "dlplatform.models.spec",
    "alias_history": "dlplatform.models.registry",
    "get_version": "dlplatform.models.registry",
    "list_models": "dlplatform.models.registry",
    "list_versions": "dlplatform.models.registry",
    "load_model": "dlplatform.models.artifact",
    "model_from_files": "dlplatform.models.artifact",
    "promote": "dlplatform.models.registry",
    "read_model_object": "dlplatform.models.registry",
    "resolve_version": "dlplatform.models.registry",
    "verify_version": "dlplatform.models.artifact",
}
# Loaded on first use (see dlplatform._lazy): importing a spec must not load Ray or torch.
_EXPORTS = {
    **_MODELS,
    "Reproduction": "dlplatform.train.spec",
    "compare_reproduction": "dlplatform.train.reproduce",
    "reproduce_run": "dlplatform.train.reproduce",
    "reproduced_by": "dlplatform.train.reproduce",
    "TrainingJob": "dlplatform.train.spec",
    "TrainingJobSpec": "dlplatform.train.spec",
    "TrialSummary": "dlplatform.train.tune",
    "TuningJob": "dlplatform.train.tune",
    "TuningJobSpec": "dlplatform.train.tune",
    "cancel_job": "dlplatform.train.service",
    "count_jobs": "dlplatform.train.service",
    "epoch_table": "dlplatform.train.spec",
    "get_job": "dlplatform.train.service",
    "get_logs": "dlplatform.train.service",
    "get_metrics": "dlplatform.train.service",
    "get_metrics_page": "dlplatform.train.service",
    "list_jobs": "dlplatform.train.service",
    "log_metrics": "dlplatform.train.service",
    "masked_run": "dlplatform.train._usercode",
    "parse_distribution": "dlplatform.train.tune",
    "read_logs": "dlplatform.train.service",
    "submit": "dlplatform.train.service",
    "wait_job": "dlplatform.train.service",
    "watch_job": "dlplatform.train.service",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BUILTIN_MODELS",
    "ModelSignature",
    "Reproduction",
    "TrainingJob",
    "TrainingJobSpec",
    "TrialSummary",
    "TuningJob",
    "TuningJobSpec",
    "alias_history",
    "cancel_job",
    "compare_reproduction",
    "count_jobs",
    "epoch_table",
    "get_job",
    "get_logs",
    "get_metrics",
    "get_metrics_page",
    "get_version",
    "list_jobs",
    "list_models",
    "list_versions",
    "load_model",
    "log_metrics",
    "masked_run",
    "model_from_files",
    "parse_distribution",
    "promote",
    "read_logs",
    "read_model_object",
    "reproduce_run",
    "reproduced_by",
    "resolve_version",
    "submit",
    "verify_version",
    "wait_job",
    "watch_job",
]
