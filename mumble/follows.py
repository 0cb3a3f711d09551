"""Follow relationships, both ways: who follows a local user, whom they follow.

Edges are records keyed ``"<username> <actor id>"`` in the ``followers`` and
``following`` namespaces; follow activity ids map back to their edge so an
Undo or Accept that names only an id finds it. Counts follow from the
edges (see :mod:`mumble.statistics`), so repeated deliveries change nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from .errors import BadRequest, NotFound
from .jsonld import CONTEXT, id_of, types_of

if TYPE_CHECKING:
    from .federation import Federation
    from .inbox import ActivityContext

log = logging.getLogger("mumble.follows")


def edge(username: str, actor_id: str) -> str:
    return f"{username} {actor_id}"


class Follows:
    def __init__(self, federation: Federation) -> None:
        self.fed = federation
        self.backend = federation.backend

    # followers

    async def add_follower(
        self,
        username: str,
        actor_id: str,
        inbox: str,
        follow_id: str,
        personal_inbox: str | None = None,
    ) -> bool:
        """Record a follower; ``inbox`` is where deliveries go (shared if any)."""
        record = {
            "actor": actor_id,
            "inbox": inbox,
            "personal": personal_inbox or inbox,
            "follow": follow_id,
            "since": time.time(),
        }
        new = await self.backend.put(
            "followers", edge(username, actor_id), record, only_new=True
        )
        if not new:
            await self.backend.put("followers", edge(username, actor_id), record)
        await self.backend.put(
            "follow-ids", follow_id, {"username": username, "actor": actor_id}
        )
        return new

    async def remove_follower(self, username: str, actor_id: str) -> bool:
        old = await self.backend.delete("followers", edge(username, actor_id))
        if old is None:
            return False
        await self.backend.delete("follow-ids", old.get("follow", ""))
        log.info("%s no longer follows %s", actor_id, username)
        return True

    async def follower_inboxes(self, username: str) -> set[str]:
        """The inbox of every follower, shared inboxes preferred."""
        inboxes: set[str] = set()
        after = None
        while True:
            page = await self.backend.query(
                "followers", f"{username} ", after=after, limit=1000
            )
            inboxes.update(r.value["inbox"] for r in page)
            if len(page) < 1000:
                return inboxes
            after = page[-1].key

    async def remove_followers_at(self, username: str, inbox: str) -> int:
        """Drop the followers whose own inbox is gone; return how many.

        A shared inbox that is gone says nothing of any one follower behind
        it, so it removes none.
        """
        gone, after = [], None
        while True:
            page = await self.backend.query(
                "followers", f"{username} ", after=after, limit=1000
            )
            gone += [
                r.value["actor"]
                for r in page
                if r.value.get("personal", r.value["inbox"]) == inbox
            ]
            if len(page) < 1000:
                break
            after = page[-1].key
        for actor_id in gone:
            await self.remove_follower(username, actor_id)
        return len(gone)

    # inbound

    async def on_follow(self, ctx: ActivityContext) -> None:
        user = await self.fed.local_user(id_of(ctx.activity.get("object")))
        if user is None:
            raise NotFound("the Follow names no local actor")
        username = user.username
        follow_id = id_of(ctx.activity)
        if not follow_id:
            raise BadRequest("a Follow needs an id")
        actor = await self.fed.actors.get(ctx.actor_id)
        if not self.fed.settings.auto_accept_follows:
            await self.backend.put(
                "follow-requests",
                edge(username, actor.id),
                {"activity": ctx.activity},
            )
            return
        await self.add_follower(
            username, actor.id, actor.delivery_inbox, follow_id, actor.inbox
        )
        # An Undo processed at the same moment either saw the edge just
        # added, or recorded itself before this look: never neither.
        if await self.fed.inbox.undone(ctx):
            await self.remove_follower(username, actor.id)
            return
        accept = {
            "@context": CONTEXT,
            "id": self.fed.ids.activity(username, str(uuid.uuid4())),
            "type": "Accept",
            "actor": self.fed.ids.actor(username),
            "object": _bare(ctx.activity),
            "to": [actor.id],
        }
        await self.fed.delivery.send(username, accept, [actor.inbox])

    async def on_undo_follow(self, ctx: ActivityContext, follow: Any) -> None:
        follow_id = id_of(follow)
        known = await self.backend.get("follow-ids", follow_id) if follow_id else None
        if known is not None:
            username, actor_id = known["username"], known["actor"]
        elif isinstance(follow, dict):
            user = await self.fed.local_user(id_of(follow.get("object")))
            if user is None:
                return
            username, actor_id = user.username, ctx.actor_id
        else:
            return
        if actor_id != ctx.actor_id:
            raise BadRequest("an actor can only undo its own Follow")
        await self.remove_follower(username, actor_id)

    # following

    async def follow(self, username: str, actor_id: str) -> dict[str, Any]:
        """Send a Follow from a local user; the edge stays pending until Accepted."""
        actor = await self.fed.actors.get(actor_id)
        follow_id = self.fed.ids.activity(username, str(uuid.uuid4()))
        activity = {
            "@context": CONTEXT,
            "id": follow_id,
            "type": "Follow",
            "actor": self.fed.ids.actor(username),
            "object": actor.id,
            "to": [actor.id],
        }
        record = {
            "actor": actor.id,
            "inbox": actor.inbox,
            "follow": follow_id,
            "state": "pending",
        }
        await self.backend.put("following", edge(username, actor.id), record)
        await self.backend.put(
            "outgoing-follows", follow_id, {"username": username, "actor": actor.id}
        )
        await self.fed.delivery.send(username, activity, [actor.inbox])
        return activity

    async def unfollow(self, username: str, actor_id: str) -> dict[str, Any]:
        old = await self.backend.delete("following", edge(username, actor_id))
        if old is None:
            raise NotFound(f"{username} does not follow {actor_id}")
        await self.backend.delete("outgoing-follows", old["follow"])
        undo = {
            "@context": CONTEXT,
            "id": self.fed.ids.activity(username, str(uuid.uuid4())),
            "type": "Undo",
            "actor": self.fed.ids.actor(username),
            "object": {
                "id": old["follow"],
                "type": "Follow",
                "actor": self.fed.ids.actor(username),
                "object": actor_id,
            },
            "to": [actor_id],
        }
        await self.fed.delivery.send(username, undo, [old["inbox"]])
        return undo

    async def _outgoing(
        self, ctx: ActivityContext
    ) -> tuple[str, dict[str, Any]] | None:
        """The local follow an Accept or Reject answers, checked against its sender."""
        follow = ctx.activity.get("object")
        known = await self.backend.get("outgoing-follows", id_of(follow) or "")
        if known is None and isinstance(follow, dict) and "Follow" in types_of(follow):
            local = await self.fed.local_user(id_of(follow.get("actor")))
            if local is not None:
                known = {
                    "username": local.username,
                    "actor": id_of(follow.get("object")),
                }
        if known is None or known["actor"] != ctx.actor_id:
            return None
        key = edge(known["username"], known["actor"])
        record = await self.backend.get("following", key)
        return (key, record) if record is not None else None

    async def on_accept(self, ctx: ActivityContext) -> None:
        found = await self._outgoing(ctx)
        if found is None:
            return
        key, record = found
        if record.get("state") != "accepted":
            await self.backend.put("following", key, record | {"state": "accepted"})

    async def on_reject(self, ctx: ActivityContext) -> None:
        found = await self._outgoing(ctx)
        if found is None:
            return
        await self.backend.delete("following", found[0])

    async def forget_actor(self, actor_id: str) -> None:
        """Remove every edge with an actor that was deleted."""
        for user in await self.fed.users.all():
            await self.remove_follower(user.username, actor_id)
            await self.backend.delete("following", edge(user.username, actor_id))


def _bare(activity: dict[str, Any]) -> dict[str, Any]:
    """An activity as an embedded object: without its own @context."""
    return {k: v for k, v in activity.items() if k != "@context"}
