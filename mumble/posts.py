"""Posts: the local user's own, and what peers do to them.

Local posts live in the ``objects`` namespace beside the remote objects worth
keeping (replies to and mentions of local users). The outbox index orders a
user's posts by time. Replies, likes and shares of local posts are indexed,
and so counted (see :mod:`mumble.statistics`). Each reaction is keyed by
(object, kind, actor), so the same reaction delivered twice, or under a new
id, counts once.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import BadRequest, FetchError, Forbidden, Gone, NotFound
from .ids import MAX_IRI_BYTES, same_origin, too_long
from .jsonld import (
    CONTEXT,
    PUBLIC,
    as_list,
    id_of,
    ids_of,
    is_public,
    normalise_addressing,
    types_of,
)
from .sanitize import clean_object

if TYPE_CHECKING:
    from .federation import Federation
    from .inbox import ActivityContext

log = logging.getLogger("mumble.posts")

OBJECT_TYPES = frozenset(
    {"Note", "Article", "Page", "Question", "Image", "Video", "Event"}
)
REACTIONS = {"Like": "likes", "Announce": "shares"}


def is_public_post(obj: dict[str, Any]) -> bool:
    """Whether a post is addressed to the public, in ``to`` or in ``cc``."""
    return any(is_public(a) for a in as_list(obj.get("to")) + as_list(obj.get("cc")))


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def sortable_time(value: object) -> str:
    """A peer's timestamp as a fixed-width UTC time; now when it is none."""
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return iso(parsed.timestamp())
        except (ValueError, OverflowError, OSError):
            pass
    return iso(time.time())


class Posts:
    def __init__(self, federation: Federation) -> None:
        self.fed = federation
        self.backend = federation.backend

    # local posts

    async def local_post(
        self, object_id: str, *, live: bool = False
    ) -> dict[str, Any] | None:
        """The stored record of a local post; with ``live``, None once deleted."""
        record = await self.backend.get("objects", object_id)
        if record is None or not record.get("local"):
            return None
        if live and record["object"].get("type") == "Tombstone":
            return None
        return record

    async def create(self, username: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Publish an object as ``username``: give it ids, store it, deliver it."""
        kind = next((t for t in types_of(obj) if t in OBJECT_TYPES), None)
        if kind is None:
            raise BadRequest(f"cannot post an object of type {obj.get('type')!r}")
        now = time.time()
        post_id = uuid.uuid4().hex
        ids = self.fed.ids
        object_id = ids.post(username, post_id)
        actor_id = ids.actor(username)
        # Defaults only where the client said nothing: an empty list is a choice.
        to = ids_of(obj["to"]) if "to" in obj else [PUBLIC]
        cc = ids_of(obj["cc"]) if "cc" in obj else [ids.followers(username)]
        content = obj.get("content")
        if not isinstance(content, str) or not content.strip():
            raise BadRequest("a post needs content")
        note = {k: v for k, v in obj.items() if k not in ("@context", "bto", "bcc")}
        note |= {
            "id": object_id,
            "type": kind,
            "attributedTo": actor_id,
            "content": content,
            "published": iso(now),
            "url": object_id,
            "to": to,
            "cc": cc,
            "replies": f"{object_id}/replies",
            "likes": f"{object_id}/likes",
            "shares": f"{object_id}/shares",
        }
        in_reply_to = id_of(obj.get("inReplyTo"))
        if in_reply_to:
            note["inReplyTo"] = in_reply_to
        note = normalise_addressing(await clean_object(note))
        public = is_public_post(note)
        activity = {
            "@context": CONTEXT,
            "id": f"{object_id}/activity",
            "type": "Create",
            "actor": actor_id,
            "published": note["published"],
            # The note's addressing, arrays with the full public address.
            "to": note["to"],
            "cc": note["cc"],
            "object": note,
        }
        outbox_key = f"{username} {now:017.6f} {post_id}"
        records: list[tuple[str, str, dict[str, Any]]] = [
            (
                "objects",
                object_id,
                {
                    "object": note,
                    "owner": username,
                    "local": True,
                    "public": public,
                    "outbox_key": outbox_key,
                },
            ),
            ("activities", activity["id"], {"activity": activity, "owner": username}),
        ]
        if public:
            records.append(("outbox", outbox_key, {"activity": activity["id"]}))
        written: list[tuple[str, str]] = []
        try:
            for ns, key, value in records:
                await self.backend.put(ns, key, value)
                written.append((ns, key))
            await self.fed.delivery.deliver(username, activity)
        except BaseException:
            # A post is published whole or not at all: the client that got
            # an error would otherwise find half of it, and post it again.
            undo = [(ns, key) for ns, key in reversed(written)]
            undo.append(("outgoing", activity["id"]))
            for ns, key in undo:
                try:
                    await self.backend.delete(ns, key)
                except Exception:
                    log.exception("could not undo %s %s", ns, key)
            raise
        return activity

    async def delete(self, username: str, object_id: str) -> dict[str, Any]:
        record = await self.local_post(object_id)
        if record is None or record.get("owner") != username:
            raise NotFound("no such post")
        note = record["object"]
        if note.get("type") == "Tombstone":
            raise Gone("the post is deleted already")
        tombstone = {
            "id": object_id,
            "type": "Tombstone",
            "formerType": note["type"],
            "deleted": iso(time.time()),
        }
        await self.backend.put(
            "objects",
            object_id,
            {"object": tombstone, "owner": username, "local": True},
        )
        await self.backend.delete("outbox", record.get("outbox_key", ""))
        create_id = f"{object_id}/activity"
        await self.backend.delete("activities", create_id)
        # Deliveries of the Create still waiting for a retry must not bring
        # the post back after its Delete.
        await self.fed.delivery.withdraw(create_id)
        activity = {
            "@context": CONTEXT,
            "id": f"{object_id}#delete",
            "type": "Delete",
            "actor": self.fed.ids.actor(username),
            "to": note.get("to", [PUBLIC]),
            "cc": note.get("cc", []),
            "object": tombstone,
        }
        await self.fed.delivery.deliver(username, activity)
        return activity

    async def counts(self, object_id: str) -> dict[str, int]:
        record = await self.backend.get("counts", object_id) or {}
        return {k: int(record.get(k, 0)) for k in ("replies", "likes", "shares")}

    # inbound

    async def on_create(self, ctx: ActivityContext) -> None:
        obj = ctx.activity.get("object")
        if isinstance(obj, str):
            # Only the actor's own server is worth asking: anything else would
            # make us send signed requests wherever a stranger points.
            if not same_origin(obj, ctx.actor_id):
                raise Forbidden("the created object is not on its actor's origin")
            obj = await self.fed.fetcher.get_json(obj)
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise BadRequest("a Create needs an object with an id")
        if too_long(obj["id"]):
            raise BadRequest(f"the object's id is over {MAX_IRI_BYTES} bytes")
        if not same_origin(obj["id"], ctx.actor_id):
            raise Forbidden("the created object is not on its actor's origin")
        if any(author != ctx.actor_id for author in ids_of(obj.get("attributedTo"))):
            raise Forbidden("the created object is attributed to someone else")
        parent = id_of(obj.get("inReplyTo"))
        mentions_local = any(
            self.fed.ids.is_local(a)
            for a in ids_of(obj.get("to")) + ids_of(obj.get("cc"))
        )
        reply_to_local = bool(parent and await self.local_post(parent, live=True))
        if not (reply_to_local or mentions_local):
            return
        existing = await self.backend.get("objects", obj["id"])
        if existing is not None and (
            existing.get("local") or existing.get("actor") != ctx.actor_id
        ):
            raise Forbidden("the object exists already and belongs to another actor")
        clean = normalise_addressing(await clean_object(obj))
        await self.backend.put(
            "objects",
            obj["id"],
            {"object": clean, "owner": None, "local": False, "actor": ctx.actor_id},
        )
        if reply_to_local and parent:
            await self._add_reply(
                parent, obj["id"], sortable_time(obj.get("published"))
            )

    async def _add_reply(self, parent: str, reply_id: str, published: str) -> None:
        # reply-of holds the one key a reply is listed under, however often
        # and with whatever timestamps it comes; it is written first, so a
        # reply whose listing failed is listed when it comes again.
        record = {"parent": parent, "key": f"{parent} {published} {reply_id}"}
        if not await self.backend.put("reply-of", reply_id, record, only_new=True):
            record = await self.backend.get("reply-of", reply_id) or record
        await self.backend.put("replies", record["key"], {"id": reply_id})

    async def _remove_reply(self, reply_id: str) -> None:
        old = await self.backend.delete("reply-of", reply_id)
        if old is not None:
            await self.backend.delete("replies", old["key"])

    async def on_delete(self, ctx: ActivityContext) -> None:
        object_id = id_of(ctx.activity.get("object"))
        if not object_id:
            raise BadRequest("a Delete needs an object")
        if object_id == ctx.actor_id:
            await self.fed.follows.forget_actor(ctx.actor_id)
            await self.fed.actors.forget(ctx.actor_id)
            return
        if not same_origin(object_id, ctx.actor_id):
            raise Forbidden("an actor can only delete objects on its own origin")
        record = await self.backend.get("objects", object_id)
        if record is None or record.get("local") or record.get("actor") != ctx.actor_id:
            return
        await self.backend.delete("objects", object_id)
        await self._remove_reply(object_id)

    async def on_update(self, ctx: ActivityContext) -> None:
        obj = ctx.activity.get("object")
        if not isinstance(obj, dict):
            return
        if id_of(obj) == ctx.actor_id:
            try:
                await self.fed.actors.store(obj, expected_origin=ctx.actor_id)
            except FetchError as exc:
                raise BadRequest(
                    f"the updated actor is unusable: {exc.message}"
                ) from exc
            return
        record = await self.backend.get("objects", id_of(obj) or "")
        if record is None or record.get("local") or record.get("actor") != ctx.actor_id:
            return
        record["object"] = normalise_addressing(await clean_object(obj))
        await self.backend.put("objects", obj["id"], record)

    async def on_reaction(self, ctx: ActivityContext) -> None:
        kind = REACTIONS[ctx.type]
        object_id = id_of(ctx.activity.get("object"))
        if not object_id or await self.local_post(object_id, live=True) is None:
            return
        key = f"{object_id} {kind} {ctx.actor_id}"
        activity_id = id_of(ctx.activity) or key
        await self.backend.put(
            "reactions", key, {"activity": activity_id}, only_new=True
        )
        await self.backend.put(
            "reaction-ids",
            activity_id,
            {"key": key, "object": object_id, "kind": kind, "actor": ctx.actor_id},
        )
        # An Undo processed at the same moment either saw the reaction just
        # recorded, or recorded itself before this look: never neither.
        if await self.fed.inbox.undone(ctx):
            await self.backend.delete("reactions", key)
            await self.backend.delete("reaction-ids", activity_id)

    async def on_undo_reaction(self, ctx: ActivityContext, inner: Any) -> None:
        known = await self.backend.get("reaction-ids", id_of(inner) or "")
        if known is None and isinstance(inner, dict) and types_of(inner):
            kind = REACTIONS.get(types_of(inner)[0])
            object_id = id_of(inner.get("object"))
            if kind and object_id:
                known = {
                    "key": f"{object_id} {kind} {ctx.actor_id}",
                    "object": object_id,
                    "kind": kind,
                    "actor": ctx.actor_id,
                }
        if known is None:
            return
        if known["actor"] != ctx.actor_id:
            raise Forbidden("an actor can only undo its own reactions")
        await self.backend.delete("reactions", known["key"])
        for ident in {id_of(inner), known.get("activity")} - {None}:
            await self.backend.delete("reaction-ids", str(ident))
