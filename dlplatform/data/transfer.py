"""Reading a commit over HTTP: an Arrow IPC download stream, and read grants for the cluster.

A client off the cluster downloads a whole commit as its Parquet parts, byte for byte
(``open_parts_stream``), and verifies and decodes them itself; a subset of columns, or a read
batch by batch, comes as one Arrow IPC stream (``open_arrow_stream``), built part by part with
each part's sha256 verified. A client whose Ray workers share the
artifact store asks for a ``ReadGrant`` instead (``grant_read``): the parts' URIs, which
``grant_to_ray`` reads on the cluster without the rows passing through the gateway. Both are
``dataset.read`` and audited like every other read (``resolve``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from dlplatform.access import Principal
from dlplatform.data import _read
from dlplatform.data.service import resolve
from dlplatform.data.spec import ReadGrant
from dlplatform.metadata import Commit
from dlplatform.metadata.artifacts import filesystem_for

if TYPE_CHECKING:
    import ray.data

    from dlplatform.config import Settings
    from dlplatform.context import Backend


def open_arrow_stream(
    backend: Backend, principal: Principal, ref: str, columns: list[str] | None = None
) -> tuple[Commit, Iterator[bytes]]:
    """The commit ``ref`` names and its rows as the bytes of an Arrow IPC stream.

    Everything that can be refused is checked here, before the first byte: the reference, the
    caller's ``dataset.read`` (audited) and the columns. The iterator reads one part at a time and
    verifies each part's sha256 before sending its batches; a damaged part raises out of it after
    a truncated message, and the end-of-stream marker is written only after the last part.

    Raises:
        InvalidInput: a malformed reference or an unknown column.
        NotFound: no such dataset or commit, or the dataset has no commits.
        PermissionDenied: the caller may not read the dataset.
    """
    commit = resolve(backend, principal, ref)
    return commit, _read.arrow_stream(backend, commit, columns)


def open_parts_stream(
    backend: Backend, principal: Principal, ref: str
) -> tuple[Commit, Iterator[bytes]]:
    """The commit ``ref`` names and its Parquet parts' bytes, in order (the fast whole-commit
    download: the gateway sends the stored files as they are and the reader verifies and decodes
    them, ``part_table``). Checked and audited like ``open_arrow_stream``.

    Raises:
        InvalidInput: a malformed reference.
        NotFound: no such dataset or commit, or the dataset has no commits.
        PermissionDenied: the caller may not read the dataset.
    """
    commit = resolve(backend, principal, ref)
    return commit, _read.part_bytes(backend, commit)


def grant_read(backend: Backend, principal: Principal, ref: str) -> ReadGrant:
    """The URIs of the Parquet parts of the commit ``ref`` names (``dataset.read``, audited).

    Raises:
        InvalidInput: a malformed reference.
        NotFound: no such dataset or commit, or the dataset has no commits.
        PermissionDenied: the caller may not read the dataset.
    """
    commit = resolve(backend, principal, ref)
    artifacts = backend.artifacts
    return ReadGrant(
        commit=commit,
        artifact_root=artifacts.base_uri,
        uris=[artifacts.uri_for(p.sha256) for p in commit.parts],
    )


def grant_datasource(
    grant: ReadGrant, columns: list[str] | None = None, settings: Settings | None = None
) -> Any:
    """A ``ray.data.Datasource`` over the grant's parts (used by ``grant_to_ray``): one read
    task per part, each verifying the part's sha256 and casting to the commit's schema.

    Args:
        settings: Where ``s3_endpoint_url`` comes from; it overrides the endpoint in the URIs.
    """
    return _read.parts_datasource(*_located(grant, settings), grant.commit, columns)


def grant_to_ray(
    grant: ReadGrant,
    columns: list[str] | None = None,
    settings: Settings | None = None,
    *,
    runtime_env: dict[str, Any] | None = None,
    num_cpus: float | None = None,
) -> ray.data.Dataset:
    """A lazy, streaming ``ray.data.Dataset`` over the grant's parts, read as ``to_ray`` reads a
    commit (one verified read task per part; ``runtime_env`` and ``num_cpus`` go to the tasks).

    Args:
        settings: Where ``s3_endpoint_url`` comes from; it overrides the endpoint in the URIs.
    """
    fs, paths = _located(grant, settings)
    return _read.parts_to_ray(
        fs, paths, grant.commit, columns, runtime_env=runtime_env, num_cpus=num_cpus
    )


def _located(grant: ReadGrant, settings: Settings | None) -> tuple[pafs.FileSystem, list[str]]:
    """The filesystem of the grant's parts (all under one root) and their paths on it."""
    endpoint = settings.s3_endpoint_url if settings is not None else None
    located = [filesystem_for(uri, s3_endpoint_url=endpoint) for uri in grant.uris]
    if not located:  # an empty commit: nothing will be read
        return pafs.LocalFileSystem(), []
    return located[0][0], [path for _, path in located]
