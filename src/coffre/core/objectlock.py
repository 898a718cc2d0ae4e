"""S3 Object Lock: bucket configuration, default retention, retention and legal holds.

A version is *locked* while it is under a legal hold or its retain-until date is ahead.
A locked version is never removed or replaced: COMPLIANCE by nobody, GOVERNANCE only by a
request that asks to bypass governance (x-amz-bypass-governance-retention) from a caller
holding s3:BypassGovernanceRetention. The metadata backend re-checks the rule inside every
transaction that removes a version (MetadataStore.delete_version), so no path through
this process (S3, admin, lifecycle, garbage collection) can delete a locked version early;
``is_locked`` is the rule for callers that want to skip such versions up front (lifecycle).

Deliberate choices, each as AWS behaves: a bucket's lock can only be turned on (at
creation, or later on a versioning-Enabled bucket) and never off, and such a bucket's
versioning cannot be suspended; a retention can always be extended; a COMPLIANCE one can
never be shortened, removed or changed to GOVERNANCE; a GOVERNANCE one only with the bypass.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from coffre.core.buckets import BucketService
from coffre.core.errors import (
    AccessDenied,
    InvalidArgument,
    InvalidBucketState,
    InvalidRequest,
    MalformedXML,
    NoSuchBucket,
    NoSuchKey,
    NoSuchObjectLockConfiguration,
    NoSuchVersion,
    ObjectLockConfigurationNotFoundError,
)
from coffre.core.identity import Principal
from coffre.core.versioning import ENABLED, check_version_id
from coffre.meta.base import MetadataStore
from coffre.meta.errors import ConditionFailed, NotFound
from coffre.meta.records import LOCK_COMPLIANCE, LOCK_GOVERNANCE, BucketRecord, ObjectRecord

MODES = (LOCK_GOVERNANCE, LOCK_COMPLIANCE)
LEGAL_HOLD_STATUSES = ("ON", "OFF")
CONFIG_NAME = "object-lock"  # the bucket_configs document holding the default retention
DAY = 86400.0
# AWS caps a default retention at 100 years (36500 days).
MAX_DAYS = 36500
MAX_YEARS = 100

LOCKED = "Access Denied because object protected by object lock."
NOT_LOCK_BUCKET = "Bucket is missing Object Lock Configuration"
MISSING_DIGEST = "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock " \
                 "parameters"
PAST_DATE = "The retain until date must be in the future!"


def is_locked(record: ObjectRecord, now: float) -> bool:
    """Whether ``record`` may not be removed at ``now`` by anyone who does not bypass
    governance: a legal hold, or a retain-until date still ahead (either mode).

    For the lifecycle worker and any other sweeper: skip such versions (the store would
    refuse their removal anyway)."""
    if record.legal_hold:
        return True
    return record.lock_until is not None and record.lock_until > now


def locked_until(record: ObjectRecord, now: float) -> float | None:
    """When ``record`` stops being locked: None if it is not, +inf under a legal hold."""
    if record.legal_hold:
        return float("inf")
    if record.lock_until is not None and record.lock_until > now:
        return record.lock_until
    return None


def parse_date(text: str, name: str) -> float:
    """An ISO 8601 timestamp (RFC 3339: 2030-01-01T00:00:00Z, fractions and offsets allowed)
    as POSIX seconds, rounded to the millisecond S3 keeps."""
    raw = text.strip()
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as e:
        raise InvalidArgument("The retain until date is not a valid ISO 8601 date.", name=name, value=text) from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp(), 3)


def add_years(ts: float, years: int) -> float:
    """``ts`` plus calendar years (29 February lands on 28 February in a common year)."""
    d = datetime.fromtimestamp(ts, UTC)
    try:
        moved = d.replace(year=d.year + years)
    except ValueError:
        moved = d.replace(year=d.year + years, day=28)
    return moved.timestamp()


@dataclass(frozen=True, slots=True)
class DefaultRetention:
    """A bucket's default retention: ``days`` xor ``years``, counted from a version's creation."""

    mode: str
    days: int | None = None
    years: int | None = None

    def until(self, created: float) -> float:
        if self.days is not None:
            return round(created + self.days * DAY, 3)
        assert self.years is not None
        return round(add_years(created, self.years), 3)


@dataclass(frozen=True, slots=True)
class LockConfiguration:
    """What GetObjectLockConfiguration answers: lock enabled, with or without a default rule."""

    rule: DefaultRetention | None = None

    def dumps(self) -> str:
        if self.rule is None:
            return "{}"
        r = self.rule
        return json.dumps({"mode": r.mode, "days": r.days, "years": r.years})

    @staticmethod
    def loads(text: str | None) -> LockConfiguration:
        if not text:
            return LockConfiguration()
        doc = json.loads(text)
        if not doc:
            return LockConfiguration()
        return LockConfiguration(DefaultRetention(doc["mode"], doc.get("days"), doc.get("years")))


def check_rule(mode: str | None, days: str | None, years: str | None) -> DefaultRetention:
    """A <DefaultRetention> as PutObjectLockConfiguration accepts it."""
    if mode not in MODES:
        raise MalformedXML()
    if (days is None) == (years is None):
        raise MalformedXML()
    raw = days if days is not None else years
    assert raw is not None
    try:
        n = int(raw.strip())
    except ValueError as e:
        raise MalformedXML() from e
    if n <= 0:
        raise InvalidArgument("Default retention period must be a positive integer value.",
                              name="Days" if days is not None else "Years", value=raw)
    if (days is not None and n > MAX_DAYS) or (years is not None and n > MAX_YEARS):
        raise InvalidArgument("Default retention period is too large.",
                              name="Days" if days is not None else "Years", value=raw)
    return DefaultRetention(mode, n, None) if days is not None else DefaultRetention(mode, None, n)


@dataclass(frozen=True, slots=True)
class LockRequest:
    """The Object Lock headers of a write (PutObject, CopyObject, CreateMultipartUpload)."""

    mode: str | None = None
    until: float | None = None
    legal_hold: bool | None = None

    @property
    def empty(self) -> bool:
        return self.mode is None and self.legal_hold is None

    @staticmethod
    def from_headers(mode: str | None, until: str | None, legal_hold: str | None) -> LockRequest:
        """x-amz-object-lock-mode and -retain-until-date (both or neither), -legal-hold."""
        if (mode is None) != (until is None):
            raise InvalidArgument("x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be "
                                  "supplied", name="x-amz-object-lock-mode" if mode is None
                                  else "x-amz-object-lock-retain-until-date")
        if mode is not None and mode not in MODES:
            raise InvalidArgument("Unknown wormMode directive.", name="x-amz-object-lock-mode", value=mode)
        when = parse_date(until, "x-amz-object-lock-retain-until-date") if until is not None else None
        hold: bool | None = None
        if legal_hold is not None:
            if legal_hold not in LEGAL_HOLD_STATUSES:
                raise InvalidArgument("Legal Hold must be either of 'ON' or 'OFF'",
                                      name="x-amz-object-lock-legal-hold", value=legal_hold)
            hold = legal_hold == "ON"
        return LockRequest(mode, when, hold)


@dataclass(frozen=True, slots=True)
class LockState:
    """What a new version carries."""

    mode: str | None = None
    until: float | None = None
    legal_hold: bool | None = None
    # The bucket's default rule when it decided the retention: ``until`` is then recounted
    # from the version's actual creation time (at_creation), as AWS counts it.
    default: DefaultRetention | None = None

    def at_creation(self, created: float) -> LockState:
        if self.default is None:
            return self
        return LockState(self.mode, self.default.until(created), self.legal_hold, None)


class ObjectLockService:
    def __init__(self, meta: MetadataStore, buckets: BucketService) -> None:
        self.meta = meta
        self.buckets = buckets

    # -- bucket configuration --
    async def configuration(self, bucket: BucketRecord) -> LockConfiguration:
        return LockConfiguration.loads(await self.meta.get_bucket_config(bucket.name, CONFIG_NAME))

    async def get_configuration(self, principal: Principal, bucket_name: str) -> LockConfiguration:
        bucket = await self.buckets.authorize(principal, bucket_name)
        if not bucket.object_lock:
            raise ObjectLockConfigurationNotFoundError(bucket=bucket.name)
        return await self.configuration(bucket)

    async def put_configuration(self, principal: Principal, bucket_name: str, config: LockConfiguration) -> None:
        """Enable Object Lock (if it was not) and set or clear the default retention.

        AWS accepts this on an existing bucket since 2023, provided its versioning is Enabled."""
        bucket = await self.buckets.authorize(principal, bucket_name)
        try:
            if not bucket.object_lock:
                if bucket.versioning != ENABLED:
                    raise InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                                             "configuration", bucket=bucket.name)
                await self.meta.enable_bucket_object_lock(bucket.name)
            await self.meta.put_bucket_config(bucket.name, CONFIG_NAME, config.dumps())
        except NotFound as e:
            raise NoSuchBucket(bucket=bucket.name) from e
        except ConditionFailed as e:  # versioning changed under us
            raise InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                                     "configuration", bucket=bucket.name) from e

    # -- what a write gets --
    async def for_write(self, bucket: BucketRecord, req: LockRequest, created: float, *,
                        has_digest: bool | None = None, completing: bool = False) -> LockState:
        """The lock a new version of ``bucket`` carries: the request's retention, else the
        bucket's default; the request's legal hold.

        ``has_digest``: for a write with a body (PutObject), whether the client sent
        Content-MD5 or a checksum, which AWS demands whenever a retention applies (None: a
        write without a body of its own, e.g. a copy or a multipart completion). ``completing``:
        a multipart completion, whose requested date was checked at CreateMultipartUpload (a
        date passed while the parts were sent leaves the object with an expired retention)."""
        if not bucket.object_lock:
            if not req.empty:
                raise InvalidRequest(NOT_LOCK_BUCKET, bucket=bucket.name)
            return LockState()
        mode, until = req.mode, req.until
        rule: DefaultRetention | None = None
        if mode is not None:
            assert until is not None
            if until <= created and not completing:
                raise InvalidArgument(PAST_DATE, name="x-amz-object-lock-retain-until-date")
        else:
            rule = (await self.configuration(bucket)).rule
            if rule is not None:
                mode, until = rule.mode, rule.until(created)
        if has_digest is False and (mode is not None or req.legal_hold is not None):
            raise InvalidRequest(MISSING_DIGEST)
        return LockState(mode, until, req.legal_hold, rule)

    # -- per version --
    async def _version(self, principal: Principal, bucket_name: str, key: str,
                       version_id: str | None) -> tuple[BucketRecord, ObjectRecord]:
        bucket = await self.buckets.authorize(principal, bucket_name)
        check_version_id(version_id)
        if not bucket.object_lock:
            raise InvalidRequest(NOT_LOCK_BUCKET, bucket=bucket.name)
        obj = await self.meta.get_object(bucket.name, key, version_id)
        if obj is None or obj.is_delete_marker:
            # AWS answers a delete marker as a missing key (or version) here.
            if version_id is not None:
                raise NoSuchVersion(key=key, version_id=version_id)
            raise NoSuchKey(key=key)
        return bucket, obj

    async def get_retention(self, principal: Principal, bucket_name: str, key: str,
                            version_id: str | None) -> ObjectRecord:
        _, obj = await self._version(principal, bucket_name, key, version_id)
        if obj.lock_mode is None:
            raise NoSuchObjectLockConfiguration(key=key)
        return obj

    async def put_retention(self, principal: Principal, bucket_name: str, key: str, version_id: str | None,
                            mode: str | None, until: float | None, *, bypass_governance: bool) -> str:
        """Set (both None: remove) a version's retention; returns its version id."""
        now = time.time()
        if mode is not None and until is not None and until <= now:
            raise InvalidArgument(PAST_DATE, name="RetainUntilDate")
        for _ in range(8):  # compare-and-set: re-read when a concurrent change won
            _, obj = await self._version(principal, bucket_name, key, version_id)
            self._check_change(obj, mode, until, now, bypass_governance)
            try:
                await self.meta.set_object_retention(obj.bucket, obj.key, obj.version_id, mode, until,
                                                     expect_mode=obj.lock_mode, expect_until=obj.lock_until)
            except ConditionFailed:
                continue
            except NotFound as e:
                raise NoSuchVersion(key=key, version_id=obj.version_id) from e
            return obj.version_id
        raise InvalidRequest("The retention of this object changed concurrently; retry the request.")

    @staticmethod
    def _check_change(obj: ObjectRecord, mode: str | None, until: float | None, now: float,
                      bypass_governance: bool) -> None:
        """AccessDenied unless the new retention is allowed over the version's current one."""
        if obj.lock_until is None or obj.lock_until <= now or obj.lock_mode is None:
            return  # nothing in force: anything may be set
        extends = mode == obj.lock_mode and until is not None and until >= obj.lock_until
        if extends:
            return
        if obj.lock_mode == LOCK_COMPLIANCE:
            raise AccessDenied(LOCKED)  # never shortened, removed, or turned into GOVERNANCE
        if not bypass_governance:
            raise AccessDenied(LOCKED)

    async def get_legal_hold(self, principal: Principal, bucket_name: str, key: str,
                             version_id: str | None) -> ObjectRecord:
        _, obj = await self._version(principal, bucket_name, key, version_id)
        if obj.legal_hold is None:
            raise NoSuchObjectLockConfiguration(key=key)
        return obj

    async def put_legal_hold(self, principal: Principal, bucket_name: str, key: str, version_id: str | None,
                             on: bool) -> str:
        _, obj = await self._version(principal, bucket_name, key, version_id)
        try:
            await self.meta.set_object_legal_hold(obj.bucket, obj.key, obj.version_id, on)
        except NotFound as e:
            raise NoSuchVersion(key=key, version_id=obj.version_id) from e
        return obj.version_id
