"""JSON schemas of the admin API's bodies, and the small validator that applies them.

The same schemas describe the API in the OpenAPI document and check every request body, so
the document cannot drift from what the server accepts. The validator covers the subset the
schemas use: type (or a list of types), properties, required, additionalProperties false,
minLength/maxLength, minimum, enum, items, $ref to components.
"""

from __future__ import annotations

from typing import Any

from coffre.core.errors import ValidationError

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), description: str = "") -> Schema:
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STR: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
LIMIT: Schema = {"type": ["integer", "null"], "minimum": 0, "description": "null: no limit"}
USAGE = obj({"bytes": {"type": "integer"}, "objects": {"type": "integer"}, "buckets": {"type": "integer"}},
            description="What is stored: every version that is not a delete marker counts.")
TENANT = obj({
    "id": {"type": "string", "description": "12 digits, the account id in ARNs"},
    "name": STR, "status": {"type": "string", "enum": ["active", "suspended", "deleting", "erased"]},
    "created_at": TIME, "delete_after": {"type": ["string", "null"], "format": "date-time"},
    "canonical_id": STR,
    "key_provider": {"type": "string", "enum": ["root", "external"], "description": "what wraps the tenant key"},
    "erased_at": {"type": ["string", "null"], "format": "date-time",
                  "description": "when its key was destroyed (status erased)"},
    "reclaimed_at": {"type": ["string", "null"], "format": "date-time",
                     "description": "when the erased tenant's stored data (objects, uploads, buckets) was "
                                    "removed and its blobs queued for garbage collection; null until then"},
}, ("id", "name", "status", "created_at"))
METERING = obj({
    "byte_seconds": {"type": "integer", "description": "stored bytes integrated over the period so far"},
    "byte_hours": {"type": "string", "description": "byte_seconds / 3600 (decimal, 9 places)"},
    "gb_months": {"type": "string", "description": "byte_seconds / 3600 / hours of the month / 10^9"},
    "write_requests": {"type": "integer", "description": "write/list class (PUT, COPY, POST, LIST...)"},
    "read_requests": {"type": "integer", "description": "read class (GET, HEAD and others)"},
    "free_requests": {"type": "integer", "description": "DELETE, aborts, IAM: not billed"},
    "bytes_in": {"type": "integer"}, "bytes_out": {"type": "integer"},
}, description="Metered usage over a period (docs/billing.md). No object name is ever part of it.")
MONEY: Schema = {"type": "string", "description": "decimal, rounded to the cent"}
BILLING = obj({
    "period": STR, "start": TIME, "end": TIME, "hours": {"type": "integer"},
    "complete": {"type": "boolean", "description": "false while the period is still running"},
    "generated_at": TIME, "currency": STR,
    "prices": {"type": "object", "additionalProperties": {"type": "string"}},
    "tenants": array(obj({
        "tenant_id": STR, "tenant": {"type": ["string", "null"], "description": "null: tenant deleted since"},
        "usage": METERING, "total": MONEY,
        "lines": array(obj({"item": {"type": "string", "enum": ["storage", "write_requests", "read_requests",
                                                                 "egress"]},
                            "usage": {"type": "integer"}, "usage_unit": STR, "unit": STR, "quantity": STR,
                            "unit_price": STR, "amount": MONEY})),
    })),
    "total": MONEY,
}, ("period", "currency", "tenants", "total"), "Invoice lines per tenant; totals are sums of the rounded lines.")
QUOTA = obj({"max_bytes": LIMIT, "max_objects": LIMIT, "max_buckets": LIMIT})
BUCKET_QUOTA = obj({"max_bytes": LIMIT, "max_objects": LIMIT})
ACCESS_KEY = obj({
    "access_key_id": STR, "tenant": STR, "user": {"type": "string", "description": "\"root\": the tenant root"},
    "status": {"type": "string", "enum": ["active", "inactive"]}, "created_at": TIME,
}, ("access_key_id", "status", "created_at"))
NEW_ACCESS_KEY = obj({
    "access_key_id": STR, "secret_access_key": {"type": "string", "description": "shown this once only"},
    "tenant": STR, "user": STR, "status": STR, "created_at": TIME,
    "replaces": {"type": "string", "description": "rotate: the key now disabled"},
}, ("access_key_id", "secret_access_key"))

COMPONENTS: dict[str, Schema] = {
    "Error": obj({"error": obj({"code": STR, "message": STR}, ("code", "message"))}, ("error",)),
    "Usage": USAGE,
    "Tenant": TENANT,
    "TenantDetail": obj(dict(TENANT["properties"], usage=ref("Usage"), quota=ref("Quota"),
                             buckets=array(obj({"name": STR, "usage": ref("Usage"), "quota": ref("BucketQuota")}))),
                        ("id", "name", "status")),
    "NewTenant": obj(dict(TENANT["properties"], access_key_id=STR,
                          secret_access_key={"type": "string", "description": "the tenant root's; shown once"}),
                     ("id", "name", "access_key_id", "secret_access_key")),
    "TenantList": obj({"tenants": array(ref("Tenant"))}, ("tenants",)),
    "KeyProvider": obj({
        "type": {"type": "string", "enum": ["root", "external"]}, "url": STR, "key_id": STR,
        "ca": {"type": "string", "enum": ["system", "custom"], "description": "which CAs the service is checked with"},
        "token": {"type": "string", "enum": ["set"], "description": "the token is never shown"},
        "client_cert_file": STR,
    }, ("type",), "What wraps the tenant key (docs/hyok-protocol.md)."),
    "KeyProviderPut": obj({
        "type": {"type": "string", "enum": ["root", "external"]},
        "url": {"type": "string", "maxLength": 2048, "description": "https:// base URL of the key service"},
        "key_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "token": {"type": "string", "minLength": 16, "maxLength": 512,
                  "description": "bearer token; stored wrapped by the root key, never shown again"},
        "ca_pem": {"type": "string", "maxLength": 32768, "description": "PEM CA certificates to verify the service "
                   "with (default: the system's)"},
        "client_cert_file": {"type": "string", "maxLength": 4096,
                             "description": "mutual TLS: a PEM certificate on every gateway"},
        "client_key_file": {"type": "string", "maxLength": 4096, "description": "... and its key (mode 0600)"},
    }, ("type",)),
    "TenantCreate": obj({"name": {"type": "string", "minLength": 3, "maxLength": 63,
                                  "pattern": "^[a-z0-9][a-z0-9-]*[a-z0-9]$"}}, ("name",)),
    "Quota": QUOTA,
    "BucketQuota": BUCKET_QUOTA,
    "TenantUsage": obj({"tenant": STR, "usage": ref("Usage"), "period": ref("Period"), "metering": ref("Metering"),
                        "buckets": array(obj({"name": STR, "usage": ref("Usage"), "metering": ref("Metering")}))}),
    "Period": obj({"name": {"type": "string", "description": "YYYY-MM"}, "start": TIME, "end": TIME,
                   "hours": {"type": "integer"}}, ("name", "start", "end", "hours"),
                  "A billing period: one UTC calendar month."),
    "Metering": METERING,
    "UsageList": obj({"period": ref("Period"), "tenants": array(obj({
        "tenant_id": STR, "tenant": STR, "status": STR, "usage": ref("Usage"), "metering": ref("Metering")}))},
        ("period", "tenants")),
    "BillingExport": BILLING,
    "User": obj({"name": STR, "user_id": STR, "arn": STR, "path": STR, "created_at": TIME,
                 "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                 "groups": array(STR), "policies": array(STR)}, ("name", "user_id")),
    "UserList": obj({"users": array(ref("User"))}, ("users",)),
    "UserCreate": obj({"name": {"type": "string", "minLength": 1, "maxLength": 64}, "path": STR,
                       "tags": {"type": "object", "additionalProperties": {"type": "string"}}}, ("name",)),
    "Group": obj({"name": STR, "group_id": STR, "arn": STR, "path": STR, "created_at": TIME,
                  "members": array(STR)}, ("name", "group_id")),
    "GroupList": obj({"groups": array(ref("Group"))}, ("groups",)),
    "GroupCreate": obj({"name": {"type": "string", "minLength": 1, "maxLength": 128}, "path": STR}, ("name",)),
    "AccessKey": ACCESS_KEY,
    "NewAccessKey": NEW_ACCESS_KEY,
    "AccessKeyList": obj({"access_keys": array(ref("AccessKey"))}, ("access_keys",)),
    "KmsKey": obj({"key_id": STR, "arn": STR, "description": STR,
                   "state": {"type": "string", "enum": ["Enabled", "Disabled"]}, "created_at": TIME},
                  ("key_id", "arn", "state")),
    "KmsKeyList": obj({"default_key": ref("KmsKey"), "kms_keys": array(ref("KmsKey"))}, ("default_key", "kms_keys")),
    "KmsKeyCreate": obj({"description": {"type": "string", "maxLength": 256}}),
    "AccessKeyCreate": obj({
        "user": {"type": "string", "description": "a user of the tenant; absent or \"root\": the tenant root"},
        "access_key_id": {"type": "string", "description": "import an existing key (with its secret), e.g. when "
                                                           "migrating from another store"},
        "secret_access_key": STR,
    }),
    "Policy": obj({"name": STR, "policy_id": STR, "arn": STR, "path": STR, "description": STR,
                   "document": {"type": "object"}, "attachments": {"type": "integer"},
                   "created_at": TIME, "updated_at": TIME}, ("name", "arn")),
    "PolicyList": obj({"policies": array(ref("Policy"))}, ("policies",)),
    "PolicyCreate": obj({"name": {"type": "string", "minLength": 1, "maxLength": 128},
                         "document": {"type": "object", "description": "an IAM identity policy document"},
                         "path": STR, "description": {"type": "string", "maxLength": 1000}},
                        ("name", "document")),
    "Operator": obj({"name": STR, "status": STR, "created_at": TIME, "password": {"type": "boolean"},
                     "locked_until": {"type": ["string", "null"], "format": "date-time"}}, ("name",)),
    "NewOperator": obj({"name": STR, "status": STR, "created_at": TIME, "password": {"type": "boolean"},
                        "totp_uri": {"type": ["string", "null"],
                                     "description": "otpauth:// URI of the TOTP seed; shown this once only"}},
                       ("name",)),
    "OperatorList": obj({"operators": array(ref("Operator"))}, ("operators",)),
    "OperatorCreate": obj({"name": {"type": "string", "minLength": 2, "maxLength": 63},
                           "password": {"type": "string", "minLength": 12, "maxLength": 1024,
                                        "description": "absent: an operator with access keys only"}}, ("name",)),
    "Login": obj({"name": STR, "password": STR, "totp": {"type": "string", "description": "the current 6-digit "
                                                                                          "code"}},
                 ("name", "password", "totp")),
    "Session": obj({"token": {"type": "string", "description": "send as Authorization: Bearer TOKEN"},
                    "expires_at": TIME, "operator": STR}, ("token", "expires_at")),
    "Whoami": obj({"operator": STR, "access_key_id": {"type": ["string", "null"]}}, ("operator",)),
}

_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "boolean": (bool,), "object": (dict,),
                                       "array": (list,), "null": (type(None),), "number": (int, float)}


def validate(schema: Schema, value: Any, where: str = "body") -> None:
    """Raise ValidationError naming the first place where ``value`` does not fit ``schema``."""
    if "$ref" in schema:
        schema = COMPONENTS[schema["$ref"].rsplit("/", 1)[1]]
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in names)
        if not ok:
            raise ValidationError(f"{where} must be {' or '.join(names)}.")
    if "enum" in schema and value not in schema["enum"]:
        raise ValidationError(f"{where} must be one of {', '.join(map(str, schema['enum']))}.")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 30):
            raise ValidationError(f"{where} must be {schema.get('minLength', 0)} to "
                                  f"{schema.get('maxLength', 'any number of')} characters long.")
    if isinstance(value, int) and not isinstance(value, bool) and value < schema.get("minimum", value):
        raise ValidationError(f"{where} must be at least {schema['minimum']}.")
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise ValidationError(f"{where}.{name} is required.")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                validate(props[name], item, f"{where}.{name}")
            elif extra is False:
                raise ValidationError(f"{where}.{name} is not a known field.")
            elif isinstance(extra, dict):
                validate(extra, item, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(schema["items"], item, f"{where}[{i}]")
