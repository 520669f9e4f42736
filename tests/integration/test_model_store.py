"""The model store fills a missing local file from the MinIO models bucket, checking its sha256."""

import pytest

from studioline.shared.config import PROJECT_ROOT, S3Settings
from studioline.shared.embedded import EmbeddedS3
from studioline.shared.errors import ModelMissing
from studioline.shared.models.packs import expected_sha256, file_sha256
from studioline.shared.models.store import ModelStore
from studioline.shared.storage import Storage

pytestmark = pytest.mark.integration
MODEL = "u2netp.onnx"


@pytest.fixture
def storage(s3, topic_prefix):
    bucket = topic_prefix.rstrip(".") + "-models"
    st = Storage(S3Settings(endpoint=s3, access_key=EmbeddedS3.access_key, secret_key=EmbeddedS3.secret_key, secure=False))
    st.ensure_buckets(bucket)
    return st, bucket


def test_missing_local_file_comes_from_the_bucket(storage, tmp_path):
    st, bucket = storage
    local = PROJECT_ROOT / ".models" / MODEL
    if not local.is_file():
        pytest.fail(f"{local} is missing: run `make models` first")
    st.upload_file(bucket, MODEL, local)
    store = ModelStore(tmp_path, st, bucket)
    path = store.path(MODEL)
    assert path == tmp_path / MODEL and file_sha256(path) == expected_sha256(MODEL)


def test_a_corrupt_bucket_copy_is_refused(storage, tmp_path):
    st, bucket = storage
    st.put(bucket, MODEL, b"not the model", "application/octet-stream")
    with pytest.raises(ModelMissing, match="sha256"):
        ModelStore(tmp_path, st, bucket).path(MODEL)
    assert not (tmp_path / MODEL).exists()


def test_missing_everywhere_names_the_install_command(storage, tmp_path):
    st, bucket = storage
    with pytest.raises(ModelMissing, match="make models"):
        ModelStore(tmp_path, st, bucket).path(MODEL)
    with pytest.raises(ModelMissing, match="make models"):
        ModelStore(tmp_path).path(MODEL)
