"""The Fedify interop scenarios on the AWS path, end to end.

Mumble runs as it is deployed: every HTTP request goes through API Gateway
(:class:`~.harness.Gateway`) to the API function's Lambda entry point, on
the AWS backend against moto; inbound activities and deliveries are staged
in S3 and run by the workflows' steps; counts come from the DynamoDB
streams through the statistics handler. The peer is a real Fedify 2.3.6
server. Signatures are verified on both sides: Fedify records what it
could not verify (``rejected``) and every delivery it made (``outbox``,
with Mumble's answer), and Mumble answers an unverified delivery 401.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import eventually
from tests.interop.fedify_peer import FedifyPeer

from .conftest import Owner

pytestmark = pytest.mark.interop

#: Seconds a workflow may take: S3 listing, steps, a delivery, a stream batch.
WITHIN = 20.0


async def followers_of(owner: Owner) -> list[str]:
    status, page = await owner.get(f"/users/{owner.username}/followers?page=true")
    assert status == 200, page
    return list(page["orderedItems"])


async def verified_both_ways(fedify: FedifyPeer) -> None:
    """Fedify verified all Mumble sent, and Mumble took all Fedify sent."""
    assert await fedify.rejected() == []
    refused = [d for d in await fedify.outbox() if not d.get("ok")]
    assert refused == [], "Mumble refused a delivery of Fedify's"


async def test_fedify_finds_and_follows_the_user_and_gets_a_signed_accept(
    owner: Owner, fedify: FedifyPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="example")
    found = await fedify.lookup(owner.actor, summary=True)
    assert found["id"] == owner.actor
    assert found["inbox"] == f"{owner.actor}/inbox"
    assert [k["id"] for k in found["publicKeys"]] == [f"{owner.actor}#main-key"]

    follow_id = await fedify.follow(owner.actor)
    accept = await fedify.wait_for(lambda a: a["type"] == "Accept", WITHIN)
    assert accept["actor"] == owner.actor
    assert accept["json"]["object"]["id"] == follow_id
    assert [f["accepted"] for f in await fedify.following()] == [True]
    assert await followers_of(owner) == [fedify.actor_id]

    async def counted() -> bool:
        _, collection = await owner.get(f"/users/{owner.username}/followers")
        return bool(collection["totalItems"] == 1)

    await eventually(counted, WITHIN)
    await verified_both_ways(fedify)
    # The example application's handler ran in the inbound workflow.
    assert f"new follower: {fedify.actor_id}" in caplog.messages


async def test_a_post_reaches_fedify_and_its_reply_and_like_are_counted(
    owner: Owner, fedify: FedifyPeer
) -> None:
    await fedify.follow(owner.actor)
    await fedify.wait_for(lambda a: a["type"] == "Accept", WITHIN)

    status, create = await owner.outbox(
        {"type": "Note", "content": "<p>Hello, Fedify, from Lambda</p>"}
    )
    assert status == 201, create
    assert create["actor"] == owner.actor
    note_id = create["object"]["id"]
    assert note_id.startswith(owner.deployment.origin + "/")
    received = await fedify.wait_for(lambda a: a["type"] == "Create", WITHIN)
    assert received["id"] == create["id"] and received["actor"] == owner.actor
    # Fedify fetched the note from its id, through the gateway.
    assert received["object"]["id"] == note_id
    assert received["object"]["attributedToActor"] is True
    assert "Hello, Fedify, from Lambda" in received["object"]["content"]

    reply = await fedify.reply(owner.actor, note_id, "<p>Hello back</p>")
    like_id = await fedify.like(owner.actor, note_id)

    async def totals() -> dict[str, int]:
        status, note = await owner.get(note_id)
        assert status == 200, note
        return {name: int(note[name]["totalItems"]) for name in ("replies", "likes")}

    async def counted() -> bool:
        return await totals() == {"replies": 1, "likes": 1}

    await eventually(counted, WITHIN)
    _, replies = await owner.get(f"{note_id}/replies?page=true")
    assert replies["items"] == [reply["noteId"]]

    await fedify.undo_like(owner.actor, like_id, note_id)

    async def uncounted() -> bool:
        return await totals() == {"replies": 1, "likes": 0}

    await eventually(uncounted, WITHIN)
    await verified_both_ways(fedify)


async def test_fedify_unfollowing_removes_it_from_followers(
    owner: Owner, fedify: FedifyPeer
) -> None:
    await fedify.follow(owner.actor)
    await fedify.wait_for(lambda a: a["type"] == "Accept", WITHIN)
    assert await followers_of(owner) == [fedify.actor_id]

    await fedify.unfollow(owner.actor)

    async def gone() -> bool:
        if await followers_of(owner) != []:
            return False
        _, collection = await owner.get(f"/users/{owner.username}/followers")
        return bool(collection["totalItems"] == 0)

    await eventually(gone, WITHIN)
    await verified_both_ways(fedify)


async def test_mumble_follows_fedify_and_records_its_accept(
    owner: Owner, fedify: FedifyPeer
) -> None:
    status, follow = await owner.outbox({"type": "Follow", "object": fedify.actor_id})
    assert status == 201, follow

    async def followed() -> bool:
        return owner.actor in await fedify.followers()

    await eventually(followed, WITHIN)

    async def accepted() -> bool:
        _, page = await owner.get(f"/users/{owner.username}/following?page=true")
        return bool(page["orderedItems"] == [fedify.actor_id])

    await eventually(accepted, WITHIN)
    record: dict[str, Any] | None = await owner.backend.get(
        "following", f"{owner.username} {fedify.actor_id}"
    )
    assert record is not None
    assert (record["state"], record["follow"]) == ("accepted", follow["id"])

    async def counted() -> bool:
        _, collection = await owner.get(f"/users/{owner.username}/following")
        return bool(collection["totalItems"] == 1)

    await eventually(counted, WITHIN)
    await verified_both_ways(fedify)


async def test_what_fedify_sends_twice_is_answered_twice_and_counted_once(
    owner: Owner, fedify: FedifyPeer
) -> None:
    await fedify.follow(owner.actor)
    await fedify.wait_for(lambda a: a["type"] == "Accept", WITHIN)
    await fedify.follow(owner.actor)

    async def two_accepts() -> bool:
        return len([a for a in await fedify.inbox() if a["type"] == "Accept"]) == 2

    await eventually(two_accepts, WITHIN)
    # The follower's record was written twice: the stream counts it once.
    await owner.deployment.workflows.quiet()
    assert await followers_of(owner) == [fedify.actor_id]
    _, collection = await owner.get(f"/users/{owner.username}/followers")
    assert collection["totalItems"] == 1
    await verified_both_ways(fedify)
