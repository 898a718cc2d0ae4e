"""The admin JSON API (``/admin/v1/``): one route table serves the requests and the OpenAPI document.

Every route but login and the document itself needs an operator (``coffre.admin.auth``); tenant
credentials are refused. Bodies are JSON objects of at most ``MAX_BODY`` bytes, checked against
the route's schema (``coffre.admin.schema``) before a handler sees them. Errors are
``{"error": {"code", "message"}}`` with the status of ``STATUS``; an unexpected exception is a
500 whose details stay in the server log. Every request is audited (api "admin").

Secrets (a new access key's secret, a new operator's TOTP seed, a session token) appear in the
one response that creates them, and nowhere else: not in listings, logs or the audit trail.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from coffre.admin import auth
from coffre.admin.schema import Schema, ref, validate
from coffre.audit.event import admin_event
from coffre.core import errors as e
from coffre.core.billing import PriceSheet, Totals, invoice
from coffre.core.coffre import Coffre
from coffre.core.hyok import describe as describe_key_provider
from coffre.core.iam import ROOT_USER, group_arn, policy_arn, user_arn
from coffre.core.identity import Operator
from coffre.core.metering import Period
from coffre.core.operators import InvalidSession, LoginFailed
from coffre.core.tenancy import check_imported_key
from coffre.crypto.external import ExternalKeyConfig
from coffre.meta.records import (
    AccessKeyRecord,
    GroupRecord,
    MeteredUsage,
    OperatorRecord,
    PolicyRecord,
    TenantRecord,
    UserRecord,
)
from coffre.settings import Settings

log = logging.getLogger("coffre.admin")

PREFIX = "/admin/v1"
MAX_BODY = 64 * 1024

# Domain errors -> HTTP status. Anything else is a 500.
STATUS: dict[type[e.CoffreError], int] = {
    e.ValidationError: 400, e.MalformedPolicyDocument: 400, e.InvalidArgument: 400,
    e.AuthorizationHeaderMalformed: 400, e.XAmzContentSHA256Mismatch: 400,
    auth.MissingAuthentication: 401, e.InvalidAccessKeyId: 401, e.SignatureDoesNotMatch: 401,
    e.RequestTimeTooSkewed: 401, InvalidSession: 401, LoginFailed: 401,
    e.AccessDenied: 403, e.AccountProblem: 403,
    e.NoSuchEntity: 404,
    e.KMSNotFound: 404,
    e.EntityAlreadyExists: 409, e.DeleteConflict: 409, e.LimitExceeded: 409,
    e.ServiceUnavailable: 503, e.KeyServiceUnavailable: 503,
    # A tenant's key service answered but refused (the code says why): the request cannot proceed as is.
    e.KMSDisabled: 409, e.KMSInvalidState: 409, e.KMSInvalidCiphertext: 409,
}


class MalformedJSON(e.CoffreError):
    message = "The request body is not a JSON object."


class RequestTooLarge(e.CoffreError):
    message = f"The request body is larger than {MAX_BODY} bytes."


class NotFound(e.CoffreError):
    message = "There is no such admin API resource."


class MethodNotAllowed(e.CoffreError):
    message = "This method is not allowed on this resource."


STATUS.update({MalformedJSON: 400, RequestTooLarge: 413, NotFound: 404, MethodNotAllowed: 405})


def _status(exc: e.CoffreError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class Call:
    """One admin request as a handler sees it."""

    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    operator: Operator | None
    tenant_id: str | None = None  # set by handlers acting on a tenant (audit)
    bucket: str | None = None


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # relative to PREFIX, with {name} parameters (aiohttp and OpenAPI share the syntax)
    operation: str  # operationId, and the audit record's operation
    summary: str
    tag: str
    handler: Handler
    body: Schema | None = None
    response: Schema | None = None
    status: int = 200
    authenticated: bool = True
    query: tuple[tuple[str, str], ...] = ()  # (name, description) of optional query parameters


class AdminApi:
    def __init__(self, coffre: Coffre, settings: Settings, record: Callable[[Any], None] | None = None,
                 accepting: Callable[[], bool] | None = None) -> None:
        self.coffre = coffre
        self.settings = settings
        self.record = record  # the audit trail's record()
        self.accepting = accepting  # whether the audit trail can record (audit_required)
        self.routes = self._routes()
        self._patterns = [re.compile(re.sub(r"\\{[a-z]+\\}", "[^/]+", re.escape(r.path))) for r in self.routes]

    # -- plumbing --
    def add_to(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, PREFIX + route.path, self._endpoint(route))
        app.router.add_route("*", PREFIX + "/{tail:.*}", self._unknown)

    def _endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._serve(route, request)
        return endpoint

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(PREFIX):]
        known = any(pattern.fullmatch(path) for pattern in self._patterns)
        return await self._serve(None, request, MethodNotAllowed() if known else NotFound())

    async def _serve(self, route: Route | None, request: web.Request,
                     failure: e.CoffreError | None = None) -> web.StreamResponse:
        started = time.time()
        rid = uuid.uuid4().hex[:16].upper()
        call: Call | None = None
        code: str | None = None
        body = b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            if failure is not None or route is None:
                raise failure or NotFound()
            if self.accepting is not None and route.method != "GET" and not self.accepting():
                # As on S3: no change is made unrecorded while the audit log cannot be written.
                raise e.ServiceUnavailable("The audit log is unavailable: changes are refused until it recovers.")
            if request.content_length is not None and request.content_length > MAX_BODY:
                raise RequestTooLarge()
            body = await request.content.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise RequestTooLarge()
            operator = None
            if route.authenticated:
                raw_path, _, raw_query = request.raw_path.partition("?")
                operator = await auth.authenticate(self.coffre, request.method, raw_path, raw_query, headers, body,
                                                   self.settings.max_clock_skew)
            parsed: dict[str, Any] = {}
            if body.strip():
                try:
                    value = json.loads(body)
                except ValueError as exc:
                    raise MalformedJSON() from exc
                if not isinstance(value, dict):
                    raise MalformedJSON()
                parsed = value
            if route.body is not None:
                validate(route.body, parsed)
            elif parsed:
                raise e.ValidationError("This request takes no body.")
            call = Call(params=dict(request.match_info), query=dict(request.query), body=parsed, operator=operator)
            result = await route.handler(call)
            response = web.json_response(result, status=route.status) if route.status != 204 \
                else web.Response(status=204)
        except e.CoffreError as exc:
            code = exc.code
            response = web.json_response({"error": {"code": exc.code, "message": str(exc)}}, status=_status(exc))
        except Exception:
            code = "InternalError"
            log.exception("admin API internal error", extra={"request_id": rid})
            response = web.json_response({"error": {"code": "InternalError",
                                                    "message": "An internal error occurred; see the server log."}},
                                         status=500)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Request-Id"] = rid
        if self.record is not None and (route is None or route.operation != "GetOpenApiDocument"):
            op = call.operator if call is not None else None
            self.record(admin_event(
                request, response, operator=op.name if op is not None else None,
                access_key=(op.access_key_id or None) if op is not None else auth.claimed_key(
                    headers.get("authorization", "")),
                operation=route.operation if route is not None else "Unknown",
                tenant=call.tenant_id if call is not None else None, bucket=call.bucket if call else None,
                request_id=rid, started=started, error_code=code, bytes_in=len(body)))
        return response

    # -- helpers --
    async def _tenant(self, call: Call) -> TenantRecord:
        tenant = await self.coffre.tenancy.get(call.params["tenant"])
        call.tenant_id = tenant.id
        return tenant

    @staticmethod
    def _tenant_json(t: TenantRecord) -> dict[str, Any]:
        return {"id": t.id, "name": t.name, "status": t.status, "created_at": iso(t.created_at),
                "delete_after": iso(t.delete_after), "canonical_id": t.canonical_id,
                "key_provider": "external" if t.key_provider is not None else "root",
                "erased_at": iso(t.erased_at), "reclaimed_at": iso(t.reclaimed_at)}

    @staticmethod
    def _key_json(k: AccessKeyRecord, tenant: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"access_key_id": k.access_key_id, "user": k.principal, "status": k.status,
                               "created_at": iso(k.created_at)}
        if tenant is not None:
            out["tenant"] = tenant
        return out

    @staticmethod
    def _user_json(u: UserRecord) -> dict[str, Any]:
        return {"name": u.name, "user_id": u.user_id, "arn": user_arn(u), "path": u.path,
                "created_at": iso(u.created_at), "tags": dict(u.tags)}

    @staticmethod
    def _group_json(g: GroupRecord, members: list[UserRecord] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": g.name, "group_id": g.group_id, "arn": group_arn(g), "path": g.path,
                               "created_at": iso(g.created_at)}
        if members is not None:
            out["members"] = [m.name for m in members]
        return out

    @staticmethod
    def _policy_json(p: PolicyRecord) -> dict[str, Any]:
        try:
            document = json.loads(p.document)
        except ValueError:
            document = {}
        return {"name": p.name, "policy_id": p.policy_id, "arn": policy_arn(p), "path": p.path,
                "description": p.description, "document": document, "created_at": iso(p.created_at),
                "updated_at": iso(p.updated_at)}

    @staticmethod
    def _operator_json(o: OperatorRecord) -> dict[str, Any]:
        return {"name": o.name, "status": o.status, "created_at": iso(o.created_at),
                "password": o.password_hash is not None,
                "locked_until": iso(o.locked_until) if o.locked_until > time.time() else None}

    async def _policy_arn(self, tenant: TenantRecord, name: str) -> str:
        rec = await self.coffre.meta.get_policy(tenant.id, name)
        if rec is None:
            raise e.NoSuchEntity(f"The tenant {tenant.name} has no managed policy {name}.")
        return policy_arn(rec)

    async def _tenant_key(self, tenant: TenantRecord, akid: str) -> AccessKeyRecord:
        return await self.coffre.iam.get_access_key(tenant.id, akid)

    # -- session --
    async def login(self, call: Call) -> Any:
        b = call.body
        token, expires = await self.coffre.operators.login(b["name"], b["password"], b["totp"])
        call.operator = Operator(name=b["name"])
        return {"token": token, "expires_at": iso(expires), "operator": b["name"]}

    async def whoami(self, call: Call) -> Any:
        assert call.operator is not None
        return {"operator": call.operator.name, "access_key_id": call.operator.access_key_id or None}

    async def openapi(self, call: Call) -> Any:
        from coffre.admin.openapi import document

        return document(self.routes)

    # -- tenants --
    async def create_tenant(self, call: Call) -> Any:
        tenant, key, secret = await self.coffre.tenancy.create(call.body["name"])
        call.tenant_id = tenant.id
        return dict(self._tenant_json(tenant), access_key_id=key.access_key_id, secret_access_key=secret)

    async def list_tenants(self, call: Call) -> Any:
        return {"tenants": [self._tenant_json(t) for t in await self.coffre.tenancy.list_tenants()]}

    async def show_tenant(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        t = self.coffre.tenancy
        q = await t.get_quota(tenant)
        buckets = []
        for name, usage in await t.buckets(tenant):
            bq = await t.get_bucket_quota(tenant, name)
            buckets.append({"name": name, "usage": _usage(usage),
                            "quota": {"max_bytes": bq.max_bytes, "max_objects": bq.max_objects}})
        return dict(self._tenant_json(tenant), usage=_usage(await t.usage(tenant)), quota=_quota(q), buckets=buckets)

    async def suspend_tenant(self, call: Call) -> Any:
        await self._tenant(call)
        return self._tenant_json(await self.coffre.tenancy.suspend(call.params["tenant"]))

    async def resume_tenant(self, call: Call) -> Any:
        await self._tenant(call)
        return self._tenant_json(await self.coffre.tenancy.resume(call.params["tenant"], operator=_op(call)))

    async def delete_tenant(self, call: Call) -> Any:
        await self._tenant(call)
        return self._tenant_json(await self.coffre.tenancy.delete(call.params["tenant"], operator=_op(call)))

    # -- key versions: rotation and retirement of the root key and of tenant keys (docs/keys.md) --
    async def _key_owner(self, call: Call) -> tuple[str, str]:
        if "tenant" in call.params:
            tenant = await self._tenant(call)
            return tenant.id, tenant.name
        return "", "root"

    @staticmethod
    def _version_param(call: Call) -> int:
        v = call.params["version"]
        if not v.isdigit() or not 1 <= int(v) < 2**32:
            raise e.ValidationError("A key version is a positive integer.")
        return int(v)

    async def _key_versions_json(self, owner: str, name: str) -> dict[str, Any]:
        keys = self.coffre.keys
        job = keys.jobs.get(owner)
        return {"owner": name, "versions": [{**v, "created_at": iso(v["created_at"]), "updated_at": iso(v["updated_at"])}
                                            for v in await keys.versions(owner)],
                "rewrap": None if job is None else {**job.doc(), "started_at": iso(job.started_at),
                                                    "finished_at": iso(job.finished_at)}}

    async def list_key_versions(self, call: Call) -> Any:
        return await self._key_versions_json(*await self._key_owner(call))

    async def rotate_key_version(self, call: Call) -> Any:
        owner, name = await self._key_owner(call)
        keys = self.coffre.keys
        if owner:
            await keys.rotate_tenant(owner)
        else:
            await keys.rotate_root()
        if call.query.get("wait") in ("1", "true"):
            await keys.wait(owner)
        return await self._key_versions_json(owner, name)

    async def rewrap_keys(self, call: Call) -> Any:
        owner, name = await self._key_owner(call)
        self.coffre.keys.start(owner)
        if call.query.get("wait") in ("1", "true"):
            await self.coffre.keys.wait(owner)
        return await self._key_versions_json(owner, name)

    async def retire_key_version(self, call: Call) -> Any:
        owner, name = await self._key_owner(call)
        await self.coffre.keys.retire(owner, self._version_param(call))
        return await self._key_versions_json(owner, name)

    # -- the tenant's key provider: the root key, or its own key service (docs/hyok-protocol.md) --
    async def get_key_provider(self, call: Call) -> Any:
        return describe_key_provider(await self._tenant(call))

    async def put_key_provider(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        b = call.body
        if b["type"] == "root":
            extra = sorted(set(b) - {"type"})
            if extra:
                raise e.ValidationError(f"A root key provider takes no {', '.join(extra)}.")
            return describe_key_provider(await self.coffre.key_providers.set_root(tenant))
        for name in ("url", "key_id", "token"):
            if not b.get(name):
                raise e.ValidationError(f"An external key provider needs {name}.")
        try:
            config = ExternalKeyConfig(url=b["url"], key_id=b["key_id"], ca_pem=b.get("ca_pem") or None,
                                       client_cert_file=b.get("client_cert_file") or None,
                                       client_key_file=b.get("client_key_file") or None,
                                       timeout=self.settings.external_key_timeout_seconds)
        except ValueError as exc:
            raise e.ValidationError(str(exc)) from None
        return describe_key_provider(await self.coffre.key_providers.set_external(tenant, config, b["token"]))

    # -- quotas and usage --
    async def get_quota(self, call: Call) -> Any:
        return _quota(await self.coffre.tenancy.get_quota(await self._tenant(call)))

    async def put_quota(self, call: Call) -> Any:
        b = call.body
        return _quota(await self.coffre.tenancy.set_quota(await self._tenant(call), b.get("max_bytes"),
                                                          b.get("max_objects"), b.get("max_buckets")))

    async def get_bucket_quota(self, call: Call) -> Any:
        call.bucket = call.params["bucket"]
        q = await self.coffre.tenancy.get_bucket_quota(await self._tenant(call), call.bucket)
        return {"max_bytes": q.max_bytes, "max_objects": q.max_objects}

    async def put_bucket_quota(self, call: Call) -> Any:
        call.bucket = call.params["bucket"]
        q = await self.coffre.tenancy.set_bucket_quota(await self._tenant(call), call.bucket,
                                                       call.body.get("max_bytes"), call.body.get("max_objects"))
        return {"max_bytes": q.max_bytes, "max_objects": q.max_objects}

    async def usage(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        t = self.coffre.tenancy
        period = Period.containing(self.coffre.meter.clock())
        rows = await self.coffre.meter.usage(period, tenant.id)
        per_bucket = {r.bucket: r for r in rows}
        return {"tenant": tenant.name, "usage": _usage(await t.usage(tenant)), "period": _period(period),
                "metering": Totals.of(rows).json(period),
                "buckets": [{"name": n, "usage": _usage(u),
                             "metering": Totals.of([per_bucket[n]] if n in per_bucket else []).json(period)}
                            for n, u in await t.buckets(tenant)]}

    async def all_usage(self, call: Call) -> Any:
        """Every tenant's current usage and this period's metering (the operator's overview)."""
        period = Period.containing(self.coffre.meter.clock())
        by_tenant: dict[str, list[MeteredUsage]] = {}
        for row in await self.coffre.meter.usage(period):
            by_tenant.setdefault(row.tenant_id, []).append(row)
        out = []
        for tenant in await self.coffre.tenancy.list_tenants():
            out.append({"tenant_id": tenant.id, "tenant": tenant.name, "status": tenant.status,
                        "usage": _usage(await self.coffre.tenancy.usage(tenant)),
                        "metering": Totals.of(by_tenant.get(tenant.id, [])).json(period)})
        return {"period": _period(period), "tenants": out}

    async def billing(self, call: Call) -> Any:
        text = call.query.get("period")
        try:
            period = Period.parse(text) if text else Period.containing(self.coffre.meter.clock())
            sheet = PriceSheet.from_settings(self.settings)
        except ValueError as exc:
            raise e.ValidationError(str(exc)) from None
        names = {t.id: t.name for t in await self.coffre.tenancy.list_tenants()}
        rows = await self.coffre.meter.usage(period)
        return invoice(period, rows, names, sheet, self.coffre.meter.clock())

    # -- users --
    async def create_user(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        b = call.body
        user = await self.coffre.iam.create_user(tenant.id, b["name"], b.get("path", "/"), b.get("tags") or None)
        return self._user_json(user)

    async def list_users(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        return {"users": [self._user_json(u) for u in await self.coffre.iam.list_users(tenant.id)]}

    async def get_user(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        iam = self.coffre.iam
        user = await iam.get_user(tenant.id, call.params["user"])
        return dict(self._user_json(user),
                    groups=[g.name for g in await iam.list_groups_for_user(tenant.id, user.name)],
                    policies=[p.name for p in await iam.list_attached_policies(tenant.id, "user", user.name)])

    async def delete_user(self, call: Call) -> None:
        tenant = await self._tenant(call)
        await self.coffre.iam.delete_user(tenant.id, call.params["user"])

    # -- groups --
    async def create_group(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        group = await self.coffre.iam.create_group(tenant.id, call.body["name"], call.body.get("path", "/"))
        return self._group_json(group, [])

    async def list_groups(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        return {"groups": [self._group_json(g) for g in await self.coffre.iam.list_groups(tenant.id)]}

    async def get_group(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        group, members = await self.coffre.iam.get_group(tenant.id, call.params["group"])
        return self._group_json(group, members)

    async def delete_group(self, call: Call) -> None:
        tenant = await self._tenant(call)
        await self.coffre.iam.delete_group(tenant.id, call.params["group"])

    async def add_member(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        await self.coffre.iam.add_user_to_group(tenant.id, call.params["group"], call.params["user"])
        group, members = await self.coffre.iam.get_group(tenant.id, call.params["group"])
        return self._group_json(group, members)

    async def remove_member(self, call: Call) -> None:
        tenant = await self._tenant(call)
        await self.coffre.iam.remove_user_from_group(tenant.id, call.params["group"], call.params["user"])

    # -- access keys --
    async def create_key(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        b = call.body
        user = b.get("user") or ROOT_USER
        if "access_key_id" in b or "secret_access_key" in b:
            akid, secret = b.get("access_key_id", ""), b.get("secret_access_key", "")
            check_imported_key(akid, secret)
            principal = await self.coffre.iam.principal_name(tenant.id, user)
            key = await self.coffre.tenancy.put_access_key(tenant, principal, akid, secret)
        else:
            key, secret = await self.coffre.iam.create_access_key(tenant.id, user)
        return dict(self._key_json(key, tenant.name), secret_access_key=secret)

    async def list_keys(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        keys = await self.coffre.iam.list_access_keys(tenant.id, call.query.get("user") or None)
        return {"access_keys": [self._key_json(k, tenant.name) for k in keys]}

    async def get_key(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        return self._key_json(await self._tenant_key(tenant, call.params["key"]), tenant.name)

    async def _set_key_status(self, call: Call, status: str) -> Any:
        tenant = await self._tenant(call)
        await self.coffre.iam.update_access_key(tenant.id, call.params["key"], status)
        return self._key_json(await self._tenant_key(tenant, call.params["key"]), tenant.name)

    async def disable_key(self, call: Call) -> Any:
        return await self._set_key_status(call, "Inactive")

    async def enable_key(self, call: Call) -> Any:
        return await self._set_key_status(call, "Active")

    async def rotate_key(self, call: Call) -> Any:
        """A new key for the same identity, then the old one disabled (deleted later, once unused)."""
        tenant = await self._tenant(call)
        old = await self._tenant_key(tenant, call.params["key"])
        key, secret = await self.coffre.iam.create_access_key(tenant.id, old.principal)
        await self.coffre.iam.update_access_key(tenant.id, old.access_key_id, "Inactive")
        return dict(self._key_json(key, tenant.name), secret_access_key=secret, replaces=old.access_key_id)

    async def delete_key(self, call: Call) -> None:
        tenant = await self._tenant(call)
        await self.coffre.iam.delete_access_key(tenant.id, call.params["key"])

    # -- managed policies --
    async def create_policy(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        b = call.body
        rec = await self.coffre.iam.create_policy(tenant.id, b["name"], json.dumps(b["document"]),
                                                  b.get("path", "/"), b.get("description", ""))
        return self._policy_json(rec)

    async def list_policies(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        return {"policies": [self._policy_json(p) for p in await self.coffre.iam.list_policies(tenant.id)]}

    async def get_policy(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        rec = await self.coffre.iam.get_policy(tenant.id, await self._policy_arn(tenant, call.params["policy"]))
        return dict(self._policy_json(rec),
                    attachments=await self.coffre.iam.attachment_count(tenant.id, rec))

    async def delete_policy(self, call: Call) -> None:
        tenant = await self._tenant(call)
        await self.coffre.iam.delete_policy(tenant.id, await self._policy_arn(tenant, call.params["policy"]))

    async def _attachment(self, call: Call, kind: str, attach: bool) -> None:
        tenant = await self._tenant(call)
        arn = await self._policy_arn(tenant, call.params["policy"])
        owner = call.params[kind]
        if attach:
            await self.coffre.iam.attach_policy(tenant.id, kind, owner, arn)
        else:
            await self.coffre.iam.detach_policy(tenant.id, kind, owner, arn)

    async def attach_user_policy(self, call: Call) -> None:
        await self._attachment(call, "user", True)

    async def detach_user_policy(self, call: Call) -> None:
        await self._attachment(call, "user", False)

    async def attach_group_policy(self, call: Call) -> None:
        await self._attachment(call, "group", True)

    async def detach_group_policy(self, call: Call) -> None:
        await self._attachment(call, "group", False)

    # -- operators --
    async def create_operator(self, call: Call) -> Any:
        op, uri = await self.coffre.operators.create(call.body["name"], call.body.get("password"))
        return dict(self._operator_json(op), totp_uri=uri)

    async def list_operators(self, call: Call) -> Any:
        return {"operators": [self._operator_json(o) for o in await self.coffre.operators.list_operators()]}

    async def create_operator_key(self, call: Call) -> Any:
        from coffre.core.iam import new_access_key_id, new_secret_key

        b = call.body
        if "access_key_id" in b or "secret_access_key" in b:
            akid, secret = b.get("access_key_id", ""), b.get("secret_access_key", "")
            check_imported_key(akid, secret)
        else:
            akid, secret = new_access_key_id(), new_secret_key()
        key = await self.coffre.operators.create_access_key(call.params["operator"], akid, secret)
        return dict(self._key_json(key, None), secret_access_key=secret)

    async def list_operator_keys(self, call: Call) -> Any:
        keys = await self.coffre.operators.list_access_keys(call.params["operator"])
        return {"access_keys": [self._key_json(k, None) for k in keys]}

    async def delete_operator_key(self, call: Call) -> None:
        if call.operator is not None and call.operator.access_key_id == call.params["key"]:
            raise e.ValidationError("An operator cannot delete the access key this request is signed with.")
        await self.coffre.operators.delete_access_key(call.params["operator"], call.params["key"])

    # -- SSE-KMS keys of a tenant (docs/keys.md) --
    def _kms_json(self, tenant: TenantRecord, key_id: str, description: str, state: str,
                  created_at: float | None) -> dict[str, Any]:
        return {"key_id": key_id, "arn": self.coffre.objects.sse.key_arn(tenant.id, key_id),
                "description": description, "state": state, "created_at": iso(created_at)}

    async def create_kms_key(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        rec = await self.coffre.objects.sse.create_key(tenant.id, str(call.body.get("description", "")))
        return self._kms_json(tenant, rec.key_id, rec.description, rec.state, rec.created_at)

    async def list_kms_keys(self, call: Call) -> Any:
        tenant = await self._tenant(call)
        sse = self.coffre.objects.sse
        default_id = sse.default_key_id(tenant.id)
        keys = await sse.list_keys(tenant.id)
        made = next((k for k in keys if k.key_id == default_id), None)
        default = self._kms_json(tenant, default_id, "default key (alias/aws/s3)",
                                 made.state if made is not None else "Enabled",
                                 made.created_at if made is not None else None)
        return {"default_key": default, "kms_keys": [self._kms_json(tenant, k.key_id, k.description, k.state,
                                                                    k.created_at)
                                                     for k in keys if k.key_id != default_id]}

    async def _kms_state(self, call: Call, enabled: bool) -> None:
        tenant = await self._tenant(call)
        await self.coffre.objects.sse.set_key_state(tenant.id, call.params["key"], enabled)

    async def disable_kms_key(self, call: Call) -> None:
        await self._kms_state(call, False)

    async def enable_kms_key(self, call: Call) -> None:
        await self._kms_state(call, True)

    # -- the table --
    def _routes(self) -> list[Route]:
        T = "/tenants/{tenant}"
        key_q = (("user", "only the keys of this user (\"root\": the tenant root's)"),)
        return [
            Route("GET", "/openapi.json", "GetOpenApiDocument", "This document (OpenAPI 3.1)", "meta",
                  self.openapi, response={"type": "object"}, authenticated=False),
            Route("POST", "/login", "Login", "Open a session with password and TOTP code", "session",
                  self.login, ref("Login"), ref("Session"), authenticated=False),
            Route("GET", "/whoami", "Whoami", "The operator these credentials authenticate", "session",
                  self.whoami, response=ref("Whoami")),
            Route("POST", "/tenants", "CreateTenant", "Create a tenant and its root access key (secret shown once)",
                  "tenants", self.create_tenant, ref("TenantCreate"), ref("NewTenant"), 201),
            Route("GET", "/tenants", "ListTenants", "List tenants", "tenants", self.list_tenants,
                  response=ref("TenantList")),
            Route("GET", T, "GetTenant", "A tenant, with its usage, quota and buckets", "tenants", self.show_tenant,
                  response=ref("TenantDetail")),
            Route("POST", T + "/suspend", "SuspendTenant", "Refuse every request of the tenant from now on",
                  "tenants", self.suspend_tenant, response=ref("Tenant")),
            Route("POST", T + "/resume", "ResumeTenant", "Make the tenant active again (cancels a scheduled "
                  "deletion)", "tenants", self.resume_tenant, response=ref("Tenant")),
            Route("DELETE", T, "DeleteTenant", "Schedule the tenant's deletion after the grace period",
                  "tenants", self.delete_tenant, response=ref("Tenant"), status=202),
            Route("GET", "/key-versions", "ListRootKeyVersions", "Versions of the root key and their states "
                  "(active, retiring, retired), with the progress of the last re-wrap", "keys",
                  self.list_key_versions),
            Route("POST", "/key-versions/rotate", "RotateRootKey", "Make a new root key version and re-wrap every "
                  "tenant key and secret with it in the background (no data re-encrypted)", "keys", self.rotate_key_version,
                  query=(("wait", "true: answer once the re-wrap is done"),)),
            Route("POST", "/key-versions/rewrap", "RewrapRootKeys", "Run the re-wrap with the active root key "
                  "version again (it resumes by itself at start)", "keys", self.rewrap_keys,
                  query=(("wait", "true: answer once the re-wrap is done"),)),
            Route("POST", "/key-versions/{version}/retire", "RetireRootKeyVersion", "Destroy a superseded root key "
                  "version in its provider; refused while anything it wrapped is left", "keys",
                  self.retire_key_version),
            Route("GET", T + "/key-versions", "ListTenantKeyVersions", "Versions of the tenant key and their states",
                  "keys", self.list_key_versions),
            Route("POST", T + "/key-versions/rotate", "RotateTenantKey", "Make a new tenant key version and re-wrap "
                  "every data key of the tenant with it in the background (no object re-encrypted)", "keys",
                  self.rotate_key_version, query=(("wait", "true: answer once the re-wrap is done"),)),
            Route("POST", T + "/key-versions/rewrap", "RewrapTenantKeys", "Run the re-wrap of the tenant's data "
                  "keys again", "keys", self.rewrap_keys, query=(("wait", "true: answer once the re-wrap is done"),)),
            Route("POST", T + "/key-versions/{version}/retire", "RetireTenantKeyVersion", "Erase a superseded "
                  "tenant key version; refused while a data key it wrapped is left", "keys",
                  self.retire_key_version),
            Route("GET", T + "/key-provider", "GetTenantKeyProvider", "What wraps the tenant key: the root key, "
                  "or the tenant's own key service (never its token)", "tenants", self.get_key_provider,
                  response=ref("KeyProvider")),
            Route("PUT", T + "/key-provider", "PutTenantKeyProvider", "Wrap the tenant key with the tenant's own "
                  "key service (hold your own key), or with the root key again; no data is re-encrypted",
                  "tenants", self.put_key_provider, ref("KeyProviderPut"), ref("KeyProvider")),
            Route("GET", T + "/quota", "GetTenantQuota", "The tenant's quota", "quotas", self.get_quota,
                  response=ref("Quota")),
            Route("PUT", T + "/quota", "PutTenantQuota", "Set the tenant's quota (null or absent: no limit)",
                  "quotas", self.put_quota, ref("Quota"), ref("Quota")),
            Route("GET", T + "/buckets/{bucket}/quota", "GetBucketQuota", "A bucket's quota", "quotas",
                  self.get_bucket_quota, response=ref("BucketQuota")),
            Route("PUT", T + "/buckets/{bucket}/quota", "PutBucketQuota", "Set a bucket's quota", "quotas",
                  self.put_bucket_quota, ref("BucketQuota"), ref("BucketQuota")),
            Route("GET", T + "/usage", "GetTenantUsage", "What the tenant stores, in total and per bucket",
                  "quotas", self.usage, response=ref("TenantUsage")),
            Route("GET", "/usage", "ListUsage", "Every tenant's usage: stored now, and this period's byte-hours, "
                  "requests and bytes in/out", "billing", self.all_usage, response=ref("UsageList")),
            Route("GET", "/billing", "GetBillingExport", "Invoice lines per tenant for a month, from the price "
                  "sheet of the configuration", "billing", self.billing, response=ref("BillingExport"),
                  query=(("period", "the month, YYYY-MM (UTC; default: the current one)"),)),
            Route("POST", T + "/users", "CreateUser", "Create a user of the tenant", "users", self.create_user,
                  ref("UserCreate"), ref("User"), 201),
            Route("GET", T + "/users", "ListUsers", "List the tenant's users", "users", self.list_users,
                  response=ref("UserList")),
            Route("GET", T + "/users/{user}", "GetUser", "A user, its groups and attached policies", "users",
                  self.get_user, response=ref("User")),
            Route("DELETE", T + "/users/{user}", "DeleteUser", "Delete a user (without keys, policies or groups)",
                  "users", self.delete_user, status=204),
            Route("PUT", T + "/users/{user}/policies/{policy}", "AttachUserPolicy",
                  "Attach a managed policy to a user", "policies", self.attach_user_policy, status=204),
            Route("DELETE", T + "/users/{user}/policies/{policy}", "DetachUserPolicy",
                  "Detach a managed policy from a user", "policies", self.detach_user_policy, status=204),
            Route("POST", T + "/groups", "CreateGroup", "Create a group", "groups", self.create_group,
                  ref("GroupCreate"), ref("Group"), 201),
            Route("GET", T + "/groups", "ListGroups", "List the tenant's groups", "groups", self.list_groups,
                  response=ref("GroupList")),
            Route("GET", T + "/groups/{group}", "GetGroup", "A group and its members", "groups", self.get_group,
                  response=ref("Group")),
            Route("DELETE", T + "/groups/{group}", "DeleteGroup", "Delete an empty group", "groups",
                  self.delete_group, status=204),
            Route("PUT", T + "/groups/{group}/members/{user}", "AddUserToGroup", "Add a user to a group",
                  "groups", self.add_member, response=ref("Group")),
            Route("DELETE", T + "/groups/{group}/members/{user}", "RemoveUserFromGroup",
                  "Remove a user from a group", "groups", self.remove_member, status=204),
            Route("PUT", T + "/groups/{group}/policies/{policy}", "AttachGroupPolicy",
                  "Attach a managed policy to a group", "policies", self.attach_group_policy, status=204),
            Route("DELETE", T + "/groups/{group}/policies/{policy}", "DetachGroupPolicy",
                  "Detach a managed policy from a group", "policies", self.detach_group_policy, status=204),
            Route("POST", T + "/keys", "CreateAccessKey", "Create (or import) an access key of the tenant root or "
                  "a user; the secret is shown once", "keys", self.create_key, ref("AccessKeyCreate"),
                  ref("NewAccessKey"), 201),
            Route("GET", T + "/keys", "ListAccessKeys", "List access keys (never their secrets)", "keys",
                  self.list_keys, response=ref("AccessKeyList"), query=key_q),
            Route("GET", T + "/keys/{key}", "GetAccessKey", "One access key (never its secret)", "keys",
                  self.get_key, response=ref("AccessKey")),
            Route("POST", T + "/keys/{key}/disable", "DisableAccessKey", "Make a key inactive", "keys",
                  self.disable_key, response=ref("AccessKey")),
            Route("POST", T + "/keys/{key}/enable", "EnableAccessKey", "Make a key active again", "keys",
                  self.enable_key, response=ref("AccessKey")),
            Route("POST", T + "/keys/{key}/rotate", "RotateAccessKey", "Create a new key for the same identity "
                  "and disable this one; the new secret is shown once", "keys", self.rotate_key,
                  response=ref("NewAccessKey"), status=201),
            Route("DELETE", T + "/keys/{key}", "DeleteAccessKey", "Delete an access key", "keys", self.delete_key,
                  status=204),
            Route("POST", T + "/policies", "CreatePolicy", "Create a managed policy", "policies",
                  self.create_policy, ref("PolicyCreate"), ref("Policy"), 201),
            Route("GET", T + "/policies", "ListPolicies", "List the tenant's managed policies", "policies",
                  self.list_policies, response=ref("PolicyList")),
            Route("GET", T + "/policies/{policy}", "GetPolicy", "A managed policy and its document", "policies",
                  self.get_policy, response=ref("Policy")),
            Route("DELETE", T + "/policies/{policy}", "DeletePolicy", "Delete a managed policy (detached)",
                  "policies", self.delete_policy, status=204),
            Route("POST", "/operators", "CreateOperator", "Create an operator (with a password: a TOTP seed, "
                  "shown once)", "operators", self.create_operator, ref("OperatorCreate"), ref("NewOperator"), 201),
            Route("GET", "/operators", "ListOperators", "List operators", "operators", self.list_operators,
                  response=ref("OperatorList")),
            Route("POST", "/operators/{operator}/keys", "CreateOperatorKey", "Create (or import) an operator "
                  "access key; the secret is shown once", "operators", self.create_operator_key,
                  ref("AccessKeyCreate"), ref("NewAccessKey"), 201),
            Route("GET", "/operators/{operator}/keys", "ListOperatorKeys", "List an operator's access keys",
                  "operators", self.list_operator_keys, response=ref("AccessKeyList")),
            Route("DELETE", "/operators/{operator}/keys/{key}", "DeleteOperatorKey", "Delete an operator's "
                  "access key", "operators", self.delete_operator_key, status=204),
            Route("POST", T + "/kms-keys", "CreateKmsKey", "Create a KMS key of the tenant for SSE-KMS "
                  "(x-amz-server-side-encryption-aws-kms-key-id)", "kms", self.create_kms_key,
                  ref("KmsKeyCreate"), ref("KmsKey"), 201),
            Route("GET", T + "/kms-keys", "ListKmsKeys", "The tenant's KMS keys (the default one first)", "kms",
                  self.list_kms_keys, response=ref("KmsKeyList")),
            Route("POST", T + "/kms-keys/{key}/disable", "DisableKmsKey", "Refuse the key for new writes and "
                  "reads of what it encrypted, until enabled again", "kms", self.disable_kms_key, status=204),
            Route("POST", T + "/kms-keys/{key}/enable", "EnableKmsKey", "Make a disabled KMS key usable again",
                  "kms", self.enable_kms_key, status=204),
        ]


def _op(call: Call) -> str | None:
    return call.operator.name if call.operator is not None else None


def _usage(u: Any) -> dict[str, int]:
    return {"bytes": u.bytes, "objects": u.objects, "buckets": u.buckets}


def _period(p: Period) -> dict[str, Any]:
    return {"name": p.name, "start": iso(p.start), "end": iso(p.end), "hours": p.hours}


def _quota(q: Any) -> dict[str, int | None]:
    return {"max_bytes": q.max_bytes, "max_objects": q.max_objects, "max_buckets": q.max_buckets}
