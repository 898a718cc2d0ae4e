"""Lifecycle configuration and its worker, with boto3 against real servers.

The API (Put/Get/DeleteBucketLifecycleConfiguration and AWS's validation errors) runs on the
session server. The worker runs on a server whose lifecycle "day" is one second and which
looks at its buckets several times a second, so each rule's effect shows within seconds:
current-version expiration (unversioned, versioning enabled, suspended), noncurrent
expiration keeping NewerNoncurrentVersions, expired delete-marker cleanup, aborting
incomplete uploads, filters by prefix, tags, size and And, Object Lock left alone, the
audit trail and metrics. A pass cut short then resumed by a restarted server, and two workers
racing over one bucket, apply each action exactly once.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.s3.test_audit import audit_records
from tests.server import ACCESS_KEY, SECRET_KEY, Server

LOCAL = not os.environ.get("COFFRE_TEST_ENDPOINT")
local_only = pytest.mark.skipif(not LOCAL, reason="runs coffre servers with a one-second lifecycle day")

FAST = {"COFFRE_LIFECYCLE_DAY_SECONDS": "1", "COFFRE_LIFECYCLE_INTERVAL_SECONDS": "0.3"}
EXPIRE_1 = {"Days": 1}


def code(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    err = e.value.response["Error"]
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], err["Code"], err.get("Message", "")


def put_rules(s3, bucket: str, rules: list[dict], **kw) -> dict:
    return s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules}, **kw)


def wait_until(pred: Callable[[], bool], timeout: float = 30.0, what: str = "the lifecycle worker") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not act within {timeout}s")
        time.sleep(0.2)


def versions(s3, bucket: str, prefix: str = "") -> list[tuple[str, str, bool]]:
    """(key, version id, is a delete marker), keys in order, newest first within a key."""
    r = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    out = [(v["Key"], v["VersionId"], False, v["LastModified"]) for v in r.get("Versions", [])]
    out += [(m["Key"], m["VersionId"], True, m["LastModified"]) for m in r.get("DeleteMarkers", [])]
    out.sort(key=lambda e: (e[0], -e[3].timestamp()))
    return [(k, v, dm) for k, v, dm, _ in out]


def keys(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def new_bucket(s3, versioning: str | None = None, **kw) -> str:
    name = "lc-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=name, **kw)
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})
    return name


def lifecycle_audit(data_dir: str, bucket: str) -> list[dict]:
    return [r for r in audit_records(data_dir) if r.get("principal") == "lifecycle" and r.get("bucket") == bucket]


# -- the API, on the session server --
def test_put_get_delete(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code(e)[:2] == (404, "NoSuchLifecycleConfiguration")
    rules = [
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}},
        {"ID": "old", "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "k", "Value": "v"}],
                                          "ObjectSizeGreaterThan": 10}},
         "Status": "Disabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 5, "NewerNoncurrentVersions": 3}},
        {"ID": "mpu", "Filter": {}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"ID": "date", "Filter": {"Tag": {"Key": "a", "Value": "b"}}, "Status": "Enabled",
         "Expiration": {"Date": datetime(2099, 11, 10, tzinfo=UTC)}},
    ]
    r = put_rules(s3, bucket, rules)
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amz-transition-default-minimum-object-size"] == \
        "all_storage_classes_128K"
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-transition-default-minimum-object-size"] == \
        "all_storage_classes_128K"
    by_id = {r["ID"]: r for r in got["Rules"]}
    assert by_id["logs"]["Filter"] == {"Prefix": "logs/"} and by_id["logs"]["Expiration"] == {"Days": 30}
    assert by_id["old"]["Filter"]["And"] == {"Prefix": "tmp/", "Tags": [{"Key": "k", "Value": "v"}],
                                             "ObjectSizeGreaterThan": 10}
    assert by_id["old"]["Status"] == "Disabled"
    assert by_id["old"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 5, "NewerNoncurrentVersions": 3}
    assert by_id["mpu"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert by_id["mpu"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert by_id["date"]["Expiration"]["Date"] == datetime(2099, 11, 10, tzinfo=UTC)
    assert by_id["date"]["Filter"] == {"Tag": {"Key": "a", "Value": "b"}}
    # A rule without an ID is given one; the legacy rule-level Prefix is kept as given.
    put_rules(s3, bucket, [{"Prefix": "x/", "Status": "Enabled", "Expiration": {"Days": 1}}])
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["ID"] and rule["Prefix"] == "x/"
    r = s3.delete_bucket_lifecycle(Bucket=bucket)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code(e)[:2] == (404, "NoSuchLifecycleConfiguration")


def test_no_such_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket="lc-missing-" + uuid.uuid4().hex[:8])
    assert code(e)[:2] == (404, "NoSuchBucket")


@pytest.mark.parametrize(("rule", "status", "error", "message"), [
    ({"ID": "a", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 0}}, 400, "InvalidArgument",
     "'Days' for Expiration action must be a positive integer"),
    ({"ID": "a" * 256, "Filter": {}, "Status": "Enabled", "Expiration": EXPIRE_1}, 400, "InvalidArgument",
     "ID length should not exceed allowed limit of 255"),
    ({"ID": "a", "Filter": {}, "Status": "invalid", "Expiration": EXPIRE_1}, 400, "MalformedXML", ""),
    ({"ID": "a", "Filter": {}, "Status": "Enabled", "Expiration": {"Date": datetime(2099, 1, 1, 12, tzinfo=UTC)}},
     400, "InvalidArgument", "'Date' must be at midnight GMT"),
    ({"ID": "a", "Filter": {}, "Status": "Enabled"}, 400, "InvalidRequest",
     "At least one action needs to be specified in a rule"),
    ({"ID": "a", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1, "ExpiredObjectDeleteMarker": True}},
     400, "MalformedXML", ""),
    ({"ID": "a", "Filter": {}, "Status": "Enabled", "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]},
     400, "InvalidRequest", "GLACIER"),
    ({"ID": "a", "Filter": {}, "Status": "Enabled",
      "NoncurrentVersionTransitions": [{"NoncurrentDays": 30, "StorageClass": "STANDARD_IA"}]},
     400, "InvalidRequest", "STANDARD_IA"),
    ({"ID": "a", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Status": "Enabled",
      "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}, 400, "InvalidRequest",
     "AbortIncompleteMultipartUpload cannot be specified with Tags."),
])
def test_validation_errors(s3, bucket, rule, status, error, message):
    with pytest.raises(ClientError) as e:
        put_rules(s3, bucket, [rule])
    got = code(e)
    assert got[:2] == (status, error)
    assert message in got[2]
    with pytest.raises(ClientError):
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)  # nothing stored


def test_same_id_twice(s3, bucket):
    rule = {"ID": "same", "Filter": {}, "Status": "Enabled", "Expiration": EXPIRE_1}
    with pytest.raises(ClientError) as e:
        put_rules(s3, bucket, [rule, {**rule, "Filter": {"Prefix": "b"}}])
    assert code(e)[:2] == (400, "InvalidArgument")


def test_a_digest_is_required(s3, bucket):
    """As on AWS: without Content-MD5 or an x-amz-checksum-* header, the body is not trusted."""
    def strip(request, **_):
        for h in list(request.headers):
            if h.lower() == "content-md5" or h.lower().startswith("x-amz-checksum-") \
                    or h.lower() == "x-amz-sdk-checksum-algorithm":
                del request.headers[h]

    s3.meta.events.register("before-sign.s3.PutBucketLifecycleConfiguration", strip)
    try:
        with pytest.raises(ClientError) as e:
            put_rules(s3, bucket, [{"ID": "a", "Filter": {}, "Status": "Enabled", "Expiration": EXPIRE_1}])
    finally:
        s3.meta.events.unregister("before-sign.s3.PutBucketLifecycleConfiguration", strip)
    assert code(e)[:2] == (400, "InvalidRequest")


def test_minimum_object_size_header(s3, bucket):
    rule = {"ID": "a", "Filter": {}, "Status": "Enabled", "Expiration": EXPIRE_1}

    def add(value):
        def hook(request, **_):
            request.headers["x-amz-transition-default-minimum-object-size"] = value
        return hook

    for value, ok in (("varies_by_storage_class", True), ("nonsense", False)):
        hook = add(value)
        s3.meta.events.register("before-sign.s3.PutBucketLifecycleConfiguration", hook)
        try:
            if ok:
                put_rules(s3, bucket, [rule])
                got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
                assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-transition-default-minimum-object-size"] == value
            else:
                with pytest.raises(ClientError) as e:
                    put_rules(s3, bucket, [rule])
                assert code(e)[:2] == (400, "InvalidArgument")
        finally:
            s3.meta.events.unregister("before-sign.s3.PutBucketLifecycleConfiguration", hook)


# -- the worker, on a server with one-second days --
# -- x-amz-expiration, on the session server (a real day: nothing expires during the test) --
DAY = 86400


def expires(last_modified: datetime, days: int) -> datetime:
    """When a rule of ``days`` expires a version: that many days on, rounded up to midnight UTC."""
    at = last_modified.timestamp() + days * DAY
    return datetime.fromtimestamp(-(-at // DAY) * DAY, UTC)


def expiration(when: datetime, rule_id: str) -> str:
    return f'expiry-date="{format_datetime(when, usegmt=True)}", rule-id="{rule_id}"'


def test_expiration_header_on_writes_and_reads(s3, bucket):
    put_rules(s3, bucket, [
        {"ID": "logs-3d", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 3}},
        {"ID": "logs-tmp-1d", "Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "tmp", "Value": "1"}]}},
         "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "dated", "Filter": {"Prefix": "dated/"}, "Status": "Enabled",
         "Expiration": {"Date": datetime(2031, 1, 1, tzinfo=UTC)}},
        {"ID": "off", "Filter": {"Prefix": "off/"}, "Status": "Disabled", "Expiration": {"Days": 1}},
        {"ID": "markers", "Filter": {"Prefix": "markers/"}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"ID": "big", "Filter": {"ObjectSizeGreaterThan": 1000}, "Status": "Enabled", "Expiration": {"Days": 9}},
        {"ID": 'q"\\x\ty', "Filter": {"Prefix": "odd/"}, "Status": "Enabled", "Expiration": {"Days": 2}},
    ])

    def check(key: str, put: dict, header: str | None) -> None:
        head = s3.head_object(Bucket=bucket, Key=key)
        get = s3.get_object(Bucket=bucket, Key=key)
        get["Body"].read()
        for r in (put, head, get):
            assert r.get("Expiration") == header, (key, r.get("Expiration"))

    r = s3.put_object(Bucket=bucket, Key="logs/a", Body=b"x")
    lm = s3.head_object(Bucket=bucket, Key="logs/a")["LastModified"]
    check("logs/a", r, expiration(expires(lm, 3), "logs-3d"))
    # Of two rules that apply, the earlier expiration is the one shown.
    r = s3.put_object(Bucket=bucket, Key="logs/b", Body=b"x", Tagging="tmp=1")
    check("logs/b", r, expiration(expires(lm, 1), "logs-tmp-1d"))
    r = s3.put_object(Bucket=bucket, Key="dated/c", Body=b"x")
    check("dated/c", r, expiration(datetime(2031, 1, 1, tzinfo=UTC), "dated"))
    r = s3.put_object(Bucket=bucket, Key="big/d", Body=b"x" * 2000)
    check("big/d", r, expiration(expires(lm, 9), "big"))
    # A disabled rule, a rule with no date, a filter that does not select: no header.
    for key, body in (("off/e", b"x"), ("markers/f", b"x"), ("other/g", b"x"), ("big/small", b"x" * 10)):
        check(key, s3.put_object(Bucket=bucket, Key=key, Body=body), None)
    # A quote and a backslash are escaped in the quoted string, a control character is %XX.
    r = s3.put_object(Bucket=bucket, Key="odd/h", Body=b"x")
    check("odd/h", r, expiration(expires(lm, 2), 'q\\"\\\\x%09y'))

    # A copy and a completed multipart upload are new versions: they carry it too.
    r = s3.copy_object(Bucket=bucket, Key="logs/copy", CopySource={"Bucket": bucket, "Key": "other/g"})
    assert r["Expiration"] == expiration(expires(lm, 3), "logs-3d")
    up = s3.create_multipart_upload(Bucket=bucket, Key="logs/mpu")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="logs/mpu", UploadId=up, PartNumber=1, Body=b"y")
    r = s3.complete_multipart_upload(Bucket=bucket, Key="logs/mpu", UploadId=up,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert r["Expiration"] == expiration(expires(lm, 3), "logs-3d")
    # A browser form's upload (PostObject) too.
    form = s3.generate_presigned_post(bucket, "logs/form")
    files = [(k, (None, v)) for k, v in form["fields"].items()] + [("file", ("f.txt", b"z"))]
    posted = requests.post(form["url"], files=files, allow_redirects=False, timeout=30)
    assert posted.status_code == 204, posted.content
    assert posted.headers["x-amz-expiration"] == expiration(expires(lm, 3), "logs-3d")

    # Once the configuration is gone, so is the header (nothing cached across requests).
    s3.delete_bucket_lifecycle(Bucket=bucket)
    check("logs/a", s3.put_object(Bucket=bucket, Key="logs/a", Body=b"x"), None)


def test_abort_date_on_create_and_list_parts(s3, bucket):
    put_rules(s3, bucket, [
        {"ID": "tmp-7d", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
        {"ID": "tmp-2d", "Filter": {"Prefix": "tmp/fast/"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
        {"ID": "off", "Filter": {"Prefix": "off/"}, "Status": "Disabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ])
    for key, days, rule in (("tmp/a", 7, "tmp-7d"), ("tmp/fast/b", 2, "tmp-2d")):
        created = s3.create_multipart_upload(Bucket=bucket, Key=key)
        [upload] = [u for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=key)["Uploads"]
                    if u["UploadId"] == created["UploadId"]]
        when = expires(upload["Initiated"], days)
        assert (created["AbortDate"], created["AbortRuleId"]) == (when, rule)
        listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=created["UploadId"])
        assert (listed["AbortDate"], listed["AbortRuleId"]) == (when, rule)
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=created["UploadId"])
    for key in ("off/c", "other/d"):
        created = s3.create_multipart_upload(Bucket=bucket, Key=key)
        assert "AbortDate" not in created and "AbortRuleId" not in created
        assert "AbortDate" not in s3.list_parts(Bucket=bucket, Key=key, UploadId=created["UploadId"])
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=created["UploadId"])


def test_expiration_header_current_version_only(s3):
    name = new_bucket(s3, "Enabled")
    put_rules(s3, name, [{"ID": "all", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 5}}])
    old = s3.put_object(Bucket=name, Key="k", Body=b"1")["VersionId"]
    new = s3.put_object(Bucket=name, Key="k", Body=b"2")
    lm = s3.head_object(Bucket=name, Key="k")["LastModified"]
    assert new["Expiration"] == expiration(expires(lm, 5), "all")
    assert s3.head_object(Bucket=name, Key="k", VersionId=new["VersionId"])["Expiration"] == new["Expiration"]
    # A noncurrent version is not expired by a current-version rule: no header.
    assert "Expiration" not in s3.head_object(Bucket=name, Key="k", VersionId=old)
    assert "Expiration" not in s3.get_object(Bucket=name, Key="k", VersionId=old)


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    if not LOCAL:
        pytest.skip("runs a coffre server with a one-second lifecycle day")
    srv = Server(str(tmp_path_factory.mktemp("lifecycle") / "data"), env=FAST).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fs3(fast):
    return make_client(fast.endpoint, (ACCESS_KEY, SECRET_KEY))


@local_only
def test_expiration_by_prefix_unversioned(fast, fs3):
    b = new_bucket(fs3)
    for k in ("logs/a", "logs/b", "keep/c", "off/d"):
        fs3.put_object(Bucket=b, Key=k, Body=b"x" * 10)
    put_rules(fs3, b, [
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": EXPIRE_1},
        {"ID": "off", "Filter": {"Prefix": "off/"}, "Status": "Disabled", "Expiration": EXPIRE_1},
    ])
    wait_until(lambda: keys(fs3, b) == ["keep/c", "off/d"])
    time.sleep(1.5)  # several more passes: the others are still there
    assert keys(fs3, b) == ["keep/c", "off/d"]
    assert versions(fs3, b) == [("keep/c", "null", False), ("off/d", "null", False)]
    # Each action is in the audit trail, by the principal "lifecycle", once.
    wait_until(lambda: len(lifecycle_audit(fast.data_dir, b)) == 2, 10, "the audit writer")
    recs = lifecycle_audit(fast.data_dir, b)
    assert sorted(r["key"] for r in recs) == ["logs/a", "logs/b"]
    assert {(r["operation"], r["api"], r["status"], r["access_key"]) for r in recs} == \
        {("S3.EXPIRE.OBJECT", "lifecycle", 204, None)}
    metrics = requests.get(fast.admin_endpoint + "/metrics", timeout=10).text
    assert 'coffre_lifecycle_actions_total{action="expire"}' in metrics


@local_only
def test_filters_tags_sizes_and(fs3):
    b = new_bucket(fs3)
    fs3.put_object(Bucket=b, Key="t/tmp", Body=b"x", Tagging="env=tmp")
    fs3.put_object(Bucket=b, Key="t/prod", Body=b"x", Tagging="env=prod")
    fs3.put_object(Bucket=b, Key="s/small", Body=b"x" * 5)
    fs3.put_object(Bucket=b, Key="s/mid", Body=b"x" * 50)
    fs3.put_object(Bucket=b, Key="s/big", Body=b"x" * 200)
    fs3.put_object(Bucket=b, Key="big-anywhere", Body=b"x" * 300)
    fs3.put_object(Bucket=b, Key="a/both", Body=b"x" * 50, Tagging="team=x")
    fs3.put_object(Bucket=b, Key="a/tag-only", Body=b"x" * 5, Tagging="team=x")
    put_rules(fs3, b, [
        {"ID": "tag", "Filter": {"Tag": {"Key": "env", "Value": "tmp"}}, "Status": "Enabled", "Expiration": EXPIRE_1},
        {"ID": "size", "Filter": {"And": {"Prefix": "s/", "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 100}},
         "Status": "Enabled", "Expiration": EXPIRE_1},
        {"ID": "gt", "Filter": {"ObjectSizeGreaterThan": 250}, "Status": "Enabled", "Expiration": EXPIRE_1},
        {"ID": "and", "Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "team", "Value": "x"}],
                                          "ObjectSizeGreaterThan": 10}},
         "Status": "Enabled", "Expiration": EXPIRE_1},
    ])
    remaining = ["a/tag-only", "s/big", "s/small", "t/prod"]
    wait_until(lambda: keys(fs3, b) == remaining)
    time.sleep(1.5)
    assert keys(fs3, b) == remaining


@local_only
def test_versioned_expiration_adds_one_delete_marker(fs3):
    b = new_bucket(fs3, "Enabled")
    v1 = fs3.put_object(Bucket=b, Key="k", Body=b"1")["VersionId"]
    v2 = fs3.put_object(Bucket=b, Key="k", Body=b"2")["VersionId"]
    put_rules(fs3, b, [{"ID": "cur", "Filter": {}, "Status": "Enabled", "Expiration": EXPIRE_1}])
    wait_until(lambda: keys(fs3, b) == [])
    time.sleep(1.5)  # more passes: never a second marker over the first
    got = versions(fs3, b)
    assert [(v, dm) for _, v, dm in got][1:] == [(v2, False), (v1, False)]
    assert got[0][2] and got[0][1] not in (v1, v2)
    # The data is still there, as a noncurrent version.
    assert fs3.get_object(Bucket=b, Key="k", VersionId=v2)["Body"].read() == b"2"


@local_only
def test_suspended_bucket_null_delete_marker(fs3):
    b = new_bucket(fs3, "Enabled")
    v1 = fs3.put_object(Bucket=b, Key="k", Body=b"1")["VersionId"]
    fs3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    fs3.put_object(Bucket=b, Key="k", Body=b"null data")
    put_rules(fs3, b, [{"ID": "cur", "Filter": {}, "Status": "Enabled", "Expiration": EXPIRE_1}])
    wait_until(lambda: keys(fs3, b) == [])
    time.sleep(1.0)
    # The marker is the "null" version: it replaced the null version's data; v1 remains.
    assert versions(fs3, b) == [("k", "null", True), ("k", v1, False)]


@local_only
def test_noncurrent_expiration_keeps_newer_versions(fs3):
    b = new_bucket(fs3, "Enabled")
    ids = [fs3.put_object(Bucket=b, Key="k", Body=str(i).encode())["VersionId"] for i in range(5)]
    other = [fs3.put_object(Bucket=b, Key="other/k", Body=str(i).encode())["VersionId"] for i in range(2)]
    put_rules(fs3, b, [{"ID": "nc", "Filter": {"Prefix": "k"}, "Status": "Enabled",
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}}])
    wait_until(lambda: len(versions(fs3, b, "k")) == 3)
    time.sleep(1.5)
    # The current version and the two newest noncurrent ones remain; other/ is not selected.
    assert versions(fs3, b) == [("k", ids[4], False), ("k", ids[3], False), ("k", ids[2], False),
                                ("other/k", other[1], False), ("other/k", other[0], False)]


@local_only
def test_expired_delete_marker_cleanup(fs3):
    b = new_bucket(fs3, "Enabled")
    fs3.put_object(Bucket=b, Key="gone", Body=b"1")
    fs3.delete_object(Bucket=b, Key="gone")
    fs3.put_object(Bucket=b, Key="live", Body=b"1")
    put_rules(fs3, b, [{"ID": "clean", "Filter": {}, "Status": "Enabled",
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                        "Expiration": {"ExpiredObjectDeleteMarker": True}}])
    # First the noncurrent version goes, then the delete marker left alone.
    wait_until(lambda: [k for k, _, _ in versions(fs3, b)] == ["live"])
    assert keys(fs3, b) == ["live"]


@local_only
def test_abort_incomplete_multipart_uploads(fs3):
    b = new_bucket(fs3)
    up = fs3.create_multipart_upload(Bucket=b, Key="tmp/big")["UploadId"]
    fs3.upload_part(Bucket=b, Key="tmp/big", UploadId=up, PartNumber=1, Body=b"p" * 1024)
    keep = fs3.create_multipart_upload(Bucket=b, Key="keep/big")["UploadId"]
    put_rules(fs3, b, [{"ID": "mpu", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}])

    def uploads() -> list[str]:
        return [u["UploadId"] for u in fs3.list_multipart_uploads(Bucket=b).get("Uploads", [])]

    wait_until(lambda: uploads() == [keep])
    with pytest.raises(ClientError) as e:
        fs3.list_parts(Bucket=b, Key="tmp/big", UploadId=up)
    assert code(e)[1] == "NoSuchUpload"
    fs3.abort_multipart_upload(Bucket=b, Key="keep/big", UploadId=keep)


@local_only
def test_date_in_the_past_applies_at_once(fs3):
    b = new_bucket(fs3)
    fs3.put_object(Bucket=b, Key="d/x", Body=b"1")
    fs3.put_object(Bucket=b, Key="e/x", Body=b"1")
    put_rules(fs3, b, [{"ID": "date", "Filter": {"Prefix": "d/"}, "Status": "Enabled",
                        "Expiration": {"Date": datetime(2020, 1, 1, tzinfo=UTC)}}])
    wait_until(lambda: keys(fs3, b) == ["e/x"])


@local_only
def test_object_lock_is_honoured(fs3):
    """Lifecycle never removes a version under retention or a legal hold; placing a delete
    marker over a locked current version is allowed, as on AWS."""
    b = new_bucket(fs3, ObjectLockEnabledForBucket=True)
    until = datetime.now(UTC) + timedelta(days=1)
    locked = fs3.put_object(Bucket=b, Key="locked", Body=b"1", ObjectLockMode="GOVERNANCE",
                            ObjectLockRetainUntilDate=until)["VersionId"]
    held = fs3.put_object(Bucket=b, Key="held", Body=b"1", ObjectLockLegalHoldStatus="ON")["VersionId"]
    free = fs3.put_object(Bucket=b, Key="free", Body=b"1")["VersionId"]
    for k in ("locked", "held", "free"):
        fs3.put_object(Bucket=b, Key=k, Body=b"2")
    put_rules(fs3, b, [{"ID": "nc", "Filter": {}, "Status": "Enabled",
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}])
    wait_until(lambda: free not in [v for _, v, _ in versions(fs3, b)])
    time.sleep(1.5)
    left = [v for _, v, _ in versions(fs3, b)]
    assert locked in left and held in left
    # Current-version expiration over a locked current version: a delete marker, the version kept.
    cur = fs3.put_object(Bucket=b, Key="cur-locked", Body=b"1", ObjectLockMode="GOVERNANCE",
                         ObjectLockRetainUntilDate=until)["VersionId"]
    nc = {"ID": "nc", "Filter": {}, "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}
    put_rules(fs3, b, [nc, {"ID": "cur", "Filter": {"Prefix": "cur-"}, "Status": "Enabled",
                            "Expiration": EXPIRE_1}])
    wait_until(lambda: "cur-locked" not in keys(fs3, b))
    time.sleep(1.0)
    assert [(v, dm) for k, v, dm in versions(fs3, b) if k == "cur-locked"][1:] == [(cur, False)]
    # A legal hold lifted: the version goes at the next pass.
    fs3.put_object_legal_hold(Bucket=b, Key="held", VersionId=held, LegalHold={"Status": "OFF"})
    wait_until(lambda: held not in [v for _, v, _ in versions(fs3, b)])
    assert locked in [v for _, v, _ in versions(fs3, b)]


@local_only
def test_suspended_tenant_is_left_alone(fast):
    """A suspended tenant's buckets are frozen: no rule runs until it is resumed."""
    from tests.tenants import create_tenant, tenant_status

    name = "lc-" + uuid.uuid4().hex[:12]
    s3 = make_client(fast.endpoint, create_tenant(fast, name))
    b = new_bucket(s3)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    put_rules(s3, b, [{"ID": "cur", "Filter": {"Prefix": "k"}, "Status": "Enabled", "Expiration": {"Days": 3}}])
    wait_until(lambda: keys(s3, b) == [])  # the rule works for this tenant
    # k2 is due at least three (one-second) days after it is written: the suspension comes first.
    s3.put_object(Bucket=b, Key="k2", Body=b"x")
    tenant_status(fast, name, "suspend")
    time.sleep(5.0)  # k2 is due by now, and many passes go by
    assert [r["key"] for r in lifecycle_audit(fast.data_dir, b)] == ["k"]
    tenant_status(fast, name, "resume")
    wait_until(lambda: keys(s3, b) == [])


# -- restarts and concurrency --
def _setup(tmp, n: int) -> tuple[Server, str]:
    """A server whose worker waits an hour between passes (so it does nothing during the test),
    a versioned bucket with ``n`` keys and a one-day expiration rule, already due."""
    srv = Server(str(tmp / "data"), env={**FAST, "COFFRE_LIFECYCLE_INTERVAL_SECONDS": "3600"}).start()
    s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
    b = new_bucket(s3, "Enabled")
    for i in range(n):
        s3.put_object(Bucket=b, Key=f"k{i}", Body=b"x")
    put_rules(s3, b, [{"ID": "cur", "Filter": {}, "Status": "Enabled", "Expiration": EXPIRE_1}])
    time.sleep(2.5)  # written at t, due at ceil(t + 1) with one-second days
    srv.stop()
    return srv, b


def _in_process(data_dir: str, run: Callable[..., object]) -> object:
    """Run ``run(coffre)`` against the data directory with the server stopped (a gateway that
    stops half-way through a pass, or two workers at once)."""
    from coffre.server import build
    from coffre.settings import Settings

    async def main() -> object:
        umask = os.umask(0o077)
        try:
            coffre = build(Settings(data_dir=data_dir, lifecycle_day_seconds=1.0,
                                   lifecycle_interval_seconds=0.0))
        finally:
            os.umask(umask)  # build() sets the server's umask; this process is the test runner
        await coffre.open()
        try:
            return await run(coffre)  # type: ignore[misc]
        finally:
            await coffre.close()

    return asyncio.run(main())


@local_only
def test_a_pass_cut_short_resumes_after_restart(tmp_path):
    srv, b = _setup(tmp_path, 6)

    async def two_keys(coffre):
        return await coffre.lifecycle.run_pass(max_keys=2)

    stats = _in_process(srv.data_dir, two_keys)
    assert stats.actions == 2  # type: ignore[attr-defined]
    restarted = Server(srv.data_dir, env=FAST).start()
    try:
        s3 = make_client(restarted.endpoint, (ACCESS_KEY, SECRET_KEY))
        wait_until(lambda: keys(s3, b) == [])
        time.sleep(1.5)
        got = versions(s3, b)
        # Exactly one delete marker over one version per key: nothing applied twice.
        assert Counter((k, dm) for k, _, dm in got) == {**{(f"k{i}", True): 1 for i in range(6)},
                                                        **{(f"k{i}", False): 1 for i in range(6)}}
        # The restarted server resumed after k1: it acted on k2..k5 only.
        wait_until(lambda: len(lifecycle_audit(srv.data_dir, b)) >= 4, 10, "the audit writer")
        time.sleep(0.5)
        assert sorted(r["key"] for r in lifecycle_audit(srv.data_dir, b)) == ["k2", "k3", "k4", "k5"]
    finally:
        restarted.stop()


@local_only
def test_two_workers_never_act_twice(tmp_path):
    """Two workers over one bucket at once, their leases running out at once (as two gateways
    would after a stall): the actions are compare-and-set, so each is applied once."""
    srv, b = _setup(tmp_path, 8)
    from coffre.core.lifecycle import LifecycleWorker

    async def race(coffre):
        w1 = LifecycleWorker(coffre.settings, coffre.meta, coffre.objects, holder="gw-1", lease_seconds=-1,
                             page_size=3)
        w2 = LifecycleWorker(coffre.settings, coffre.meta, coffre.objects, holder="gw-2", lease_seconds=-1,
                             page_size=2)
        s1, s2 = await asyncio.gather(w1.run_pass(), w2.run_pass())
        again = await w1.run_pass()
        return s1.actions + s2.actions, again.actions

    total, again = _in_process(srv.data_dir, race)  # type: ignore[misc]
    assert (total, again) == (8, 0)
    again_srv = Server(srv.data_dir, env={**FAST, "COFFRE_LIFECYCLE_INTERVAL_SECONDS": "3600"}).start()
    try:
        s3 = make_client(again_srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        got = versions(s3, b)
        assert Counter(dm for _, _, dm in got) == {True: 8, False: 8}
        assert len({k for k, _, _ in got}) == 8
    finally:
        again_srv.stop()



@local_only
def test_notifications_of_lifecycle_expirations(tmp_path):
    """s3:LifecycleExpiration:Delete and :DeleteMarkerCreated reach a webhook, after the action."""
    import json

    from tests.s3.test_notifications import Loop, Webhook, arn

    loop = Loop()
    hook = Webhook(loop).start()
    srv = Server(str(tmp_path / "data"), env={**FAST, "COFFRE_NOTIFY_TARGETS": json.dumps(
        [{"id": "hook", "type": "webhook", "url": hook.url}])}).start()
    try:
        s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        plain, versioned = new_bucket(s3), new_bucket(s3, "Enabled")
        for b in (plain, versioned):
            s3.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration={"QueueConfigurations": [
                {"QueueArn": arn("hook", "webhook"), "Events": ["s3:LifecycleExpiration:*"]}]})
            s3.put_object(Bucket=b, Key="k", Body=b"x")
            put_rules(s3, b, [{"ID": "cur", "Filter": {}, "Status": "Enabled", "Expiration": EXPIRE_1}])
        wait_until(lambda: len(hook.records()) >= 2, what="the notifications")
        got = {(r["s3"]["bucket"]["name"], r["eventName"], r["s3"]["object"]["key"]) for r in hook.records()}
        assert got == {(plain, "LifecycleExpiration:Delete", "k"),
                       (versioned, "LifecycleExpiration:DeleteMarkerCreated", "k")}
    finally:
        srv.stop()
        hook.stop()
        loop.close()
