"""Who is calling: API tokens per tenant, checked by a gRPC server interceptor.

Tokens are stored as sha256 digests in a YAML file (a mounted Secret):
    - {tenant: shop-a, sha256: <hex digest of the token>, expires: 2027-06-30T00:00:00Z}
The file is re-read when it changes (at most every grpc.tokens_reload_s), so a token is added,
rotated or revoked without a restart. Callers send `authorization: Bearer <token>`. Health and
reflection answer without a token: probes carry none.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studioline.shared.errors import ConfigError, Unauthenticated, bounded

# The authenticated tenant of the call being handled (set around the step's handler).
CALLER = contextvars.ContextVar("studioline_caller_tenant")
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class _TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    expires: datetime | None = None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Token digests by tenant, from a file re-read when it changes."""

    def __init__(self, path: Path, reload_s: float = 5.0):
        self.path = Path(path)
        self.reload_s = reload_s
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._entries: list[_TokenEntry] = []
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            raw = yaml.safe_load(self.path.read_text()) or []
            entries = [_TokenEntry.model_validate(e) for e in raw]
        except (OSError, yaml.YAMLError, ValidationError, TypeError) as exc:
            if self._stamp is None:  # at start-up: the service must not run without its tokens
                raise ConfigError(f"tokens file {self.path}: {exc}") from exc
            return  # a half-written update: keep the tokens we have until it reads cleanly
        self._entries, self._stamp = entries, stamp

    def tenant_for(self, token: str) -> str:
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= self.reload_s:
                self._checked = now
                self._reload()
            entries = self._entries
        digest = token_digest(token)
        for entry in entries:
            if hmac.compare_digest(entry.sha256, digest):
                if entry.expires is not None and entry.expires <= datetime.now(timezone.utc):
                    raise Unauthenticated("the token has expired")
                return entry.tenant
        raise Unauthenticated("the token is not known (revoked or mistyped)")


def bearer(metadata) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    raise Unauthenticated("the call carries no token: send metadata 'authorization: Bearer <token>'")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates each step call and runs its handler with CALLER set to the tenant. Without
    a token store (insecure loopback serving) every call is the default tenant's."""

    def __init__(self, store: TokenStore | None, default_tenant: str):
        self.store = store
        self.default_tenant = default_tenant

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_SERVICES) or handler.unary_unary is None:
            return handler
        try:
            tenant = self.default_tenant if self.store is None else self.store.tenant_for(bearer(details.invocation_metadata))
        except Unauthenticated as exc:
            message = bounded(str(exc))

            def deny(request, context):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

            behaviour = deny
        else:
            call = handler.unary_unary

            def behaviour(request, context):
                reset = CALLER.set(tenant)
                try:
                    return call(request, context)
                finally:
                    CALLER.reset(reset)

        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
