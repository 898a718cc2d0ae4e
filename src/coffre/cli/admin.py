"""``coffre admin``: drive the admin API (tenants, identities, keys, policies, quotas, operators).

The endpoint is ``--endpoint``, else ``COFFRE_ADMIN_ENDPOINT``, else http://127.0.0.1:9001.
Credentials, first found wins: ``--profile NAME`` (a section of the profile file), the
environment (``COFFRE_ADMIN_TOKEN`` session token, or ``COFFRE_ROOT_ACCESS_KEY`` /
``COFFRE_ROOT_SECRET_KEY``), then the ``default`` section of the profile file. The profile file
is ``$COFFRE_ADMIN_CONFIG`` or ``~/.config/coffre/admin.toml`` and must not be readable by
others (it holds a secret)::

    [default]
    endpoint = "http://127.0.0.1:9001"
    access_key_id = "CO..."
    secret_access_key = "..."

Requests are signed with SigV4 for the service ``coffre-admin`` (no AWS SDK needed). Every
command prints a table, or the API's JSON with ``--json``. Exit status: 0 done, 1 the API
refused (its error code and message on stderr), 2 the command could not run.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import ssl
import stat
import sys
import tomllib
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from coffre.crypto import sigv4

DEFAULT_ENDPOINT = "http://127.0.0.1:9001"
SERVICE = "coffre-admin"
REGION = "us-east-1"  # any region is accepted; this one is as good as any
PREFIX = "/admin/v1"


class CliError(Exception):
    """The command cannot run (exit 2)."""


class ApiError(Exception):
    """The API answered with an error (exit 1)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status, self.code, self.message = status, code, message


# -- the client --
class AdminClient:
    def __init__(self, endpoint: str, access_key_id: str | None = None, secret: str | None = None,
                 token: str | None = None, ca_file: str | None = None, timeout: float = 30) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"the admin endpoint {endpoint!r} is not an http:// or https:// URL")
        self.endpoint = endpoint.rstrip("/")
        self.host = parts.netloc
        self.access_key_id, self.secret, self.token = access_key_id, secret, token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, str] | None = None, sign: bool = True) -> Any:
        raw_path = PREFIX + path
        pairs = sorted((query or {}).items())
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"host": self.host}
        if body is not None:
            headers["content-type"] = "application/json"
        if sign:
            if self.token:
                headers["authorization"] = "Bearer " + self.token
            elif self.access_key_id and self.secret:
                headers.update(sigv4.sign(method, raw_path, pairs, headers, data, self.access_key_id, self.secret,
                                          REGION, SERVICE))
            else:
                raise CliError("no operator credentials: set COFFRE_ROOT_ACCESS_KEY and COFFRE_ROOT_SECRET_KEY, "
                               "COFFRE_ADMIN_TOKEN, or use --profile (see `coffre admin --help`)")
        url = self.endpoint + raw_path + ("?" + urlencode(pairs, quote_via=quote) if pairs else "")
        # The scheme was checked in __init__ (http or https only).
        sent = {k: v for k, v in headers.items() if k != "host"}
        payload = data if method in ("POST", "PUT") else None
        req = urllib.request.Request(url, data=payload, method=method, headers=sent)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:  # noqa: S310
                text = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)["error"]
                raise ApiError(e.code, str(err["code"]), str(err["message"])) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(e.code, "HTTPError", raw.decode("utf-8", "replace")[:200] or str(e.reason)) from None
        except urllib.error.URLError as e:
            raise CliError(f"cannot reach the admin API at {self.endpoint}: {e.reason}") from None
        except OSError as e:
            raise CliError(f"cannot reach the admin API at {self.endpoint}: {e}") from None
        return json.loads(text) if text else None


def _profile_path() -> str:
    return os.environ.get("COFFRE_ADMIN_CONFIG") or os.path.expanduser("~/.config/coffre/admin.toml")


def _read_profile(name: str, required: bool) -> dict[str, str]:
    path = _profile_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if required:
            raise CliError(f"no profile file {path}") from None
        return {}
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CliError(f"{path} is readable by others; it holds a secret: chmod 600 {path}")
    with open(path, "rb") as f:
        try:
            doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise CliError(f"{path}: {e}") from None
    section = doc.get(name)
    if not isinstance(section, dict):
        if required:
            raise CliError(f"{path} has no [{name}] profile")
        return {}
    return {k: str(v) for k, v in section.items()}


def client_from(args: argparse.Namespace) -> AdminClient:
    env = os.environ
    profile = _read_profile(args.profile, True) if args.profile else {}
    akid = secret = token = None
    if profile:
        akid, secret, token = profile.get("access_key_id"), profile.get("secret_access_key"), profile.get("token")
    elif env.get("COFFRE_ADMIN_TOKEN"):
        token = env["COFFRE_ADMIN_TOKEN"]
    elif env.get("COFFRE_ROOT_ACCESS_KEY") and env.get("COFFRE_ROOT_SECRET_KEY"):
        akid, secret = env["COFFRE_ROOT_ACCESS_KEY"], env["COFFRE_ROOT_SECRET_KEY"]
    else:
        profile = _read_profile("default", False)
        akid, secret, token = profile.get("access_key_id"), profile.get("secret_access_key"), profile.get("token")
    endpoint = args.endpoint or profile.get("endpoint") or env.get("COFFRE_ADMIN_ENDPOINT") or DEFAULT_ENDPOINT
    return AdminClient(endpoint, akid, secret, token, ca_file=args.ca_file or env.get("COFFRE_ADMIN_CA_FILE"))


# -- output --
def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    return str(value)


def _fields(doc: dict[str, Any]) -> str:
    """One "name  value" line per field (lists of records are shown as tables by the caller)."""
    items = {k: v for k, v in doc.items() if not (isinstance(v, list) and v and isinstance(v[0], dict))}
    width = max((len(k) for k in items), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in items.items())


def _size(text: str) -> int | None:
    """A limit: a number with an optional K/M/G/T (binary) suffix, or "none" for no limit."""
    if text.lower() in ("none", "unlimited", "null"):
        return None
    m = re.fullmatch(r"(\d+)\s*([KMGTP]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (with K, M, G, T or P) or 'none'")
    multiplier: int = 1 << (10 * " KMGTP".index(m.group(2).upper() or " "))
    return int(m.group(1)) * multiplier


def _secret_note(doc: dict[str, Any]) -> str:
    return (f"access_key_id      {doc['access_key_id']}\nsecret_access_key  {doc['secret_access_key']}\n"
            "(the secret is shown this once; it cannot be read again)")


# -- commands: each returns (json document, human text) --
Result = tuple[Any, str]


def _t(name: str) -> str:
    return quote(name, safe="")


def tenant_create(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("POST", "/tenants", {"name": a.name})
    return doc, f"tenant {doc['name']} created (id {doc['id']}); its root credentials:\n" + _secret_note(doc)


def tenant_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", "/tenants")
    return doc, _table(doc["tenants"], ["name", "id", "status", "created_at", "delete_after"])


def tenant_show(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.name)}")
    text = _fields({k: v for k, v in doc.items() if k != "buckets"})
    if doc.get("buckets"):
        text += "\n\n" + _table([{"bucket": b["name"], **b["usage"], "quota": b.get("quota")} for b in doc["buckets"]],
                                ["bucket", "bytes", "objects", "quota"])
    return doc, text


def _tenant_action(action: str) -> Any:
    def run(c: AdminClient, a: argparse.Namespace) -> Result:
        if action == "delete":
            doc = c.call("DELETE", f"/tenants/{_t(a.name)}")
            return doc, (f"tenant {doc['name']} is scheduled for deletion after {doc['delete_after']}; every "
                         f"request of its identities is refused meanwhile (`coffre admin tenant resume "
                         f"{doc['name']}` cancels)")
        doc = c.call("POST", f"/tenants/{_t(a.name)}/{action}")
        return doc, f"tenant {doc['name']} is {doc['status']}"
    return run


def _read_secret_file(path: str, what: str) -> str:
    """A secret given as a file (never on the command line, where `ps` and shell history see it)."""
    try:
        st = os.stat(path)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CliError(f"{path} is readable by others; it holds a secret: chmod 600 {path}")
        with open(path, encoding="ascii") as fh:
            return fh.read(4096).strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read the {what} in {path}: {e}") from None


def tenant_set_key_provider(c: AdminClient, a: argparse.Namespace) -> Result:
    if a.root:
        if a.external_url:
            raise CliError("--root and --external-url exclude each other")
        body: dict[str, Any] = {"type": "root"}
    else:
        if not a.external_url or not a.key_id or not a.token_file:
            raise CliError("an external key provider needs --external-url, --key-id and --token-file (or --root)")
        body = {"type": "external", "url": a.external_url, "key_id": a.key_id,
                "token": _read_secret_file(a.token_file, "key service token")}
        if a.ca_file_for_service:
            try:
                with open(a.ca_file_for_service, encoding="ascii") as fh:
                    body["ca_pem"] = fh.read()
            except (OSError, UnicodeDecodeError) as e:
                raise CliError(f"cannot read {a.ca_file_for_service}: {e}") from None
        if a.client_cert_file or a.client_key_file:
            body["client_cert_file"], body["client_key_file"] = a.client_cert_file, a.client_key_file
    doc = c.call("PUT", f"/tenants/{_t(a.name)}/key-provider", body)
    if doc["type"] == "root":
        return doc, f"tenant {a.name}: its key is wrapped by the deployment's root key"
    return doc, (f"tenant {a.name}: its key is wrapped by its own key service {doc['url']} (key {doc['key_id']}); "
                 "when that service refuses or is unreachable, the tenant's reads and writes fail")


def tenant_key_provider(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.name)}/key-provider")
    return doc, _fields(doc)


def user_create(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("POST", f"/tenants/{_t(a.tenant)}/users", {"name": a.name, "path": a.path})
    return doc, f"user {doc['name']} created ({doc['arn']})"


def user_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.tenant)}/users")
    return doc, _table(doc["users"], ["name", "user_id", "path", "created_at"])


def user_show(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.tenant)}/users/{_t(a.name)}")
    return doc, _fields(doc)


def user_delete(c: AdminClient, a: argparse.Namespace) -> Result:
    c.call("DELETE", f"/tenants/{_t(a.tenant)}/users/{_t(a.name)}")
    return {"deleted": a.name}, f"user {a.name} deleted"


def group_create(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("POST", f"/tenants/{_t(a.tenant)}/groups", {"name": a.name, "path": a.path})
    return doc, f"group {doc['name']} created ({doc['arn']})"


def group_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.tenant)}/groups")
    return doc, _table(doc["groups"], ["name", "group_id", "path", "created_at"])


def group_add_user(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("PUT", f"/tenants/{_t(a.tenant)}/groups/{_t(a.group)}/members/{_t(a.user)}")
    return doc, f"group {doc['name']}: {', '.join(doc.get('members', []))}"


def group_remove_user(c: AdminClient, a: argparse.Namespace) -> Result:
    c.call("DELETE", f"/tenants/{_t(a.tenant)}/groups/{_t(a.group)}/members/{_t(a.user)}")
    return {"group": a.group, "removed": a.user}, f"{a.user} removed from {a.group}"


def group_delete(c: AdminClient, a: argparse.Namespace) -> Result:
    c.call("DELETE", f"/tenants/{_t(a.tenant)}/groups/{_t(a.name)}")
    return {"deleted": a.name}, f"group {a.name} deleted"


def key_create(c: AdminClient, a: argparse.Namespace) -> Result:
    body = {"user": a.user} if a.user else {}
    doc = c.call("POST", f"/tenants/{_t(a.tenant)}/keys", body)
    return doc, f"access key of {a.tenant}/{doc['user']}:\n" + _secret_note(doc)


def key_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.tenant)}/keys", query={"user": a.user} if a.user else None)
    return doc, _table(doc["access_keys"], ["access_key_id", "user", "status", "created_at"])


def _key_action(action: str) -> Any:
    def run(c: AdminClient, a: argparse.Namespace) -> Result:
        path = f"/tenants/{_t(a.tenant)}/keys/{_t(a.access_key_id)}"
        if action == "delete":
            c.call("DELETE", path)
            return {"deleted": a.access_key_id}, f"access key {a.access_key_id} deleted"
        doc = c.call("POST", f"{path}/{action}")
        if action == "rotate":
            return doc, (f"new access key of {a.tenant}/{doc['user']} ({doc['replaces']} is now inactive; delete "
                         "it once nothing uses it):\n" + _secret_note(doc))
        return doc, f"access key {doc['access_key_id']} is {doc['status']}"
    return run


def policy_create(c: AdminClient, a: argparse.Namespace) -> Result:
    text = sys.stdin.read() if a.document == "-" else open(a.document, encoding="utf-8").read()
    try:
        document = json.loads(text)
    except ValueError as e:
        raise CliError(f"the policy document is not JSON: {e}") from None
    body = {"name": a.name, "document": document, "path": a.path}
    if a.description:
        body["description"] = a.description
    doc = c.call("POST", f"/tenants/{_t(a.tenant)}/policies", body)
    return doc, f"policy {doc['name']} created ({doc['arn']})"


def policy_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.tenant)}/policies")
    return doc, _table(doc["policies"], ["name", "arn", "description", "updated_at"])


def policy_delete(c: AdminClient, a: argparse.Namespace) -> Result:
    c.call("DELETE", f"/tenants/{_t(a.tenant)}/policies/{_t(a.name)}")
    return {"deleted": a.name}, f"policy {a.name} deleted"


def _policy_attachment(attach: bool) -> Any:
    def run(c: AdminClient, a: argparse.Namespace) -> Result:
        kind, owner = ("user", a.user) if a.user else ("group", a.group)
        c.call("PUT" if attach else "DELETE", f"/tenants/{_t(a.tenant)}/{kind}s/{_t(owner)}/policies/{_t(a.name)}")
        verb = "attached to" if attach else "detached from"
        return {"policy": a.name, kind: owner, "attached": attach}, f"policy {a.name} {verb} {kind} {owner}"
    return run


_KEEP = object()  # a limit the command line did not mention: left as it is


def _quota_path(a: argparse.Namespace) -> str:
    base = f"/tenants/{_t(a.tenant)}"
    return f"{base}/buckets/{_t(a.bucket)}/quota" if a.bucket else f"{base}/quota"


def quota_get(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", _quota_path(a))
    return doc, _fields(doc)


def quota_set(c: AdminClient, a: argparse.Namespace) -> Result:
    """Changes only the limits given; the others stay as they are."""
    doc = c.call("GET", _quota_path(a))
    for name in ("max_bytes", "max_objects", "max_buckets"):
        value = getattr(a, name, _KEEP)
        if value is not _KEEP and (name != "max_buckets" or not a.bucket):
            doc[name] = value
    if a.bucket:
        if a.max_buckets is not _KEEP:
            raise CliError("--max-buckets applies to a tenant, not to a bucket")
        doc.pop("max_buckets", None)
    doc = c.call("PUT", _quota_path(a), doc)
    return doc, _fields(doc)


def usage(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.tenant)}/usage")
    rows = [{"bucket": "(total)", **doc["usage"]}] + [{"bucket": b["name"], **b["usage"]} for b in doc["buckets"]]
    return doc, _table(rows, ["bucket", "bytes", "objects"])


def operator_create(c: AdminClient, a: argparse.Namespace) -> Result:
    body: dict[str, Any] = {"name": a.name}
    if not a.keys_only:
        if a.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for operator {a.name}: ")
            if getpass.getpass("again: ") != password:
                raise CliError("the passwords differ")
        body["password"] = password
    doc = c.call("POST", "/operators", body)
    text = f"operator {doc['name']} created"
    if doc.get("totp_uri"):
        text += ("\nadd this TOTP seed to an authenticator app (shown this once; every password login needs a "
                 f"code):\n  {doc['totp_uri']}")
    return doc, text


def operator_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", "/operators")
    return doc, _table(doc["operators"], ["name", "status", "password", "locked_until", "created_at"])


def operator_key_create(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("POST", f"/operators/{_t(a.name)}/keys", {})
    return doc, f"access key of operator {a.name}:\n" + _secret_note(doc)


def operator_key_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/operators/{_t(a.name)}/keys")
    return doc, _table(doc["access_keys"], ["access_key_id", "status", "created_at"])


def operator_key_delete(c: AdminClient, a: argparse.Namespace) -> Result:
    c.call("DELETE", f"/operators/{_t(a.name)}/keys/{_t(a.access_key_id)}")
    return {"deleted": a.access_key_id}, f"access key {a.access_key_id} deleted"


def login(c: AdminClient, a: argparse.Namespace) -> Result:
    password = sys.stdin.readline().rstrip("\n") if a.password_stdin else getpass.getpass("password: ")
    code = a.totp or input("one-time code: ")
    doc = c.call("POST", "/login", {"name": a.name, "password": password, "totp": code}, sign=False)
    return doc, f"export COFFRE_ADMIN_TOKEN={doc['token']}\n# valid until {doc['expires_at']}"


def whoami(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", "/whoami")
    return doc, f"operator {doc['operator']}" + (f" (key {doc['access_key_id']})" if doc.get("access_key_id") else "")


def kms_key_create(c: AdminClient, a: argparse.Namespace) -> Result:
    body = {"description": a.description} if a.description else {}
    doc = c.call("POST", f"/tenants/{_t(a.tenant)}/kms-keys", body)
    return doc, f"KMS key {doc['key_id']} of tenant {a.tenant}\n  {doc['arn']}"


def kms_key_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", f"/tenants/{_t(a.tenant)}/kms-keys")
    return doc, _table([doc["default_key"], *doc["kms_keys"]], ["key_id", "state", "description", "arn"])


def _kms_key_action(action: str) -> Any:
    def run(c: AdminClient, a: argparse.Namespace) -> Result:
        c.call("POST", f"/tenants/{_t(a.tenant)}/kms-keys/{_t(a.key_id)}/{action}")
        return {"key_id": a.key_id, "state": "Enabled" if action == "enable" else "Disabled"}, \
            f"KMS key {a.key_id} {action}d"
    return run


# -- key versions (docs/keys.md) --
def _versions_path(a: argparse.Namespace) -> str:
    return f"/tenants/{_t(a.tenant)}/key-versions" if a.tenant else "/key-versions"


def _versions_text(doc: dict[str, Any]) -> str:
    job = doc.get("rewrap")
    text = f"{doc['owner']} key\n" + _table(doc["versions"], ["version", "state", "created_at", "updated_at"])
    if job:
        text += (f"\nre-wrap: {job['state']} ({job['rewrapped']} re-wrapped, {job['skipped']} skipped"
                 + (f", {job['error']}" if job.get("error") else "") + ")")
    return text


def keys_list(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("GET", _versions_path(a))
    return doc, _versions_text(doc)


def keys_rotate(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("POST", _versions_path(a) + "/rotate", {}, query={"wait": "true"} if a.wait else None)
    return doc, _versions_text(doc)


def keys_rewrap(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("POST", _versions_path(a) + "/rewrap", {}, query={"wait": "true"} if a.wait else None)
    return doc, _versions_text(doc)


def keys_retire(c: AdminClient, a: argparse.Namespace) -> Result:
    doc = c.call("POST", f"{_versions_path(a)}/{a.version}/retire", {})
    return doc, _versions_text(doc)


# -- the parser --
def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", help=f"admin API URL (env COFFRE_ADMIN_ENDPOINT, default {DEFAULT_ENDPOINT})")
    common.add_argument("--profile", help="a section of the profile file (env COFFRE_ADMIN_CONFIG, default "
                                          "~/.config/coffre/admin.toml)")
    common.add_argument("--ca-file", help="PEM CA bundle to trust for an https endpoint (env COFFRE_ADMIN_CA_FILE)")
    common.add_argument("--json", action="store_true", help="print the API's JSON (for scripts)")
    p = sub.add_parser("admin", help="administer tenants, identities, keys and quotas (admin API)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = p.add_subparsers(dest="admin_group", required=True)

    def cmd(parent: Any, name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_)
        q.set_defaults(func=_run, admin_func=func)
        return q

    def tenant_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--tenant", required=True, help="the tenant's name")

    t = groups.add_parser("tenant", help="tenants").add_subparsers(dest="admin_cmd", required=True)
    cmd(t, "create", tenant_create, "create a tenant; prints its root credentials once").add_argument("name")
    cmd(t, "list", tenant_list, "list tenants")
    cmd(t, "show", tenant_show, "a tenant with its usage, quota and buckets").add_argument("name")
    cmd(t, "suspend", _tenant_action("suspend"), "refuse every request of the tenant").add_argument("name")
    cmd(t, "resume", _tenant_action("resume"), "make it active again (cancels a deletion)").add_argument("name")
    cmd(t, "delete", _tenant_action("delete"), "schedule its deletion after the grace period").add_argument("name")
    cmd(t, "key-provider", tenant_key_provider, "what wraps the tenant key (root key or its own key service)"
        ).add_argument("name")
    q = cmd(t, "set-key-provider", tenant_set_key_provider,
            "wrap the tenant key with its own key service (hold your own key), or --root again")
    q.add_argument("name")
    q.add_argument("--external-url", help="https:// URL of the tenant's key service (docs/hyok-protocol.md)")
    q.add_argument("--key-id", help="the key id at that service")
    q.add_argument("--token-file", help="file holding the service's bearer token (mode 0600)")
    q.add_argument("--service-ca-file", dest="ca_file_for_service",
                   help="PEM CA certificates to verify the service with (default: the system's)")
    q.add_argument("--client-cert-file", help="mutual TLS: certificate path on every gateway")
    q.add_argument("--client-key-file", help="mutual TLS: its key path on every gateway (mode 0600)")
    q.add_argument("--root", action="store_true", help="wrap with the deployment's root key again")

    u = groups.add_parser("user", help="users of a tenant").add_subparsers(dest="admin_cmd", required=True)
    q = cmd(u, "create", user_create, "create a user")
    tenant_arg(q)
    q.add_argument("name")
    q.add_argument("--path", default="/", help="IAM path (default /)")
    for name, func, text in (("list", user_list, "list users"), ("show", user_show, "a user"),
                             ("delete", user_delete, "delete a user (no keys, policies or groups left)")):
        q = cmd(u, name, func, text)
        tenant_arg(q)
        if name != "list":
            q.add_argument("name")

    g = groups.add_parser("group", help="groups of a tenant").add_subparsers(dest="admin_cmd", required=True)
    q = cmd(g, "create", group_create, "create a group")
    tenant_arg(q)
    q.add_argument("name")
    q.add_argument("--path", default="/", help="IAM path (default /)")
    tenant_arg(cmd(g, "list", group_list, "list groups"))
    q = cmd(g, "delete", group_delete, "delete an empty group")
    tenant_arg(q)
    q.add_argument("name")
    for name, func, text in (("add-user", group_add_user, "add a user to a group"),
                             ("remove-user", group_remove_user, "remove a user from a group")):
        q = cmd(g, name, func, text)
        tenant_arg(q)
        q.add_argument("group")
        q.add_argument("user")

    k = groups.add_parser("key", help="access keys of a tenant").add_subparsers(dest="admin_cmd", required=True)
    q = cmd(k, "create", key_create, "create an access key; prints its secret once")
    tenant_arg(q)
    q.add_argument("--user", help="a user of the tenant (default: the tenant root)")
    q = cmd(k, "list", key_list, "list access keys (never secrets)")
    tenant_arg(q)
    q.add_argument("--user", help="only this user's keys ('root': the tenant root's)")
    for name, text in (("disable", "make a key inactive"), ("enable", "make a key active again"),
                       ("rotate", "new key for the same identity, old one disabled; prints the new secret once"),
                       ("delete", "delete a key")):
        q = cmd(k, name, _key_action(name), text)
        tenant_arg(q)
        q.add_argument("access_key_id")

    pol = groups.add_parser("policy", help="managed policies of a tenant").add_subparsers(dest="admin_cmd",
                                                                                         required=True)
    q = cmd(pol, "create", policy_create, "create a managed policy")
    tenant_arg(q)
    q.add_argument("name")
    q.add_argument("--document", required=True, help="JSON policy document file ('-': standard input)")
    q.add_argument("--path", default="/", help="IAM path (default /)")
    q.add_argument("--description")
    tenant_arg(cmd(pol, "list", policy_list, "list managed policies"))
    q = cmd(pol, "delete", policy_delete, "delete a (detached) managed policy")
    tenant_arg(q)
    q.add_argument("name")
    for name, attach in (("attach", True), ("detach", False)):
        q = cmd(pol, name, _policy_attachment(attach), f"{name} a managed policy to a user or group")
        tenant_arg(q)
        q.add_argument("name")
        who = q.add_mutually_exclusive_group(required=True)
        who.add_argument("--user")
        who.add_argument("--group")

    qu = groups.add_parser("quota", help="quotas of a tenant or bucket").add_subparsers(dest="admin_cmd",
                                                                                       required=True)
    for name, func in (("get", quota_get), ("set", quota_set)):
        q = cmd(qu, name, func, f"{name} the quota of a tenant (or of one of its buckets)")
        tenant_arg(q)
        q.add_argument("--bucket", help="a bucket of the tenant")
        if name == "set":
            for flag in ("--max-bytes", "--max-objects", "--max-buckets"):
                q.add_argument(flag, type=_size, default=_KEEP,
                               help="a number (K, M, G, T suffixes for bytes) or 'none' for no limit")

    tenant_arg(cmd(groups, "usage", usage, "what a tenant stores, in total and per bucket"))

    km = groups.add_parser("kms-key", help="SSE-KMS keys of a tenant").add_subparsers(dest="admin_cmd",
                                                                                      required=True)
    q = cmd(km, "create", kms_key_create, "create a KMS key (for x-amz-server-side-encryption-aws-kms-key-id)")
    tenant_arg(q)
    q.add_argument("--description", help="a note shown by list")
    tenant_arg(cmd(km, "list", kms_key_list, "list the tenant's KMS keys, its default one first"))
    for name in ("disable", "enable"):
        q = cmd(km, name, _kms_key_action(name), f"{name} a KMS key")
        tenant_arg(q)
        q.add_argument("key_id")

    ks = groups.add_parser("keys", help="versions of the root key and of tenant keys: rotation, retirement"
                           ).add_subparsers(dest="admin_cmd", required=True)
    for name, func, help_ in (("list", keys_list, "versions and their states (active, retiring, retired, destroyed)"),
                              ("rotate", keys_rotate, "new key version; re-wraps the keys below it (no data "
                                                      "re-encrypted)"),
                              ("rewrap", keys_rewrap, "run the re-wrap again (it also resumes at start)"),
                              ("retire", keys_retire, "make a superseded version unusable (refused while used)")):
        q = cmd(ks, name, func, help_)
        q.add_argument("--tenant", help="a tenant's key (default: the root key)")
        if name in ("rotate", "rewrap"):
            q.add_argument("--wait", action="store_true", help="return once the re-wrap is done")
        if name == "retire":
            q.add_argument("version", type=int)
    o = groups.add_parser("operator", help="operators").add_subparsers(dest="admin_cmd", required=True)
    q = cmd(o, "create", operator_create, "create an operator (password + TOTP, or --keys-only)")
    q.add_argument("name")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    q.add_argument("--keys-only", action="store_true", help="no password: an operator with access keys only")
    cmd(o, "list", operator_list, "list operators")
    cmd(o, "key-create", operator_key_create, "create an operator access key; prints its secret once"
        ).add_argument("name")
    cmd(o, "key-list", operator_key_list, "list an operator's access keys").add_argument("name")
    q = cmd(o, "key-delete", operator_key_delete, "delete an operator's access key")
    q.add_argument("name")
    q.add_argument("access_key_id")

    q = cmd(groups, "login", login, "open a session with password + TOTP; prints COFFRE_ADMIN_TOKEN")
    q.add_argument("name")
    q.add_argument("--totp", help="the current one-time code (asked when absent)")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    cmd(groups, "whoami", whoami, "which operator the credentials authenticate")


def _run(args: argparse.Namespace) -> int:
    try:
        client = client_from(args)
        doc, text = args.admin_func(client, args)
    except ApiError as e:
        if args.json:
            print(json.dumps({"error": {"code": e.code, "message": e.message, "status": e.status}}), file=sys.stderr)
        else:
            print(f"coffre admin: {e}", file=sys.stderr)
        return 1
    except CliError as e:
        print(f"coffre admin: {e}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2) if args.json else text)
    return 0

