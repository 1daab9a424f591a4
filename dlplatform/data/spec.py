"""The dataset service's contracts for moving data over HTTP: push keys, downloads, read grants.

Light on purpose (pydantic and the records only): the SDK's HTTP client imports them without
pyarrow, DuckDB or Ray.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from dlplatform.metadata.records import Commit

ARROW_STREAM_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
"""Media type of a download: an Arrow IPC stream (``pyarrow.ipc.open_stream`` reads it)."""

PARQUET_PARTS_MEDIA_TYPE = "application/vnd.dlp.parquet-parts"
"""Media type of a whole-commit download: the commit's Parquet parts, byte for byte, one after
another in the commit's order (``Commit.parts`` gives each part's size and sha256)."""

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
COMMIT_HEADER = "X-DLP-Commit"
ROW_COUNT_HEADER = "X-DLP-Row-Count"
VERSION_HASH_HEADER = "X-DLP-Version-Hash"


class ReadGrant(BaseModel, frozen=True, extra="forbid"):
    """Where a commit's Parquet parts are stored, for readers that share the artifact store
    (Ray workers on the cluster) and so need not stream the rows through the gateway.

    ``uris[i]`` holds ``commit.parts[i]``; the file is named by its sha256, which readers verify.
    """

    commit: Commit = Field(description="The commit, with its parts (sha256, rows, bytes).")
    artifact_root: str = Field(description="URI of the artifact store's root.")
    uris: list[str] = Field(
        description="The parts' URIs, in order, as pyarrow.fs.FileSystem.from_uri opens them "
        "(an S3 endpoint travels in the query as endpoint_override and scheme)."
    )

    @model_validator(mode="after")
    def _one_uri_per_part(self) -> ReadGrant:
        if len(self.uris) != len(self.commit.parts):
            raise ValueError(
                f"{len(self.uris)} uris for the {len(self.commit.parts)} parts of the commit"
            )
        prefix = self.artifact_root.rstrip("/") + "/"
        for uri, part in zip(self.uris, self.commit.parts, strict=True):
            if not uri.startswith(prefix) or part.sha256 not in uri:
                raise ValueError(f"uri {uri[:200]!r} is not part {part.sha256} under the root")
        return self
