"""``coffre admin`` end to end: the installed command as a subprocess, its output used with boto3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client

COFFRE = str(Path(sys.executable).parent / "coffre")


@pytest.fixture(scope="module")
def run(admin_endpoint, operator_credentials):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")}
    env.update({"COFFRE_ADMIN_ENDPOINT": admin_endpoint, "COFFRE_ROOT_ACCESS_KEY": operator_credentials[0],
                "COFFRE_ROOT_SECRET_KEY": operator_credentials[1], "HOME": "/nonexistent"})

    def do(*args: str, env_over: dict[str, str] | None = None, stdin: str | None = None,
           expect: int = 0) -> subprocess.CompletedProcess[str]:
        e = dict(env, **(env_over or {}))
        proc = subprocess.run([COFFRE, "admin", *args], env=e, capture_output=True, text=True, timeout=60,
                              input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
        assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    return do


def as_json(proc: subprocess.CompletedProcess[str]):
    return json.loads(proc.stdout)


def test_tenant_create_prints_root_credentials_that_work_on_s3(run, endpoint):
    name = "acme-" + uuid.uuid4().hex[:8]
    doc = as_json(run("tenant", "create", name, "--json"))
    s3 = make_client(endpoint, (doc["access_key_id"], doc["secret_access_key"]))
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="hello.txt", Body=b"hello")
    assert s3.get_object(Bucket=name, Key="hello.txt")["Body"].read() == b"hello"

    shown = as_json(run("tenant", "show", name, "--json"))
    assert shown["usage"] == {"bytes": 5, "objects": 1, "buckets": 1}
    table = run("tenant", "list").stdout
    assert "NAME" in table.splitlines()[0] and name in table and doc["secret_access_key"] not in table
    assert name in run("tenant", "show", name).stdout

    run("tenant", "suspend", name)
    with pytest.raises(ClientError) as exc:
        s3.list_buckets()
    assert exc.value.response["Error"]["Code"] == "AccountProblem"
    assert "is active" in run("tenant", "resume", name).stdout
    s3.list_buckets()
    out = run("tenant", "delete", name).stdout
    assert "scheduled for deletion" in out
    assert as_json(run("tenant", "show", name, "--json"))["status"] == "deleting"


def test_user_key_group_policy_and_quota_commands(run, endpoint, tmp_path):
    tenant = "corp-" + uuid.uuid4().hex[:8]
    root = as_json(run("tenant", "create", tenant, "--json"))
    root_s3 = make_client(endpoint, (root["access_key_id"], root["secret_access_key"]))
    root_s3.create_bucket(Bucket=tenant)
    root_s3.put_object(Bucket=tenant, Key="report", Body=b"numbers")

    run("user", "create", "--tenant", tenant, "alice")
    assert "alice" in run("user", "list", "--tenant", tenant).stdout
    key = as_json(run("key", "create", "--tenant", tenant, "--user", "alice", "--json"))
    assert set(key) >= {"access_key_id", "secret_access_key"} and key["user"] == "alice"
    listed = run("key", "list", "--tenant", tenant, "--json").stdout
    assert key["access_key_id"] in listed and key["secret_access_key"] not in listed

    policy = tmp_path / "read.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{tenant}/*"}]}))
    run("policy", "create", "--tenant", tenant, "read-report", "--document", str(policy))
    run("group", "create", "--tenant", tenant, "analysts")
    run("group", "add-user", "--tenant", tenant, "analysts", "alice")
    run("policy", "attach", "--tenant", tenant, "read-report", "--group", "analysts")
    assert "read-report" in run("policy", "list", "--tenant", tenant).stdout
    assert "analysts" in run("group", "list", "--tenant", tenant).stdout
    alice = make_client(endpoint, (key["access_key_id"], key["secret_access_key"]))
    assert alice.get_object(Bucket=tenant, Key="report")["Body"].read() == b"numbers"

    rotated = as_json(run("key", "rotate", "--tenant", tenant, key["access_key_id"], "--json"))
    assert rotated["replaces"] == key["access_key_id"]
    with pytest.raises(ClientError):
        alice.get_object(Bucket=tenant, Key="report")
    fresh = make_client(endpoint, (rotated["access_key_id"], rotated["secret_access_key"]))
    assert fresh.get_object(Bucket=tenant, Key="report")["Body"].read() == b"numbers"
    run("key", "disable", "--tenant", tenant, rotated["access_key_id"])
    with pytest.raises(ClientError):
        fresh.list_buckets()
    run("key", "delete", "--tenant", tenant, key["access_key_id"])
    run("key", "delete", "--tenant", tenant, rotated["access_key_id"])
    run("policy", "detach", "--tenant", tenant, "read-report", "--group", "analysts")
    run("policy", "delete", "--tenant", tenant, "read-report")

    # Quotas: only the limits given change; sizes take binary suffixes; "none" lifts a limit.
    q = as_json(run("quota", "set", "--tenant", tenant, "--max-bytes", "1K", "--max-buckets", "5", "--json"))
    assert q == {"max_bytes": 1024, "max_objects": None, "max_buckets": 5}
    q = as_json(run("quota", "set", "--tenant", tenant, "--max-objects", "7", "--json"))
    assert q == {"max_bytes": 1024, "max_objects": 7, "max_buckets": 5}
    q = as_json(run("quota", "set", "--tenant", tenant, "--max-bytes", "none", "--json"))
    assert q["max_bytes"] is None
    bq = as_json(run("quota", "set", "--tenant", tenant, "--bucket", tenant, "--max-objects", "1", "--json"))
    assert bq == {"max_bytes": None, "max_objects": 1}
    assert as_json(run("quota", "get", "--tenant", tenant, "--bucket", tenant, "--json"))["max_objects"] == 1
    usage = as_json(run("usage", "--tenant", tenant, "--json"))
    assert usage["usage"]["objects"] == 1 and usage["buckets"][0]["name"] == tenant
    assert "(total)" in run("usage", "--tenant", tenant).stdout


def test_errors_are_clear(run, admin_endpoint, tmp_path):
    err = run("tenant", "show", "no-such-tenant", expect=1).stderr
    assert "NoSuchEntity" in err and "no-such-tenant" in err
    as_error = json.loads(run("tenant", "show", "no-such-tenant", "--json", expect=1).stderr)
    assert as_error["error"]["code"] == "NoSuchEntity" and as_error["error"]["status"] == 404
    # No credentials at all.
    none = {"COFFRE_ROOT_ACCESS_KEY": "", "COFFRE_ROOT_SECRET_KEY": "",
            "COFFRE_ADMIN_CONFIG": str(tmp_path / "absent.toml")}
    assert "no operator credentials" in run("tenant", "list", env_over=none, expect=2).stderr
    # Nothing listening.
    assert "cannot reach" in run("tenant", "list", "--endpoint", "http://127.0.0.1:9", expect=2).stderr
    # Tenant credentials are refused by the API.
    tenant = as_json(run("tenant", "create", "t-" + uuid.uuid4().hex[:10], "--json"))
    as_tenant = {"COFFRE_ROOT_ACCESS_KEY": tenant["access_key_id"],
                 "COFFRE_ROOT_SECRET_KEY": tenant["secret_access_key"]}
    assert "AccessDenied" in run("tenant", "list", env_over=as_tenant, expect=1).stderr


def test_profile_file(run, admin_endpoint, operator_credentials, tmp_path):
    profile = tmp_path / "admin.toml"
    profile.write_text(f'[prod]\nendpoint = "{admin_endpoint}"\naccess_key_id = "{operator_credentials[0]}"\n'
                       f'secret_access_key = "{operator_credentials[1]}"\n')
    profile.chmod(0o644)
    env = {"COFFRE_ADMIN_CONFIG": str(profile), "COFFRE_ROOT_ACCESS_KEY": "", "COFFRE_ROOT_SECRET_KEY": "",
           "COFFRE_ADMIN_ENDPOINT": "http://127.0.0.1:9"}
    assert "readable by others" in run("whoami", "--profile", "prod", env_over=env, expect=2).stderr
    profile.chmod(0o600)
    assert as_json(run("whoami", "--profile", "prod", "--json", env_over=env))["operator"] == "root"
    assert "no [staging] profile" in run("whoami", "--profile", "staging", env_over=env, expect=2).stderr


def test_operator_create_and_key(run, admin_endpoint):
    name = "ops-" + uuid.uuid4().hex[:8]
    doc = as_json(run("operator", "create", name, "--password-stdin", "--json", stdin="a long enough password\n"))
    assert doc["totp_uri"].startswith(f"otpauth://totp/coffre:{name}?secret=")
    key = as_json(run("operator", "key-create", name, "--json"))
    env = {"COFFRE_ROOT_ACCESS_KEY": key["access_key_id"], "COFFRE_ROOT_SECRET_KEY": key["secret_access_key"]}
    assert as_json(run("whoami", "--json", env_over=env))["operator"] == name
    assert name in run("operator", "list").stdout
