"""A real S3 API for tests: moto's server on loopback, one per session.

``tests/conftest.py`` re-exports these fixtures (``from fixtures_s3 import *``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

__all__ = ["s3_root", "s3_server"]

_REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL (``http://127.0.0.1:<port>``) of a moto S3 server on loopback.

    Sets fake AWS credentials and region for the session and restores the environment after.
    """
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", _REGION)
        env.setenv("AWS_REGION", _REGION)
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probing
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_root(s3_server: str) -> str:
    """A fresh ``s3://bucket-<uuid8>/root`` URI on the session's moto server (bucket created)."""
    bucket = f"bucket-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name=_REGION)
    client.create_bucket(Bucket=bucket)
    client.close()
    return f"s3://{bucket}/root"
