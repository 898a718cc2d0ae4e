"""Errors a metadata backend raises; the domain layer translates them."""

from __future__ import annotations


class MetaError(Exception):
    pass


class AlreadyExists(MetaError):
    """A row with this identity already exists (carries the existing owner when known)."""

    def __init__(self, owner_tenant_id: str | None = None) -> None:
        super().__init__("already exists")
        self.owner_tenant_id = owner_tenant_id


class NotFound(MetaError):
    pass


class NotEmpty(MetaError):
    pass


class ConditionFailed(MetaError):
    """A WriteCondition did not hold at commit time."""


class Locked(MetaError):
    """The version is protected by Object Lock (retention not expired, or a legal hold):
    nothing was removed or replaced."""


class Conflict(MetaError):
    """The entity is still in use (a user with keys, a policy still attached...)."""


class QuotaExceeded(MetaError):
    """A write would take a tenant or bucket over a quota; nothing was written."""

    def __init__(self, scope: str, target: str, limit: str, maximum: int) -> None:
        super().__init__(f"{scope} {target}: {limit} quota of {maximum} reached")
        self.scope = scope  # "tenant" | "bucket"
        self.target = target
        self.limit = limit  # "bytes" | "objects" | "buckets"
        self.maximum = maximum
