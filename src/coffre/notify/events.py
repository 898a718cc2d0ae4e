"""The event message: AWS's S3 event structure, so consumers written for S3 read it unchanged."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change a request made, as a handler knows it once the store answered.

    ``name`` is the event name without "s3:" (``ObjectCreated:Put``); ``etag`` as stored
    (quoted); size and etag are None for removals, as in S3's messages.
    """

    name: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """Who made the change and in which request (userIdentity, requestParameters, responseElements)."""

    principal_id: str
    source_ip: str
    request_id: str
    host_id: str
    region: str
    owner_id: str  # the bucket owner's id (ownerIdentity.principalId)


_counter = itertools.count()


def sequencer() -> str:
    """Increasing within a process for a key (S3's rule: compare equal-length hex strings)."""
    return f"{time.time_ns():016X}{next(_counter) & 0xFFFF:04X}"


def encode_key(key: str) -> str:
    """The key as S3 writes it in an event: form-URL-encoded (spaces as '+'), '/' kept."""
    return quote_plus(key.encode("utf-8", "surrogateescape"), safe="/")


def record(change: Change, bucket: str, origin: Origin, configuration_id: str, when: float) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": encode_key(change.key)}
    if change.size is not None:
        obj["size"] = change.size
    if change.etag is not None:
        obj["eTag"] = change.etag.strip('"')
    if change.version_id is not None:
        obj["versionId"] = change.version_id
    obj["sequencer"] = sequencer()
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": origin.region,
        "eventTime": datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(when * 1000) % 1000:03d}Z",
        "eventName": change.name,
        "userIdentity": {"principalId": origin.principal_id},
        "requestParameters": {"sourceIPAddress": origin.source_ip},
        "responseElements": {"x-amz-request-id": origin.request_id, "x-amz-id-2": origin.host_id},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": origin.owner_id},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def message(rec: dict[str, Any]) -> bytes:
    """The bytes a target receives: one record per message, as S3 sends."""
    return json.dumps({"Records": [rec]}, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")
