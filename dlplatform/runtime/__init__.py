"""The platform's processes: start, join, inspect and stop it (``up``, ``attach``, ``status``,
``down``).

``up`` starts a local Ray head as a background service (``ray start --head --block`` in a session
of its own, with a temp dir and free ports chosen for this home), or joins ``settings.ray_address``;
then it starts the metadata actor, creates the admin token on first start and deploys the gateway
(Ray Serve app ``dlp-gateway`` at ``/``). What it started is recorded in ``<home>/cluster.json``:
that is how ``attach``, ``status`` and ``down`` find it, and why two homes never collide.

``down`` stops exactly what ``up`` started: the gateway, the metadata actor, and the processes of
the head's session and the job drivers it started (never ``ray stop``, which would hit every Ray
process of the user).

After a hard stop (every process killed, no ``down``), ``up`` on the same home is the recovery:
it stops what the dead head left running, makes Ray's temp dir private again, checks the
database, starts a new head and, from the database, redeploys every recorded deployment, resumes
the RUNNING workflow runs (the manager) and fails the RUNNING jobs whose Ray job died with the
old head (the scheduler), saying why.

Modules: ``cluster`` (``cluster.json``, the admin token, the returned records, ``is_running``,
the gateway's URL and health probe; light), ``processes`` (``/proc`` and ports; light), ``head``
(start and stop the local Ray head), ``connection`` (join Ray), ``gateway`` (Serve, the gateway
app and ``deploy_platform``: loads every component), ``lifecycle`` (``up``, ``attach``,
``down``), ``health`` (``status``).

May import: every component (it deploys them), ``config``, ``errors``, ``context``, Ray's
internals through ``dlplatform._ray_internals``. Imported by the CLI, the SDK and the backup
service only through this package's names, each loaded on first use: ``read_cluster`` and
``is_running`` load no Ray.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.runtime.cluster import (
        CLUSTER_FILE,
        GATEWAY_APP,
        RAY_TOKEN_FILE,
        AppStatus,
        ClusterRecord,
        DownResult,
        PlatformInfo,
        PlatformStatus,
        Progress,
        cluster_file,
        is_running,
        read_cluster,
        wait_healthy,
        write_admin_token,
    )
    from dlplatform.runtime.gateway import deploy_platform, serve_http_port, start_serve
    from dlplatform.runtime.head import HEAD_ENV_DEFAULTS
    from dlplatform.runtime.health import status
    from dlplatform.runtime.lifecycle import attach, down, up
    from dlplatform.runtime.processes import PORTS_FREE_WAIT_S

# Loaded on first use (see dlplatform._lazy): `dlp backup` asks `is_running` without Ray.
_EXPORTS = {
    "AppStatus": "dlplatform.runtime.cluster",
    "CLUSTER_FILE": "dlplatform.runtime.cluster",
    "ClusterRecord": "dlplatform.runtime.cluster",
    "DownResult": "dlplatform.runtime.cluster",
    "GATEWAY_APP": "dlplatform.runtime.cluster",
    "HEAD_ENV_DEFAULTS": "dlplatform.runtime.head",
    "PORTS_FREE_WAIT_S": "dlplatform.runtime.processes",
    "PlatformInfo": "dlplatform.runtime.cluster",
    "PlatformStatus": "dlplatform.runtime.cluster",
    "Progress": "dlplatform.runtime.cluster",
    "RAY_TOKEN_FILE": "dlplatform.runtime.cluster",
    "attach": "dlplatform.runtime.lifecycle",
    "cluster_file": "dlplatform.runtime.cluster",
    "deploy_platform": "dlplatform.runtime.gateway",
    "down": "dlplatform.runtime.lifecycle",
    "is_running": "dlplatform.runtime.cluster",
    "read_cluster": "dlplatform.runtime.cluster",
    "serve_http_port": "dlplatform.runtime.gateway",
    "start_serve": "dlplatform.runtime.gateway",
    "status": "dlplatform.runtime.health",
    "up": "dlplatform.runtime.lifecycle",
    "wait_healthy": "dlplatform.runtime.cluster",
    "write_admin_token": "dlplatform.runtime.cluster",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CLUSTER_FILE",
    "GATEWAY_APP",
    "HEAD_ENV_DEFAULTS",
    "PORTS_FREE_WAIT_S",
    "RAY_TOKEN_FILE",
    "AppStatus",
    "ClusterRecord",
    "DownResult",
    "PlatformInfo",
    "PlatformStatus",
    "Progress",
    "attach",
    "cluster_file",
    "deploy_platform",
    "down",
    "is_running",
    "read_cluster",
    "serve_http_port",
    "start_serve",
    "status",
    "up",
    "wait_healthy",
    "write_admin_token",
]
