"""The metadata store interface. Every backend passes tests/conformance/test_meta.py."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from coffre.meta.records import (
    AccessKeyRecord,
    BucketRecord,
    DekRef,
    GroupRecord,
    KeyVersionRecord,
    KmsKeyRecord,
    LifecycleLease,
    ListPage,
    MeteredUsage,
    ObjectPartRecord,
    ObjectRecord,
    OperatorRecord,
    PartRecord,
    PolicyRecord,
    QuotaRecord,
    Reclaimed,
    RequestCounts,
    RootWrapped,
    TenantRecord,
    UploadListPage,
    UploadRecord,
    Usage,
    UserRecord,
    VersionListPage,
    WriteCondition,
)


class MetadataStore(ABC):
    """Durable metadata. Every mutating call is one transaction, durable when it returns."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema; must be called once before use."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot answer."""

    # -- deployment settings (small key/value facts, e.g. schema version) --
    @abstractmethod
    async def get_setting(self, name: str) -> str | None: ...

    @abstractmethod
    async def set_setting(self, name: str, value: str) -> None: ...

    @abstractmethod
    async def add_setting(self, name: str, value: str) -> str:
        """Store ``value`` under ``name`` unless a value is there already; return the stored one.

        For values made on first use (deployment secrets, the admin session key): processes or
        gateways that race to create one all end up using the same, whichever was stored first."""

    # -- key versions and re-wrapping (issue #4) --
    @abstractmethod
    async def list_key_versions(self, owner: str | None = None) -> list[KeyVersionRecord]:
        """Versions of one owner's key (ROOT_KEY_OWNER: the root key's), oldest first; None: all owners."""

    @abstractmethod
    async def add_key_version(self, rec: KeyVersionRecord) -> None:
        """Insert a new (active) version; the owner's active version becomes "retiring", in the same
        transaction. Raise AlreadyExists when this version or a newer one exists (a concurrent rotation)."""

    @abstractmethod
    async def set_key_version_state(self, owner: str, version: int, state: str, at: float) -> None:
        """Record a version's state; "retired" and "destroyed" also erase its wrapped key (and, for a
        tenant's version 1, ``tenants.wrapped_key``). A root version without a row gets one."""

    @abstractmethod
    async def dek_batch(self, tenant_id: str, table: str, after: tuple[int | str, ...] | None,
                        limit: int = 500) -> list[DekRef]:
        """The next wrapped data keys of a tenant in ``table`` ("objects", "object_parts", "parts"),
        in row-key order after ``after`` (the last row key of the previous batch, None to start)."""

    @abstractmethod
    async def replace_deks(self, changes: Sequence[tuple[DekRef, bytes]]) -> int:
        """Store re-wrapped data keys, each only where the row still holds the key it was read with
        (a row rewritten meanwhile keeps its own). Returns how many rows changed."""

    @abstractmethod
    async def root_wrapped(self) -> list[RootWrapped]:
        """Everything wrapped by the root key: tenant keys (every version), secrets, TOTP seeds."""

    @abstractmethod
    async def replace_root_wrapped(self, item: RootWrapped, new: bytes) -> bool:
        """Store a re-wrapped item if it still holds ``item.wrapped``; False when it changed or is gone."""

    # -- tenants and keys --
    @abstractmethod
    async def create_tenant(self, tenant: TenantRecord) -> None:
        """Raise AlreadyExists when the id or name is taken."""

    @abstractmethod
    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    @abstractmethod
    async def put_access_key(self, key: AccessKeyRecord) -> None:
        """Insert or replace an access key."""

    @abstractmethod
    async def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None: ...

    # -- tenancy and identities (issue #3). Names of users, groups and policies are unique per
    #    tenant case-insensitively; lookups by name are case-insensitive too. Every method that
    #    takes a tenant_id sees that tenant only. --
    @abstractmethod
    async def list_tenants(self) -> list[TenantRecord]:
        """Every tenant, in name order."""

    @abstractmethod
    async def get_tenant_by_name(self, name: str) -> TenantRecord | None: ...

    @abstractmethod
    async def update_tenant(self, tenant: TenantRecord) -> None:
        """Replace the tenant row (status, delete_after, public_access_block...). Raises NotFound.

        The key columns (wrapped_key, key_provider, erased_at) are never written here, so a
        caller holding a stale record cannot bring back a key replaced or destroyed meanwhile:
        they change only through set_tenant_key_wrapping, erase_tenant and the key-version
        methods; nor is reclaimed_at (reclaim_tenant's). An erased tenant cannot be changed at
        all (Conflict)."""

    @abstractmethod
    async def set_tenant_key_wrapping(self, tenant_id: str, key_provider: str | None,
                                      changes: Sequence[tuple[int, bytes, bytes]],
                                      token_setting: str | None = None) -> None:
        """Move a tenant key to another wrapper (hold your own key, or back to the root key):
        set ``key_provider`` and, for each (version, old, new), replace that version's wrapped
        key (tenants.wrapped_key too for version 1), all in one transaction. The tenant's key
        service token settings ("secret:hyok-token/<tenant id>/...") other than
        ``token_setting`` (the one the new ``key_provider`` uses, written before) are removed.

        Compare-and-set: raises ConditionFailed, changing nothing, when a version's wrapped key
        is no longer ``old`` or the tenant's unerased versions are not exactly those of
        ``changes`` (a rotation ran meanwhile); NotFound when there is no such tenant; Conflict
        when it is erased."""

    @abstractmethod
    async def erase_tenant(self, tenant_id: str, now: float) -> bool:
        """Crypto-erasure: when the tenant is "deleting" and ``delete_after <= now``, destroy
        every copy of its key material in one transaction (tenants.wrapped_key, every key
        version, its KMS keys' material, its key service token, its access keys' secrets), mark
        it "erased" at ``now``, and return True. Otherwise change nothing and return False: of
        several gateways, exactly one erases. The freed bytes are overwritten, not just
        unlinked, and the write-ahead log is folded back so no older page keeps them."""

    @abstractmethod
    async def reclaim_tenant(self, tenant_id: str, now: float, limit: int = 500) -> Reclaimed:
        """Remove the next part of an erased tenant's stored data, in one transaction, and return
        what it removed. Acts only on a tenant that is "erased" and not yet reclaimed (read in
        the same transaction); otherwise changes nothing and returns an empty Reclaimed.

        Its buckets are emptied one after the other (name order): object versions and delete
        markers first, then multipart uploads in progress with their parts, then the bucket
        itself with its configuration documents, lifecycle state, usage row and bucket quota,
        so that its name is free again. At most about ``limit`` rows go per call (a version
        counts one plus its parts, an upload likewise, a bucket one; a call always makes some
        progress). Every blob id the removed rows referenced is queued for garbage collection
        in the same transaction, so a crash loses nothing and leaks nothing, and removing a
        version takes it off the usage as deleting it would (metering integrates its bytes up
        to now, then stops). Object Lock is not consulted: the erasure waited for the last
        lock, and nothing can be read any more. Only buckets of this tenant are touched (an
        object's tenant is always its bucket's).

        The call that finds nothing left sets ``reclaimed_at`` to ``now``, removes the tenant's
        usage row and returns the totals of every call (kept with the tenant as they go, so
        restarts and several gateways add up) with ``done`` True: of several gateways,
        exactly one does. Later calls change nothing."""

    @abstractmethod
    async def list_access_keys(self, tenant_id: str, principal: str | None = None) -> list[AccessKeyRecord]:
        """The keys of a tenant (OPERATOR_TENANT: operators' keys), or of one principal in it,
        oldest first."""

    @abstractmethod
    async def delete_access_key(self, access_key_id: str) -> None:
        """Raises NotFound."""

    @abstractmethod
    async def create_user(self, user: UserRecord) -> None:
        """Raises AlreadyExists."""

    @abstractmethod
    async def get_user(self, tenant_id: str, name: str) -> UserRecord | None: ...

    @abstractmethod
    async def list_users(self, tenant_id: str, path_prefix: str = "/") -> list[UserRecord]:
        """Name order (case-insensitive)."""

    @abstractmethod
    async def update_user(self, user: UserRecord) -> None:
        """Replace a user's path and tags (found by tenant and user_id). Raises NotFound."""

    @abstractmethod
    async def delete_user(self, tenant_id: str, name: str) -> None:
        """Raises NotFound, or Conflict while it has access keys, inline or attached policies
        or group memberships (IAM's DeleteConflict)."""

    @abstractmethod
    async def create_group(self, group: GroupRecord) -> None:
        """Raises AlreadyExists."""

    @abstractmethod
    async def get_group(self, tenant_id: str, name: str) -> GroupRecord | None: ...

    @abstractmethod
    async def list_groups(self, tenant_id: str, path_prefix: str = "/") -> list[GroupRecord]: ...

    @abstractmethod
    async def delete_group(self, tenant_id: str, name: str) -> None:
        """Raises NotFound, or Conflict while it has members or policies."""

    @abstractmethod
    async def add_user_to_group(self, tenant_id: str, group: str, user: str) -> None:
        """Idempotent. Raises NotFound when either does not exist."""

    @abstractmethod
    async def remove_user_from_group(self, tenant_id: str, group: str, user: str) -> None:
        """Raises NotFound when either does not exist or the user is not a member."""

    @abstractmethod
    async def list_group_members(self, tenant_id: str, group: str) -> list[UserRecord]: ...

    @abstractmethod
    async def list_groups_for_user(self, tenant_id: str, user: str) -> list[GroupRecord]: ...

    @abstractmethod
    async def put_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str, document: str) -> None:
        """Create or replace the inline policy ``name`` of a user or group (kind "user" | "group").
        Raises NotFound when the owner does not exist."""

    @abstractmethod
    async def get_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str) -> str | None: ...

    @abstractmethod
    async def delete_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str) -> None:
        """Raises NotFound."""

    @abstractmethod
    async def list_inline_policies(self, tenant_id: str, kind: str, owner: str) -> list[str]:
        """Policy names, in order."""

    @abstractmethod
    async def create_policy(self, policy: PolicyRecord) -> None:
        """Raises AlreadyExists."""

    @abstractmethod
    async def get_policy(self, tenant_id: str, name: str) -> PolicyRecord | None: ...

    @abstractmethod
    async def list_policies(self, tenant_id: str) -> list[PolicyRecord]: ...

    @abstractmethod
    async def update_policy(self, policy: PolicyRecord) -> None:
        """Replace the document, description and default_version. Raises NotFound."""

    @abstractmethod
    async def delete_policy(self, tenant_id: str, name: str) -> None:
        """Raises NotFound, or Conflict while attached to anyone."""

    @abstractmethod
    async def attach_policy(self, tenant_id: str, kind: str, owner: str, policy: str) -> None:
        """Attach managed policy ``policy`` to a user or group; idempotent. Raises NotFound."""

    @abstractmethod
    async def detach_policy(self, tenant_id: str, kind: str, owner: str, policy: str) -> None:
        """Raises NotFound (also when it was not attached)."""

    @abstractmethod
    async def list_attached_policies(self, tenant_id: str, kind: str, owner: str) -> list[PolicyRecord]: ...

    @abstractmethod
    async def policy_attachment_count(self, tenant_id: str, policy: str) -> int: ...

    @abstractmethod
    async def identity_policies(self, tenant_id: str, user: str) -> list[str]:
        """Every policy document that applies to a user, in one read for the request path:
        its inline policies, its attached managed policies, and those of its groups."""

    @abstractmethod
    async def create_operator(self, operator: OperatorRecord) -> None:
        """Raises AlreadyExists."""

    @abstractmethod
    async def get_operator(self, name: str) -> OperatorRecord | None: ...

    @abstractmethod
    async def list_operators(self) -> list[OperatorRecord]: ...

    @abstractmethod
    async def update_operator(self, operator: OperatorRecord) -> None:
        """Replace the row (status, password, TOTP, failed logins, lock). Raises NotFound."""

    # -- quotas and usage (enforced by the backend inside the committing transaction) --
    @abstractmethod
    async def set_quota(self, quota: QuotaRecord) -> None:
        """Create or replace; a record whose limits are all None removes the quota."""

    @abstractmethod
    async def get_quota(self, scope: str, target: str) -> QuotaRecord | None: ...

    @abstractmethod
    async def bucket_usage(self, bucket: str) -> Usage: ...

    @abstractmethod
    async def tenant_usage(self, tenant_id: str) -> Usage:
        """Summed over the tenant's buckets; ``buckets`` = how many it has."""

    # -- metering (issue #5) --
    # Backends integrate each bucket's stored bytes over time inside every transaction that
    # changes them (bytes before the change x seconds since the last change, split into UTC
    # hours), reading the time from ``clock``: a constructor argument of every backend, so a
    # test can drive time (an instance attribute, set by the constructor: time.time by default).
    # Deleting a bucket keeps its hourly rows (billing history).
    clock: Callable[[], float]

    @abstractmethod
    async def add_request_counts(self, counts: Sequence[RequestCounts]) -> None:
        """Add these counters to the hourly rows, all in one transaction."""

    @abstractmethod
    async def roll_byte_hours(self) -> None:
        """Integrate every bucket's stored bytes up to now, so an idle bucket's hours get rows
        too (the write path integrates only on change). Never changes a total: only moves the
        open interval into the hourly rows."""

    @abstractmethod
    async def metered_usage(self, start: int, end: int, tenant_id: str | None = None) -> list[MeteredUsage]:
        """Per (tenant, bucket): the hourly rows of hours in [start, end) (whole hours), plus the
        interval not yet integrated (bytes held since the last change, up to min(end, now)),
        read as one snapshot. Only buckets with something to report are returned."""

    # -- buckets --
    @abstractmethod
    async def create_bucket(self, bucket: BucketRecord) -> None:
        """Raise AlreadyExists(owner_tenant_id) when the name is taken (names are global), or
        QuotaExceeded when the tenant's max_buckets quota is reached."""

    @abstractmethod
    async def set_bucket_policy(self, name: str, document: str | None) -> None:
        """Store (None: remove) the bucket policy on the bucket row. Raises NotFound."""

    @abstractmethod
    async def set_bucket_access(self, name: str, document: str | None) -> None:
        """Store (None: reset to defaults) the bucket's access document (ownership, Block
        Public Access, ACL). Raises NotFound."""

    @abstractmethod
    async def set_object_acl(self, bucket: str, key: str, version_id: str | None, acl: str | None) -> str:
        """Set the ACL of the latest (or given) version; returns its version id. Raises NotFound."""

    @abstractmethod
    async def get_bucket(self, name: str) -> BucketRecord | None:
        """The bucket, with its lifecycle configuration document (``BucketRecord.lifecycle``:
        what ``put_bucket_config`` stored under LIFECYCLE_CONFIG) read with it."""

    @abstractmethod
    async def list_buckets(self, tenant_id: str) -> list[BucketRecord]:
        """The tenant's buckets in name order (each as ``get_bucket`` gives it)."""

    @abstractmethod
    async def delete_bucket(self, name: str) -> None:
        """Raise NotFound, or NotEmpty when any object version remains.

        In-progress multipart uploads do not block the deletion (as on S3): they are deleted
        with the bucket and their part blobs queued for garbage collection, and so are the
        bucket's configuration documents."""

    @abstractmethod
    async def set_bucket_versioning(self, name: str, status: str) -> None:
        """Set a bucket's versioning state ("Enabled" or "Suspended"). Raises NotFound, or
        Locked (changing nothing) for any state but "Enabled" on an Object Lock bucket."""

    @abstractmethod
    async def enable_bucket_object_lock(self, name: str) -> None:
        """Turn Object Lock on for good (BucketRecord.object_lock). Raises NotFound, or
        ConditionFailed when versioning is not "Enabled" (checked in the same transaction,
        so a concurrent suspension cannot leave a lock bucket unversioned)."""

    @abstractmethod
    async def put_bucket_config(self, bucket: str, name: str, document: str | None) -> None:
        """Store (or, with None, remove) one configuration document of a bucket.

        ``name`` says which ("tagging", "cors", "lifecycle", "policy", ...); the document is
        opaque text (the domain layer chooses its format, typically JSON). Raises NotFound
        when the bucket does not exist."""

    @abstractmethod
    async def get_bucket_config(self, bucket: str, name: str) -> str | None: ...

    @abstractmethod
    async def set_bucket_encryption(self, name: str, document: str | None) -> None:
        """Set (None: remove) a bucket's default encryption (BucketRecord.encryption), kept on
        the bucket record because every write reads it. Raises NotFound."""

    # -- tenants' KMS keys (SSE-KMS, issue #4) --
    @abstractmethod
    async def create_kms_key(self, key: KmsKeyRecord) -> None:
        """Raises AlreadyExists when the key id is taken."""

    @abstractmethod
    async def get_kms_key(self, key_id: str) -> KmsKeyRecord | None: ...

    @abstractmethod
    async def list_kms_keys(self, tenant_id: str) -> list[KmsKeyRecord]:
        """A tenant's keys, oldest first."""

    @abstractmethod
    async def set_kms_key_state(self, key_id: str, state: str) -> None:
        """"Enabled" or "Disabled". Raises NotFound."""

    # -- objects --
    @abstractmethod
    async def get_object(self, bucket: str, key: str, version_id: str | None = None,
                         with_parts: bool = False) -> ObjectRecord | None:
        """The latest version (version_id None) or the given one; parts filled when asked."""

    @abstractmethod
    async def put_object(self, obj: ObjectRecord, condition: WriteCondition | None = None) -> list[str]:
        """Commit ``obj`` as the latest version at its key.

        Replaces a stored version with the same version id. Raises ConditionFailed
        when ``condition`` does not hold. Returns the blob ids no longer referenced,
        which the caller deletes once the commit is durable (they are also queued
        for garbage collection in the same transaction, so a crash loses nothing).
        Raises QuotaExceeded when the bucket's or its tenant's bytes/objects quota would be
        exceeded once the replaced version (if any) is accounted for; usage is updated in the
        same transaction, so concurrent writers never overshoot.
        """

    @abstractmethod
    async def set_object_tags(self, bucket: str, key: str, version_id: str | None, tags: dict[str, str]) -> str:
        """Replace the tags of one stored version (the latest with version_id None), nothing else.

        Returns the version id tagged. Raises NotFound when no such version exists or it is
        a delete marker (which has no tags)."""

    @abstractmethod
    async def delete_object(self, bucket: str, key: str, version_id: str, *,
                            bypass_governance: bool = False) -> list[str]:
        """Remove one version; returns the blob ids released (queued for GC as above).

        Raises Locked, removing nothing, when Object Lock protects the version (see
        delete_version)."""

    @abstractmethod
    async def delete_version(self, bucket: str, key: str, version_id: str, *,
                             bypass_governance: bool = False) -> tuple[ObjectRecord | None, list[str]]:
        """Remove one version (or delete marker) for good, like delete_object.

        Returns the record removed (None when there was none) and the blob ids released.
        Raises Locked, removing nothing, when the version is under a legal hold or its
        retain-until date is still ahead (read in the deleting transaction, so no concurrent
        PutObjectRetention can slip between a check and the removal): COMPLIANCE always,
        GOVERNANCE unless ``bypass_governance`` (the caller checked the permission).
        put_object and complete_upload likewise raise Locked rather than replace a locked
        version of the same id."""

    @abstractmethod
    async def set_object_retention(self, bucket: str, key: str, version_id: str, mode: str | None,
                                   until: float | None, *, expect_mode: str | None,
                                   expect_until: float | None) -> None:
        """Set (mode and until both None: remove) the Object Lock retention of one version.

        Compare-and-set: raises ConditionFailed when the version's retention is no longer
        (expect_mode, expect_until), the state the caller's rules were checked against.
        Raises NotFound when the version does not exist or is a delete marker."""

    @abstractmethod
    async def set_object_legal_hold(self, bucket: str, key: str, version_id: str, on: bool) -> None:
        """Set the legal hold of one version. Raises NotFound as set_object_retention."""

    @abstractmethod
    async def has_locked_versions(self, tenant_id: str, now: float) -> float | None:
        """Whether any version of the tenant's is still locked at ``now``: None when none is,
        else the latest retain-until date among them, or +inf when one is under a legal
        hold (which has no end). What a crypto-erasure must wait for."""

    @abstractmethod
    async def list_object_versions(self, bucket: str, prefix: str = "", delimiter: str = "",
                                   key_marker: str = "", version_id_marker: str = "",
                                   max_keys: int = 1000) -> VersionListPage:
        """Every version and delete marker, keys in UTF-8 byte order, newest first within a key.

        Starts after ``key_marker``; with ``version_id_marker`` too, at the versions of that
        key older than that one (a marker version that no longer exists resumes at the next
        key). Common prefixes roll up as in list_objects; entries plus prefixes never exceed
        ``max_keys``. The cost is bounded by the page, not by the bucket's size.
        """

    @abstractmethod
    async def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "",
                           start_after: str = "", max_keys: int = 1000) -> ListPage:
        """Latest, non-delete-marker objects with keys > start_after, in UTF-8 byte order.

        Keys sharing ``prefix`` + text up to the first ``delimiter`` after it are rolled up
        into one common prefix. Objects plus common prefixes never exceed ``max_keys``.
        The cost is bounded by the page, not by the bucket's size.
        """

    # -- multipart uploads --
    @abstractmethod
    async def create_upload(self, upload: UploadRecord) -> None: ...

    @abstractmethod
    async def get_upload(self, bucket: str, upload_id: str) -> UploadRecord | None: ...

    @abstractmethod
    async def put_part(self, part: PartRecord) -> list[str]:
        """Insert or replace a part; returns replaced blob ids (queued for GC).

        Raises NotFound if the upload no longer exists (so a part racing an abort or
        completion is never left behind)."""

    @abstractmethod
    async def list_parts(self, upload_id: str, part_number_marker: int = 0,
                         max_parts: int = 10000) -> list[PartRecord]:
        """Parts with number > marker in ascending order, at most max_parts (+0)."""

    @abstractmethod
    async def list_uploads(self, bucket: str, prefix: str = "", delimiter: str = "",
                           key_marker: str = "", upload_id_marker: str = "",
                           max_uploads: int = 1000) -> UploadListPage: ...

    @abstractmethod
    async def complete_upload(self, upload_id: str, obj: ObjectRecord,
                              parts: Sequence[ObjectPartRecord],
                              condition: WriteCondition | None = None) -> list[str]:
        """Atomically: commit ``obj`` made of ``parts``, delete the upload and its parts.

        Blobs of uploaded parts not used and of the replaced version are released and
        returned (queued for GC). Raises NotFound when the upload is gone,
        ConditionFailed when ``condition`` does not hold and QuotaExceeded as put_object.
        """

    @abstractmethod
    async def abort_upload(self, upload_id: str) -> list[str]:
        """Delete the upload and its parts; returns their blob ids (queued for GC).
        Raises NotFound when the upload does not exist."""

    # -- garbage collection --
    @abstractmethod
    async def garbage_batch(self, limit: int = 1000, released_before: float | None = None) -> list[str]:
        """Blob ids released by commits and not yet deleted, oldest first.

        With ``released_before`` (POSIX time), only those released before it."""

    @abstractmethod
    async def garbage_done(self, blob_ids: Sequence[str]) -> None:
        """Forget blob ids whose blobs have been deleted."""

    @abstractmethod
    async def blob_referenced(self, blob_ids: Sequence[str]) -> set[str]:
        """Which of these blob ids a committed object version or uploaded part points at."""

    # -- lifecycle (issue #6): the worker's scan, its leases, and actions that act only on what
    #    the worker saw (each is a compare-and-set, so no object is acted on twice) --
    @abstractmethod
    async def list_bucket_configs(self, name: str, after: str = "", limit: int = 1000) -> list[tuple[str, str]]:
        """(bucket, document) of the buckets holding configuration ``name``, bucket names
        > ``after`` in order, at most ``limit``."""

    @abstractmethod
    async def lifecycle_acquire(self, bucket: str, holder: str, now: float, ttl: float) -> LifecycleLease | None:
        """Take (or renew) the lifecycle lease of a bucket for ``holder`` until now + ttl.

        Succeeds when no one holds it, its lease ran out before ``now``, or ``holder`` already
        holds it; returns the lease with the stored cursor. None when another holder's lease
        is still running."""

    @abstractmethod
    async def lifecycle_save(self, bucket: str, holder: str, cursor: str | None, now: float, ttl: float) -> bool:
        """Store the cursor and extend the lease to now + ttl, if ``holder`` still holds it
        (False otherwise: stop acting on the bucket)."""

    @abstractmethod
    async def lifecycle_release(self, bucket: str, holder: str, cursor: str | None,
                                done_at: float | None) -> None:
        """Give the lease up (if held by ``holder``), storing ``cursor``; ``done_at`` records
        a finished pass."""

    @abstractmethod
    async def expire_version(self, bucket: str, key: str, version_id: str, *, last_modified: float,
                             latest: bool, now: float, only_version: bool = False, min_newer_noncurrent: int = 0,
                             successor_before: float | None = None) -> tuple[ObjectRecord | None, list[str]]:
        """Remove one version for good if it is still what the worker saw, in one transaction.

        It must exist with this ``last_modified``, be the latest version or not as ``latest``
        says, be the key's only version when ``only_version``, have at least
        ``min_newer_noncurrent`` noncurrent versions newer than it, and (``successor_before``)
        the version right after it must have been written at or before that time (when it
        became noncurrent). Returns (None, []) when any of this no longer holds; raises Locked
        as delete_version (never bypassing governance). Otherwise the removed record and the
        blob ids released, queued for GC; the newest remaining version becomes the latest."""

    @abstractmethod
    async def expire_latest(self, marker: ObjectRecord, version_id: str, last_modified: float) -> list[str] | None:
        """Commit the delete marker ``marker`` as the latest version of its key if the latest is
        still ``version_id`` written at ``last_modified`` and not a delete marker.

        None when that no longer holds. A "null" marker replaces the stored "null" version (as
        put_object does) and its blobs are returned, released."""
