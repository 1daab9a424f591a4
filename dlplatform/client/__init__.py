"""The SDK: a typed HTTP client of the gateway, the one way in for people and their tools.

``connect()`` finds the platform (argument, ``DLP_URL``, a ``dlp login`` profile, or the local
platform) and returns a ``Platform`` whose namespaces call ``/api/v1``. The CLI is built on it.

It imports neither Ray nor torch; it may import ``errors``, ``metadata`` records and the
components' light spec modules (the request and response models), never their services.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports
from dlplatform.client._http import HttpClient, error_from_response
from dlplatform.client.platform import Platform, connect
from dlplatform.client.profiles import Profile, Target, resolve

if TYPE_CHECKING:
    from dlplatform.client.datasets import DatasetHandle, DatasetsClient, VersionHandle
    from dlplatform.client.training import JobHandle, TuningHandle

# The namespaces' modules load on first use (a CLI command needs only its own).
_EXPORTS = {
    "DatasetHandle": "dlplatform.client.datasets",
    "DatasetsClient": "dlplatform.client.datasets",
    "JobHandle": "dlplatform.client.training",
    "TuningHandle": "dlplatform.client.training",
    "VersionHandle": "dlplatform.client.datasets",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DatasetHandle",
    "DatasetsClient",
    "HttpClient",
    "JobHandle",
    "Platform",
    "Profile",
    "Target",
    "TuningHandle",
    "VersionHandle",
    "connect",
    "error_from_response",
    "resolve",
]
