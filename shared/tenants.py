"""Tenants: what each one may read and where its outputs go.

The tenant of a piece of work is never a field its sender writes: over gRPC it is the one the
call's token authenticates (shared/auth.py), over Kafka the one the ingest topic or the notified
bucket belongs to. Every reference is checked against that tenant before anything is read, and
a refusal says the same whether or not the object exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from studioline.shared.config import TenantSettings
from studioline.shared.errors import Forbidden


@dataclass(frozen=True)
class Tenant:
    name: str
    sources: tuple[str, ...]  # "bucket" or "bucket/prefix/"
    output_bucket: str

    def may_read(self, bucket: str, key: str) -> bool:
        for place in self.sources:
            source_bucket, _, prefix = place.partition("/")
            if bucket == source_bucket and key.startswith(prefix):
                return True
        return False


class Tenants:
    def __init__(self, settings):
        s3 = settings.s3
        # Buckets no tenant may name: the line's own models and try-on templates.
        self.protected = frozenset({s3.models_bucket, s3.templates_bucket})
        configured = settings.tenants or {settings.tenant: TenantSettings(sources=[s3.incoming_bucket])}
        self.by_name = {
            name: Tenant(name, tuple(t.sources), t.output_bucket or s3.artifacts_bucket) for name, t in configured.items()
        }

    def get(self, name: str) -> Tenant:
        try:
            return self.by_name[name]
        except KeyError:
            raise Forbidden(f"unknown tenant {name!r}") from None

    def for_bucket(self, bucket: str) -> Tenant | None:
        """The one tenant whose sources name `bucket` (a bucket notification's), else None."""
        owners = [t for t in self.by_name.values() if any(p.partition("/")[0] == bucket for p in t.sources)]
        return owners[0] if len(owners) == 1 else None

    def check_read(self, tenant: Tenant, bucket: str, key: str, what: str) -> None:
        if bucket in self.protected or not tenant.may_read(bucket, key):
            raise Forbidden(f"{what}: not readable for tenant {tenant.name}")

    def check_artifact(self, tenant: Tenant, bucket: str, key: str, what: str) -> None:
        """An artifact a job carries: in the tenant's output bucket, under its own prefix."""
        if bucket in self.protected or bucket != tenant.output_bucket or not key.startswith(f"{tenant.name}/"):
            raise Forbidden(f"{what}: not readable for tenant {tenant.name}")

    def check_write(self, tenant: Tenant, bucket: str) -> None:
        if bucket in self.protected or bucket != tenant.output_bucket:
            raise Forbidden(f"output bucket {bucket!r}: not writable for tenant {tenant.name}")
