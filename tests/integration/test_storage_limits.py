"""Storage.get with max_bytes: an object is sized with a HEAD before it is fetched, and one over
the limit is rejected (too_large) without its body being read (before, a 200 MB object was read
whole and only then found too large)."""

import dataclasses

import pytest

from studioline.shared.config import S3Settings
from studioline.shared.embedded import EmbeddedS3
from studioline.shared.errors import ImageRejected, PermanentError
from studioline.shared.storage import Storage

pytestmark = pytest.mark.integration


@pytest.fixture
def storage(s3, topic_prefix):
    bucket = topic_prefix.rstrip(".") + "-limits"
    st = Storage(S3Settings(endpoint=s3, access_key=EmbeddedS3.access_key, secret_key=EmbeddedS3.secret_key, secure=False))
    st.ensure_buckets(bucket)
    return st, bucket


def test_an_object_over_the_limit_is_not_read(storage, monkeypatch):
    st, bucket = storage
    st.put(bucket, "big.jpg", b"\xff" * 5000, "image/jpeg")
    st.put(bucket, "small.jpg", b"\xff" * 1000, "image/jpeg")
    fetched = []
    real_get_object = st.client.get_object
    monkeypatch.setattr(st.client, "get_object", lambda *a, **k: fetched.append(a) or real_get_object(*a, **k))
    with pytest.raises(ImageRejected) as err:
        st.get(bucket, "big.jpg", max_bytes=4096)
    assert err.value.code == "too_large" and "5000 bytes" in str(err.value) and "4096" in str(err.value)
    assert fetched == []  # the HEAD said enough
    assert st.get(bucket, "small.jpg", max_bytes=4096) == b"\xff" * 1000
    assert st.get(bucket, "big.jpg") == b"\xff" * 5000  # no limit: read whole


def test_the_read_stops_past_the_limit_when_the_object_changed(storage, monkeypatch):
    """The object replaced by a larger one between the HEAD and the GET: the read stops there."""
    st, bucket = storage
    st.put(bucket, "grown.jpg", b"\xff" * (3 << 20), "image/jpeg")
    real_stat = st.client.stat_object

    def stale_stat(*args, **kwargs):
        return dataclasses.replace(real_stat(*args, **kwargs), size=100)

    monkeypatch.setattr(st.client, "stat_object", stale_stat)
    with pytest.raises(ImageRejected) as err:
        st.get(bucket, "grown.jpg", max_bytes=1 << 20)
    assert err.value.code == "too_large" and "more than 1048576 bytes" in str(err.value)


def test_a_missing_object_is_still_a_missing_source(storage):
    st, bucket = storage
    with pytest.raises(PermanentError) as err:
        st.get(bucket, "absent.jpg", max_bytes=4096)
    assert err.value.code == "source_missing"
