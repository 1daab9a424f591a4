"""The SDK: a typed HTTP client of the gateway, the one way in for people and their tools.

``connect()`` finds the platform (argument, ``DLP_URL``, a ``dlp login`` profile, or the local
platform) and returns a ``Platform`` whose namespaces call ``/api/v1``. The CLI is built on it.
"""

from dlplatform.client._http import HttpClient, error_from_response
from dlplatform.client.datasets import DatasetHandle, DatasetsClient, VersionHandle
from dlplatform.client.platform import Platform, connect
from dlplatform.client.profiles import Profile, Target, resolve
from dlplatform.client.training import JobHandle, TuningHandle

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
