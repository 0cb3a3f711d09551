"""The outbox: what the owner may post, and what everyone may read."""

from __future__ import annotations

from mumble.jsonld import PUBLIC
from tests.conftest import MumbleServer


async def test_the_outbox_needs_the_owners_token(server: MumbleServer) -> None:
    for token in ("", "wrong"):
        status, answer = await server.outbox(
            {"type": "Note", "content": "x"}, token=token
        )
        assert status == 401 and answer["error"]
    async with server.session.post(
        f"{server.actor}/outbox", json={"type": "Note"}
    ) as resp:
        assert resp.status == 401
    assert await server.count("alice", "posts") == 0


async def test_a_bare_note_is_wrapped_in_a_create_with_arrays_and_ids(
    server: MumbleServer,
) -> None:
    status, activity = await server.outbox(
        {"type": "Note", "content": "<p>hi</p><script>x()</script>", "to": "as:Public"}
    )
    assert status == 201
    assert activity["type"] == "Create" and activity["actor"] == server.actor
    note = activity["object"]
    assert note["id"].startswith(f"{server.actor}/posts/")
    assert note["attributedTo"] == server.actor
    assert note["to"] == [PUBLIC] and note["cc"] == [f"{server.actor}/followers"]
    assert "<script>" not in note["content"] and "<p>hi</p>" in note["content"]

    status, fetched = await server.get(note["id"])
    assert (
        status == 200
        and fetched["id"] == note["id"]
        and fetched["content"] == note["content"]
    )
    status, fetched_activity = await server.get(activity["id"])
    assert status == 200 and fetched_activity["object"]["id"] == note["id"]


async def test_a_create_takes_its_object(server: MumbleServer) -> None:
    status, activity = await server.outbox(
        {"type": "Create", "object": {"type": "Note", "content": "inner"}}
    )
    assert status == 201 and activity["object"]["content"] == "inner"


async def test_bad_outbox_bodies_are_400_and_store_nothing(
    server: MumbleServer,
) -> None:
    bodies = [
        {"type": "Note"},
        {"type": "Note", "content": ""},
        {"type": "Note", "content": 5},
        {"type": "Tombstone"},
        {"no": "type"},
        {"type": "Create", "object": "x"},
        {"type": "Follow"},
        {"type": "Undo", "object": {"type": "Follow"}},
    ]
    for body in bodies:
        status, answer = await server.outbox(body)
        assert status == 400, body
        assert answer["error"]
    async with server.session.post(
        f"{server.actor}/outbox",
        data=b"{nope",
        headers={
            "Authorization": f"Bearer {server.token}",
            "Content-Type": "application/activity+json",
        },
    ) as resp:
        assert resp.status == 400
    assert await server.count("alice", "posts") == 0
    assert await server.fed.backend.query("objects") == []


async def test_the_outbox_collection_pages_newest_first(server: MumbleServer) -> None:
    ids = []
    for i in range(25):
        _, activity = await server.outbox({"type": "Note", "content": f"post {i}"})
        ids.append(activity["id"])
    status, collection = await server.get("/users/alice/outbox")
    assert status == 200 and collection["type"] == "OrderedCollection"
    assert collection["totalItems"] == 25
    _, first = await server.get(collection["first"])
    assert (
        first["type"] == "OrderedCollectionPage" and first["partOf"] == collection["id"]
    )
    assert [a["id"] for a in first["orderedItems"]] == ids[::-1][:20]
    _, second = await server.get(first["next"])
    assert [a["id"] for a in second["orderedItems"]] == ids[::-1][20:]
    assert "next" not in second


async def test_garbage_page_cursors_are_400(server: MumbleServer) -> None:
    for page in ("%%%", "!!", "a" * 600):
        status, _ = await server.get(f"/users/alice/outbox?page={page}")
        assert status == 400, page


async def test_deleting_a_post_leaves_a_tombstone(server: MumbleServer) -> None:
    _, activity = await server.outbox({"type": "Note", "content": "soon gone"})
    note_id = activity["object"]["id"]
    status, delete = await server.outbox({"type": "Delete", "object": note_id})
    assert status == 201 and delete["object"]["type"] == "Tombstone"
    status, body = await server.get(note_id)
    assert status == 410 and body["type"] == "Tombstone"
    assert await server.count("alice", "posts") == 0
    _, page = await server.get("/users/alice/outbox?page=true")
    assert page["orderedItems"] == []


async def test_followers_and_following_are_paged_collections(
    server: MumbleServer,
) -> None:
    for i in range(23):
        await server.fed.follows.add_follower(
            "alice", f"https://r.example/u/{i:02}", "https://r.example/inbox", f"f{i}"
        )
    _, collection = await server.get("/users/alice/followers")
    assert collection["totalItems"] == 23
    _, first = await server.get(collection["first"])
    _, second = await server.get(first["next"])
    assert first["orderedItems"] + second["orderedItems"] == [
        f"https://r.example/u/{i:02}" for i in range(23)
    ]
    _, following = await server.get("/users/alice/following")
    assert following["totalItems"] == 0


async def test_the_create_is_addressed_in_arrays_with_the_full_public_address(
    server: MumbleServer,
) -> None:
    for to in ("as:Public", "Public", [PUBLIC]):
        status, activity = await server.outbox(
            {"type": "Note", "content": "hi", "to": to, "cc": "as:Public"}
        )
        assert status == 201
        for doc in (activity, activity["object"]):
            assert doc["to"] == [PUBLIC] and doc["cc"] == [PUBLIC], doc
        _, served = await server.get(activity["id"])
        assert served["to"] == [PUBLIC] and served["cc"] == [PUBLIC]
