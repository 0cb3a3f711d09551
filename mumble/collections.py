"""Paged ``OrderedCollection`` documents over ordered backend keys.

A collection answers with its size and a link to its first page; each page
carries up to ``PAGE_SIZE`` items and, when more exist, a ``next`` link whose
cursor is the opaque, URL-safe form of the last key it showed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from .backends import Backend, Record
from .errors import BadRequest
from .jsonld import CONTEXT

PAGE_SIZE = 20

Render = Callable[[Record], Awaitable[Any]]


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("malformed page cursor") from exc


async def collection_document(
    backend: Backend,
    *,
    collection_id: str,
    ns: str,
    prefix: str,
    total: int,
    page: str | None,
    render: Render,
    descending: bool = False,
    ordered: bool = True,
) -> dict[str, Any]:
    """The collection itself (``page`` None) or one of its pages."""
    kind = "OrderedCollection" if ordered else "Collection"
    if page is None:
        return {
            "@context": CONTEXT,
            "id": collection_id,
            "type": kind,
            "totalItems": total,
            "first": f"{collection_id}?page=true",
        }
    after = None if page == "true" else prefix + decode_cursor(page)
    records = await backend.query(
        ns, prefix, after=after, limit=PAGE_SIZE + 1, descending=descending
    )
    more = len(records) > PAGE_SIZE
    records = records[:PAGE_SIZE]
    items = [await render(r) for r in records]
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "id": f"{collection_id}?page={page}",
        "type": f"{kind}Page",
        "partOf": collection_id,
        "totalItems": total,
        "orderedItems" if ordered else "items": items,
    }
    if more:
        cursor = encode_cursor(records[-1].key[len(prefix) :])
        doc["next"] = f"{collection_id}?page={cursor}"
    return doc
