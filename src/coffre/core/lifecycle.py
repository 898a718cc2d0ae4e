"""Lifecycle: a bucket's rules, their validation, what they ask of each object, and the worker
that carries it out.

No HTTP and no XML here: the protocol layer parses a <LifecycleConfiguration> into ``Rule``
values and renders them back; this module checks what S3 checks once the document has the
right shape, stores the rules (JSON, bucket configuration "lifecycle"), and applies them.

Time. A rule counts in days; a "day" is ``lifecycle_day_seconds`` (86400 by default, shorter
only in tests). As on AWS, a due time is the start (creation, becoming noncurrent, initiation)
plus the days, rounded *up* to the next day boundary: with the default, midnight UTC; with a
shortened day, the next multiple of the day since the epoch. ``Date`` rules name an absolute
midnight UTC and are not scaled.

The worker. Every ``lifecycle_interval_seconds`` it takes, bucket by bucket, a lease in the
metadata store (one gateway acts on a bucket at a time), walks the versions key by key and then
the multipart uploads, and applies what is due. Each action is a compare-and-set of the
metadata store: it acts only if the version is still what the worker saw (same id, same write
time, still latest or still noncurrent...), so an action is never applied twice, whether the
pass is repeated after a restart, runs concurrently on two gateways whose lease expired, or
races a client. Where the pass stands (its cursor) is saved with the lease, so a restart
resumes it. Object Lock is honoured by the store inside the deleting transaction: a version
under a legal hold or before its retain-until date is never removed (governance is never
bypassed); adding a delete marker over a locked current version is allowed, as on AWS.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coffre.core.errors import InvalidArgument, InvalidRequest, NoSuchBucket, NoSuchLifecycleConfiguration
from coffre.core.objects import ObjectService
from coffre.meta.base import MetadataStore
from coffre.meta.errors import Locked, NotFound
from coffre.meta.records import LIFECYCLE_CONFIG, BucketRecord, ObjectRecord, UploadRecord
from coffre.settings import Settings

log = logging.getLogger("coffre.lifecycle")

CONFIG_NAME = LIFECYCLE_CONFIG  # where the configuration is kept (bucket_configs)
MAX_RULES = 1000
MAX_ID_LENGTH = 255
MAX_PREFIX_LENGTH = 1024
MAX_NEWER_NONCURRENT = 100
MAX_DAYS = 2**31 - 1
ENABLED, DISABLED = "Enabled", "Disabled"
# x-amz-transition-default-minimum-object-size: stored and returned (coffre never transitions).
MIN_SIZE_DEFAULT = "all_storage_classes_128K"
MIN_SIZE_VALUES = (MIN_SIZE_DEFAULT, "varies_by_storage_class")
DAY = 86400

# Filter forms, kept so that GetBucketLifecycleConfiguration answers in the shape it was given.
LEGACY_PREFIX = "prefix"  # <Rule><Prefix> (the form before filters)
FILTER = "filter"  # <Filter> with at most one condition
AND = "and"  # <Filter><And>...</And></Filter>

# What the worker does (the `action` label of coffre_lifecycle_actions_total).
EXPIRE = "expire"  # the current version of an unversioned bucket, removed
DELETE_MARKER = "delete_marker"  # a delete marker placed over an expired current version
NONCURRENT = "noncurrent"  # a noncurrent version (or delete marker) removed for good
EXPIRED_DELETE_MARKER = "expired_delete_marker"  # a delete marker that was the key's only version, removed
ABORT_UPLOAD = "abort_upload"  # an incomplete multipart upload, aborted

LEASE_SECONDS = 60.0  # a worker that dies holding a bucket blocks it at most this long
SAVE_SECONDS = 10.0  # the cursor is saved (and the lease renewed) at least this often


@dataclass(frozen=True, slots=True)
class Filter:
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_gt: int | None = None  # ObjectSizeGreaterThan: size > this
    size_lt: int | None = None  # ObjectSizeLessThan: size < this
    form: str = FILTER


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    status: str
    filter: Filter = field(default_factory=Filter)
    expiration_days: int | None = None
    expiration_date: float | None = None  # POSIX seconds, midnight UTC
    expired_object_delete_marker: bool | None = None
    noncurrent_days: int | None = None
    newer_noncurrent: int | None = None
    abort_days: int | None = None
    # Transitions are parsed so they can be refused by name (validate); never stored.
    transitions: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.status == ENABLED

    def to_json(self) -> dict[str, Any]:
        f = self.filter
        return {"id": self.id, "status": self.status,
                "filter": {"prefix": f.prefix, "tags": [list(t) for t in f.tags], "gt": f.size_gt,
                           "lt": f.size_lt, "form": f.form},
                "days": self.expiration_days, "date": self.expiration_date,
                "eodm": self.expired_object_delete_marker, "nc_days": self.noncurrent_days,
                "nc_newer": self.newer_noncurrent, "abort_days": self.abort_days}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rule:
        f = d["filter"]
        return cls(id=d["id"], status=d["status"],
                   filter=Filter(f["prefix"], tuple((str(k), str(v)) for k, v in f["tags"]), f["gt"], f["lt"],
                                 f["form"]),
                   expiration_days=d["days"], expiration_date=d["date"], expired_object_delete_marker=d["eodm"],
                   noncurrent_days=d["nc_days"], newer_noncurrent=d["nc_newer"], abort_days=d["abort_days"])

    # -- matching --
    def matches(self, key: str, tags: dict[str, str], size: int, delete_marker: bool = False) -> bool:
        """Whether the filter selects this version. A delete marker has no tags (a rule with a
        tag condition never selects one) and no size (size conditions do not apply to it)."""
        f = self.filter
        if not key.startswith(f.prefix):
            return False
        if f.tags:
            if delete_marker or any(tags.get(k) != v for k, v in f.tags):
                return False
        if not delete_marker:
            if f.size_gt is not None and not size > f.size_gt:
                return False
            if f.size_lt is not None and not size < f.size_lt:
                return False
        return True

    def current_expiry(self, last_modified: float, day: float) -> float | None:
        """When this rule expires a current version written at ``last_modified``; None when it
        has no Days or Date (ExpiredObjectDeleteMarker alone)."""
        if self.expiration_date is not None:
            return self.expiration_date
        if self.expiration_days is not None:
            return due(last_modified, self.expiration_days, day)
        return None

    def current_due(self, last_modified: float, now: float, day: float) -> bool:
        when = self.current_expiry(last_modified, day)
        return when is not None and now >= when

    @property
    def acts_on_versions(self) -> bool:
        return (self.expiration_days is not None or self.expiration_date is not None
                or bool(self.expired_object_delete_marker) or self.noncurrent_days is not None)


@dataclass(frozen=True, slots=True)
class Configuration:
    rules: tuple[Rule, ...]
    min_size: str = MIN_SIZE_DEFAULT  # x-amz-transition-default-minimum-object-size

    def dumps(self) -> str:
        return json.dumps({"rules": [r.to_json() for r in self.rules], "min_size": self.min_size},
                          separators=(",", ":"))

    @classmethod
    def loads(cls, document: str) -> Configuration:
        d = json.loads(document)
        return cls(tuple(Rule.from_json(r) for r in d["rules"]), d.get("min_size", MIN_SIZE_DEFAULT))


def due(start: float, days: int, day: float = DAY) -> float:
    """When an action counted in ``days`` from ``start`` becomes due: start + days, rounded up
    to the next day boundary (midnight UTC with 86400-second days), as AWS rounds."""
    return math.ceil((start + days * day) / day) * day


def new_rule_id() -> str:
    """The ID S3 gives a rule that has none (a random, printable token)."""
    return secrets.token_urlsafe(36)[:48]


# -- validation (what S3 refuses once the document's shape is right) --
def _positive(value: int | None, name: str, action: str) -> None:
    if value is not None and not 0 < value <= MAX_DAYS:
        raise InvalidArgument(f"'{name}' for {action} action must be a positive integer", name=name,
                              value=str(value))


def validate(rules: Sequence[Rule]) -> None:
    if not rules or len(rules) > MAX_RULES:
        raise InvalidRequest(f"A lifecycle configuration holds between 1 and {MAX_RULES} rules.")
    seen: set[str] = set()
    for r in rules:
        if len(r.id) > MAX_ID_LENGTH:
            raise InvalidArgument(f"ID length should not exceed allowed limit of {MAX_ID_LENGTH}",
                                  name="ID", value=r.id[:64])
        if r.id in seen:
            raise InvalidArgument("Rule ID must be unique. Found same ID for more than one rule",
                                  name="ID", value=r.id)
        seen.add(r.id)
        for storage_class in r.transitions:
            # coffre keeps every object in one storage class: accepting a transition would be a
            # promise it cannot keep.
            raise InvalidRequest(f"coffre stores every object in one storage class (STANDARD); a transition to "
                                 f"{storage_class or 'another storage class'} is not supported.",
                                 storage_class=storage_class)
        f = r.filter
        if len(f.prefix.encode("utf-8", "surrogateescape")) > MAX_PREFIX_LENGTH:
            raise InvalidArgument(f"The maximum size of a prefix is {MAX_PREFIX_LENGTH}.", name="Prefix",
                                  value=f.prefix[:64])
        keys = [k for k, _ in f.tags]
        if len(set(keys)) != len(keys):
            raise InvalidRequest("Duplicate Tag Keys are not allowed.")
        for k, v in f.tags:
            if not 1 <= len(k) <= 128 or len(v) > 256:
                raise InvalidArgument("The TagKey you have provided is invalid" if not 1 <= len(k) <= 128
                                      else "The TagValue you have provided is invalid", name="Tag", value=k[:64])
        for name, size in (("ObjectSizeGreaterThan", f.size_gt), ("ObjectSizeLessThan", f.size_lt)):
            if size is not None and size < 0:
                raise InvalidRequest(f"'{name}' should be a non-negative integer")
        if f.size_lt is not None and f.size_lt == 0:
            raise InvalidRequest("'ObjectSizeLessThan' should be a positive integer")
        if f.size_gt is not None and f.size_lt is not None and f.size_gt >= f.size_lt:
            raise InvalidRequest("ObjectSizeGreaterThan must be less than ObjectSizeLessThan in the filter")
        if not (r.acts_on_versions or r.abort_days is not None):
            raise InvalidRequest("At least one action needs to be specified in a rule")
        _positive(r.expiration_days, "Days", "Expiration")
        if r.expiration_date is not None and r.expiration_date % DAY != 0:
            raise InvalidArgument("'Date' must be at midnight GMT", name="Date")
        _positive(r.noncurrent_days, "NoncurrentDays", "NoncurrentVersionExpiration")
        if r.newer_noncurrent is not None and not 0 < r.newer_noncurrent <= MAX_NEWER_NONCURRENT:
            raise InvalidArgument(f"'NewerNoncurrentVersions' for NoncurrentVersionExpiration action must be a "
                                  f"positive integer no greater than {MAX_NEWER_NONCURRENT}",
                                  name="NewerNoncurrentVersions", value=str(r.newer_noncurrent))
        _positive(r.abort_days, "DaysAfterInitiation", "AbortIncompleteMultipartUpload")
        if f.tags and r.expired_object_delete_marker:
            raise InvalidRequest("ExpiredObjectDeleteMarker cannot be specified with a tag-based filter")
        if r.abort_days is not None and f.tags:
            raise InvalidRequest("AbortIncompleteMultipartUpload cannot be specified with Tags.")
        if r.abort_days is not None and (f.size_gt is not None or f.size_lt is not None):
            # An upload has no size yet: such a rule could not be applied as written.
            raise InvalidRequest("AbortIncompleteMultipartUpload cannot be specified with an object size filter.")


# -- storage --
async def save(meta: MetadataStore, bucket: str, config: Configuration | None) -> None:
    try:
        await meta.put_bucket_config(bucket, CONFIG_NAME, None if config is None else config.dumps())
    except NotFound as e:
        raise NoSuchBucket(bucket=bucket) from e


async def load(meta: MetadataStore, bucket: str) -> Configuration | None:
    document = await meta.get_bucket_config(bucket, CONFIG_NAME)
    return None if document is None else Configuration.loads(document)


async def get(meta: MetadataStore, bucket: str) -> Configuration:
    config = await load(meta, bucket)
    if config is None:
        raise NoSuchLifecycleConfiguration(bucket=bucket)
    return config


@functools.lru_cache(maxsize=256)
def parsed(document: str) -> Configuration:
    """A stored configuration, parsed once per distinct document (it is immutable): requests
    that answer x-amz-expiration read the document with their bucket."""
    return Configuration.loads(document)


def expiration_of(config: Configuration, obj: ObjectRecord, day: float = DAY) -> tuple[float, str] | None:
    """(when, rule id) of the current-version expiration that applies to ``obj``, the earliest
    of the enabled rules' (for the x-amz-expiration header); None when none applies. A rule
    with ExpiredObjectDeleteMarker alone has no date and never applies here."""
    best: tuple[float, str] | None = None
    for r in config.rules:
        if not r.enabled or not r.matches(obj.key, obj.tags, obj.size):
            continue
        when = r.current_expiry(obj.last_modified, day)
        if when is not None and (best is None or when < best[0]):
            best = (when, r.id)
    return best


# -- what is due --
@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # EXPIRE | DELETE_MARKER | NONCURRENT | EXPIRED_DELETE_MARKER
    version: ObjectRecord
    rule_id: str
    successor_modified: float | None = None  # NONCURRENT: when the version became noncurrent
    min_newer: int = 0  # NONCURRENT: noncurrent versions newer than it that must remain


def plan_key(rules: Sequence[Rule], versions: Sequence[ObjectRecord], versioning: str, now: float,
             day: float = DAY) -> list[Action]:
    """What is due for one key, given all its versions newest first (the latest first).

    When the current version expires, that is all for this pass: the versions it turns
    noncurrent are looked at in later passes, from the time they became noncurrent."""
    active = [r for r in rules if r.enabled]
    if not versions or not active:
        return []
    latest = versions[0]
    if latest.is_delete_marker:
        if len(versions) == 1:
            for r in active:
                if not r.matches(latest.key, {}, 0, delete_marker=True):
                    continue
                # A Days expiration cleans up expired delete markers too (as on AWS), once as old.
                if r.expired_object_delete_marker or (
                        r.expiration_days is not None and now >= due(latest.last_modified, r.expiration_days, day)):
                    return [Action(EXPIRED_DELETE_MARKER, latest, r.id)]
            return []
    else:
        for r in active:
            if r.matches(latest.key, latest.tags, latest.size) and r.current_due(latest.last_modified, now, day):
                return [Action(DELETE_MARKER if versioning else EXPIRE, latest, r.id)]
    out: list[Action] = []
    if not versioning:
        return out
    for i in range(1, len(versions)):
        v, successor = versions[i], versions[i - 1]
        newer = i - 1  # noncurrent versions newer than v
        for r in active:
            if r.noncurrent_days is None or newer < (r.newer_noncurrent or 0):
                continue
            if not r.matches(v.key, v.tags, v.size, v.is_delete_marker):
                continue
            if now >= due(successor.last_modified, r.noncurrent_days, day):
                out.append(Action(NONCURRENT, v, r.id, successor.last_modified, r.newer_noncurrent or 0))
                break
    return out


def _aborts(r: Rule, key: str) -> bool:
    """Whether ``r`` aborts incomplete uploads of ``key`` (such a rule filters by prefix only)."""
    return r.enabled and r.abort_days is not None and key.startswith(r.filter.prefix)


def upload_due(rules: Sequence[Rule], upload: UploadRecord, now: float, day: float = DAY) -> Rule | None:
    for r in rules:
        if _aborts(r, upload.key) and now >= due(upload.initiated, r.abort_days or 0, day):
            return r
    return None


def abort_of(config: Configuration, upload: UploadRecord, day: float = DAY) -> tuple[float, str] | None:
    """(when, rule id) of the earliest rule that will abort ``upload`` if it is still incomplete
    then (for x-amz-abort-date and x-amz-abort-rule-id); None when none applies."""
    best: tuple[float, str] | None = None
    for r in config.rules:
        if _aborts(r, upload.key):
            when = due(upload.initiated, r.abort_days or 0, day)
            if best is None or when < best[0]:
                best = (when, r.id)
    return best


# -- the worker --
@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """One action the worker committed: what audit, metrics and notifications are told."""

    kind: str
    bucket: str
    tenant_id: str
    key: str
    version_id: str | None  # the version removed, or the delete marker created
    rule_id: str
    size: int | None = None
    etag: str | None = None
    upload_id: str | None = None


Listener = Callable[[LifecycleEvent], Awaitable[None]]


@dataclass(slots=True)
class PassStats:
    buckets: int = 0
    actions: int = 0
    skipped_locked: int = 0
    busy: int = 0  # buckets another worker held


@dataclass(slots=True)
class _Cursor:
    phase: str = "versions"  # then "uploads"
    key: str = ""
    upload_id: str = ""

    def dumps(self) -> str:
        return json.dumps({"phase": self.phase, "key": self.key, "upload_id": self.upload_id})

    @classmethod
    def loads(cls, text: str | None) -> _Cursor:
        if not text:
            return cls()
        try:
            d = json.loads(text)
            return cls(str(d["phase"]), str(d["key"]), str(d.get("upload_id", "")))
        except (ValueError, KeyError, TypeError):
            return cls()


class _LeaseLost(Exception):
    pass


class LifecycleWorker:
    def __init__(self, settings: Settings, meta: MetadataStore, objects: ObjectService, *,
                 holder: str | None = None, listener: Listener | None = None,
                 may_act: Callable[[], bool] | None = None, lease_seconds: float = LEASE_SECONDS,
                 page_size: int = 1000) -> None:
        self.settings = settings
        self.meta = meta
        self.objects = objects
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.listener = listener
        # When it says no (the audit log cannot be written and audit_required is on), nothing
        # is done: an action that could not be audited is not taken.
        self.may_act = may_act or (lambda: True)
        self.lease_seconds = lease_seconds
        self.page_size = page_size
        self._refused_logged = False

    @property
    def day(self) -> float:
        return self.settings.lifecycle_day_seconds

    async def run(self) -> None:
        """Pass after pass, every lifecycle_interval_seconds, until cancelled."""
        while True:
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lifecycle pass failed")
            await asyncio.sleep(self.settings.lifecycle_interval_seconds)

    async def run_pass(self, max_keys: int | None = None) -> PassStats:
        """One pass over every bucket holding a lifecycle configuration.

        ``max_keys`` bounds the keys looked at per bucket: the pass stops there, its cursor
        saved, and the next one resumes (used to test a pass cut short)."""
        stats = PassStats()
        after = ""
        while True:
            batch = await self.meta.list_bucket_configs(CONFIG_NAME, after, 500)
            for bucket, document in batch:
                if not self._allowed():
                    return stats
                stats.buckets += 1
                try:
                    await self.run_bucket(bucket, document, stats, max_keys)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("lifecycle: bucket %s failed; it is retried at the next pass", bucket)
            if len(batch) < 500:
                return stats
            after = batch[-1][0]

    def _allowed(self) -> bool:
        if self.may_act():
            self._refused_logged = False
            return True
        if not self._refused_logged:
            log.error("lifecycle: actions paused while the audit log cannot be written")
            self._refused_logged = True
        return False

    async def run_bucket(self, bucket: str, document: str, stats: PassStats, max_keys: int | None = None) -> None:
        record = await self.meta.get_bucket(bucket)
        if record is None:
            return
        tenant = await self.meta.get_tenant(record.tenant_id)
        if tenant is None or tenant.status != "active":
            # A suspended tenant's data is frozen, a deleting one's awaits its erasure: no
            # rule runs until the tenant is active again.
            return
        lease = await self.meta.lifecycle_acquire(bucket, self.holder, time.time(), self.lease_seconds)
        if lease is None:
            stats.busy += 1
            return
        if lease.cursor is None and lease.last_done is not None \
                and time.time() - lease.last_done < self.settings.lifecycle_interval_seconds / 2:
            # Another gateway finished a pass over it moments ago: with N gateways, a bucket
            # is still walked about once per interval, not N times.
            await self.meta.lifecycle_release(bucket, self.holder, None, None)
            return
        cursor = _Cursor.loads(lease.cursor)
        finished = False
        try:
            rules = [r for r in Configuration.loads(document).rules if r.enabled]
            if not rules:
                finished = True
                return
            saved = time.monotonic()
            if cursor.phase == "versions":
                if any(r.acts_on_versions for r in rules):
                    seen = 0
                    async for key, versions in self._keys(bucket, cursor.key):
                        if not self._allowed():
                            return
                        await self._apply_key(record, rules, versions, stats)
                        cursor.key = key
                        seen += 1
                        if max_keys is not None and seen >= max_keys:
                            return
                        if time.monotonic() - saved > SAVE_SECONDS:
                            await self._save(bucket, cursor)
                            saved = time.monotonic()
                cursor = _Cursor("uploads")
                await self._save(bucket, cursor)
            if any(r.abort_days is not None for r in rules):
                await self._abort_uploads(record, rules, cursor, stats, saved)
            finished = True
        except _LeaseLost:
            log.warning("lifecycle: lost the lease of bucket %s; another gateway goes on", bucket)
            return
        finally:
            # Also when cancelled (shutdown): the cursor is kept and the lease freed for the next start.
            await self.meta.lifecycle_release(bucket, self.holder, None if finished else cursor.dumps(),
                                              time.time() if finished else None)

    async def _save(self, bucket: str, cursor: _Cursor) -> None:
        if not await self.meta.lifecycle_save(bucket, self.holder, cursor.dumps(), time.time(), self.lease_seconds):
            raise _LeaseLost()

    async def _keys(self, bucket: str, start_after: str) -> AsyncIterator[tuple[str, list[ObjectRecord]]]:
        """Each key after ``start_after`` with all its versions, newest first."""
        key_marker, vid_marker = start_after, ""
        current_key: str | None = None
        current: list[ObjectRecord] = []
        while True:
            page = await self.meta.list_object_versions(bucket, key_marker=key_marker,
                                                        version_id_marker=vid_marker, max_keys=self.page_size)
            for e in page.entries:
                if e.key != current_key:
                    if current_key is not None and current:
                        yield current_key, current
                    current_key, current = e.key, []
                current.append(e)
            if not page.is_truncated or page.next_key_marker is None:
                break
            key_marker, vid_marker = page.next_key_marker, page.next_version_id_marker or ""
        if current_key is not None and current:
            yield current_key, current

    async def _apply_key(self, bucket: BucketRecord, rules: Sequence[Rule], versions: list[ObjectRecord],
                         stats: PassStats) -> None:
        now = time.time()
        for action in plan_key(rules, versions, bucket.versioning, now, self.day):
            v = action.version
            try:
                if action.kind == DELETE_MARKER:
                    marker = ObjectRecord(
                        bucket=bucket.name, key=v.key, version_id=ObjectService.version_for(bucket), size=0, etag="",
                        last_modified=time.time(), tenant_id=bucket.tenant_id, owner=v.owner, is_delete_marker=True)
                    released = await self.meta.expire_latest(marker, v.version_id, v.last_modified)
                    if released is None:
                        continue
                    await self.objects.release(released)
                    await self._emit(LifecycleEvent(DELETE_MARKER, bucket.name, bucket.tenant_id, v.key,
                                                    marker.version_id, action.rule_id), stats)
                    continue
                removed, released = await self.meta.expire_version(
                    bucket.name, v.key, v.version_id, last_modified=v.last_modified,
                    latest=action.kind != NONCURRENT, now=now, only_version=action.kind == EXPIRED_DELETE_MARKER,
                    min_newer_noncurrent=action.min_newer, successor_before=action.successor_modified)
                if removed is None:
                    continue
                await self.objects.release(released)
                await self._emit(LifecycleEvent(
                    action.kind, bucket.name, bucket.tenant_id, v.key, removed.version_id, action.rule_id,
                    None if removed.is_delete_marker else removed.size,
                    None if removed.is_delete_marker else removed.etag), stats)
            except Locked:
                stats.skipped_locked += 1
                log.debug("lifecycle: %s/%s version %s is locked; left in place", bucket.name, v.key, v.version_id)

    async def _abort_uploads(self, bucket: BucketRecord, rules: Sequence[Rule], cursor: _Cursor,
                             stats: PassStats, saved: float) -> None:
        key_marker, id_marker = cursor.key, cursor.upload_id
        while True:
            page = await self.meta.list_uploads(bucket.name, key_marker=key_marker, upload_id_marker=id_marker,
                                                max_uploads=self.page_size)
            now = time.time()
            for up in page.uploads:
                if not self._allowed():
                    return
                rule = upload_due(rules, up, now, self.day)
                if rule is not None:
                    try:
                        released = await self.meta.abort_upload(up.upload_id)
                    except NotFound:
                        released = None  # completed or aborted meanwhile
                    if released is not None:
                        await self.objects.release(released)
                        await self._emit(LifecycleEvent(ABORT_UPLOAD, bucket.name, bucket.tenant_id, up.key, None,
                                                        rule.id, upload_id=up.upload_id), stats)
                cursor.key, cursor.upload_id = up.key, up.upload_id
            if time.monotonic() - saved > SAVE_SECONDS:
                await self._save(bucket.name, cursor)
                saved = time.monotonic()
            if not page.is_truncated or page.next_key_marker is None:
                return
            key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker or ""

    async def _emit(self, event: LifecycleEvent, stats: PassStats) -> None:
        stats.actions += 1
        log.info("lifecycle: %s %s/%s%s (rule %s)", event.kind, event.bucket, event.key,
                 f" version {event.version_id}" if event.version_id else "", event.rule_id)
        if self.listener is None:
            return
        try:
            await self.listener(event)
        except Exception:
            log.exception("lifecycle: reporting an action failed (the action stands)")


def parse_date(text: str) -> float:
    """An ISO 8601 date-time as POSIX seconds (UTC when it names no zone). Raises ValueError."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
