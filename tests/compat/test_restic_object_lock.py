"""restic into an Object-Lock bucket with default retention: the ransomware drill.

restic (Debian's package) initialises a repository and backs a tree up into a bucket created
with Object Lock and a default GOVERNANCE retention. Then everything an attacker holding the
backup's credentials could try: ``restic forget --prune`` (restic's own deletion), deleting
every data version by id with boto3 (with and without asking to bypass governance, from a
user who lacks s3:BypassGovernanceRetention), a DeleteObjects of every version, overwriting
the pack files, and shortening the retention. Every version survives: ``restic check
--read-data`` passes on the repository as the backup left it, and a restore matches the tree.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.compat.helpers import assert_same_tree, clean_env, require_binary, run
from tests.conftest import make_client
from tests.tenants import create_user_key

pytestmark = pytest.mark.compat


def _versions(s3, bucket: str, prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    return out


def test_restic_backup_survives_deletion(server, endpoint, credentials, s3, tenant_name, tree, tree_manifest,
                                         tmp_path: Path, log_path):
    exe = require_binary("restic")
    bucket = "lock-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    # The backup runs as a user that may write and delete, but not bypass governance: what a
    # backup job's stolen key can do.
    user = "backup-" + uuid.uuid4().hex[:8]
    creds = create_user_key(server, tenant_name, user)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=credentials[0],
                       aws_secret_access_key=credentials[1])
    iam.put_user_policy(UserName=user, PolicyName="backup", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]},
            {"Effect": "Deny", "Action": "s3:BypassGovernanceRetention", "Resource": "*"}]}))
    attacker = make_client(endpoint, creds)

    env = clean_env(AWS_ACCESS_KEY_ID=creds[0], AWS_SECRET_ACCESS_KEY=creds[1],
                    RESTIC_PASSWORD="lock-test-password", RESTIC_CACHE_DIR=str(tmp_path / "cache"),
                    RESTIC_REPOSITORY=f"s3:{endpoint}/{bucket}/repo", HOME=str(tmp_path))

    def restic(*args: str, check: bool = True) -> str:
        return run([exe, *args], env=env, log_path=log_path, timeout=300, check=check).stdout

    restic("init")
    restic("backup", str(tree))
    snapshots = json.loads(restic("snapshots", "--json"))
    assert len(snapshots) == 1
    data = _versions(s3, bucket, "repo/data/")
    assert data, "restic stored no pack files"
    # Every pack carries the bucket's default retention.
    for key, vid in data:
        ret = s3.get_object_retention(Bucket=bucket, Key=key, VersionId=vid)["Retention"]
        assert ret["Mode"] == "GOVERNANCE"
    everything = _versions(s3, bucket, "repo/")

    # 1. restic's own deletion: forget the snapshot and prune. Deletes without a version id
    #    only lay delete markers; the versions stay.
    restic("forget", snapshots[0]["id"], "--prune", check=False)
    # 2. Every data version deleted by id: refused, with or without the bypass header.
    for key, vid in data:
        for kw in ({}, {"BypassGovernanceRetention": True}):
            with pytest.raises(ClientError) as e:
                attacker.delete_object(Bucket=bucket, Key=key, VersionId=vid, **kw)
            assert e.value.response["Error"]["Code"] == "AccessDenied"
    # 3. A DeleteObjects of every version: each refused on its own.
    r = attacker.delete_objects(Bucket=bucket, BypassGovernanceRetention=True, Delete={
        "Objects": [{"Key": k, "VersionId": v} for k, v in everything[:1000]]})
    assert "Deleted" not in r and len(r["Errors"]) == len(everything[:1000])
    assert {e["Code"] for e in r["Errors"]} == {"AccessDenied"}
    # 4. Shortening the retention, or removing it: refused.
    key, vid = data[0]
    with pytest.raises(ClientError) as e:
        attacker.put_object_retention(Bucket=bucket, Key=key, VersionId=vid, BypassGovernanceRetention=True,
                                      Retention={})
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    # 5. Overwriting a pack adds a version above it; the original stays.
    attacker.put_object(Bucket=bucket, Key=key, Body=b"ransom")

    assert set(everything) <= set(_versions(s3, bucket, "repo/")), "a locked version disappeared"

    # Recovery, as an operator would: lift the delete markers laid over the backup's files
    # (restic's own stale locks excepted) and put the original pack back on top of the
    # overwrite (which is itself under the default retention, so it stays as an older version).
    original = dict(everything)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="repo/"):
        for m in page.get("DeleteMarkers", []):
            if m["Key"] in original and not m["Key"].startswith("repo/locks/"):
                s3.delete_object(Bucket=bucket, Key=m["Key"], VersionId=m["VersionId"])
    s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key, "VersionId": original[key]})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() != b"ransom"
    restic("unlock")
    restic("check", "--read-data")
    assert len(json.loads(restic("snapshots", "--json"))) == 1
    dest = tmp_path / "restore"
    restic("restore", "latest", "--target", str(dest))
    assert_same_tree(tree_manifest, dest / tree.relative_to(tree.anchor))
