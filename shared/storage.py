"""Object storage over the minio client: the only place that talks S3."""

from __future__ import annotations

import io
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import S3Error
from minio.helpers import check_bucket_name, check_object_name

from studioline.shared.config import S3Settings
from studioline.shared.errors import ConfigError, ImageRejected, PermanentError, TransientError

# S3 error codes that will not change on a retry.
_PERMANENT_S3_CODES = {"NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidBucketName", "InvalidObjectName"}


# A read bounded by max_bytes goes a chunk at a time, so it stops within a chunk of the limit.
_READ_CHUNK = 1 << 20


def _too_large(bucket: str, key: str, size: str, max_bytes: int) -> ImageRejected:
    return ImageRejected(f"s3://{bucket}/{key} is {size}, over the limit of {max_bytes} (limits.max_bytes)", "too_large")


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, S3Error) and exc.code in _PERMANENT_S3_CODES:
        return PermanentError(f"{what}: {exc.code} ({exc.message})", "source_missing" if exc.code == "NoSuchKey" else "storage_denied")
    return TransientError(f"{what}: {exc}")


def check_names(bucket: str, key: str | None = None) -> None:
    """S3's naming rules, checked before any request: a name a sender wrote that S3 cannot
    hold (`..`, `a/b`, capitals, a `..` key segment) is a permanent error naming it."""
    try:
        check_bucket_name(bucket)
        if key is not None:
            check_object_name(key)
    except ValueError as exc:
        raise PermanentError(f"invalid S3 name {bucket!r}/{key!r}: {exc}", "invalid_ref") from exc


class Storage:
    def __init__(self, settings: S3Settings):
        if not settings.access_key or not settings.secret_key.get_secret_value():
            raise ConfigError(
                "S3 credentials are not set: STUDIOLINE_S3__ACCESS_KEY and STUDIOLINE_S3__SECRET_KEY "
                "(there are no default credentials)"
            )
        self.settings = settings
        # Few retries inside the client: the worker's own backoff handles longer outages.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            maxsize=16,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes. With `max_bytes`, its size comes from a HEAD first: a larger object
        is rejected (ImageRejected too_large) without being read, and the read itself stops past
        the limit (an object replaced between the two)."""
        check_names(bucket, key)
        try:
            if max_bytes is not None and (size := self.client.stat_object(bucket, key).size) > max_bytes:
                raise _too_large(bucket, key, f"{size} bytes", max_bytes)
            resp = self.client.get_object(bucket, key)
            try:
                if max_bytes is None:
                    return resp.read()
                data = bytearray()
                for chunk in resp.stream(_READ_CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise _too_large(bucket, key, f"more than {max_bytes} bytes", max_bytes)
                return bytes(data)
            finally:
                resp.close()
                resp.release_conn()
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc, f"reading s3://{bucket}/{key}") from exc

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        check_names(bucket, key)
        try:
            self.client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc, f"writing s3://{bucket}/{key}") from exc

    def exists(self, bucket: str, key: str) -> bool:
        check_names(bucket, key)
        try:
            self.client.stat_object(bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise _translate(exc, f"checking s3://{bucket}/{key}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc, f"checking s3://{bucket}/{key}") from exc

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix`; none for a bucket that does not exist."""
        try:
            if not self.client.bucket_exists(bucket):
                return []
            return [o.object_name for o in self.client.list_objects(bucket, prefix=prefix or None, recursive=True)]
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc, f"listing s3://{bucket}/{prefix}") from exc

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        try:
            self.client.fget_object(bucket, key, str(path))
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc, f"downloading s3://{bucket}/{key}") from exc

    def upload_file(self, bucket: str, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        self.client.fput_object(bucket, key, str(path), content_type=content_type)

    def ensure_buckets(self, *buckets: str) -> None:
        for bucket in buckets:
            if not self.client.bucket_exists(bucket):
                try:
                    self.client.make_bucket(bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
