"""Fixtures of the integration tests that run a worker against the embedded broker and S3."""

import pytest

from studioline.shared.client import create_topics
from studioline.shared.storage import Storage
from tests.helpers import line_settings


@pytest.fixture
def settings(kafka, s3, topic_prefix):
    """Settings on fresh topics (created) and fresh incoming and artifacts buckets."""
    s = line_settings(kafka, s3, topic_prefix)
    create_topics(s)
    Storage(s.s3).ensure_buckets(s.s3.incoming_bucket, s.s3.artifacts_bucket)
    return s
