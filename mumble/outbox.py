"""The outbox: a user's public activities, and the owner's way to act.

GET serves the Create activities of the user's posts, newest first, as a
paged ``OrderedCollection``. POST is for the owner, authenticated with the
bearer token issued when the user was created, and takes what a client
sends: a bare object (wrapped in a Create), a Create, a Follow, an Undo of a
Follow, or a Delete of one of the user's posts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .backends import Record
from .collections import collection_document
from .errors import BadRequest, UnsupportedMediaType
from .inbox import INBOX_TYPES
from .jsonld import id_of, parse_json, types_of
from .posts import OBJECT_TYPES
from .web_base import (
    count,
    json_response,
    owner_or_401,
    page_param,
    read_body,
    user_or_404,
)
from .webfinger import resolve


async def handle_outbox(request: web.Request) -> web.StreamResponse:
    fed, user = await user_or_404(request)

    async def render(record: Record) -> Any:
        activity = await fed.backend.get("activities", record.value["activity"])
        return activity["activity"] if activity else record.value["activity"]

    doc = await collection_document(
        fed.backend,
        collection_id=fed.ids.outbox(user.username),
        ns="outbox",
        prefix=f"{user.username} ",
        total=await count(fed, user.username, "posts"),
        page=page_param(request),
        render=render,
        descending=True,
    )
    return json_response(doc)


async def handle_post_to_outbox(request: web.Request) -> web.StreamResponse:
    fed, user = await owner_or_401(request)
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media not in INBOX_TYPES:
        raise UnsupportedMediaType("the outbox takes application/activity+json")
    doc = parse_json(await read_body(request))
    if not isinstance(doc, dict):
        raise BadRequest("the body is not a JSON object")
    types = set(types_of(doc))
    username = user.username

    if types & OBJECT_TYPES:
        activity = await fed.posts.create(username, doc)
    elif "Create" in types and isinstance(doc.get("object"), dict):
        activity = await fed.posts.create(username, doc["object"] | _addressing(doc))
    elif "Follow" in types:
        target = id_of(doc.get("object"))
        if not target:
            raise BadRequest("a Follow needs an object")
        activity = await fed.follows.follow(username, await resolve(fed, target))
    elif "Undo" in types and "Follow" in types_of(doc.get("object")):
        target = id_of(doc["object"].get("object"))
        if not target:
            raise BadRequest("the undone Follow needs an object")
        activity = await fed.follows.unfollow(username, await resolve(fed, target))
    elif "Delete" in types:
        target = id_of(doc.get("object"))
        if not target:
            raise BadRequest("a Delete needs an object")
        activity = await fed.posts.delete(username, target)
    else:
        raise BadRequest(
            f"the outbox does not take {sorted(types) or 'untyped objects'}"
        )
    await fed.users.note_activity(username)
    return json_response(activity, status=201, headers={"Location": activity["id"]})


def _addressing(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("to", "cc") if k in doc}
