"""The inbox: what it answers to good and bad deliveries, and what it does after."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mumble.jsonld import PUBLIC
from tests.conftest import MumbleServer, eventually
from tests.peer import Peer, RemoteUser


async def snapshot(server: MumbleServer) -> dict[str, Any]:
    """Everything the backend holds, to prove a rejected delivery changed nothing."""
    backend = server.fed.backend
    names = ("followers", "objects", "counts", "reactions", "seen", "actors", "replies")
    records = {
        ns: [(r.key, r.value) for r in await backend.query(ns, limit=10_000)]
        for ns in names
    }
    records["tasks"] = [t["id"] for t in await backend.task_states()]  # type: ignore[attr-defined]
    return records


async def follow(server: MumbleServer, peer: Peer, user: RemoteUser) -> dict[str, Any]:
    activity = peer.activity(user, "Follow", server.actor)
    status, _ = await peer.send(user, f"{server.actor}/inbox", activity)
    assert status == 202
    await eventually(
        lambda: any(
            d.activity["type"] == "Accept"
            and d.activity["object"]["id"] == activity["id"]
            for d in peer.received
        )
    )
    return activity


async def test_follow_is_accepted_with_a_signed_accept_and_listed(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    activity = await follow(server, peer, bob)

    await eventually(lambda: any(d.activity["type"] == "Accept" for d in peer.received))
    accept = next(d for d in peer.received if d.activity["type"] == "Accept")
    assert accept.verified, accept.reason
    assert accept.path == "/actors/bob/inbox"
    assert accept.activity["object"]["id"] == activity["id"]
    assert accept.activity["actor"] == server.actor
    status, page = await server.get("/users/alice/followers?page=true")
    assert status == 200 and page["orderedItems"] == [bob.id]
    _, collection = await server.get("/users/alice/followers")
    assert collection["totalItems"] == 1


async def test_a_duplicate_delivery_has_no_second_effect(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    activity = await follow(server, peer, bob)
    await eventually(lambda: len(peer.received) == 1)

    status, _ = await peer.send(bob, f"{server.origin}/inbox", activity)
    assert status == 202
    await eventually(lambda: _no_tasks(server))
    assert await server.count("alice", "followers") == 1
    assert len([d for d in peer.received if d.activity["type"] == "Accept"]) == 1


async def has_count(server: MumbleServer, key: str, name: str, value: int) -> bool:
    return await server.count(key, name) == value


async def _no_tasks(server: MumbleServer) -> bool:
    tasks = await server.fed.backend.task_states()  # type: ignore[attr-defined]
    return all(t["state"] != "queued" for t in tasks)


async def test_undo_follow_in_all_three_shapes(
    server: MumbleServer, peer: Peer
) -> None:
    inbox = f"{server.actor}/inbox"
    shapes = {
        "embedded": lambda f: {k: v for k, v in f.items() if k != "@context"},
        "by id": lambda f: f["id"],
        "embedded without id": lambda f: {
            "type": "Follow",
            "actor": f["actor"],
            "object": f["object"],
        },
    }
    for name, shape in shapes.items():
        user = peer.user(f"u{len(peer.users)}")
        activity = await follow(server, peer, user)
        undo = peer.activity(user, "Undo", shape(activity))
        status, _ = await peer.send(user, inbox, undo)
        assert status == 202, name
        await eventually(lambda: has_count(server, "alice", "followers", 0))
        _, page = await server.get("/users/alice/followers?page=true")
        assert page["orderedItems"] == [], name


async def test_undo_of_something_never_seen_is_a_no_op(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    undo = peer.activity(bob, "Undo", f"{bob.id}/activities/never-sent")
    status, _ = await peer.send(bob, f"{server.actor}/inbox", undo)
    assert status == 202
    await eventually(lambda: _no_tasks(server))
    assert (await server.fed.backend.task_states()) == []  # type: ignore[attr-defined]


async def post(server: MumbleServer, text: str = "<p>hello</p>") -> dict[str, Any]:
    status, activity = await server.outbox({"type": "Note", "content": text})
    assert status == 201, activity
    return activity


async def test_replies_likes_and_shares_are_counted_and_undone(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    note = (await post(server))["object"]
    inbox = f"{server.origin}/inbox"
    reply = {
        "id": f"{bob.id}/notes/1",
        "type": "Note",
        "attributedTo": bob.id,
        "content": "<p>hi <script>alert(1)</script></p>",
        "inReplyTo": note["id"],
        "to": PUBLIC,
        "published": "2026-01-01T00:00:00Z",
    }
    like = peer.activity(bob, "Like", note["id"])
    share = peer.activity(bob, "Announce", note["id"], to=["as:Public"])
    for activity in (peer.activity(bob, "Create", reply), like, share):
        assert (await peer.send(bob, inbox, activity))[0] == 202
    await eventually(lambda: _no_tasks(server))

    assert await server.fed.posts.counts(note["id"]) == {
        "replies": 1,
        "likes": 1,
        "shares": 1,
    }
    status, doc = await server.get(note["id"])
    assert status == 200
    assert doc["replies"]["totalItems"] == 1 and doc["likes"]["totalItems"] == 1
    assert doc["shares"]["totalItems"] == 1
    _, replies = await server.get(f"{note['id']}/replies?page=true")
    assert replies["items"] == [reply["id"]]
    stored = await server.fed.backend.get("objects", reply["id"])
    assert stored is not None and "script" not in stored["object"]["content"]

    # The same like again, under a new id, counts once.
    assert (await peer.send(bob, inbox, peer.activity(bob, "Like", note["id"])))[
        0
    ] == 202
    await eventually(lambda: _no_tasks(server))
    assert (await server.fed.posts.counts(note["id"]))["likes"] == 1

    await peer.send(bob, inbox, peer.activity(bob, "Undo", like["id"]))
    await peer.send(
        bob,
        inbox,
        peer.activity(bob, "Undo", {k: v for k, v in share.items() if k != "@context"}),
    )
    await peer.send(bob, inbox, peer.activity(bob, "Delete", reply["id"]))
    await eventually(lambda: _no_tasks(server))
    assert await server.fed.posts.counts(note["id"]) == {
        "replies": 0,
        "likes": 0,
        "shares": 0,
    }


async def test_someone_else_cannot_undo_a_like(
    server: MumbleServer, peer: Peer
) -> None:
    bob, eve = peer.user("bob"), peer.user("eve")
    note = (await post(server))["object"]
    like = peer.activity(bob, "Like", note["id"])
    await peer.send(bob, f"{server.origin}/inbox", like)
    await eventually(lambda: _no_tasks(server))
    await peer.send(
        eve, f"{server.origin}/inbox", peer.activity(eve, "Undo", like["id"])
    )
    await eventually(lambda: _no_tasks(server))
    assert (await server.fed.posts.counts(note["id"]))["likes"] == 1
    dead = [t for t in await server.fed.backend.task_states() if t["state"] == "dead"]  # type: ignore[attr-defined]
    assert [t["last_error"] for t in dead] == [
        "an actor can only undo its own reactions"
    ]


async def test_delete_of_an_unknown_actor_is_accepted_without_fetching(
    server: MumbleServer, peer: Peer
) -> None:
    ghost = RemoteUser("ghost", peer.user("tmp").key, peer.origin)
    before = await snapshot(server)
    delete = peer.activity(ghost, "Delete", ghost.id, to=[PUBLIC])
    status, _ = await peer.send(ghost, f"{server.origin}/inbox", delete)
    assert status == 202
    assert peer.fetches == []
    assert await snapshot(server) == before


async def test_delete_of_a_known_actor_removes_its_follow(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    await follow(server, peer, bob)
    status, _ = await peer.send(
        bob, f"{server.origin}/inbox", peer.activity(bob, "Delete", bob.id)
    )
    assert status == 202
    await eventually(lambda: has_count(server, "alice", "followers", 0))
    assert await server.fed.backend.get("actors", bob.id) is None


async def test_update_of_an_actor_refreshes_the_cached_copy(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    await follow(server, peer, bob)
    doc = bob.document() | {"name": "Bob, renamed"}
    status, _ = await peer.send(
        bob, f"{server.origin}/inbox", peer.activity(bob, "Update", doc)
    )
    assert status == 202
    await eventually(lambda: _no_tasks(server))
    cached = await server.fed.backend.get("actors", bob.id)
    assert cached is not None and cached["doc"]["name"] == "Bob, renamed"


async def test_an_update_cannot_replace_someone_elses_actor(
    server: MumbleServer, peer: Peer
) -> None:
    bob, eve = peer.user("bob"), peer.user("eve")
    await follow(server, peer, bob)
    forged = bob.document() | {"name": "pwned"}
    await peer.send(eve, f"{server.origin}/inbox", peer.activity(eve, "Update", forged))
    await eventually(lambda: _no_tasks(server))
    cached = await server.fed.backend.get("actors", bob.id)
    assert cached is not None and "name" not in cached["doc"]


async def test_handlers_run_once_after_the_builtin_bookkeeping(
    tmp_path: Any, peer: Peer
) -> None:
    from aiohttp.test_utils import unused_port

    from mumble import ActivityContext, Mumble
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "data", unused_port())
    app = Mumble(settings)
    seen: list[tuple[str, int]] = []

    @app.on("Like")
    async def on_like(ctx: ActivityContext) -> None:
        counts = await ctx.federation.posts.counts(ctx.object)
        seen.append((ctx.actor_id, counts["likes"]))

    server = await MumbleServer(settings, app).start()
    try:
        note = (await post(server))["object"]
        bob = peer.user("bob")
        like = peer.activity(bob, "Like", note["id"])
        for _ in range(2):
            await peer.send(bob, f"{server.origin}/inbox", like)
        await eventually(lambda: _no_tasks(server))
        assert seen == [(bob.id, 1)]
    finally:
        await server.close()


# Bad input: a clear 4xx, and nothing stored.


async def rejected(
    server: MumbleServer, peer: Peer, status: int, **send: Any
) -> dict[str, Any]:
    bob = send.pop("user", None) or peer.user("bob")
    activity = send.pop("activity", None) or peer.activity(
        bob, "Create", {"id": f"{bob.id}/n", "type": "Note", "content": "x"}
    )
    before = await snapshot(server)
    got, answer = await peer.send(
        bob, send.pop("inbox", f"{server.origin}/inbox"), activity, **send
    )
    assert got == status, answer
    assert isinstance(answer.get("error"), str) and answer["error"]
    assert await snapshot(server) == before
    return answer


async def test_malformed_json_is_400(server: MumbleServer, peer: Peer) -> None:
    await rejected(server, peer, 400, body=b'{"type": "Create", ')


async def test_a_body_that_is_not_an_activity_is_400(
    server: MumbleServer, peer: Peer
) -> None:
    for body in (
        b"[1, 2]",
        b'"text"',
        b'{"type": "Create"}',
        b'{"actor": "https://x.example/a"}',
        b'{"type": "Like", "actor": "javascript:alert(1)"}',
        b"\xff\xfe",
    ):
        await rejected(server, peer, 400, body=body)


async def test_an_activity_id_on_another_origin_is_400(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    activity = peer.activity(bob, "Like", "x") | {
        "id": "https://elsewhere.example/like/1"
    }
    await rejected(server, peer, 400, activity=activity)


@pytest.mark.parametrize("field", ["id", "actor"])
async def test_an_id_over_512_bytes_is_400(
    server: MumbleServer, peer: Peer, field: str
) -> None:
    bob = peer.user("bob")
    activity = peer.activity(bob, "Like", f"{server.actor}/posts/x")
    activity[field] = bob.id + "/" + "\u00e9" * 250
    answer = await rejected(server, peer, 400, activity=activity)
    assert "over 512 bytes" in answer["error"]


async def test_an_unsigned_request_is_401(server: MumbleServer, peer: Peer) -> None:
    before = await snapshot(server)
    async with peer.session.post(
        f"{server.origin}/inbox",
        data=b"{}",
        headers={"Content-Type": "application/activity+json"},
    ) as resp:  # type: ignore[union-attr]
        assert resp.status == 401
        assert "not signed" in (await resp.json())["error"]
    assert await snapshot(server) == before


async def test_a_garbled_signature_is_401(server: MumbleServer, peer: Peer) -> None:
    for garbled in (
        'keyId="x",signature="%%%"',
        "nonsense",
        'keyId="k"',
        'keyId="k",headers="",signature="AAAA"',
    ):
        await rejected(server, peer, 401, headers={"Signature": garbled})


async def test_a_tampered_body_is_401(server: MumbleServer, peer: Peer) -> None:
    bob = peer.user("bob")
    activity = peer.activity(bob, "Like", "x")
    body = json.dumps(activity).encode()
    from mumble.signatures import digest_header

    answer = await rejected(
        server,
        peer,
        401,
        activity=activity,
        headers={"Digest": digest_header(body + b" ")},
    )
    assert "digest" in answer["error"]


async def test_an_unknown_key_is_401(server: MumbleServer, peer: Peer) -> None:
    stranger = RemoteUser("nobody", peer.user("tmp").key, peer.origin)
    await rejected(server, peer, 401, user=stranger)


async def test_a_key_of_another_actor_is_401(server: MumbleServer, peer: Peer) -> None:
    bob, eve = peer.user("bob"), peer.user("eve")
    activity = peer.activity(bob, "Like", "x")
    answer = await rejected(
        server, peer, 401, user=bob, activity=activity, key_user=eve
    )
    assert "does not belong" in answer["error"]


async def test_a_body_over_one_mebibyte_is_413(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    big = peer.activity(bob, "Create", {"type": "Note", "content": "x" * (1024 * 1024)})
    await rejected(server, peer, 413, activity=big)


async def test_a_wrong_content_type_is_415(server: MumbleServer, peer: Peer) -> None:
    await rejected(server, peer, 415, headers={"Content-Type": "text/plain"})


@pytest.mark.parametrize(
    "body",
    [None, b'{"type": "Note"}'],
    ids=["an activity", "a body that is not one"],
)
async def test_an_rfc9421_signature_is_401_not_accepted_unverified(
    server: MumbleServer, peer: Peer, body: bytes | None
) -> None:
    answer = await rejected(
        server,
        peer,
        401,
        body=body,
        headers={
            "Signature-Input": 'sig1=("@method" "@target-uri");keyid="k";created=1',
            "Signature": "sig1=:AAAA:",
        },
    )
    assert "RFC 9421" in answer["error"]


async def test_an_unknown_user_inbox_is_404(server: MumbleServer, peer: Peer) -> None:
    await rejected(server, peer, 404, inbox=f"{server.origin}/users/nobody/inbox")


async def test_a_peer_that_is_down_is_401_not_500(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    ghost = RemoteUser("bob", bob.key, "http://127.0.0.1:9")
    await rejected(
        server, peer, 401, user=ghost, activity=peer.activity(ghost, "Like", "x")
    )
