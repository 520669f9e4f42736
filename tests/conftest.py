"""Shared fixtures. Infrastructure starts only for tests that ask for it, once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from studioline.shared.embedded import EmbeddedKafka, EmbeddedS3

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address ("127.0.0.1:PORT") of a Tansu broker shared by the session.

    Topics live as long as the session: use `topic_prefix` for names no other test touches.
    """
    log_file = tmp_path_factory.mktemp("kafka") / "tansu.log"
    with EmbeddedKafka(log_file=log_file) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def s3() -> Iterator[str]:
    """Endpoint ("127.0.0.1:PORT") of a moto S3 server shared by the session.

    Credentials: EmbeddedS3.access_key / EmbeddedS3.secret_key (any are accepted).
    """
    with EmbeddedS3() as server:
        yield server.endpoint


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, e.g. "t1a2b3c4d.", for topic and group names."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def minio_client(s3: str):
    """A real minio.Minio client for the embedded S3 endpoint."""
    from minio import Minio

    return Minio(
        s3,
        access_key=EmbeddedS3.access_key,
        secret_key=EmbeddedS3.secret_key,
        secure=False,
        region=EmbeddedS3.region,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """/work/shared/data (photos with ground truth); skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}; these tests need the photo set")
    return SHARED_DATA
