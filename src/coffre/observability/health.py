"""Readiness: every component the server needs answers, each within a time limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

Probe = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    ok: bool
    seconds: float
    error: str | None = None

    def document(self) -> dict[str, object]:
        out: dict[str, object] = {"status": "ok" if self.ok else "failed", "seconds": round(self.seconds, 6)}
        if self.error is not None:
            out["error"] = self.error
        return out


async def _probe(name: str, probe: Probe, timeout: float) -> ComponentHealth:
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), timeout)
    except TimeoutError:
        return ComponentHealth(name, False, time.perf_counter() - t0, f"no answer within {timeout:g} s")
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"; the reason is reported
        # The exception's class and message only: a path or an errno, never a secret (the
        # probes are pings and a wrap/unwrap of a random key).
        return ComponentHealth(name, False, time.perf_counter() - t0, f"{type(e).__name__}: {e}"[:300])
    return ComponentHealth(name, True, time.perf_counter() - t0)


async def readiness(probes: Mapping[str, Probe], timeout: float) -> tuple[bool, dict[str, object]]:
    """Run the probes concurrently; ready when all answer. Returns (ready, the JSON document)."""
    results = await asyncio.gather(*(_probe(name, p, timeout) for name, p in probes.items()))
    ready = all(r.ok for r in results)
    doc: dict[str, object] = {
        "status": "ready" if ready else "not ready",
        "components": {r.name: r.document() for r in results},
    }
    if not ready:
        doc["failed"] = [r.name for r in results if not r.ok]
    return ready, doc
