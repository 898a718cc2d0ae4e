"""DeleteObjects: POST /bucket?delete with a <Delete> document of up to 1000 keys."""

from __future__ import annotations

from aiohttp import web

from coffre.core.errors import AccessDenied, MalformedXML
from coffre.core.objects import DeleteOutcome
from coffre.s3 import authz, xml
from coffre.s3.context import Ctx, operation
from coffre.s3.errors import status_and_code
from coffre.s3.handlers.documents import read_verified
from coffre.s3.handlers.objects import removed
from coffre.s3.xml import Doc


def _items(body: bytes, max_keys: int) -> tuple[list[tuple[str, str | None]], bool]:
    root = xml.parse(body)
    if root.tag != "Delete":
        raise MalformedXML()
    quiet = (xml.text(root, "Quiet") or "").strip().lower() == "true"
    items: list[tuple[str, str | None]] = []
    for el in root.findall("Object"):
        key = xml.text(el, "Key")
        if key is None:
            raise MalformedXML()
        items.append((key, xml.text(el, "VersionId")))
    # An empty list or more than the limit: AWS rejects the document as a whole.
    if not items or len(items) > max_keys:
        raise MalformedXML()
    return items, quiet


@operation("DeleteObjects")
async def delete_objects(ctx: Ctx) -> web.StreamResponse:
    body = await read_verified(ctx)
    items, quiet = _items(body, ctx.settings.max_delete_objects)
    # Each key is authorised on its own; a denied one is an AccessDenied entry (AWS).
    permitted = [await authz.delete_allowed(ctx, key, version_id) for key, version_id in items]
    chosen = [it for it, ok in zip(items, permitted, strict=True) if ok]
    # x-amz-bypass-governance-retention covers every key, each asked s3:BypassGovernanceRetention.
    bypass = [await authz.bypass_governance(ctx, key, version_id) for key, version_id in chosen]
    done = iter(await ctx.coffre.objects.delete_objects(ctx.p, ctx.b, chosen, bypass) if chosen else [])
    outcomes = [next(done) if ok else DeleteOutcome(key, version_id, AccessDenied())
                for (key, version_id), ok in zip(items, permitted, strict=True)]
    doc = Doc("DeleteResult")
    for o in outcomes:
        if o.error is None:
            ctx.changes.append(removed(o.key, o.version_id, o.deleted))
            if not quiet:
                doc.open("Deleted").leaf("Key", o.key).leaf("VersionId", o.version_id)
                if o.deleted.delete_marker:
                    # The marker created (simple delete) or the marker version removed.
                    doc.leaf("DeleteMarker", True).leaf("DeleteMarkerVersionId", o.deleted.version_id)
                doc.close("Deleted")
            continue
        _, code = status_and_code(o.error)
        doc.open("Error").leaf("Key", o.key).leaf("VersionId", o.version_id)
        doc.leaf("Code", code).leaf("Message", str(o.error)).close("Error")
    doc.close("DeleteResult")
    return ctx.xml(doc)
