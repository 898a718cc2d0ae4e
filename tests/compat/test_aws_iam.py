"""`aws iam` and `aws sts` against coffre's IAM API, with the aws cli v1 (PyPI) and v2 (Debian's).

A fresh tenant's root makes a user, gives it an inline policy and a key, lists users as JSON;
the new key then works on S3 and `aws sts get-caller-identity` says who each caller is.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.compat.helpers import clean_env, require_binary, run, venv_binary
from tests.tenants import create_tenant

pytestmark = pytest.mark.compat

POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets",
                                                  "Resource": "*"}]}


def _aws(which: str) -> str:
    exe = venv_binary("aws") if which == "v1" else require_binary("/usr/bin/aws")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    assert version.startswith(f"aws-cli/{which[1]}."), f"{exe} is {version!r}"
    return exe


def _env(creds: tuple[str, str], tmp_path: Path) -> dict[str, str]:
    cfg = tmp_path / f"aws-config-{creds[0]}"
    cfg.write_text("[default]\nregion = us-east-1\n")
    return clean_env(AWS_ACCESS_KEY_ID=creds[0], AWS_SECRET_ACCESS_KEY=creds[1], AWS_CONFIG_FILE=str(cfg),
                     AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true",
                     AWS_PAGER="", AWS_MAX_ATTEMPTS="1")


@pytest.mark.parametrize("which", ["v1", "v2"])
def test_aws_iam_user_policy_key_round_trip(which, server, endpoint, tmp_path: Path, log_path):
    if server is None:
        pytest.skip("needs coffre's admin API to make a tenant")
    exe = _aws(which)
    root = create_tenant(server)
    env = _env(root, tmp_path)

    def aws(*args: str, env: dict[str, str] = env) -> dict:
        out = run([exe, "--endpoint-url", endpoint, *args, "--output", "json"], env=env, log_path=log_path).stdout
        return json.loads(out) if out.strip() else {}

    account = aws("sts", "get-caller-identity")["Account"]
    assert aws("sts", "get-caller-identity")["Arn"] == f"arn:aws:iam::{account}:root"

    user = f"cli-{which}-{uuid.uuid4().hex[:8]}"
    created = aws("iam", "create-user", "--user-name", user)["User"]
    assert created["UserName"] == user and created["Arn"] == f"arn:aws:iam::{account}:user/{user}"

    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(POLICY, indent=2))
    aws("iam", "put-user-policy", "--user-name", user, "--policy-name", "list",
        "--policy-document", f"file://{policy_file}")
    got = aws("iam", "get-user-policy", "--user-name", user, "--policy-name", "list")
    assert got["PolicyDocument"] == POLICY

    key = aws("iam", "create-access-key", "--user-name", user)["AccessKey"]
    assert key["UserName"] == user and key["Status"] == "Active" and key["SecretAccessKey"]

    users = aws("iam", "list-users")["Users"]
    assert [u["UserName"] for u in users] == [user]

    user_env = _env((key["AccessKeyId"], key["SecretAccessKey"]), tmp_path)
    me = aws("sts", "get-caller-identity", env=user_env)
    assert me["Arn"] == f"arn:aws:iam::{account}:user/{user}" and me["UserId"] == created["UserId"]
    assert "Buckets" in aws("s3api", "list-buckets", env=user_env)  # what the inline policy allows

    keys = aws("iam", "list-access-keys", "--user-name", user)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [key["AccessKeyId"]] and "SecretAccessKey" not in keys[0]
    aws("iam", "delete-access-key", "--user-name", user, "--access-key-id", key["AccessKeyId"])
    aws("iam", "delete-user-policy", "--user-name", user, "--policy-name", "list")
    aws("iam", "delete-user", "--user-name", user)
    failed = run([exe, "--endpoint-url", endpoint, "iam", "get-user", "--user-name", user], env=env, check=False)
    assert failed.returncode != 0 and "NoSuchEntity" in failed.stderr
