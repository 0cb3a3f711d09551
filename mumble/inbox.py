"""The inbox: receive, verify, store, answer 202; process afterwards.

Receiving runs on the request path and does only what must happen before
the answer: check the media type and size, parse, verify the signature and
that the key belongs to the activity's actor, and hand the activity to the
backend as a persisted task. Everything else happens when the task runs,
where a failure is retried instead of being lost.

Answers: 401 for anything about the signature (peers retry those), 400 for
a body that is not an activity, 413 and 415 for size and media type. A
Delete of an actor we never knew is answered 202 without fetching anything.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backends import Task, TaskOutcome
from .errors import (
    BadRequest,
    FetchError,
    MumbleError,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from .ids import MAX_IRI_BYTES, http_url, same_origin, too_long
from .jsonld import id_of, normalise, parse_json, type_names, types_of
from .signatures import SignedRequest, Verification, verify_request

if TYPE_CHECKING:
    from .federation import Federation

log = logging.getLogger("mumble.inbox")

INBOX_TYPES = ("application/activity+json", "application/ld+json", "application/json")
MAX_FETCH_RETRIES = 5
#: Types of things that are not activities: a body of one of these is a 400.
#: Other types are taken, so that activities peers invent are not refused.
NOT_ACTIVITIES = frozenset(
    {
        "Object",
        "Note",
        "Article",
        "Page",
        "Image",
        "Video",
        "Audio",
        "Document",
        "Event",
        "Place",
        "Profile",
        "Relationship",
        "Tombstone",
        "Link",
        "Mention",
        "Hashtag",
        "Emoji",
        "PropertyValue",
        "Collection",
        "OrderedCollection",
        "CollectionPage",
        "OrderedCollectionPage",
        "Person",
        "Service",
        "Application",
        "Group",
        "Organization",
    }
)
#: Activities that mean nothing without their object, and those whose object
#: must be one object (or its URL), not a list.
NEEDS_OBJECT = frozenset(
    {
        "Accept",
        "Add",
        "Announce",
        "Block",
        "Create",
        "Delete",
        "Flag",
        "Follow",
        "Like",
        "Move",
        "Reject",
        "Remove",
        "Undo",
        "Update",
    }
)
ONE_OBJECT = NEEDS_OBJECT - {"Flag", "Block"}
#: Activities whose object, when it is written out, must carry its id.
OBJECT_WITH_ID = frozenset({"Create", "Update", "Delete", "Like", "Announce", "Follow"})


@dataclass(frozen=True)
class ActivityContext:
    """What a handler gets: the activity, who sent it, to whom, and the federation."""

    federation: Federation
    activity: dict[str, Any]
    actor_id: str
    recipient: str | None = None

    @property
    def type(self) -> str:
        types = types_of(self.activity)
        return types[0] if types else ""

    @property
    def object(self) -> Any:
        return self.activity.get("object")


Handler = Callable[[ActivityContext], Awaitable[None]]


@dataclass(frozen=True)
class Received:
    """The outcome of receiving one inbound request."""

    status: int
    reason: str
    activity_id: str | None = None


def parse_activity(body: bytes) -> dict[str, Any]:
    """Parse a body into an activity with a type and an http(s) actor, or raise 400."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise BadRequest("the body is not a JSON object")
    # Named as compaction will name them, so that no spelling gets past.
    types = type_names(doc)
    if not types:
        raise BadRequest("the activity has no type")
    if all(t in NOT_ACTIVITIES for t in types):
        raise BadRequest(f"a {types[0]} is not an activity")
    for name, value in (("id", doc.get("id")), ("actor", id_of(doc.get("actor")))):
        if too_long(value):
            raise BadRequest(f"the activity's {name} is over {MAX_IRI_BYTES} bytes")
    actor = http_url(id_of(doc.get("actor")))
    if actor is None:
        raise BadRequest("the activity has no actor")
    ident = doc.get("id")
    if ident is not None and not (isinstance(ident, str) and same_origin(ident, actor)):
        raise BadRequest("the activity's id is not on its actor's origin")
    obj = doc.get("object")
    for kind in set(types) & NEEDS_OBJECT:
        if obj is None or not isinstance(obj, str | dict | list):
            raise BadRequest(f"a {kind} needs an object: a URL or a JSON object")
        if kind in ONE_OBJECT and isinstance(obj, list):
            raise BadRequest(f"a {kind} takes one object, not a list")
        if kind in OBJECT_WITH_ID:
            object_id = id_of(obj)
            if not object_id:
                raise BadRequest(f"a {kind}'s object needs an id")
            if too_long(object_id):
                raise BadRequest(f"the object's id is over {MAX_IRI_BYTES} bytes")
        if (
            kind == "Undo"
            and isinstance(obj, dict)
            and not (id_of(obj) or types_of(obj))
        ):
            raise BadRequest("an Undo's object needs an id or a type")
    if "Follow" in types and not isinstance(ident, str):
        raise BadRequest("a Follow needs an id, to be accepted by")
    if "Create" in types and isinstance(obj, str) and not same_origin(obj, actor):
        raise BadRequest("a Create by URL must name an object on its actor's origin")
    return doc


def _identity(activity: Mapping[str, Any]) -> tuple[Any, ...]:
    """An activity's id, actor and type names, however its context spells them."""
    names = frozenset(type_names(activity))
    return id_of(activity), id_of(activity.get("actor")), names


def _undone_key(actor_id: str, activity_id: str) -> str:
    return hashlib.sha256(f"{actor_id} {activity_id}".encode()).hexdigest()


def dedup_key(activity: Mapping[str, Any], body: bytes) -> str:
    ident = id_of(activity)
    return ident if ident else "sha256:" + hashlib.sha256(body).hexdigest()


class Inbox:
    def __init__(
        self, federation: Federation, handlers: Mapping[str, Sequence[Handler]]
    ) -> None:
        self.fed = federation
        self.handlers = handlers

    def check_request_shape(self, content_type: str, length: int | None) -> None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in INBOX_TYPES:
            raise UnsupportedMediaType(
                f"an inbox takes application/activity+json, not {media or 'nothing'}"
            )
        if length is not None and length > self.fed.settings.max_body_bytes:
            raise PayloadTooLarge("the body is over 1 MiB")

    async def receive(self, request: SignedRequest, recipient: str | None) -> Received:
        """Verify and store one delivery; raise a MumbleError for a 4xx answer."""
        body = request.body or b""
        if not request.headers.getall("signature", []):
            raise Unauthorized("the request is not signed")
        # Answered before the body is read, whatever it holds: a peer that
        # signs with RFC 9421 first falls back to draft-cavage on a 401.
        if "signature-input" in request.headers:
            raise Unauthorized("RFC 9421 signatures are not supported")
        activity = parse_activity(body)
        actor_id = id_of(activity["actor"])
        assert actor_id is not None

        if "Follow" in type_names(activity) and (
            await self.fed.local_user(id_of(activity["object"])) is None
        ):
            raise BadRequest("the Follow names no one here")

        if await self._is_unknown_actor_deleted(activity, actor_id):
            log.info("ignored the deletion of unknown actor %s", actor_id)
            return Received(202, "unknown actor deleted")

        verification = await verify_request(request, self.fed.actors.key)
        self._decide(verification, actor_id)

        key = dedup_key(activity, body)
        task = Task(
            id="inbound:" + hashlib.sha256(key.encode()).hexdigest(),
            kind="inbound",
            payload={
                "activity": activity,
                "recipient": recipient,
                "actor": actor_id,
                "key": key,
                "received": time.time(),
            },
        )
        await self.fed.backend.submit([task])
        return Received(202, "accepted", id_of(activity))

    def _decide(self, verification: Verification, actor_id: str) -> None:
        if not verification.ok:
            log.warning(
                "rejected a delivery from %s: %s", actor_id, verification.reason
            )
            raise Unauthorized(verification.reason)
        if verification.owner != actor_id:
            log.warning(
                "key %s of %s signed for %s",
                verification.key_id,
                verification.owner,
                actor_id,
            )
            raise Unauthorized(
                "the signing key does not belong to the activity's actor"
            )

    async def _is_unknown_actor_deleted(
        self, activity: dict[str, Any], actor_id: str
    ) -> bool:
        if (
            "Delete" not in types_of(activity)
            or id_of(activity.get("object")) != actor_id
        ):
            return False
        return await self.fed.actors.cached(actor_id) is None

    # processing

    async def process(self, task: Task) -> TaskOutcome:
        """Run the effects of one stored activity, once."""
        payload = task.payload
        activity, actor_id = payload["activity"], payload["actor"]
        if await self.fed.backend.get("seen", payload["key"]) is not None:
            return TaskOutcome()
        try:
            activity = await normalise(activity)
            if _identity(activity) != _identity(payload["activity"]):
                # Checked at the door as written, used in our own terms: the
                # two must name the same activity by the same actor.
                raise BadRequest("its @context changes its id, type or actor")
            ctx = ActivityContext(
                self.fed, activity, actor_id, payload.get("recipient")
            )
            await self._dispatch(ctx)
            for handler in self.handlers.get(ctx.type, ()):
                await handler(ctx)
        except FetchError as exc:
            if task.attempts >= MAX_FETCH_RETRIES:
                return TaskOutcome.drop(f"gave up: {exc.message}")
            return TaskOutcome.retry(time.time() + 60 * 2**task.attempts, exc.message)
        except MumbleError as exc:
            log.info("discarded %s from %s: %s", id_of(activity), actor_id, exc.message)
            return TaskOutcome.drop(exc.message)
        except RecursionError:
            # Nested past what JSON-LD processing can walk: it will not go
            # better next time.
            log.warning(
                "discarded %s from %s: nested too deeply", id_of(activity), actor_id
            )
            return TaskOutcome.drop("unprocessable: nested too deeply")
        except (ValueError, TypeError, LookupError, OverflowError) as exc:
            # A shape no check foresaw: the same data fails the same way again,
            # so keep it for inspection instead of retrying it.
            log.warning(
                "discarded %s from %s", id_of(activity), actor_id, exc_info=True
            )
            return TaskOutcome.drop(f"unprocessable: {exc.__class__.__name__}")
        await self.fed.backend.put("seen", payload["key"], {"at": time.time()})
        return TaskOutcome()

    async def _dispatch(self, ctx: ActivityContext) -> None:
        fed = self.fed
        kind = ctx.type
        if kind in ("Follow", "Like", "Announce") and await self.undone(ctx):
            return
        if kind == "Follow":
            await fed.follows.on_follow(ctx)
        elif kind == "Accept":
            await fed.follows.on_accept(ctx)
        elif kind == "Reject":
            await fed.follows.on_reject(ctx)
        elif kind == "Create":
            await fed.posts.on_create(ctx)
        elif kind in ("Like", "Announce"):
            await fed.posts.on_reaction(ctx)
        elif kind == "Delete":
            await fed.posts.on_delete(ctx)
        elif kind == "Update":
            await fed.posts.on_update(ctx)
        elif kind == "Undo":
            await self._undo(ctx)

    async def undone(self, ctx: ActivityContext) -> bool:
        """Whether this activity has been undone, perhaps before it arrived."""
        ident = id_of(ctx.activity)
        if not ident:
            return False
        if await self.fed.backend.get("undone", _undone_key(ctx.actor_id, ident)):
            log.info("%s from %s: undone already", ident, ctx.actor_id)
            return True
        return False

    async def _undo(self, ctx: ActivityContext) -> None:
        inner = ctx.activity.get("object")
        if isinstance(inner, dict) and id_of(inner.get("actor")) not in (
            None,
            ctx.actor_id,
        ):
            raise BadRequest("an actor can only undo its own activities")
        inner_id = id_of(inner)
        if inner_id and same_origin(inner_id, ctx.actor_id):
            # Deliveries overtake each other: the activity this undoes may
            # arrive later, or be processed at this moment, and must then
            # change nothing.
            await self.fed.backend.put(
                "undone",
                _undone_key(ctx.actor_id, inner_id),
                {"actor": ctx.actor_id, "id": inner_id, "at": time.time()},
            )
        inner_types = types_of(inner)
        if not inner_types and isinstance(id_of(inner), str):
            if await self.fed.backend.get("follow-ids", id_of(inner) or "") is not None:
                inner_types = ["Follow"]
            elif (
                await self.fed.backend.get("reaction-ids", id_of(inner) or "")
                is not None
            ):
                inner_types = ["Like"]
        if "Follow" in inner_types:
            await self.fed.follows.on_undo_follow(ctx, inner)
        elif set(inner_types) & {"Like", "Announce"}:
            await self.fed.posts.on_undo_reaction(ctx, inner)
