"""Joining Ray from this process: Ray's auth variables for a head that ``up`` started, the
loopback node address, ``ray.init`` with retries. Used by ``up``, ``attach``, ``down`` and
``status``.

An entry point's helper (CLI, SDK ``connect``): it reads the caller's environment for Ray's auth
mode and sets Ray's auth variables in-process before connecting.
"""

from __future__ import annotations

import os
import time

import ray

from dlplatform import _ray_internals as ray_internals
from dlplatform.config import Settings
from dlplatform.errors import BackendUnavailable
from dlplatform.runtime.cluster import ClusterRecord

_CONNECT_ATTEMPTS = 3


def _auth_env_for(record: ClusterRecord | None) -> None:
    """Put Ray's auth variables in this process's environment before ``ray.init``.

    Only for a head that ``up`` started; joining another cluster follows the caller's environment.
    """
    if record is None or not record.managed:
        return
    if record.auth_mode == "token" and record.ray_token_path:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = record.ray_token_path
        os.environ.pop("RAY_AUTH_TOKEN", None)
    else:
        os.environ["RAY_AUTH_MODE"] = "disabled"
    ray_internals.reload_auth_config()  # Ray caches its config and the token per process


def _loopback_only() -> None:
    """Make this driver use 127.0.0.1 as its node address, like the local head it joins.

    The head runs with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` so that it advertises and binds
    loopback addresses; a driver must resolve addresses the same way, and Ray reads that switch
    once at import, hence the constant is set here as well.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_internals.resolve_node_address_as_loopback_head()


def connect(settings: Settings, address: str, record: ClusterRecord | None) -> None:

    if ray.is_initialized():
        return
    _auth_env_for(record)
    os.environ.pop("RAY_ADDRESS", None)
    if record is not None and record.managed:
        _loopback_only()
    for attempt in range(1, _CONNECT_ATTEMPTS + 1):
        try:
            ray.init(
                address=address,
                namespace=settings.namespace,
                log_to_driver=False,
                logging_level="WARNING",
                configure_logging=False,
            )
            return
        except (ConnectionError, RuntimeError, ValueError) as exc:
            # A loaded machine can make the first connection time out; try again.
            if attempt == _CONNECT_ATTEMPTS or isinstance(exc, ValueError):
                raise BackendUnavailable(f"cannot connect to Ray at {address}: {exc}") from exc
            time.sleep(2.0)
