"""Buckets: creation with AWS naming rules, ownership, listing, deletion."""

from __future__ import annotations

import time

from coffre.core.errors import (
    AccessDenied,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    IllegalLocationConstraintException,
    InvalidArgument,
    NoSuchBucket,
)
from coffre.core.identity import Principal
from coffre.core.names import check_bucket_name
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, NotEmpty, NotFound
from coffre.meta.records import BucketRecord, ListPage
from coffre.settings import Settings

MAX_LIST_KEYS = 1000


class BucketService:
    def __init__(self, settings: Settings, meta: MetadataStore) -> None:
        self.settings = settings
        self.meta = meta

    async def get(self, name: str) -> BucketRecord:
        bucket = await self.meta.get_bucket(name)
        if bucket is None:
            raise NoSuchBucket(bucket=name)
        return bucket

    async def authorize(self, principal: Principal, name: str) -> BucketRecord:
        """The bucket, if the principal's tenant may use it.

        Policies arrive with the tenancy issue; until then a tenant reaches its own
        buckets only, and another tenant's bucket answers AccessDenied (as S3 does
        for a bucket that exists but is not yours).
        """
        bucket = await self.get(name)
        if bucket.tenant_id != principal.tenant_id:
            raise AccessDenied(bucket=name)
        return bucket

    async def create_bucket(self, principal: Principal, name: str, location: str | None) -> BucketRecord:
        check_bucket_name(name)
        region = location or self.settings.region
        if location is not None and location != self.settings.region:
            # One deployment is one region; S3 answers this for a mismatched constraint.
            raise IllegalLocationConstraintException(
                f"The {location} location constraint is incompatible for the region specific endpoint "
                "this request was sent to.", location=location)
        record = BucketRecord(name=name, tenant_id=principal.tenant_id, region=region, created_at=time.time())
        try:
            await self.meta.create_bucket(record)
        except AlreadyExists as e:
            if e.owner_tenant_id == principal.tenant_id:
                raise BucketAlreadyOwnedByYou(bucket=name) from e
            raise BucketAlreadyExists(bucket=name) from e
        return record

    async def delete_bucket(self, principal: Principal, name: str) -> None:
        await self.authorize(principal, name)
        try:
            await self.meta.delete_bucket(name)
        except NotFound as e:
            raise NoSuchBucket(bucket=name) from e
        except NotEmpty as e:
            raise BucketNotEmpty(bucket=name) from e

    async def list_buckets(self, principal: Principal) -> list[BucketRecord]:
        return await self.meta.list_buckets(principal.tenant_id)

    async def list_objects(self, principal: Principal, name: str, *, prefix: str = "", delimiter: str = "",
                           start_after: str = "", max_keys: int = MAX_LIST_KEYS) -> ListPage:
        bucket = await self.authorize(principal, name)
        if max_keys < 0:
            raise InvalidArgument("max-keys must be a non-negative integer", name="max-keys")
        return await self.meta.list_objects(bucket.name, prefix=prefix, delimiter=delimiter,
                                            start_after=start_after, max_keys=min(max_keys, MAX_LIST_KEYS))
