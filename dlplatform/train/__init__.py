"""Box C, the model trainer: job specs, the queue and scheduler, the Ray Train runner, built-in
models and the model registry.

Submit with ``submit(backend, principal, TrainingJobSpec(...))`` (or ``dlp train submit``, the
SDK's ``p.training.submit``, ``POST /api/v1/training/jobs``, or ``ray job submit -- python -m
dlplatform.train.entrypoint --spec-json ...``). A successful run registers a model version;
``load_model`` gives it back as a torch module after verifying its hash.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.train._usercode import masked_run
    from dlplatform.train.registry import (
        alias_history,
        get_version,
        list_models,
        list_versions,
        load_model,
        model_from_files,
        promote,
        read_model_object,
        resolve_version,
        verify_version,
    )
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
        BUILTIN_MODELS,
        ModelSignature,
        Reproduction,
        TrainingJob,
        TrainingJobSpec,
        epoch_table,
    )
    from dlplatform.train.tune import TrialSummary, TuningJob, TuningJobSpec, parse_distribution

# Loaded on first use (see dlplatform._lazy): importing a spec must not load Ray or torch.
_EXPORTS = {
    "BUILTIN_MODELS": "dlplatform.train.spec",
    "Reproduction": "dlplatform.train.spec",
    "compare_reproduction": "dlplatform.train.reproduce",
    "reproduce_run": "dlplatform.train.reproduce",
    "reproduced_by": "dlplatform.train.reproduce",
    "ModelSignature": "dlplatform.train.spec",
    "TrainingJob": "dlplatform.train.spec",
    "TrainingJobSpec": "dlplatform.train.spec",
    "TrialSummary": "dlplatform.train.tune",
    "TuningJob": "dlplatform.train.tune",
    "TuningJobSpec": "dlplatform.train.tune",
    "alias_history": "dlplatform.train.registry",
    "cancel_job": "dlplatform.train.service",
    "count_jobs": "dlplatform.train.service",
    "epoch_table": "dlplatform.train.spec",
    "get_job": "dlplatform.train.service",
    "get_logs": "dlplatform.train.service",
    "get_metrics": "dlplatform.train.service",
    "get_metrics_page": "dlplatform.train.service",
    "get_version": "dlplatform.train.registry",
    "list_jobs": "dlplatform.train.service",
    "log_metrics": "dlplatform.train.service",
    "list_models": "dlplatform.train.registry",
    "list_versions": "dlplatform.train.registry",
    "load_model": "dlplatform.train.registry",
    "masked_run": "dlplatform.train._usercode",
    "model_from_files": "dlplatform.train.registry",
    "parse_distribution": "dlplatform.train.tune",
    "promote": "dlplatform.train.registry",
    "read_model_object": "dlplatform.train.registry",
    "read_logs": "dlplatform.train.service",
    "resolve_version": "dlplatform.train.registry",
    "submit": "dlplatform.train.service",
    "verify_version": "dlplatform.train.registry",
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
