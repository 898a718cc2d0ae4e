"""Typed records exchanged between the domain layer and metadata backends.

They live here (not in ``core``) because backends must never import ``core``.
Times are POSIX seconds as floats (UTC). Object keys are ``str``; backends
store them so that ordering is UTF-8 byte order, as S3 lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

NULL_VERSION = "null"

# Object Lock retention modes (issue #6). A version in COMPLIANCE mode cannot be deleted by
# anyone before its retain-until date; in GOVERNANCE mode only with a governance bypass.
LOCK_GOVERNANCE = "GOVERNANCE"
LOCK_COMPLIANCE = "COMPLIANCE"


# The tenant_id of an operator's access key: operators belong to no tenant.
OPERATOR_TENANT = ""


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: str
    name: str
    status: str  # "active" | "suspended" | "deleting" | "erased"
    created_at: float
    # The tenant's data-key-wrapping key, itself wrapped by the deployment root key (or by the
    # tenant's own key service when key_provider is set); b"" once erased.
    wrapped_key: bytes
    canonical_id: str
    # When status is "deleting": the time after which its key may be destroyed (crypto-erasure).
    delete_after: float | None = None
    # Tenant-level Block Public Access, JSON {"BlockPublicAcls": bool, ...}; None = not set.
    public_access_block: str | None = None
    # Hold your own key: JSON {"type": "external", "url", "key_id", ["ca_pem"], ...} of the
    # tenant's key service, which wraps the tenant key (None: the root key does). No secret in it.
    key_provider: str | None = None
    # When the tenant's key was destroyed (status "erased").
    erased_at: float | None = None
    # When the erased tenant's stored data (objects, uploads, buckets) was all removed and its
    # blobs queued for the garbage collector (MetadataStore.reclaim_tenant); None: not yet.
    reclaimed_at: float | None = None


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What reclaiming an erased tenant's space removed (MetadataStore.reclaim_tenant).

    One call's share of the work, or, on the call that finished it (``done``), the totals of
    every call for that tenant, whichever gateway or process made them."""

    versions: int = 0  # object versions, delete markers included
    uploads: int = 0  # multipart uploads in progress, their parts with them
    buckets: int = 0
    bytes: int = 0  # stored bytes of those versions and parts (plaintext sizes)
    blobs: int = 0  # blob ids queued for the garbage collector
    done: bool = False  # this call finished the reclaim (and set reclaimed_at)

    def counts(self) -> dict[str, int]:
        """The five counts by name: the running totals a store keeps (tenants.reclaim_counts in
        SQLite) and the audit record's ``reclaimed`` field."""
        return {"versions": self.versions, "uploads": self.uploads, "buckets": self.buckets,
                "bytes": self.bytes, "blobs": self.blobs}

    @property
    def empty(self) -> bool:
        """Nothing removed, nothing finished: the tenant was not (or no longer) to reclaim."""
        return not (self.done or self.versions or self.uploads or self.buckets or self.blobs)


@dataclass(frozen=True, slots=True)
class AccessKeyRecord:
    access_key_id: str
    tenant_id: str  # OPERATOR_TENANT ("") for an operator's key
    principal: str  # user name inside the tenant; "root" for the tenant root; operator name for operators
    # The secret, encrypted under the root key (SigV4 needs the secret itself,
    # so it cannot be hashed; it is never stored in plaintext).
    wrapped_secret: bytes
    status: str  # "active" | "inactive"
    created_at: float


@dataclass(frozen=True, slots=True)
class BucketRecord:
    name: str
    tenant_id: str
    region: str
    created_at: float
    versioning: str = ""  # "" (never enabled) | "Enabled" | "Suspended"
    object_lock: bool = False
    # Read on every request, so kept on the bucket row rather than in bucket_configs:
    policy: str | None = None  # the bucket policy document (JSON text as stored), None = none
    # JSON {"ownership": "BucketOwnerEnforced"|"BucketOwnerPreferred"|"ObjectWriter",
    #       "public_access_block": {...} | absent, "acl": [grants] | absent}; None = defaults.
    access: str | None = None
    # Default encryption (PutBucketEncryption), JSON {"algorithm": "AES256"|"aws:kms",
    # "kms_key_id": uuid|null, "bucket_key": bool}; None = SSE-S3. On the bucket row because
    # every write reads it: a default in bucket_configs would cost each PUT one more read.
    encryption: str | None = None
    # The lifecycle configuration document (bucket_configs, name LIFECYCLE_CONFIG), read with
    # the bucket: PUT, GET and HEAD answer x-amz-expiration from it. It is stored and changed
    # through put_bucket_config only; a store fills this field when it reads the bucket.
    lifecycle: str | None = None


# The bucket_configs name of the lifecycle configuration (BucketRecord.lifecycle).
LIFECYCLE_CONFIG = "lifecycle"


@dataclass(frozen=True, slots=True)
class SseRecord:
    """How an object's (or upload's) data keys are wrapped beyond its tenant's key (issue #4).

    None on a record means SSE-S3: the data keys are wrapped by the tenant key only.
    ``algorithm``: "aws:kms" (an inner wrap under one of the tenant's KMS keys, bound to the
    encryption context) or "SSE-C" (an inner wrap under a key derived from the customer's key,
    which is never stored: only ``customer_check``, a random salt and a keyed HMAC of the key).
    """

    algorithm: str
    kms_key_id: str | None = None  # the KMS key's id (a UUID), never a whole ARN
    bucket_key: bool = False  # x-amz-server-side-encryption-bucket-key-enabled, as asked
    customer_check: bytes | None = None  # SSE-C: salt || HMAC-SHA256(deployment secret, salt || key)
    context_hash: bytes | None = None  # SSE-KMS: SHA-256 of the canonical encryption context


@dataclass(frozen=True, slots=True)
class KmsKeyRecord:
    """A KMS key of a tenant (SSE-KMS): its default one, made on first use, or one created through
    the admin API. Its material is its own random key, wrapped by the root key."""

    key_id: str  # a UUID
    tenant_id: str
    wrapped_key: bytes  # wrapped by the deployment root key, context "kms|<tenant>|<key id>"
    created_at: float
    description: str = ""
    state: str = "Enabled"  # "Enabled" | "Disabled"


@dataclass(frozen=True, slots=True)
class ObjectPartRecord:
    """One stored piece of a multipart object, in part-number order."""

    part_number: int
    size: int
    etag: str  # quoted
    blob_id: str
    dek: bytes  # wrapped data key of this piece's blob
    checksum: str | None = None  # base64 checksum of this part, if the upload had an algorithm


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    bucket: str
    key: str
    version_id: str
    size: int
    etag: str  # quoted, as S3 returns it
    last_modified: float
    tenant_id: str
    owner: str  # canonical id of the owning tenant
    content_type: str = "binary/octet-stream"
    # Stored system headers that round-trip: Content-Encoding, Content-Disposition,
    # Content-Language, Cache-Control, Expires (names in canonical case).
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)  # lower-case names, no x-amz-meta- prefix
    checksum_algorithm: str | None = None  # CRC32 | CRC32C | CRC64NVME | SHA1 | SHA256
    checksum_value: str | None = None  # base64, with "-N" suffix for composite multipart
    checksum_type: str | None = None  # FULL_OBJECT | COMPOSITE
    blob_id: str | None = None  # single-blob objects; None for multipart (see parts)
    dek: bytes | None = None  # wrapped data key of blob_id
    parts: tuple[ObjectPartRecord, ...] = ()  # multipart objects only, filled on request
    parts_count: int = 0  # 0 for a simple PUT
    is_latest: bool = True
    is_delete_marker: bool = False
    storage_class: str = "STANDARD"
    tags: dict[str, str] = field(default_factory=dict)  # object tags (at most 10), key -> value
    acl: str | None = None  # JSON list of grants; None = the owner's full control only
    sse: SseRecord | None = None  # server-side encryption beyond SSE-S3 (None: SSE-S3)
    # Object Lock: retention mode (LOCK_GOVERNANCE | LOCK_COMPLIANCE) and date (POSIX seconds),
    # both set or both None; legal hold: None (never set), False (OFF) or True (ON).
    lock_mode: str | None = None
    lock_until: float | None = None
    legal_hold: bool | None = None

    @property
    def blob_ids(self) -> list[str]:
        if self.blob_id is not None:
            return [self.blob_id]
        return [p.blob_id for p in self.parts]


@dataclass(frozen=True, slots=True)
class UploadRecord:
    upload_id: str
    bucket: str
    key: str
    tenant_id: str
    owner: str
    initiated: float
    content_type: str = "binary/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    checksum_algorithm: str | None = None
    checksum_type: str | None = None
    storage_class: str = "STANDARD"
    tags: dict[str, str] = field(default_factory=dict)  # given at creation, land on the completed object
    sse: SseRecord | None = None  # asked at creation; every part is written under it


@dataclass(frozen=True, slots=True)
class PartRecord:
    upload_id: str
    part_number: int
    size: int
    etag: str  # quoted
    blob_id: str
    dek: bytes
    last_modified: float
    checksum: str | None = None


class ListEntry(NamedTuple):
    """What a listing shows of one object: a light row (no headers, metadata, tags or keys),
    because building a full ObjectRecord per entry was a quarter of a listing's CPU."""

    key: str
    last_modified: float
    etag: str  # quoted
    size: int
    storage_class: str
    owner: str  # canonical id of the owning tenant
    checksum_algorithm: str | None
    checksum_type: str | None


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing: entries and common prefixes interleaved in key order."""

    objects: list[ListEntry]
    common_prefixes: list[str]
    is_truncated: bool
    # The last key or common prefix returned; where the next page starts.
    next_marker: str | None


@dataclass(frozen=True, slots=True)
class UploadListPage:
    uploads: list[UploadRecord]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str | None
    next_upload_id_marker: str | None


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """Compare-and-set applied inside the commit transaction.

    ``if_none_match_any``: there must be no current object at the key.
    ``if_match``: the current object's ETag (quoted) must equal this.
    """

    if_none_match_any: bool = False
    if_match: str | None = None

    @property
    def empty(self) -> bool:
        return not self.if_none_match_any and self.if_match is None


@dataclass(frozen=True, slots=True)
class VersionListPage:
    """One page of ListObjectVersions: versions and delete markers, newest first within a key."""

    entries: list[ObjectRecord]  # is_delete_marker tells a delete marker from a version
    common_prefixes: list[str]
    is_truncated: bool
    # Where the next page starts: the last key (or common prefix) returned, and the last
    # version id returned (None when the page ended on a common prefix).
    next_key_marker: str | None
    next_version_id_marker: str | None


@dataclass(frozen=True, slots=True)
class LifecycleLease:
    """The lifecycle worker's hold on one bucket (issue #6), and where its pass stands.

    Only the holder acts on the bucket until ``until``; ``cursor`` is the domain layer's opaque
    progress text (None: the next pass starts from the beginning), kept across restarts.
    """

    bucket: str
    holder: str
    until: float
    cursor: str | None = None
    last_done: float | None = None  # when a pass over the bucket last finished


# -- identities and access control (issue #3) --

@dataclass(frozen=True, slots=True)
class UserRecord:
    tenant_id: str
    name: str  # unique in its tenant, compared case-insensitively (as IAM does)
    user_id: str  # "AIDA" + 17 upper-case letters/digits, stable for the user's life
    created_at: float
    path: str = "/"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupRecord:
    tenant_id: str
    name: str  # unique in its tenant, case-insensitively
    group_id: str  # "AGPA" + 17
    created_at: float
    path: str = "/"


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A customer-managed policy of a tenant (one version: the current document)."""

    tenant_id: str
    name: str  # unique in its tenant
    policy_id: str  # "ANPA" + 17
    document: str  # JSON text as given
    created_at: float
    updated_at: float
    path: str = "/"
    description: str = ""
    default_version: str = "v1"


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    """A person or robot of the operator plane (never a tenant identity)."""

    name: str
    created_at: float
    status: str = "active"  # "active" | "disabled"
    password_hash: str | None = None  # argon2id PHC string; None = key-only operator
    wrapped_totp: bytes | None = None  # TOTP seed encrypted under the root key
    failed_logins: int = 0
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    """Limits of a tenant (scope "tenant", target = tenant id) or a bucket (scope "bucket",
    target = bucket name). None = unlimited. max_buckets applies to tenants only."""

    scope: str
    target: str
    max_bytes: int | None = None
    max_objects: int | None = None
    max_buckets: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """What is stored: every version that is not a delete marker counts (as AWS bills it)."""

    bytes: int = 0
    objects: int = 0
    buckets: int = 0  # tenant usage only


# Metering (issue #5): what a tenant is billed for, kept per (tenant, bucket, UTC hour).
HOUR = 3600


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """Requests and transfer of one bucket in one UTC hour, as a gateway counted them in memory.

    ``bucket`` is "" for requests that address no bucket (ListBuckets, IAM). Added to what the
    store holds for that hour (never replacing it), so several gateways may flush the same hour.
    """

    tenant_id: str
    bucket: str
    hour: int  # POSIX seconds of the hour's start (a multiple of HOUR)
    write_requests: int = 0  # AWS "PUT, COPY, POST, LIST" class
    read_requests: int = 0  # AWS "GET and all other requests" class
    free_requests: int = 0  # DELETE and aborts (not billed, as on AWS), IAM calls
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True, slots=True)
class MeteredUsage:
    """One bucket's metered totals over a span of whole hours (a billing period).

    ``byte_seconds`` integrates the bytes stored over time, to the second: a GB-month is
    byte_seconds / 3600 / hours in the month / 10^9. Buckets deleted since keep their rows.
    """

    tenant_id: str
    bucket: str
    byte_seconds: int = 0
    write_requests: int = 0
    read_requests: int = 0
    free_requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


# -- key versions (issue #4) --
ROOT_KEY_OWNER = ""  # KeyVersionRecord.owner of the deployment root key's versions


@dataclass(frozen=True, slots=True)
class KeyVersionRecord:
    """One version of the root key (owner ``ROOT_KEY_OWNER``) or of a tenant's key (owner = tenant id).

    A tenant key version's key is stored wrapped by the root key; the root key's versions live
    in the key provider, and their rows only record their states. ``wrapped_key`` is None once
    the version is retired or destroyed: nothing can unwrap with it any more."""

    owner: str
    version: int
    state: str  # "active" | "retiring" | "retired" | "destroyed"
    wrapped_key: bytes | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class DekRef:
    """Where a wrapped data key is stored: ``table`` and its row key, with the blob it opens."""

    table: str  # "objects" | "object_parts" | "parts"
    row: tuple[int | str, ...]
    blob_id: str
    dek: bytes


@dataclass(frozen=True, slots=True)
class RootWrapped:
    """Material wrapped by the root key: a tenant key, an access key's secret, an operator's TOTP seed."""

    kind: str  # "tenant" | "tenant_key" | "access_key" | "totp" | "setting" | "kms_key"
    id: str  # tenant id; "owner/version"; access key id; operator name; setting name; "tenant/key id"
    wrapped: bytes
