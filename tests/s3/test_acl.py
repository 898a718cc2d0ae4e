"""ACLs, canned ACLs and S3 Object Ownership, with boto3 and an unsigned HTTP client."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import empty_bucket, make_client
from tests.s3.test_policy import anonymous, code
from tests.tenants import admin_client, create_tenant

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


@pytest.fixture(scope="module")
def other(server, endpoint):
    name = "acl-" + uuid.uuid4().hex[:10]
    akid, secret = create_tenant(server, name)
    doc = admin_client(server).call("GET", f"/tenants/{name}")
    return {"client": make_client(endpoint, (akid, secret)), "canonical_id": doc["canonical_id"], "id": doc["id"]}


@pytest.fixture
def acl_bucket(s3):
    """A bucket with ACLs enabled (ObjectWriter) and Block Public Access off."""
    name = "acl-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name, ObjectOwnership="ObjectWriter")
    s3.delete_public_access_block(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


def owner_id(s3) -> str:
    return s3.list_buckets()["Owner"]["ID"]


def grants(resp) -> list[tuple[str, str]]:
    out = []
    for g in resp["Grants"]:
        who = g["Grantee"].get("ID") or g["Grantee"].get("URI")
        out.append((who, g["Permission"]))
    return sorted(out)


def test_new_bucket_has_acls_disabled(s3, bucket):
    me = owner_id(s3)
    resp = s3.get_bucket_acl(Bucket=bucket)
    assert resp["Owner"]["ID"] == me
    assert grants(resp) == [(me, "FULL_CONTROL")]
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    # Only the bucket owner's full control may be asked for: what clients send by default works.
    s3.put_object(Bucket=bucket, Key="a", Body=b"a", ACL="bucket-owner-full-control")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b", ACL="private")
    for acl in ("public-read", "public-read-write", "authenticated-read"):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="c", Body=b"c", ACL=acl)
        assert code(e) == "AccessControlListNotSupported"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert code(e) == "AccessControlListNotSupported"
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=bucket, Key="a", GrantRead=f'uri="{ALL_USERS}"')
    assert code(e) == "AccessControlListNotSupported"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")  # the owner's full control: accepted, nothing changes
    obj = s3.get_object_acl(Bucket=bucket, Key="a")
    assert obj["Owner"]["ID"] == me and grants(obj) == [(me, "FULL_CONTROL")]


def test_create_bucket_acl_rules(s3):
    name = "acl-" + uuid.uuid4().hex[:20]
    with pytest.raises(ClientError) as e:  # ACLs disabled by default: no grant to anyone else
        s3.create_bucket(Bucket=name, ACL="public-read")
    assert code(e) == "InvalidBucketAclWithObjectOwnership"
    s3.create_bucket(Bucket=name, ACL="private")  # what rclone sends
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:  # a new bucket blocks public ACLs
        s3.create_bucket(Bucket=name, ACL="public-read", ObjectOwnership="ObjectWriter")
    assert code(e) == "AccessDenied"
    s3.create_bucket(Bucket=name, ACL="log-delivery-write", ObjectOwnership="BucketOwnerPreferred")
    try:
        assert (ALL_USERS, "READ") not in grants(s3.get_bucket_acl(Bucket=name))
        assert ("http://acs.amazonaws.com/groups/s3/LogDelivery", "WRITE") in grants(s3.get_bucket_acl(Bucket=name))
    finally:
        s3.delete_bucket(Bucket=name)


def test_canned_public_read_object_and_ignore_public_acls(s3, endpoint, acl_bucket):
    b = acl_bucket
    me = owner_id(s3)
    s3.put_object(Bucket=b, Key="open.txt", Body=b"for everyone", ACL="public-read")
    s3.put_object(Bucket=b, Key="closed.txt", Body=b"mine")
    assert grants(s3.get_object_acl(Bucket=b, Key="open.txt")) == sorted(
        [(me, "FULL_CONTROL"), (ALL_USERS, "READ")])
    assert anonymous("GET", f"{endpoint}/{b}/open.txt") == (200, b"for everyone")
    assert anonymous("GET", f"{endpoint}/{b}/closed.txt")[0] == 403
    assert anonymous("GET", f"{endpoint}/{b}/open.txt?acl")[0] == 403  # READ is not READ_ACP
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
    assert anonymous("GET", f"{endpoint}/{b}/open.txt")[0] == 403
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
    assert anonymous("GET", f"{endpoint}/{b}/open.txt")[0] == 200  # existing grants still count
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=b, Key="new.txt", Body=b"x", ACL="public-read")
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=b, Key="closed.txt", ACL="public-read")
    assert code(e) == "AccessDenied"
    s3.put_object_acl(Bucket=b, Key="open.txt", ACL="private")
    assert grants(s3.get_object_acl(Bucket=b, Key="open.txt")) == [(me, "FULL_CONTROL")]
    assert anonymous("GET", f"{endpoint}/{b}/open.txt")[0] == 403


def test_bucket_acl_xml_round_trip_and_grant_headers(s3, endpoint, acl_bucket, other):
    b = acl_bucket
    me = owner_id(s3)
    policy = {"Owner": {"ID": me}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": me}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
        {"Grantee": {"Type": "CanonicalUser", "ID": other["canonical_id"]}, "Permission": "READ_ACP"}]}
    s3.put_bucket_acl(Bucket=b, AccessControlPolicy=policy)
    assert grants(s3.get_bucket_acl(Bucket=b)) == sorted(
        [(me, "FULL_CONTROL"), (ALL_USERS, "READ"), (other["canonical_id"], "READ_ACP")])
    s3.put_object(Bucket=b, Key="listed", Body=b"x")
    status, body = anonymous("GET", f"{endpoint}/{b}?list-type=2")  # bucket READ = list
    assert status == 200 and b"<Key>listed</Key>" in body
    assert anonymous("GET", f"{endpoint}/{b}/listed")[0] == 403  # objects are not the bucket
    assert grants(other["client"].get_bucket_acl(Bucket=b))  # READ_ACP to the other tenant
    with pytest.raises(ClientError) as e:
        other["client"].put_bucket_acl(Bucket=b, ACL="private")
    assert code(e) == "AccessDenied"
    # x-amz-grant-* headers replace the whole ACL.
    s3.put_bucket_acl(Bucket=b, GrantFullControl=f'id="{me}"', GrantRead=f'uri="{AUTHENTICATED_USERS}"')
    assert grants(s3.get_bucket_acl(Bucket=b)) == sorted([(me, "FULL_CONTROL"), (AUTHENTICATED_USERS, "READ")])
    assert anonymous("GET", f"{endpoint}/{b}?list-type=2")[0] == 403
    assert other["client"].list_objects_v2(Bucket=b)["KeyCount"] == 1  # any signed caller
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=b, GrantRead='emailAddress="someone@example.com"')
    assert code(e) == "UnresolvableGrantByEmailAddress"
    with pytest.raises(ClientError) as e:  # an Owner that is not the bucket's
        s3.put_bucket_acl(Bucket=b, AccessControlPolicy={"Owner": {"ID": other["canonical_id"]}, "Grants": []})
    assert code(e) == "AccessDenied"
    s3.put_bucket_acl(Bucket=b, ACL="private")
    assert grants(s3.get_bucket_acl(Bucket=b)) == [(me, "FULL_CONTROL")]


def test_object_acl_grants_another_tenant(s3, acl_bucket, other):
    b = acl_bucket
    s3.put_object(Bucket=b, Key="for-b", Body=b"hello b")
    with pytest.raises(ClientError) as e:
        other["client"].get_object(Bucket=b, Key="for-b")
    assert code(e) == "AccessDenied"
    s3.put_object_acl(Bucket=b, Key="for-b", GrantRead=f'id="{other["canonical_id"]}"')
    assert other["client"].get_object(Bucket=b, Key="for-b")["Body"].read() == b"hello b"
    with pytest.raises(ClientError) as e:
        other["client"].get_object_acl(Bucket=b, Key="for-b")
    assert code(e) == "AccessDenied"


def test_object_writer_owns_what_it_writes(s3, acl_bucket, other):
    """ObjectWriter: another tenant's object is its own; BucketOwnerPreferred with
    bucket-owner-full-control hands it to the bucket owner."""
    b = acl_bucket
    me, them = owner_id(s3), other["canonical_id"]
    s3.put_bucket_acl(Bucket=b, GrantFullControl=f'id="{me}"', GrantWrite=f'id="{them}"')
    other["client"].put_object(Bucket=b, Key="theirs", Body=b"t")
    acl = other["client"].get_object_acl(Bucket=b, Key="theirs")
    assert acl["Owner"]["ID"] == them and grants(acl) == [(them, "FULL_CONTROL")]
    assert other["client"].get_object(Bucket=b, Key="theirs")["Body"].read() == b"t"
    s3.put_bucket_ownership_controls(Bucket=b, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    with pytest.raises(ClientError) as e:  # an ACL header needs s3:PutObjectAcl too (AWS)
        other["client"].put_object(Bucket=b, Key="handed-over", Body=b"h", ACL="bucket-owner-full-control")
    assert code(e) == "AccessDenied"
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": other["id"]}, "Action": "s3:PutObjectAcl",
        "Resource": f"arn:aws:s3:::{b}/*"}]}))
    other["client"].put_object(Bucket=b, Key="handed-over", Body=b"h", ACL="bucket-owner-full-control")
    assert s3.get_object_acl(Bucket=b, Key="handed-over")["Owner"]["ID"] == me
    other["client"].put_object(Bucket=b, Key="kept", Body=b"k")
    owners = {o["Key"]: o["Owner"]["ID"] for o in s3.list_objects(Bucket=b)["Contents"]}
    assert owners == {"theirs": them, "handed-over": me, "kept": them}


def test_ownership_controls(s3, acl_bucket):
    b = acl_bucket
    assert s3.get_bucket_ownership_controls(Bucket=b)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "ObjectWriter"}]
    s3.put_bucket_acl(Bucket=b, ACL="public-read")
    with pytest.raises(ClientError) as e:  # disabling ACLs needs a private bucket ACL
        s3.put_bucket_ownership_controls(Bucket=b, OwnershipControls={
            "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert code(e) == "InvalidBucketAclWithObjectOwnership"
    s3.put_bucket_acl(Bucket=b, ACL="private")
    s3.put_bucket_ownership_controls(Bucket=b, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=b, Key="x", Body=b"x", ACL="public-read")
    assert code(e) == "AccessControlListNotSupported"
    s3.delete_bucket_ownership_controls(Bucket=b)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_ownership_controls(Bucket=b)
    assert code(e) == "OwnershipControlsNotFoundError"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_ownership_controls(Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "Nobody"}]})
    assert code(e) == "MalformedXML"


def test_canned_acl_on_copy_and_multipart(s3, endpoint, acl_bucket):
    b = acl_bucket
    s3.put_object(Bucket=b, Key="src", Body=b"source")
    s3.copy_object(Bucket=b, Key="copied", CopySource={"Bucket": b, "Key": "src"}, ACL="public-read")
    assert anonymous("GET", f"{endpoint}/{b}/copied") == (200, b"source")
    assert anonymous("GET", f"{endpoint}/{b}/src")[0] == 403
    up = s3.create_multipart_upload(Bucket=b, Key="mpu", ACL="public-read")
    etag = s3.upload_part(Bucket=b, Key="mpu", UploadId=up["UploadId"], PartNumber=1, Body=b"parts")["ETag"]
    s3.complete_multipart_upload(Bucket=b, Key="mpu", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert anonymous("GET", f"{endpoint}/{b}/mpu") == (200, b"parts")
    headers = s3.head_object(Bucket=b, Key="mpu")["ResponseMetadata"]["HTTPHeaders"]
    assert not [h for h in headers if "coffre" in h]  # the ACL is not a header of the object
    assert (ALL_USERS, "READ") in grants(s3.get_object_acl(Bucket=b, Key="mpu"))


def test_post_object_acl_field(s3, endpoint, credentials, acl_bucket, bucket):
    import requests

    signer = make_client(endpoint, credentials, signature_version="s3v4")

    def upload(b: str, key: str, acl: str) -> requests.Response:
        p = signer.generate_presigned_post(b, key, Fields={"acl": acl}, Conditions=[{"acl": acl}], ExpiresIn=300)
        files = [(k, (None, v)) for k, v in p["fields"].items()] + [("file", ("f.txt", b"form"))]
        return requests.post(p["url"], files=files, allow_redirects=False, timeout=60)

    assert upload(acl_bucket, "posted", "public-read").status_code == 204
    assert anonymous("GET", f"{endpoint}/{acl_bucket}/posted") == (200, b"form")
    resp = upload(bucket, "posted", "public-read")  # ACLs disabled there
    assert resp.status_code == 400 and b"AccessControlListNotSupported" in resp.content
    assert upload(bucket, "posted", "bucket-owner-full-control").status_code == 204
