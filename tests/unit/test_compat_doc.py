"""docs/s3-compatibility.md stays true: "supported" means a registered handler, and back; and no
S3 operation is mistaken by the router for another one that coffre does serve."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import coffre.s3.app  # noqa: F401  (imports every handler module, filling HANDLERS)
from coffre.s3 import routing
from coffre.s3.context import HANDLERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "s3-compatibility.md"
ROW = re.compile(r"^\| ([A-Z][A-Za-z0-9]+) \| (supported|not yet|not planned) \| (.*) \|$")
STATUSES = {"supported", "not yet", "not planned"}

# Operations whose requests are the same as another's, by design of the API: the deprecated
# lifecycle and notification calls, the directory-bucket listing (another endpoint), the
# annotation listing, and Object Lambda's call (sent to another host).
SAME_REQUEST_AS = {
    "GetBucketLifecycle": "GetBucketLifecycleConfiguration",
    "PutBucketLifecycle": "PutBucketLifecycleConfiguration",
    "GetBucketNotification": "GetBucketNotificationConfiguration",
    "PutBucketNotification": "PutBucketNotificationConfiguration",
    "ListDirectoryBuckets": "ListBuckets",
    "ListObjectAnnotations": "GetObjectAnnotation",
    "WriteGetObjectResponse": "PostObject",
}


def _table() -> dict[str, str]:
    ops: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| ") or line.startswith(("| operation", "| ---")):
            continue
        m = ROW.match(line)
        assert m, f"malformed row in {DOC.name}: {line!r}"
        assert m.group(1) not in ops, f"{m.group(1)} is listed twice"
        ops[m.group(1)] = m.group(2)
    return ops


def test_table_is_complete_and_well_formed():
    ops = _table()
    assert len(ops) >= 100, "the table should list the whole S3 API"
    assert set(ops.values()) <= STATUSES
    routed = {op for table in (routing._BUCKET_SUB, routing._OBJECT_SUB) for sub in table.values()
              for op in sub.values()}
    routed |= {"ListBuckets", "CreateBucket", "HeadBucket", "DeleteBucket", "ListObjects", "ListObjectsV2",
               "PostObject", "PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "GetObject",
               "HeadObject", "DeleteObject"}
    unlisted = sorted(routed - set(ops))
    assert not unlisted, f"operations the router knows but {DOC.name} does not list: {unlisted}"


def test_supported_means_a_registered_handler():
    ops = _table()
    supported = {op for op, status in ops.items() if status == "supported"}
    no_handler = sorted(supported - set(HANDLERS))
    assert not no_handler, f"marked supported in {DOC.name} without a handler: {no_handler}"
    unmarked = sorted(set(HANDLERS) - supported)
    assert not unmarked, f"handlers registered but not marked supported in {DOC.name}: {unmarked}"


def _botocore_requests():
    botocore_session = pytest.importorskip("botocore.session")
    model = botocore_session.get_session().get_service_model("s3")
    for name in model.operation_names:
        op = model.operation_model(name)
        path, _, q = op.http["requestUri"].partition("?")
        query = dict(parse_qsl(q, keep_blank_values=True))
        headers: dict[str, str] = {}
        shape = op.input_shape
        for member in (shape.required_members if shape is not None else []):
            ser = shape.members[member].serialization
            if ser.get("location") == "querystring":
                query[ser["name"]] = "1"
            elif ser.get("location") == "header":
                headers[ser["name"].lower()] = "1"
        bucket = None if path == "/" else "bucket"
        key = "key" if "{Key+}" in path else None
        yield name, op.http["method"], bucket, key, query, headers


def test_every_s3_request_routes_to_its_own_operation():
    """A request for an operation coffre does not serve must get 501, never run another one:
    DELETE ?analytics once deleted the bucket, PUT key?renameObject overwrote the key."""
    wrong = []
    for name, method, bucket, key, query, headers in _botocore_requests():
        got = routing.operation(method, bucket, key, query, headers)
        if got != SAME_REQUEST_AS.get(name, name):
            wrong.append(f"{name} ({method} {query}) -> {got}")
    assert not wrong, "\n".join(wrong)
