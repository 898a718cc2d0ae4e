"""Bucket versioning: states, version ids, and ListObjectVersions.

A bucket is unversioned ("", never enabled), "Enabled" or "Suspended"; once enabled it
can only move between Enabled and Suspended. In an Enabled bucket every write adds a
version with a fresh id; in an unversioned or Suspended one a write replaces the version
whose id is "null" (and only it). The write and delete rules themselves live with the
object operations (core/objects.py); this module holds what they share.
"""

from __future__ import annotations

import re
import secrets

from coffre.core.buckets import BucketService
from coffre.core.errors import (
    InvalidArgument,
    InvalidBucketState,
    MalformedXML,
    NoSuchBucket,
    NotImplementedOperation,
)
from coffre.core.identity import Principal
from coffre.meta.base import MetadataStore
from coffre.meta.errors import Locked, NotFound
from coffre.meta.records import NULL_VERSION, VersionListPage

ENABLED = "Enabled"
SUSPENDED = "Suspended"
STATUSES = (ENABLED, SUSPENDED)
MAX_LIST_KEYS = 1000

# AWS version ids are about 32 characters of a base64-like alphabet, and AWS answers
# InvalidArgument to a string that cannot be one (e.g. "abc") but NoSuchVersion to a
# well-formed id it does not hold. Ours are 32 URL-safe characters; ids of AWS's shape
# are accepted as well-formed so ids carried over from AWS answer NoSuchVersion.
_VERSION_ID = re.compile(r"^[A-Za-z0-9._+/=-]{32,64}$")
INVALID_VERSION = "Invalid version id specified"
# An Object Lock bucket stays versioning-Enabled for good (AWS: 409 InvalidBucketState).
LOCK_BUCKET_VERSIONING = ("An Object Lock configuration is present on this bucket, so the versioning state "
                          "cannot be changed.")


def new_version_id() -> str:
    """An opaque, URL-safe, unique id (192 random bits). Listings order by commit, not by id."""
    return secrets.token_urlsafe(24)


def well_formed(version_id: str) -> bool:
    return version_id == NULL_VERSION or bool(_VERSION_ID.match(version_id))


def check_version_id(version_id: str | None) -> None:
    """InvalidArgument for a versionId that cannot name a version (None: no version asked)."""
    if version_id is None:
        return
    if version_id == "":
        raise InvalidArgument("Version id cannot be the empty string", name="versionId", value="")
    if not well_formed(version_id):
        raise InvalidArgument(INVALID_VERSION, name="versionId", value=version_id)


def check_configuration(status: str | None, mfa_delete: str | None) -> None:
    """A VersioningConfiguration's Status and MfaDelete, as PutBucketVersioning accepts them."""
    if status is not None and status not in STATUSES:
        raise MalformedXML()
    if mfa_delete is not None:
        if mfa_delete not in ("Enabled", "Disabled"):
            raise MalformedXML()
        if mfa_delete == "Enabled":
            # MFA delete needs an MFA device (x-amz-mfa) that coffre has no notion of.
            raise NotImplementedOperation("MFA Delete is not supported", header="MfaDelete")


class VersioningService:
    def __init__(self, meta: MetadataStore, buckets: BucketService) -> None:
        self.meta = meta
        self.buckets = buckets

    async def get_bucket_versioning(self, principal: Principal, bucket: str) -> str:
        """"" (never enabled), "Enabled" or "Suspended"."""
        return (await self.buckets.authorize(principal, bucket)).versioning

    async def put_bucket_versioning(self, principal: Principal, bucket: str, status: str | None,
                                    mfa_delete: str | None = None) -> None:
        record = await self.buckets.authorize(principal, bucket)
        check_configuration(status, mfa_delete)
        if status is None or status == record.versioning:
            return
        if record.object_lock and status != ENABLED:
            raise InvalidBucketState(LOCK_BUCKET_VERSIONING, bucket=bucket)
        try:
            await self.meta.set_bucket_versioning(record.name, status)
        except NotFound as e:
            raise NoSuchBucket(bucket=bucket) from e
        except Locked as e:  # Object Lock was enabled meanwhile
            raise InvalidBucketState(LOCK_BUCKET_VERSIONING, bucket=bucket) from e

    async def list_object_versions(self, principal: Principal, bucket: str, *, prefix: str = "",
                                   delimiter: str = "", key_marker: str = "", version_id_marker: str = "",
                                   max_keys: int = MAX_LIST_KEYS) -> VersionListPage:
        record = await self.buckets.authorize(principal, bucket)
        if version_id_marker:
            if not key_marker:
                raise InvalidArgument("A version-id marker cannot be specified without a key marker.",
                                      name="version-id-marker", value=version_id_marker)
            if not well_formed(version_id_marker):
                raise InvalidArgument(INVALID_VERSION, name="version-id-marker", value=version_id_marker)
        return await self.meta.list_object_versions(
            record.name, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            version_id_marker=version_id_marker, max_keys=min(max_keys, MAX_LIST_KEYS))
