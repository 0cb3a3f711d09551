"""The Fedify peer harness on its own: two Fedify peers federate.

Proves that the peer starts, verifies signatures, and that its control API
works, before any Mumble interop test relies on it.
"""

from __future__ import annotations

import aiohttp
import pytest

from .fedify_peer import FedifyPeer, node_available

pytestmark = [
    pytest.mark.interop,
    pytest.mark.asyncio,
    pytest.mark.skipif(not node_available(), reason="node and npm are needed"),
]


async def test_two_peers_follow_like_reply_unfollow() -> None:
    async with FedifyPeer.start() as a, FedifyPeer.start(ed25519=False) as b:
        # A follows B; B records the Follow and answers with Accept.
        follow_id = await a.follow(b.actor_id)
        got = await b.wait_for(lambda x: x["type"] == "Follow")
        assert got["id"] == follow_id
        assert got["actor"] == a.actor_id
        assert got["json"]["object"] == b.actor_id
        accept = await a.wait_for(lambda x: x["type"] == "Accept")
        assert accept["actor"] == b.actor_id
        assert await b.followers() == [a.actor_id]
        assert await a.following() == [
            {
                "actor": b.actor_id,
                "follow": follow_id,
                "accepted": True,
                "rejected": False,
            }
        ]

        # B replies to something of A's; A resolves the Note.
        sent = await b.reply(a.actor_id, f"{a.actor_id}/notes/1", "<p>hi</p>")
        create = await a.wait_for(lambda x: x["type"] == "Create")
        assert create["id"] == sent["id"]
        note = create["object"]
        assert note is not None, create
        assert note["id"] == sent["noteId"]
        assert note["inReplyTo"] == f"{a.actor_id}/notes/1"
        assert note["attributedToActor"] is True
        public = "https://www.w3.org/ns/activitystreams#Public"
        assert create["json"]["to"] == public  # Fedify sends the full IRI

        # A likes B's note, then takes the like back.
        like_id = await a.like(b.actor_id, sent["noteId"])
        like = await b.wait_for(lambda x: x["type"] == "Like")
        assert (like["id"], like["json"]["object"]) == (like_id, sent["noteId"])
        undo_like_id = await a.undo_like(b.actor_id, like_id, sent["noteId"])
        undo = await b.wait_for(lambda x: x["id"] == undo_like_id)
        assert undo["json"]["object"]["id"] == like_id
        assert await b.followers() == [a.actor_id]

        # A unfollows; B drops the follower.
        undo_follow_id = await a.unfollow(b.actor_id)
        undo = await b.wait_for(lambda x: x["id"] == undo_follow_id)
        assert undo["json"]["object"]["id"] == follow_id
        assert await b.followers() == []
        assert await a.following() == []

        assert all(entry["ok"] for entry in await a.outbox() + await b.outbox())
        assert await a.rejected() == [] and await b.rejected() == []


async def test_unsigned_and_failed_deliveries_are_refused() -> None:
    async with FedifyPeer.start() as peer:
        like = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{peer.origin}/forged/1",
            "type": "Like",
            "actor": peer.actor_id,
            "object": f"{peer.origin}/notes/1",
        }
        headers = {"Content-Type": "application/activity+json"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(peer.inbox_url, json=like, headers=headers) as response,
        ):
            assert response.status == 401
        assert await peer.inbox() == []
        [refused] = await peer.rejected()
        assert (refused["reason"], refused["id"]) == ("noSignature", like["id"])

        lookup = await peer.lookup(peer.actor_id)
        assert lookup["id"] == peer.actor_id
        assert lookup["publicKey"]["id"] == f"{peer.actor_id}#main-key"

        # An unreachable actor: the control call fails with a clear status.
        with pytest.raises(Exception, match="404"):
            await peer.follow("http://127.0.0.1:9/users/nobody")
