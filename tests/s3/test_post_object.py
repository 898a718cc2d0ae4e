"""PostObject: browser form uploads signed with boto3's generate_presigned_post, sent with `requests`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import make_client
from tests.server import SECRET_KEY


@pytest.fixture(scope="module")
def signer(endpoint, credentials):
    """boto3 signs POST policies with SigV2 unless told otherwise."""
    return make_client(endpoint, credentials, signature_version="s3v4")


def post(presigned: dict, content: bytes | object = b"hello", filename: str | None = "hello.txt",
         extra: dict[str, str] | None = None, drop: tuple[str, ...] = (), after: dict[str, str] | None = None,
         **kwargs) -> requests.Response:
    """Send the form as a browser does: the signed fields, then extra ones, then the file last."""
    fields = [(k, v) for k, v in presigned["fields"].items() if k not in drop]
    fields += list((extra or {}).items())
    files: list = [(k, (None, v)) for k, v in fields]
    files.append(("file", (filename, content) if filename is not None else (None, content)))
    files += [(k, (None, v)) for k, v in (after or {}).items()]
    return requests.post(presigned["url"], files=files, allow_redirects=False, timeout=60, **kwargs)


def err(resp: requests.Response) -> tuple[str, str]:
    root = ET.fromstring(resp.content)
    return root.findtext("Code") or "", root.findtext("Message") or ""


def test_default_204_and_object_readable(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "up/hello.txt", ExpiresIn=300)
    r = post(p, b"hello world")
    assert r.status_code == 204, r.text
    assert r.content == b""
    md5 = hashlib.md5(b"hello world").hexdigest()  # noqa: S324
    assert r.headers["ETag"] == f'"{md5}"'
    assert r.headers["Location"].endswith(f"/{bucket}/up%2Fhello.txt")
    got = s3.get_object(Bucket=bucket, Key="up/hello.txt")
    assert got["Body"].read() == b"hello world"
    assert got["ETag"] == f'"{md5}"'
    # No Content-Type field: S3's default, not the file part's own type.
    assert got["ContentType"] == "binary/octet-stream"


def test_success_action_status_201(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "k201", Fields={"success_action_status": "201"},
                                   Conditions=[{"success_action_status": "201"}])
    r = post(p, b"abc")
    assert r.status_code == 201, r.text
    root = ET.fromstring(r.content)
    assert root.tag == "PostResponse"
    assert root.findtext("Bucket") == bucket and root.findtext("Key") == "k201"
    assert root.findtext("ETag") == f'"{hashlib.md5(b"abc").hexdigest()}"'  # noqa: S324
    assert root.findtext("Location") == r.headers["Location"]


@pytest.mark.parametrize("status, expected", [("200", 200), ("404", 204), ("", 204)])
def test_success_action_status_other(s3, signer, bucket, status, expected):
    p = signer.generate_presigned_post(bucket, "ks", Fields={"success_action_status": status},
                                   Conditions=[["starts-with", "$success_action_status", ""]])
    r = post(p)
    assert r.status_code == expected, r.text
    assert r.content == b""


def test_success_action_redirect(s3, signer, bucket):
    target = "https://app.example.com/done?ticket=7"
    p = signer.generate_presigned_post(bucket, "dir/a b.txt", Fields={"success_action_redirect": target},
                                   Conditions=[{"success_action_redirect": target}])
    r = post(p, b"redirected")
    assert r.status_code == 303, r.text
    loc = urlsplit(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == "https://app.example.com/done"
    q = parse_qs(loc.query)
    assert q == {"ticket": ["7"], "bucket": [bucket], "key": ["dir/a b.txt"],
                 "etag": [f'"{hashlib.md5(b"redirected").hexdigest()}"']}  # noqa: S324
    assert "key=dir%2Fa+b.txt" in loc.query
    assert s3.get_object(Bucket=bucket, Key="dir/a b.txt")["Body"].read() == b"redirected"


def test_relative_redirect_falls_back_to_status(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "rel", Fields={"success_action_redirect": "/relative"},
                                   Conditions=[{"success_action_redirect": "/relative"}])
    assert post(p).status_code == 204


def test_key_from_filename(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "uploads/${filename}")
    r = post(p, b"photo bytes", filename="photo.jpg")
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="uploads/photo.jpg")["Body"].read() == b"photo bytes"


def test_starts_with_key(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "user/eric/${filename}")
    fields = dict(p["fields"])
    fields["key"] = "user/eric/free.txt"
    assert post({"url": p["url"], "fields": fields}).status_code == 204
    fields["key"] = "user/bob/evil.txt"
    r = post({"url": p["url"], "fields": fields})
    assert r.status_code == 403
    assert err(r) == ("AccessDenied",
                      'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "user/eric/"]')


def test_metadata_and_content_type_conditions(s3, signer, bucket):
    fields = {"Content-Type": "image/png", "x-amz-meta-owner": "eric", "Cache-Control": "max-age=60"}
    conditions = [["starts-with", "$Content-Type", "image/"], {"x-amz-meta-owner": "eric"},
                  ["eq", "$Cache-Control", "max-age=60"]]
    p = signer.generate_presigned_post(bucket, "meta.png", Fields=fields, Conditions=conditions)
    assert post(p, b"\x89PNG").status_code == 204
    head = s3.head_object(Bucket=bucket, Key="meta.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"owner": "eric"}
    assert head["CacheControl"] == "max-age=60"
    # The same policy with another value for a field it fixes.
    bad = dict(p["fields"], **{"x-amz-meta-owner": "mallory"})
    r = post({"url": p["url"], "fields": bad})
    assert r.status_code == 403
    assert err(r)[1] == 'Invalid according to Policy: Policy Condition failed: ["eq", "$x-amz-meta-owner", "eric"]'
    bad = dict(p["fields"], **{"Content-Type": "text/html"})
    assert post({"url": p["url"], "fields": bad}).status_code == 403


def test_content_length_range(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "sized", Conditions=[["content-length-range", 5, 10]])
    assert post(p, b"12345").status_code == 204
    assert post(p, b"1234567890").status_code == 204
    r = post(p, b"1234")
    assert r.status_code == 400 and err(r)[0] == "EntityTooSmall"
    root = ET.fromstring(r.content)
    assert root.findtext("ProposedSize") == "4" and root.findtext("MinSizeAllowed") == "5"
    big = b"x" * 300_000  # several reads past the limit: the whole proposed size is reported
    r = post(p, big)
    assert r.status_code == 400 and err(r)[0] == "EntityTooLarge"
    root = ET.fromstring(r.content)
    assert root.findtext("ProposedSize") == str(len(big)) and root.findtext("MaxSizeAllowed") == "10"
    assert s3.get_object(Bucket=bucket, Key="sized")["Body"].read() == b"1234567890"


def test_expired_policy(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "late", ExpiresIn=1)
    time.sleep(1.5)
    r = post(p)
    assert r.status_code == 403
    assert err(r) == ("AccessDenied", "Invalid according to Policy: Policy expired.")


def test_tampered_signature_and_policy(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "t")
    sig = p["fields"]["x-amz-signature"]
    bad_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    r = post({"url": p["url"], "fields": dict(p["fields"], **{"x-amz-signature": bad_sig})})
    assert r.status_code == 403 and err(r)[0] == "SignatureDoesNotMatch"
    assert ET.fromstring(r.content).findtext("StringToSign") == p["fields"]["policy"]
    # A policy rewritten to allow any key no longer matches its signature.
    doc = json.loads(base64.b64decode(p["fields"]["policy"]))
    doc["conditions"] = [c for c in doc["conditions"] if not (isinstance(c, dict) and "key" in c)]
    forged = base64.b64encode(json.dumps(doc).encode()).decode()
    r = post({"url": p["url"], "fields": dict(p["fields"], policy=forged, key="other")})
    assert r.status_code == 403 and err(r)[0] == "SignatureDoesNotMatch"
    with pytest.raises(Exception):  # noqa: B017
        s3.head_object(Bucket=bucket, Key="other")


def test_unknown_access_key(s3, bucket, endpoint):
    other = make_client(endpoint, ("COUNKNOWNKEY00000000", "whatever-secret"), signature_version="s3v4")
    p = other.generate_presigned_post(bucket, "u")
    r = post(p)
    assert r.status_code == 403 and err(r)[0] == "InvalidAccessKeyId"


def test_extra_fields(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "extra")
    r = post(p, extra={"x-amz-meta-note": "hi"})
    assert r.status_code == 403
    assert err(r) == ("AccessDenied", "Invalid according to Policy: Extra input fields: x-amz-meta-note")
    # x-ignore-* fields need no condition; fields after the file are ignored.
    assert post(p, extra={"x-ignore-tracker": "1"}, after={"x-amz-meta-late": "1"}).status_code == 204
    assert s3.head_object(Bucket=bucket, Key="extra")["Metadata"] == {}


def test_missing_fields(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "m")
    r = post(p, drop=("x-amz-signature",))
    assert r.status_code == 400
    assert err(r) == ("InvalidArgument", "Bucket POST must contain a field named 'X-Amz-Signature'.  If it is "
                                         "specified, please check the order of the fields.")
    r = post(p, drop=("key",))
    assert r.status_code == 400 and "'key'" in err(r)[1]
    # The key sent after the file is not seen.
    r = post(p, drop=("key",), after={"key": "m"})
    assert r.status_code == 400 and err(r)[0] == "InvalidArgument"
    # No file at all.
    files = [(k, (None, v)) for k, v in p["fields"].items()]
    r = requests.post(p["url"], files=files, timeout=30)
    assert r.status_code == 400
    assert err(r) == ("InvalidArgument", "POST requires exactly one file upload per request.")
    # Neither policy nor signature: anonymous, and the bucket is not public.
    r = post({"url": p["url"], "fields": {"key": "anon"}})
    assert r.status_code == 403 and err(r)[0] == "AccessDenied"


def test_not_multipart(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "nm")
    r = requests.post(p["url"], data=p["fields"], timeout=30)
    assert r.status_code == 412
    assert ET.fromstring(r.content).findtext("Condition") == \
        "Bucket POST must be of the enclosure-type multipart/form-data"


def test_invalid_policy_document(s3, signer, bucket):
    p = signer.generate_presigned_post(bucket, "ip")
    # Signed correctly, but not a policy: InvalidPolicyDocument comes after the signature check.
    cred = p["fields"]["x-amz-credential"]
    _, date, region, service, _ = cred.split("/")
    k = hmac.new(b"AWS4" + SECRET_KEY.encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    for doc, message in ((b"not json", "Invalid Policy: Invalid JSON."),
                         (b'{"conditions": []}', "Invalid Policy: Policy missing expiration."),
                         (b'{"expiration": "2030-01-01T00:00:00.000Z"}', "Invalid Policy: Policy missing conditions.")):
        policy = base64.b64encode(doc).decode()
        sig = hmac.new(k, policy.encode(), hashlib.sha256).hexdigest()
        r = post({"url": p["url"], "fields": dict(p["fields"], policy=policy, **{"x-amz-signature": sig})})
        assert r.status_code == 400
        assert err(r) == ("InvalidPolicyDocument", message)


def test_large_file_streamed(s3, signer, bucket):
    size = 20 * 1024 * 1024
    p = signer.generate_presigned_post(bucket, "big.bin", Conditions=[["content-length-range", 1, size]])
    data = os.urandom(1024 * 1024) * 20
    r = post(p, data, filename="big.bin")
    assert r.status_code == 204, r.text
    got = s3.get_object(Bucket=bucket, Key="big.bin")
    assert got["ContentLength"] == size
    assert hashlib.sha256(got["Body"].read()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_post_with_cors(s3, signer, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["POST"], "ExposeHeaders": ["ETag"]}]})
    p = signer.generate_presigned_post(bucket, "from-browser")
    r = post(p, headers={"Origin": "https://app.example.com"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag"


def test_sigv2_policy(s3, bucket):
    """boto3's default client still signs POST policies with SigV2 (AWSAccessKeyId, signature)."""
    p = s3.generate_presigned_post(bucket, "v2/${filename}", Conditions=[["content-length-range", 1, 100]])
    assert "AWSAccessKeyId" in p["fields"] and "x-amz-signature" not in p["fields"]
    r = post(p, b"signed the old way", filename="v2.txt")
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="v2/v2.txt")["Body"].read() == b"signed the old way"
    bad = dict(p["fields"], signature="AAAA" + p["fields"]["signature"][4:])
    r = post({"url": p["url"], "fields": bad})
    assert r.status_code == 403 and err(r)[0] == "SignatureDoesNotMatch"
    r = post(p, drop=("signature",))
    assert r.status_code == 400
    assert err(r) == ("InvalidArgument", "Bucket POST must contain a field named 'Signature'.  If it is "
                                         "specified, please check the order of the fields.")
    r = post(p, b"x" * 101, filename="v2.txt")
    assert r.status_code == 400 and err(r)[0] == "EntityTooLarge"
