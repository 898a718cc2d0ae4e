"""The admin listener's HTTP application.

It serves the admin JSON API under ``/admin/v1/`` (``coffre.admin.api``: operators only,
documented by the OpenAPI document it serves, every request audited), and what operators'
standard tools poll, none of it tenant data:

- ``GET /metrics``: Prometheus text format. Unauthenticated, like most exporters; the listener
  binds to 127.0.0.1 by default, so exposing it is a deliberate choice (docs/observability.md).
- ``GET /health/live``: the process answers (200).
- ``GET /health/ready``: 200 when the metadata store, the blob store and the key provider all
  answer within ``ready_timeout``, else 503 naming the ones that did not.

Probes and scrapes are not audited: they touch no tenant's data, and a scrape every few
seconds would drown the trail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from coffre.admin.api import MAX_BODY, AdminApi
from coffre.audit.event import AuditEvent
from coffre.core.coffre import Coffre
from coffre.observability.health import Probe, readiness
from coffre.observability.instruments import Metrics
from coffre.settings import Settings


class AdminApp:
    def __init__(self, coffre: Coffre, settings: Settings, metrics: Metrics,
                 audit_accepting: Callable[[], bool] | None = None,
                 audit_record: Callable[[AuditEvent], None] | None = None) -> None:
        self.coffre = coffre
        self.settings = settings
        self.metrics = metrics
        self.audit_accepting = audit_accepting
        self.api = AdminApi(coffre, settings, audit_record, audit_accepting)

    def probes(self) -> dict[str, Probe]:
        provider = self.coffre.keyring.provider

        async def key_provider() -> None:
            # In a thread: a remote provider (HSM, KMIP) may block, and the timeout must still apply.
            await asyncio.to_thread(provider.check)

        return {"metadata": self.coffre.meta.ping, "blob": self.coffre.blobs.ping, "key_provider": key_provider}

    async def get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render().encode(), headers={
            "Content-Type": self.metrics.registry.CONTENT_TYPE, "Cache-Control": "no-store"})

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"}, headers={"Cache-Control": "no-store"})

    async def ready(self, request: web.Request) -> web.Response:
        ok, doc = await readiness(self.probes(), self.settings.ready_timeout)
        if self.audit_accepting is not None:
            # Reported, not gating: reads go on while the audit log refuses writes.
            doc["audit_accepting_writes"] = self.audit_accepting()
        return web.json_response(doc, status=200 if ok else 503, headers={"Cache-Control": "no-store"})

    def application(self) -> web.Application:
        # Bodies are read (and bounded) by the API itself; this bound only backs it up.
        app = web.Application(client_max_size=MAX_BODY + 1024)
        app.on_response_prepare.append(_server_header)
        app.router.add_get("/metrics", self.get_metrics)
        app.router.add_get("/health/live", self.live)
        app.router.add_get("/health/ready", self.ready)
        self.api.add_to(app)
        return app


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "coffre"  # not aiohttp's, which names versions
