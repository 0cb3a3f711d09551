"""Delivery: fan-out to inboxes, retries that survive restarts, permanent failures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import unused_port

from mumble.backends import Task
from mumble.delivery import retry_after_seconds
from tests.conftest import MumbleServer, eventually, make_settings
from tests.peer import Peer, RemoteUser
from tests.test_inbox import follow, has_count, post


def creates(peer: Peer) -> list[Any]:
    return [d for d in peer.received if d.activity["type"] == "Create"]


async def tasks(server: MumbleServer) -> list[dict[str, Any]]:
    return await server.fed.backend.task_states()  # type: ignore[attr-defined,no-any-return]


async def test_a_post_reaches_each_shared_inbox_once(
    server: MumbleServer, peer: Peer
) -> None:
    other = await Peer.start()
    try:
        other.shared_inbox = False
        users = [peer.user(f"u{i}") for i in range(3)]
        carol = other.user("carol")
        for user in users:
            await follow(server, peer, user)
        await follow(server, other, carol)
        await eventually(lambda: has_count(server, "alice", "followers", 4))

        note = (await post(server))["object"]
        await eventually(lambda: len(creates(peer)) + len(creates(other)) >= 2)
        assert [d.path for d in creates(peer)] == ["/inbox"]
        assert [d.path for d in creates(other)] == ["/actors/carol/inbox"]
        for delivery in creates(peer) + creates(other):
            assert delivery.verified, delivery.reason
            assert delivery.activity["object"]["id"] == note["id"]
            assert delivery.headers["Content-Type"] == "application/activity+json"
    finally:
        await other.close()


async def test_retries_are_persisted_and_survive_a_restart(
    tmp_path: Path, peer: Peer
) -> None:
    settings = make_settings(
        tmp_path / "data", unused_port(), retry_delays=(2.0, 2.0, 2.0)
    )
    server = await MumbleServer(settings).start()
    try:
        bob = peer.user("bob")
        peer.shared_inbox = False
        await follow(server, peer, bob)
        await eventually(lambda: len(peer.received) == 1)
        peer.answer_status["/actors/bob/inbox"] = 503
        await post(server)
        await eventually(lambda: len(creates(peer)) == 1)
        await eventually(lambda: _attempted(server))
        await server.stop()

        peer.answer_status.pop("/actors/bob/inbox")
        restarted = await MumbleServer(settings).start(create_user=False)
        try:
            await eventually(lambda: len(creates(peer)) == 2, timeout=15)
            assert all(d.verified for d in creates(peer))
            await eventually(lambda: _queue_empty(restarted))
        finally:
            await restarted.close()
    finally:
        await server.close()


async def _attempted(server: MumbleServer) -> bool:
    queued = [t for t in await tasks(server) if t["kind"] == "deliver"]
    return (
        bool(queued) and queued[0]["attempts"] == 1 and queued[0]["due"] > time.time()
    )


async def _queue_empty(server: MumbleServer) -> bool:
    return not [t for t in await tasks(server) if t["state"] == "queued"]


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_inboxes_stop_retries_and_drop_the_follower(
    server: MumbleServer, peer: Peer, status: int
) -> None:
    peer.shared_inbox = False
    bob, carol = peer.user("bob"), peer.user("carol")
    await follow(server, peer, bob)
    await follow(server, peer, carol)
    await eventually(lambda: has_count(server, "alice", "followers", 2))
    peer.answer_status["/actors/bob/inbox"] = status
    await post(server)
    await eventually(lambda: has_count(server, "alice", "followers", 1))
    await eventually(lambda: _queue_empty(server))
    _, page = await server.get("/users/alice/followers?page=true")
    assert page["orderedItems"] == [carol.id]
    assert len([d for d in creates(peer) if d.path == "/actors/bob/inbox"]) == 1
    dead = [t for t in await tasks(server) if t["state"] == "dead"]
    assert [t["last_error"] for t in dead] == [f"{bob.inbox} answered {status}"]


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(
    server: MumbleServer, peer: Peer, status: int
) -> None:
    peer.shared_inbox = False
    bob = peer.user("bob")
    await follow(server, peer, bob)
    await eventually(lambda: len(peer.received) == 1)
    peer.answer_status[bob_inbox := "/actors/bob/inbox"] = status
    peer.answer_headers[bob_inbox] = {"Retry-After": "120"}
    await post(server)
    await eventually(lambda: _attempted(server))
    queued = [t for t in await tasks(server) if t["state"] == "queued"]
    assert queued[0]["due"] >= time.time() + 100
    assert queued[0]["last_error"].endswith(f"answered {status}")


async def test_retries_wait_longer_each_time_then_give_up(
    server: MumbleServer, peer: Peer
) -> None:
    delays = server.settings.retry_delays
    assert list(delays) == sorted(delays) and len(set(delays)) == len(delays)
    for attempt, delay in enumerate(delays):
        at = server.fed.delivery._retry_at(attempt)
        assert at is not None
        assert delay * 0.9 - 0.05 <= at - time.time() <= delay * 1.1
    assert server.fed.delivery._retry_at(len(delays)) is None

    peer.shared_inbox = False
    bob = peer.user("bob")
    await follow(server, peer, bob)
    await eventually(lambda: len(peer.received) == 1)
    peer.answer_status["/actors/bob/inbox"] = 500
    await post(server)
    await eventually(lambda: _queue_empty(server), timeout=20)
    [dead] = [t for t in await tasks(server) if t["kind"] == "deliver"]
    assert dead["state"] == "dead" and dead["last_error"].startswith("gave up")
    # The first try, then one after each delay.
    assert len(creates(peer)) == dead["attempts"] == len(delays) + 1


def test_retry_after_takes_seconds_or_a_date_and_is_capped() -> None:
    assert retry_after_seconds("30") == 30
    assert retry_after_seconds(None) == 0
    assert retry_after_seconds("soon") == 0
    assert retry_after_seconds("999999999") == 24 * 3600
    # A year no clock reaches is no date at all.
    assert retry_after_seconds("Fri, 1 Jan 99999999999 00:00:00 GMT") == 0
    from email.utils import formatdate

    assert 50 < retry_after_seconds(formatdate(time.time() + 60, usegmt=True)) <= 60


async def test_a_host_that_keeps_failing_is_rested(
    server: MumbleServer, peer: Peer
) -> None:
    down = "http://127.0.0.1:9/inbox"
    fed = server.fed
    outcomes = []
    for i in range(fed.settings.host_failure_threshold + 1):
        task = Task(
            f"t{i}",
            "deliver",
            {"activity": "missing", "username": "alice", "inbox": down},
        )
        await fed.backend.put(
            "outgoing", "missing", {"activity": {"id": "missing"}, "username": "alice"}
        )
        outcomes.append(await fed.delivery.attempt(task))
    assert all(not o.done and o.retry_at for o in outcomes)
    assert outcomes[-1].reason.endswith("is resting") and not outcomes[-1].count_attempt


async def test_following_a_remote_account_records_its_accept(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    status, follow_activity = await server.outbox({"type": "Follow", "object": bob.id})
    assert status == 201
    await eventually(lambda: any(d.activity["type"] == "Follow" for d in peer.received))
    delivered = next(d for d in peer.received if d.activity["type"] == "Follow")
    assert delivered.verified and delivered.activity["id"] == follow_activity["id"]
    _, page = await server.get("/users/alice/following?page=true")
    assert page["orderedItems"] == []

    accept = peer.activity(bob, "Accept", follow_activity["id"])
    assert (await peer.send(bob, f"{server.actor}/inbox", accept))[0] == 202
    await eventually(lambda: has_count(server, "alice", "following", 1))
    _, page = await server.get("/users/alice/following?page=true")
    assert page["orderedItems"] == [bob.id]

    status, _ = await server.outbox(
        {"type": "Undo", "object": {"type": "Follow", "object": bob.id}}
    )
    assert status == 201
    await eventually(lambda: any(d.activity["type"] == "Undo" for d in peer.received))
    undo = next(d for d in peer.received if d.activity["type"] == "Undo")
    assert undo.verified and undo.activity["object"]["id"] == follow_activity["id"]
    assert await server.count("alice", "following") == 0


async def test_an_accept_from_someone_else_is_ignored(
    server: MumbleServer, peer: Peer
) -> None:
    bob, eve = peer.user("bob"), peer.user("eve")
    _, follow_activity = await server.outbox({"type": "Follow", "object": bob.id})
    await peer.send(
        eve,
        f"{server.actor}/inbox",
        peer.activity(eve, "Accept", follow_activity["id"]),
    )
    await eventually(lambda: _queue_empty(server))
    assert await server.count("alice", "following") == 0


async def test_a_peer_that_is_down_gets_retries_not_a_crash(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    gone = RemoteUser("bob", bob.key, "http://127.0.0.1:9")
    await server.fed.follows.add_follower("alice", gone.id, gone.inbox, "f1")
    await post(server)
    await eventually(lambda: _attempted(server))
    queued = [t for t in await tasks(server) if t["state"] == "queued"]
    assert (
        "ClientConnectorError" in queued[0]["last_error"]
        or "127.0.0.1:9" in queued[0]["last_error"]
    )
