"""Box G: the interactive environment — ``dlp lab`` and notebook helpers."""

from dlplatform.lab._html import install as install_notebook_views
from dlplatform.lab.launcher import LabInfo, pick_port, start_lab
from dlplatform.lab.notebook import (
    epoch_table,
    inspect_workflow_run,
    job_logs,
    plot_metrics,
    try_model,
)

__all__ = [
    "LabInfo",
    "epoch_table",
    "inspect_workflow_run",
    "install_notebook_views",
    "job_logs",
    "pick_port",
    "plot_metrics",
    "start_lab",
    "try_model",
]
