"""The one settings object, read once at start: defaults < TOML file < environment < command line.

Every setting is documented in docs/configuration.md; keep both in step.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class Settings:
    # Where the S3 API listens, as HOST:PORT.
    address: str = "127.0.0.1:9000"
    # State directory: metadata database, blobs, root key.
    data_dir: str = "./coffre-data"
    # Region reported by GetBucketLocation and expected in SigV4 scopes (any region is accepted
    # in signatures, as clients often sign with their own default).
    region: str = "us-east-1"
    # Base domains for virtual-hosted-style addressing ("bucket.s3.example.com").
    virtual_host_domains: tuple[str, ...] = ()
    # The first operator's ("root") access key, for the admin API; generated and printed once when unset.
    root_access_key: str | None = field(default=None, repr=False)
    root_secret_key: str | None = field(default=None, repr=False)
    # Where the root key lives (docs/keys.md): "file" (data_dir/root.key), "pkcs11" (an HSM), "kmip" or "external".
    key_provider: str = "file"
    pkcs11_module: str = ""  # the PKCS#11 library of the HSM
    pkcs11_token_label: str = ""
    pkcs11_pin: str | None = field(default=None, repr=False)  # TOML or environment only; never shown
    pkcs11_key_label: str = "coffre-root"  # root key versions are <label>-v1, -v2...
    kmip_host: str = ""
    kmip_port: int = 5696
    kmip_cert: str = ""  # client certificate (PEM) for mutual TLS
    kmip_key: str = ""  # its private key
    kmip_ca: str = ""  # CA certificate that signed the server's
    kmip_key_name: str = "coffre-root"
    # key_provider = "external": the root key in a key service speaking docs/hyok-protocol.md.
    root_key_service_url: str = ""
    root_key_service_key_id: str = ""
    root_key_service_token: str | None = field(default=None, repr=False)  # TOML or environment only
    root_key_service_ca_file: str = ""  # PEM CA certificates of the service (default: the system's)
    # A superseded key version can be retired only this long after the rotation (writes in flight).
    key_retire_grace_seconds: float = 3600.0
    # Allowed clock skew for signed requests, in seconds (AWS: 15 minutes).
    max_clock_skew: int = 900
    # Longest presigned URL validity accepted, in seconds (AWS: 7 days).
    max_presign_expires: int = 604800
    # Limits (AWS values by default).
    max_object_size: int = 5 * 1024 * GiB  # 5 TiB
    max_put_size: int = 5 * GiB  # single PUT / UploadPart / copy
    min_part_size: int = 5 * MiB  # every part but the last
    max_parts: int = 10000
    max_key_length: int = 1024  # bytes of UTF-8
    max_user_metadata: int = 2048  # bytes: names + values of x-amz-meta-*
    max_header_size: int = 8190  # one header line (AWS: 8 KiB)
    max_headers_total: int = 16 * 1024  # whole header section
    max_xml_body: int = 2 * MiB  # request bodies parsed as XML
    max_delete_objects: int = 1000
    # Garbage collection: orphaned blobs are removed after this many seconds.
    gc_grace_seconds: int = 3600
    # Blobs replaced, deleted or aborted are kept this long, so reads already streaming them finish.
    gc_release_delay_seconds: int = 900
    gc_interval_seconds: int = 300
    # Blobs of at most this many bytes (as stored), whose size the PUT announced, are rows of
    # blobs/small.db rather than files (no file creation and fsync each; one shared commit). 0: files only.
    # 65 KiB: objects of up to 64 KiB (65 560 bytes stored) are rows.
    blob_small_max_bytes: int = 65 * 1024
    # Lifecycle rules (issue #6): the length of a lifecycle "day" in seconds (shortened only for
    # tests and demonstrations) and how often the worker looks at the buckets holding rules.
    lifecycle_day_seconds: float = 86400.0
    lifecycle_interval_seconds: float = 3600.0
    # Seconds a request body may stall (no byte received) before the request fails with RequestTimeout.
    body_idle_timeout: float = 20.0
    # Seconds an idle keep-alive connection stays open.
    keepalive_timeout: float = 75.0
    # Processes serving the S3 listener (docs/workers.md): 1 is one process doing everything; N > 1
    # adds N-1 secondary processes sharing the port (SO_REUSEPORT) that serve S3 only.
    workers: int = 1
    # HTTPS for the S3 listener: PEM certificate chain and its private key (mode 0600). Both or
    # neither; when set, the listener speaks TLS only (policy in coffre/tlsconfig.py).
    tls_cert: str | None = None
    tls_key: str | None = None
    # Accept SSE-C (customer-provided keys) over plain HTTP. Off: AWS refuses them there, since a
    # key sent in clear must be considered leaked. For development and tests only.
    allow_sse_c_over_http: bool = False
    # Log level: DEBUG, INFO, WARNING, ERROR.
    log_level: str = "INFO"
    # Log lines as JSON objects ("json"), plain text ("text"), or "auto": text on a terminal, JSON otherwise.
    log_format: str = "auto"
    # The admin listener (admin API, metrics, health), as HOST:PORT.
    admin_address: str = "127.0.0.1:9001"
    # HTTPS for the admin listener, as tls_cert/tls_key for the S3 one.
    admin_tls_cert: str | None = None
    admin_tls_key: str | None = None
    # Seconds each component has to answer a readiness probe (/health/ready).
    ready_timeout: float = 2.0
    # How long an admin session (POST /admin/v1/login) lasts, in seconds.
    admin_session_seconds: int = 3600
    # Days between an operator deleting a tenant and its data becoming erasable; resume cancels.
    tenant_delete_grace_days: int = 21
    # The same grace in seconds, when above 0 (it then replaces the days): for tests and demonstrations.
    tenant_delete_grace_seconds: float = 0.0
    # How often the crypto-erasure worker looks for deleted tenants past their grace (docs/keys.md).
    erasure_interval_seconds: float = 300.0
    # Then it reclaims erased tenants' space: at most this many rows (object versions, multipart
    # uploads and their parts, buckets) removed per metadata transaction (docs/keys.md).
    erasure_reclaim_batch: int = 500
    # A tenant key opened by the tenant's own key service (hold your own key) is kept in memory this
    # long at most: a key disabled at the service stops that tenant's reads and writes within it.
    external_key_cache_seconds: float = 60.0
    # Longest wait for one call to a tenant's key service, in seconds (connection and answer).
    external_key_timeout_seconds: float = 5.0
    # Audit trail (docs/audit.md): refuse writes (503) when it cannot be written, or drop records.
    audit_required: bool = True
    # Records waiting to be written; when full, the log counts as unavailable.
    audit_queue_size: int = 10000
    # A signed checkpoint every this many records, or this many seconds.
    audit_checkpoint_records: int = 1000
    audit_checkpoint_seconds: float = 60.0
    # The least time between two writes (and fsyncs) of the audit log: a batch gathers the
    # records of that interval (group commit). 0: write each batch as soon as it is taken.
    audit_group_commit_seconds: float = 0.05
    # A new segment file each UTC day or at this size.
    audit_segment_max_bytes: int = 64 * MiB
    # Whole segments older than this are deleted (a signed retention record says so).
    audit_retention_days: int = 190
    # Also append request records as JSON lines to this file (for a SIEM); unset: no export.
    audit_export_file: str | None = None
    # ... rotated (PATH.1, PATH.2...) at this size, keeping this many old files (0: never rotate).
    audit_export_file_max_bytes: int = 64 * MiB
    audit_export_file_keep: int = 5
    # Also send request records to syslog (RFC 5424) at HOST:PORT, over udp or tcp (octet counting).
    audit_syslog_address: str | None = None
    audit_syslog_protocol: str = "udp"
    audit_syslog_facility: str = "local0"
    audit_syslog_app_name: str = "coffre"
    # Records waiting for syslog / the SIEM file, per destination; beyond it they are dropped (and counted).
    audit_forward_queue_size: int = 10000
    # How often records are delivered into the buckets tenants chose (PUT /_coffre/audit/delivery).
    audit_delivery_seconds: float = 300.0
    # Event notification targets (docs/notifications.md): TOML [[notify.targets]] tables, or
    # COFFRE_NOTIFY_TARGETS as a JSON array. Hidden from repr: they carry credentials.
    notify_targets: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    # Messages a target's queue may hold on disk; beyond it the oldest are dropped (and counted).
    notify_queue_limit: int = 100000
    # Longest wait between two delivery attempts to a target that fails (the wait doubles up to it).
    notify_retry_max_seconds: float = 30.0
    # Answer a write only once its event messages are on disk (at least once across a crash too).
    # On by default: "a crash at any instant loses no acknowledged write" covers its events.
    notify_wait_durable: bool = True
    # Metering (docs/billing.md): seconds between two flushes of the in-memory request counters
    # to the metadata store (a crash loses at most this much of them; stored bytes never).
    metering_flush_seconds: float = 5.0
    # TESTS ONLY: read metering's current time (POSIX seconds) from this file instead of the clock.
    metering_clock_file: str | None = None
    # The price sheet of `coffre billing export`: TOML [billing] table; decimal numbers as strings.
    billing_currency: str = "EUR"
    billing_storage_gb_month: str = "0"  # per GB (10^9 bytes) stored for a month
    billing_write_requests_per_1000: str = "0"  # per 1,000 write/list-class requests
    billing_read_requests_per_1000: str = "0"  # per 1,000 read-class requests
    billing_egress_gb: str = "0"  # per GB sent to clients

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def admin_host(self) -> str:
        return self.admin_address.rsplit(":", 1)[0].strip("[]")

    @property
    def admin_port(self) -> int:
        return int(self.admin_address.rsplit(":", 1)[1])

    @property
    def meta_path(self) -> str:
        return os.path.join(self.data_dir, "meta.sqlite3")

    @property
    def blob_dir(self) -> str:
        return os.path.join(self.data_dir, "blobs")

    @property
    def root_key_path(self) -> str:
        return os.path.join(self.data_dir, "root.key")

    @property
    def audit_dir(self) -> str:
        return os.path.join(self.data_dir, "audit")


_ENV_PREFIX = "COFFRE_"
_ALIASES = {"root_access_key": "ROOT_ACCESS_KEY", "root_secret_key": "ROOT_SECRET_KEY"}


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name == "notify_targets":  # a JSON array in the environment, an array of tables in TOML
        items = json.loads(value) if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, dict) for i in items):
            raise ValueError("notify_targets must be an array of tables")
        return tuple(dict(i) for i in items)
    if isinstance(current, tuple) or name == "virtual_host_domains":
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(value)
    if isinstance(current, bool):
        return str(value).lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    return str(value)


def load_settings(config_file: str | None = None, env: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Build the settings: defaults, then the TOML file, then COFFRE_* variables, then overrides."""
    if env is None:
        env = os.environ
    s = Settings()
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    if config_file:
        with open(config_file, "rb") as fh:
            doc = tomllib.load(fh)
        if isinstance(doc.get("notify"), dict):  # the [notify] table: notify.targets is notify_targets
            doc = {**{k: v for k, v in doc.items() if k != "notify"},
                   **{f"notify_{k}": v for k, v in doc["notify"].items()}}
        for table in ("metering", "billing"):  # [billing] currency = ... is billing_currency
            if isinstance(doc.get(table), dict):
                doc = {**{k: v for k, v in doc.items() if k != table},
                       **{f"{table}_{k}": v for k, v in doc[table].items()}}
        for k, v in doc.items():
            name = k.replace("-", "_")
            if name not in known:
                raise ValueError(f"{config_file}: unknown setting {k!r}")
            values[name] = _coerce(name, v, getattr(s, name))
    for name in known:
        var = _ENV_PREFIX + _ALIASES.get(name, name.upper())
        if var in env and env[var] != "":
            values[name] = _coerce(name, env[var], getattr(s, name))
    for name, v in overrides.items():
        if v is not None:
            values[name] = _coerce(name, v, getattr(s, name))
    return replace(s, **values)
