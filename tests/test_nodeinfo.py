"""NodeInfo 2.1: what the server says about itself, and how active it is."""

from __future__ import annotations

import time

from mumble.nodeinfo import DAY, PROFILE
from tests.conftest import MumbleServer


async def nodeinfo(server: MumbleServer) -> dict[str, object]:
    status, discovery = await server.get("/.well-known/nodeinfo", "application/json")
    assert status == 200
    [link] = discovery["links"]
    assert link == {"rel": PROFILE, "href": f"{server.origin}/nodeinfo/2.1"}
    status, doc = await server.get(link["href"], "application/json")
    assert status == 200
    return doc  # type: ignore[no-any-return]


async def test_nodeinfo_counts_users_posts_and_who_has_been_active(
    server: MumbleServer,
) -> None:
    doc = await nodeinfo(server)
    assert doc["version"] == "2.1" and doc["protocols"] == ["activitypub"]
    assert doc["openRegistrations"] is False
    assert doc["usage"] == {
        "users": {"total": 1, "activeMonth": 0, "activeHalfyear": 0},
        "localPosts": 0,
    }

    status, _ = await server.outbox({"type": "Note", "content": "hello"})
    assert status == 201
    usage = (await nodeinfo(server))["usage"]
    assert usage == {
        "users": {"total": 1, "activeMonth": 1, "activeHalfyear": 1},
        "localPosts": 1,
    }


async def test_active_users_are_counted_by_when_they_last_did_something(
    server: MumbleServer,
) -> None:
    users = server.fed.users
    await users.create("bert")
    await users.create("cleo")
    await users.note_activity("alice")
    await users.note_activity("bert", at=time.time() - 100 * DAY)
    await users.note_activity("cleo", at=time.time() - 400 * DAY)
    usage = (await nodeinfo(server))["usage"]
    assert usage["users"] == {"total": 3, "activeMonth": 1, "activeHalfyear": 2}
