"""JSON-LD over bundled contexts, and the shape rules peers rely on.

Peers send any multi-valued property either as one value or as a list, and
spell the public address three ways. The helpers here normalise both. pyld is
given a document loader that serves the contexts shipped in
``mumble/contexts`` and refuses everything else, so no context is ever fetched
from the network. pyld is synchronous and slow; :func:`expand` and
:func:`compact` run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import math
import re
from importlib import resources
from typing import Any

from .errors import BadRequest

log = logging.getLogger("mumble.jsonld")

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
_PUBLIC_ALIASES = frozenset({PUBLIC, "as:Public", "Public"})

#: The context of every document Mumble emits.
CONTEXT: list[Any] = [
    AS_CONTEXT,
    SECURITY_CONTEXT,
    {
        "toot": "http://joinmastodon.org/ns#",
        "schema": "http://schema.org#",
        "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
        "sensitive": "as:sensitive",
        "discoverable": "toot:discoverable",
        "indexable": "toot:indexable",
        "PropertyValue": "schema:PropertyValue",
        "value": "schema:value",
    },
]

#: Properties always emitted as arrays, whatever pyld's compaction says.
ARRAY_PROPERTIES = ("to", "cc", "bto", "bcc", "tag", "attachment", "audience")


_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
#: The deepest nesting taken from a peer; real activities stay under a dozen.
MAX_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is not a number JSON can carry")
    return number


def _bounded(text: str) -> int:
    number = int(text)
    if not -(2**63) <= number < 2**64:
        raise ValueError(f"{text[:20]}... is larger than any number peers share")
    return number


def _depth(doc: Any) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(body: bytes | str) -> Any:
    """Parse strict JSON from the network, or raise :class:`BadRequest`.

    Strict means what peers can read back: UTF-8 only, no NaN or Infinity
    (nor floats too large to be anything else, nor integers beyond 64 bits),
    no lone surrogates, and no nesting deeper than :data:`MAX_DEPTH`.
    """
    try:
        # json.loads would take UTF-16 and UTF-32 bytes too, and with them
        # surrogates that no escape check sees.
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise BadRequest("the body is not UTF-8") from exc
    try:
        doc = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, parse_int=_bounded
        )
        # A lone surrogate parses but can be neither stored nor sent again. In
        # UTF-8 it can only come from a \u escape, so most bodies skip the check.
        if not isinstance(body, bytes) or _SURROGATE_ESCAPE.search(body):
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except RecursionError as exc:
        raise BadRequest("the JSON is nested too deeply") from exc
    except (ValueError, UnicodeError) as exc:
        raise BadRequest("the body is not valid JSON") from exc
    # Brackets are counted at C speed; only a body with enough of them to be
    # too deep is walked.
    brackets = text.count("{") + text.count("[")
    if brackets > MAX_DEPTH and _depth(doc) > MAX_DEPTH:
        raise BadRequest(f"the JSON is nested more than {MAX_DEPTH} deep")
    return doc


def type_names(doc: Any) -> list[str]:
    """A document's types as our terms name them: ``as:Follow`` and the full
    ActivityStreams IRI are ``Follow``, as compaction would make them."""
    return [_AS_TERM.sub("", t) for t in types_of(doc)]


_AS_TERM = re.compile(r"^(?:as:|https://www\.w3\.org/ns/activitystreams#)")


def as_list(value: Any) -> list[Any]:
    """Return a property's values as a list: absent is empty, one is a list of one."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def id_of(value: Any) -> str | None:
    """Return the id of a reference: a string, or an object's ``id``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        ident = value.get("id")
        return ident if isinstance(ident, str) else None
    return None


def ids_of(value: Any) -> list[str]:
    """Return the ids of a multi-valued reference property."""
    return [i for i in map(id_of, as_list(value)) if i]


def is_public(address: Any) -> bool:
    return id_of(address) in _PUBLIC_ALIASES


def types_of(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return []
    return [t for t in as_list(obj.get("type")) if isinstance(t, str)]


def normalise_addressing(obj: dict[str, Any]) -> dict[str, Any]:
    """Arrays for the multi-valued properties, the full Public IRI in addresses."""
    out = dict(obj)
    for name in ARRAY_PROPERTIES:
        if name in out:
            values = as_list(out[name])
            if name in ("to", "cc", "bto", "bcc", "audience"):
                values = [PUBLIC if is_public(v) else v for v in values]
            out[name] = values
    if isinstance(out.get("object"), dict):
        out["object"] = normalise_addressing(out["object"])
    return out


@functools.cache
def _documents() -> dict[str, Any]:
    folder = resources.files("mumble") / "contexts"
    index = json.loads((folder / "index.json").read_text("utf-8"))
    docs: dict[str, Any] = {}
    for url, entry in index["documents"].items():
        docs[url] = json.loads((folder / entry["file"]).read_text("utf-8"))
    return docs


def _key(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/")


@functools.cache
def _by_key() -> dict[str, Any]:
    return {_key(url): doc for url, doc in _documents().items()}


def bundled_context_urls() -> list[str]:
    return sorted(_documents())


def load_document(url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """pyld document loader: a bundled context, or a refusal."""
    doc = _by_key().get(_key(url))
    if doc is None:
        from pyld.jsonld import JsonLdError

        raise JsonLdError(
            f"context {url} is not bundled",
            "jsonld.LoadDocumentError",
            code="loading remote context failed",
        )
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": copy.deepcopy(doc),
    }


def _run(op: str, doc: Any, *args: Any) -> Any:
    from pyld import jsonld

    options = {"documentLoader": load_document, "base": None}
    try:
        return getattr(jsonld, op)(doc, *args, options)
    except jsonld.JsonLdError as exc:
        raise BadRequest(f"invalid JSON-LD: {exc}") from exc


def expand_sync(doc: dict[str, Any]) -> list[Any]:
    return _run("expand", doc)  # type: ignore[no-any-return]


def compact_sync(doc: Any, context: Any = None) -> dict[str, Any]:
    ctx = CONTEXT if context is None else context
    result = _run("compact", doc, {"@context": ctx})
    return normalise_addressing(result)


async def expand(doc: dict[str, Any]) -> list[Any]:
    """Expand a document in a worker thread, over bundled contexts only."""
    return await asyncio.to_thread(expand_sync, doc)


async def compact(doc: Any, context: Any = None) -> dict[str, Any]:
    """Compact a document to Mumble's context, arrays kept where peers expect them."""
    return await asyncio.to_thread(compact_sync, doc, context)


_PLAIN_CONTEXTS = frozenset({AS_CONTEXT, SECURITY_CONTEXT})


async def normalise(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring an activity to Mumble's own terms, whatever context it was written in.

    Documents in the plain ActivityStreams context are only reshaped; others
    are compacted to :data:`CONTEXT` by pyld, off the event loop. A document
    whose context is not bundled cannot be compacted without fetching, so it
    is kept as written (peers name their terms conventionally, and every
    reader here is lenient about shapes).
    """
    contexts = as_list(doc.get("@context"))
    if all(isinstance(c, str) and c in _PLAIN_CONTEXTS for c in contexts):
        return normalise_addressing(doc)
    try:
        return await compact(doc)
    except BadRequest as exc:
        log.info("kept %s as written: %s", id_of(doc), exc.message)
        return normalise_addressing(doc)
