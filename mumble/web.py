"""The aiohttp application: routes, error answers, and the GET endpoints.

Every answer to a peer's bad input is a :class:`~mumble.errors.MumbleError`
turned into JSON with its status by :func:`error_middleware`; a 500 only
ever comes from a fault of our own, and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import nodeinfo, outbox, pages, webfinger
from .actors import local_actor
from .backends import Record
from .collections import collection_document
from .errors import Gone, MumbleError, NotFound
from .federation import Federation
from .jsonld import CONTEXT
from .negotiation import wants_activity_json
from .posts import is_public_post
from .signatures import SignedRequest
from .users import LocalUser
from .web_base import (
    FEDERATION,
    count,
    json_response,
    page_param,
    read_body,
    user_or_404,
)

log = logging.getLogger("mumble.web")


@web.middleware
async def error_middleware(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    try:
        return await handler(request)
    except MumbleError as exc:
        return json_response(
            {"error": exc.message}, status=exc.status, content_type="application/json"
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(
            {"error": exc.reason}, status=exc.status, content_type="application/json"
        )
    except Exception:
        log.exception("internal error answering %s %s", request.method, request.path)
        return json_response(
            {"error": "internal error"}, status=500, content_type="application/json"
        )


async def handle_actor(request: web.Request) -> web.StreamResponse:
    fed, user = await user_or_404(request)
    if request.match_info["username"] != user.username:
        # An actor's id is the URL it is served at, letter for letter.
        raise web.HTTPMovedPermanently(
            fed.ids.actor(user.username), headers={"Vary": "Accept"}
        )
    if wants_activity_json(request.headers.get("Accept")):
        return json_response(local_actor(fed.ids, user))
    return await _profile_html(fed, user)


async def handle_profile(request: web.Request) -> web.StreamResponse:
    fed, user = await user_or_404(request)
    if wants_activity_json(request.headers.get("Accept")):
        raise web.HTTPFound(fed.ids.actor(user.username), headers={"Vary": "Accept"})
    return await _profile_html(fed, user)


async def _profile_html(fed: Federation, user: LocalUser) -> web.Response:
    stats = {
        k: int(v)
        for k, v in (await fed.backend.get("counts", user.username) or {}).items()
    }
    records = await fed.backend.query(
        "outbox", f"{user.username} ", limit=20, descending=True
    )
    posts = []
    for record in records:
        activity = await fed.backend.get("activities", record.value["activity"])
        if activity is None:
            continue
        note = activity["activity"]["object"]
        stored = await fed.posts.local_post(note["id"])
        if stored is None or stored["object"].get("type") == "Tombstone":
            continue
        posts.append((stored["object"], await fed.posts.counts(note["id"])))
    handle = f"@{user.username}@{fed.settings.host}"
    page = pages.profile_page(local_actor(fed.ids, user), handle, stats, posts)
    return web.Response(text=page, content_type="text/html", headers={"Vary": "Accept"})


async def handle_root(request: web.Request) -> web.StreamResponse:
    """The front page of a single-user server is its owner's profile."""
    fed = request.app[FEDERATION]
    users = await fed.users.all()
    if len(users) != 1:
        raise NotFound("this server has no single owner to show")
    raise web.HTTPFound(fed.ids.profile(users[0].username))


async def handle_inbox(request: web.Request) -> web.StreamResponse:
    fed = request.app[FEDERATION]
    username = request.match_info.get("username")
    if username is not None and await fed.users.get(username) is None:
        raise NotFound("no such user")
    fed.inbox.check_request_shape(
        request.headers.get("Content-Type", ""), request.content_length
    )
    body = await read_body(request)
    signed = SignedRequest(request.method, request.raw_path, request.headers, body)
    received = await fed.inbox.receive(signed, username)
    return json_response(
        {"status": received.reason},
        status=received.status,
        content_type="application/json",
    )


async def _actor_collection(
    request: web.Request, name: str, *, accepted_only: bool = False
) -> web.StreamResponse:
    """Followers or following: the actor ids of a user's edges, paged."""
    fed, user = await user_or_404(request)

    async def render(record: Record) -> Any:
        return record.value["actor"]

    doc = await collection_document(
        fed.backend,
        collection_id=f"{fed.ids.actor(user.username)}/{name}",
        ns=name,
        prefix=f"{user.username} ",
        total=await count(fed, user.username, name),
        page=page_param(request),
        render=render,
    )
    if accepted_only and "orderedItems" in doc:
        # Requests still waiting for their Accept are not relationships yet.
        records = await fed.backend.query(name, f"{user.username} ", limit=1000)
        pending = {
            r.value["actor"] for r in records if r.value.get("state") != "accepted"
        }
        doc["orderedItems"] = [a for a in doc["orderedItems"] if a not in pending]
    return json_response(doc)


async def handle_followers(request: web.Request) -> web.StreamResponse:
    return await _actor_collection(request, "followers")


async def handle_following(request: web.Request) -> web.StreamResponse:
    return await _actor_collection(request, "following", accepted_only=True)


async def _post_record(
    request: web.Request,
) -> tuple[Federation, LocalUser, str, dict[str, Any]]:
    fed, user = await user_or_404(request)
    post_id = fed.ids.post(user.username, request.match_info["post"])
    record = await fed.posts.local_post(post_id)
    if record is None or record.get("owner") != user.username:
        raise NotFound("no such post")
    note = record["object"]
    # Posts for followers or for named people reached them by delivery;
    # nobody else is shown them here.
    if note.get("type") != "Tombstone" and not is_public_post(note):
        raise NotFound("no such post")
    return fed, user, post_id, record


async def handle_post(request: web.Request) -> web.StreamResponse:
    fed, user, post_id, record = await _post_record(request)
    note = dict(record["object"])
    if note.get("type") == "Tombstone":
        if wants_activity_json(request.headers.get("Accept")):
            return json_response({"@context": CONTEXT} | note, status=410)
        raise Gone("this post was deleted")
    counts = await fed.posts.counts(post_id)
    if not wants_activity_json(request.headers.get("Accept")):
        page = pages.post_page(note, counts, f"@{user.username}@{fed.settings.host}")
        return web.Response(
            text=page, content_type="text/html", headers={"Vary": "Accept"}
        )
    note["replies"] = {
        "id": f"{post_id}/replies",
        "type": "Collection",
        "totalItems": counts["replies"],
        "first": f"{post_id}/replies?page=true",
    }
    note["likes"] = {
        "id": f"{post_id}/likes",
        "type": "Collection",
        "totalItems": counts["likes"],
    }
    note["shares"] = {
        "id": f"{post_id}/shares",
        "type": "Collection",
        "totalItems": counts["shares"],
    }
    return json_response({"@context": CONTEXT} | note)


async def handle_post_collection(request: web.Request) -> web.StreamResponse:
    fed, _user, post_id, _record = await _post_record(request)
    name = request.match_info["collection"]
    counts = await fed.posts.counts(post_id)
    collection_id = f"{post_id}/{name}"
    if name != "replies":
        return json_response(
            {
                "@context": CONTEXT,
                "id": collection_id,
                "type": "Collection",
                "totalItems": counts[name],
            }
        )

    async def render(record: Record) -> Any:
        return record.value["id"]

    doc = await collection_document(
        fed.backend,
        collection_id=collection_id,
        ns="replies",
        prefix=f"{post_id} ",
        total=counts["replies"],
        page=page_param(request),
        render=render,
        ordered=False,
    )
    return json_response(doc)


async def handle_post_activity(request: web.Request) -> web.StreamResponse:
    fed, _user, post_id, post = await _post_record(request)
    if post["object"].get("type") == "Tombstone":
        raise Gone("this post was deleted")
    record = await fed.backend.get("activities", f"{post_id}/activity")
    if record is None:
        raise NotFound("no such activity")
    return json_response(record["activity"])


async def handle_activity(request: web.Request) -> web.StreamResponse:
    fed, user = await user_or_404(request)
    activity_id = fed.ids.activity(user.username, request.match_info["activity"])
    record = await fed.backend.get("outgoing", activity_id)
    if record is None:
        raise NotFound("no such activity")
    return json_response(record["activity"])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/.well-known/webfinger", webfinger.handle_webfinger)
    app.router.add_get("/.well-known/nodeinfo", nodeinfo.handle_discovery)
    app.router.add_get("/nodeinfo/2.1", nodeinfo.handle_nodeinfo)
    app.router.add_get("/", handle_root)
    app.router.add_post("/inbox", handle_inbox)
    app.router.add_get("/@{username}", handle_profile)
    app.router.add_get("/users/{username}", handle_actor)
    app.router.add_post("/users/{username}/inbox", handle_inbox)
    app.router.add_get("/users/{username}/outbox", outbox.handle_outbox)
    app.router.add_post("/users/{username}/outbox", outbox.handle_post_to_outbox)
    app.router.add_get("/users/{username}/followers", handle_followers)
    app.router.add_get("/users/{username}/following", handle_following)
    app.router.add_get("/users/{username}/posts/{post}", handle_post)
    app.router.add_get("/users/{username}/posts/{post}/activity", handle_post_activity)
    app.router.add_get(
        r"/users/{username}/posts/{post}/{collection:replies|likes|shares}",
        handle_post_collection,
    )
    app.router.add_get("/users/{username}/activities/{activity}", handle_activity)
