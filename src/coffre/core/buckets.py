"""Buckets: creation with AWS naming rules, ownership, listing, deletion."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from coffre.core import access
from coffre.core.errors import (
    AccessDenied,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    IllegalLocationConstraintException,
    InvalidArgument,
    InvalidLocationConstraint,
    NoSuchBucket,
    TooManyBuckets,
)
from coffre.core.identity import Principal
from coffre.core.names import check_bucket_name
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, NotEmpty, NotFound, QuotaExceeded
from coffre.meta.records import BucketRecord, ListPage
from coffre.settings import Settings

MAX_LIST_KEYS = 1000
MAX_LIST_BUCKETS = 10000
# The shape of an AWS region name (eu-west-3, us-gov-west-1, cn-north-1, ap-southeast-5...).
# A constraint of that shape naming another region is "incompatible"; anything else is "not valid".
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
# Legacy constraint values S3 still accepts as aliases.
_LEGACY_LOCATIONS = {"EU": "eu-west-1"}
_LEGACY_REGION = "us-east-1"
_NEW_BUCKET_ACCESS = access.NEW_BUCKET_ACCESS.dumps()


@dataclass(frozen=True, slots=True)
class BucketPage:
    buckets: list[BucketRecord]
    continuation: str | None  # the last name returned when more remain


class BucketService:
    def __init__(self, settings: Settings, meta: MetadataStore) -> None:
        self.settings = settings
        self.meta = meta

    async def get(self, name: str) -> BucketRecord:
        # Deliberately no in-process cache of bucket records: the metadata store answers
        # this point read on the event loop in tens of microseconds (the thread hop it used
        # to cost is gone), and a cache would serve a bucket that another gateway process
        # sharing the database deleted, or that another tenant re-created under the same
        # name, until it expired. Measured in docs/benchmarks.md ("Metadata fast paths").
        bucket = await self.meta.get_bucket(name)
        if bucket is None:
            raise NoSuchBucket(bucket=name)
        return bucket

    async def authorize(self, principal: Principal, name: str) -> BucketRecord:
        """The bucket, if the principal may use it.

        The S3 front end asked the policies, ACLs and Block Public Access before the
        operation ran (coffre.s3.authz) and the buckets it allowed are remembered for the
        request: those come back as read then, without a second read. Any other caller of
        this service reaches its own tenant's buckets only; another tenant's bucket answers
        AccessDenied (as S3 does for a bucket that exists but is not yours).
        """
        bucket = access.granted(name)
        if bucket is not None:
            return bucket
        bucket = await self.get(name)
        if bucket.tenant_id != principal.tenant_id or principal.is_anonymous:
            raise AccessDenied(bucket=name)
        return bucket

    def check_location(self, location: str | None) -> str:
        """The region a CreateBucket's LocationConstraint asks for, if this deployment serves it.

        One deployment is one region, like a regional S3 endpoint: its own region is
        accepted, another well-formed region is IllegalLocationConstraintException and
        anything else InvalidLocationConstraint. Deliberate differences from AWS: no
        constraint (or an empty one) means this deployment's region in every region
        (AWS demands one outside us-east-1, which would break clients configured with
        a custom region), and an explicit "us-east-1" is accepted (AWS refuses it).
        """
        region = self.settings.region
        if not location:
            return region
        wanted = _LEGACY_LOCATIONS.get(location, location)
        if wanted == region:
            return region
        if _REGION.match(wanted):
            raise IllegalLocationConstraintException(
                f"The {location} location constraint is incompatible for the region specific endpoint "
                "this request was sent to.", location=location)
        raise InvalidLocationConstraint(location=location)

    async def create_bucket(self, principal: Principal, name: str, location: str | None,
                            access_doc: str | None = _NEW_BUCKET_ACCESS, *,
                            object_lock: bool = False) -> BucketRecord:
        """``access_doc``: the bucket's ownership / Block Public Access / ACL document
        (BucketRecord.access); by default AWS's for a new bucket (ACLs disabled, public
        access blocked). ``object_lock`` (x-amz-bucket-object-lock-enabled): Object Lock on,
        which makes the bucket versioning-Enabled from the start, as on AWS."""
        check_bucket_name(name)
        region = self.check_location(location)
        record = BucketRecord(name=name, tenant_id=principal.tenant_id, region=region, created_at=time.time(),
                              access=access_doc, object_lock=object_lock,
                              versioning="Enabled" if object_lock else "")
        try:
            await self.meta.create_bucket(record)
        except AlreadyExists as e:
            if e.owner_tenant_id != principal.tenant_id:
                raise BucketAlreadyExists(bucket=name) from e
            existing = await self.meta.get_bucket(name)
            if existing is not None and region == _LEGACY_REGION and existing.region == _LEGACY_REGION:
                # AWS, for legacy compatibility, answers 200 to re-creating your own bucket in
                # us-east-1 (and only there); the bucket is left as it is.
                return existing
            raise BucketAlreadyOwnedByYou(bucket=name) from e
        except QuotaExceeded as e:
            raise TooManyBuckets(f"You have attempted to create more buckets than allowed: the tenant "
                                 f"quota is {e.maximum} buckets.") from e
        return record

    async def delete_bucket(self, principal: Principal, name: str) -> None:
        await self.authorize(principal, name)
        try:
            await self.meta.delete_bucket(name)
        except NotFound as e:
            raise NoSuchBucket(bucket=name) from e
        except NotEmpty as e:
            raise BucketNotEmpty(bucket=name) from e

    async def list_buckets(self, principal: Principal, *, prefix: str = "", after: str = "",
                           region: str | None = None, limit: int | None = None) -> BucketPage:
        """The tenant's buckets in name order, from after ``after``, at most ``limit`` of them.

        A tenant holds at most a few thousand buckets (AWS quota: 10,000), so filtering
        the name-ordered list here costs less than a round trip per page would save.
        """
        if limit is not None and not 1 <= limit <= MAX_LIST_BUCKETS:
            raise InvalidArgument(f"Argument max-buckets must be an integer between 1 and {MAX_LIST_BUCKETS}",
                                  name="max-buckets")
        out: list[BucketRecord] = []
        for b in await self.meta.list_buckets(principal.tenant_id):
            if b.name <= after or not b.name.startswith(prefix) or (region and b.region != region):
                continue
            if limit is not None and len(out) == limit:
                return BucketPage(out, out[-1].name)
            out.append(b)
        return BucketPage(out, None)

    async def list_objects(self, principal: Principal, name: str, *, prefix: str = "", delimiter: str = "",
                           start_after: str = "", max_keys: int = MAX_LIST_KEYS) -> ListPage:
        bucket = await self.authorize(principal, name)
        if max_keys < 0:
            raise InvalidArgument("max-keys must be a non-negative integer", name="max-keys")
        # More than 1000 asked is 1000 given, as S3 does (the response still echoes the ask).
        return await self.meta.list_objects(bucket.name, prefix=prefix, delimiter=delimiter,
                                            start_after=start_after, max_keys=min(max_keys, MAX_LIST_KEYS))
