"""Mumble federating with a real Fedify server, signatures checked on both sides."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import MumbleServer, eventually, make_settings

from .fedify_peer import FedifyPeer, node_available

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not node_available(), reason="node and npm are needed"),
]


@pytest.fixture
async def fedify() -> AsyncIterator[FedifyPeer]:
    async with FedifyPeer.start() as peer:
        yield peer


async def followers_of(server: MumbleServer) -> list[str]:
    _, page = await server.get("/users/alice/followers?page=true")
    return list(page["orderedItems"])


async def test_fedify_finds_and_follows_the_user_and_gets_a_signed_accept(
    server: MumbleServer, fedify: FedifyPeer
) -> None:
    found = await fedify.lookup(server.actor, summary=True)
    assert found["id"] == server.actor
    assert found["inbox"] == f"{server.actor}/inbox"
    assert [k["id"] for k in found["publicKeys"]] == [f"{server.actor}#main-key"]

    follow_id = await fedify.follow(server.actor)
    accept = await fedify.wait_for(lambda a: a["type"] == "Accept")
    assert accept["actor"] == server.actor
    assert accept["json"]["object"]["id"] == follow_id
    assert await fedify.rejected() == []
    assert [f["accepted"] for f in await fedify.following()] == [True]
    assert await followers_of(server) == [fedify.actor_id]


async def test_a_post_reaches_fedify_and_its_reply_and_like_are_counted(
    server: MumbleServer, fedify: FedifyPeer
) -> None:
    await fedify.follow(server.actor)
    await fedify.wait_for(lambda a: a["type"] == "Accept")

    status, create = await server.outbox(
        {"type": "Note", "content": "<p>Hello, Fedify</p>"}
    )
    assert status == 201
    note_id = create["object"]["id"]
    received = await fedify.wait_for(lambda a: a["type"] == "Create")
    assert received["id"] == create["id"] and received["actor"] == server.actor
    assert received["object"]["id"] == note_id
    assert "Hello, Fedify" in received["object"]["content"]
    assert await fedify.rejected() == []

    reply = await fedify.reply(server.actor, note_id, "<p>Hello back</p>")
    like_id = await fedify.like(server.actor, note_id)

    async def counted() -> bool:
        return await server.fed.posts.counts(note_id) == {
            "replies": 1,
            "likes": 1,
            "shares": 0,
        }

    await eventually(counted)
    _, replies = await server.get(f"{note_id}/replies?page=true")
    assert replies["items"] == [reply["noteId"]]

    await fedify.undo_like(server.actor, like_id, note_id)

    async def uncounted() -> bool:
        return (await server.fed.posts.counts(note_id))["likes"] == 0

    await eventually(uncounted)


async def test_fedify_unfollowing_removes_it_from_followers(
    server: MumbleServer, fedify: FedifyPeer
) -> None:
    await fedify.follow(server.actor)
    await fedify.wait_for(lambda a: a["type"] == "Accept")
    assert await followers_of(server) == [fedify.actor_id]

    await fedify.unfollow(server.actor)

    async def gone() -> bool:
        return await followers_of(server) == []

    await eventually(gone)
    _, collection = await server.get("/users/alice/followers")
    assert collection["totalItems"] == 0


async def test_mumble_follows_fedify_and_records_its_accept(
    server: MumbleServer, fedify: FedifyPeer
) -> None:
    status, follow = await server.outbox({"type": "Follow", "object": fedify.actor_id})
    assert status == 201
    await eventually(lambda: _followers_contain(fedify, server.actor))

    async def accepted() -> bool:
        _, page = await server.get("/users/alice/following?page=true")
        return bool(page["orderedItems"] == [fedify.actor_id])

    await eventually(accepted)
    record = await server.fed.backend.get("following", f"alice {fedify.actor_id}")
    assert (
        record is not None
        and record["state"] == "accepted"
        and record["follow"] == follow["id"]
    )
    assert await fedify.rejected() == []


async def _followers_contain(fedify: FedifyPeer, actor: str) -> bool:
    return actor in await fedify.followers()


async def test_mumble_survives_what_fedify_sends_twice(
    tmp_path, fedify: FedifyPeer
) -> None:  # type: ignore[no-untyped-def]
    from aiohttp.test_utils import unused_port

    server = await MumbleServer(make_settings(tmp_path / "data", unused_port())).start()
    try:
        await fedify.follow(server.actor)
        await fedify.wait_for(lambda a: a["type"] == "Accept")
        await fedify.follow(server.actor)

        async def two_accepts() -> bool:
            return len([a for a in await fedify.inbox() if a["type"] == "Accept"]) == 2

        await eventually(two_accepts)
        assert await server.count("alice", "followers") == 1
    finally:
        await server.close()
