"""Box G: the interactive environment — ``dlp lab`` and notebook helpers.

It may import ``config``, ``errors``, ``metadata`` records and the ``data`` and ``workflows``
specs; notebooks reach the platform through ``dlplatform.client``.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.lab._html import install_notebook_views
    from dlplatform.lab.launcher import LabInfo, pick_port, start_lab
    from dlplatform.lab.notebook import (
        epoch_table,
        inspect_workflow_run,
        job_logs,
        plot_metrics,
        try_model,
    )

# Loaded on first use (see dlplatform._lazy): the SDK installs the notebook views without the rest.
_EXPORTS = {
    "LabInfo": "dlplatform.lab.launcher",
    "epoch_table": "dlplatform.lab.notebook",
    "inspect_workflow_run": "dlplatform.lab.notebook",
    "install_notebook_views": "dlplatform.lab._html",
    "job_logs": "dlplatform.lab.notebook",
    "pick_port": "dlplatform.lab.launcher",
    "plot_metrics": "dlplatform.lab.notebook",
    "start_lab": "dlplatform.lab.launcher",
    "try_model": "dlplatform.lab.notebook",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

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
