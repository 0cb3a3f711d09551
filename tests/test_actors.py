from __future__ import annotations

import asyncio

import pytest

from mumble.errors import FetchError
from mumble.jsonld import AS_CONTEXT, SECURITY_CONTEXT
from mumble.signatures import generate_private_key
from tests.conftest import MumbleServer
from tests.peer import Peer, RemoteUser


async def test_the_actor_document_has_what_mastodon_needs(server: MumbleServer) -> None:
    status, actor = await server.get("/users/alice")
    assert status == 200
    assert actor["id"] == server.actor
    assert AS_CONTEXT in actor["@context"] and SECURITY_CONTEXT in actor["@context"]
    assert actor["type"] == "Person" and actor["preferredUsername"] == "alice"
    assert actor["inbox"] == f"{server.actor}/inbox"
    assert actor["endpoints"]["sharedInbox"] == f"{server.origin}/inbox"
    key = actor["publicKey"]
    assert key["id"] == f"{server.actor}#main-key" and key["owner"] == server.actor
    assert key["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    for name in ("outbox", "followers", "following", "url"):
        assert actor[name].startswith(server.origin)


async def test_ids_come_from_configuration_not_request_headers(
    server: MumbleServer,
) -> None:
    headers = {
        "Accept": "application/activity+json",
        "Host": "evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
    }
    async with server.session.get(server.actor, headers=headers) as resp:
        actor = await resp.json(content_type=None)
    assert actor["id"] == server.actor and "evil" not in str(actor)


async def test_an_unknown_user_is_404(server: MumbleServer) -> None:
    status, body = await server.get("/users/nobody")
    assert status == 404 and body["error"]


async def test_a_remote_key_is_found_through_its_owner_and_cached(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    key = await server.fed.actors.key(bob.key_id)
    assert key.owner == bob.id
    await server.fed.actors.key(bob.key_id)
    assert peer.fetches == ["/actors/bob"]


async def test_an_actor_claiming_another_origin_is_refused(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    doc = bob.document() | {"id": "https://elsewhere.example/users/bob"}
    with pytest.raises(FetchError):
        await server.fed.actors.store(doc, expected_origin=bob.id)


async def test_a_document_that_is_not_an_actor_is_refused(
    server: MumbleServer, peer: Peer
) -> None:
    with pytest.raises(FetchError):
        await server.fed.actors.store(
            {"id": peer.origin + "/x", "type": "Note"},
            expected_origin=peer.origin + "/x",
        )


async def test_fetching_private_addresses_is_refused_unless_allowed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mumble.fetch import Fetcher
    from mumble.settings import Settings

    fetcher = Fetcher(Settings(origin="https://local.example"))
    try:
        for url in (
            "http://127.0.0.1/x",
            "http://localhost/x",
            "http://10.0.0.1/x",
            "http://[::1]/x",
            "http://169.254.169.254/latest",
            "file:///etc/passwd",
            "http://[::ffff:127.0.0.1]/",
        ):
            with pytest.raises(FetchError):
                await fetcher.get_json(url)
    finally:
        await fetcher.close()


async def test_a_peer_that_rotated_its_key_is_believed_after_one_fetch(
    server: MumbleServer, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An actor is fetched again for a new key at most this often.
    monkeypatch.setattr("mumble.actors.KEY_REFRESH_SECONDS", 0.2)
    bob = peer.user("bob")
    inbox = f"{server.origin}/inbox"
    first = peer.activity(bob, "Follow", server.actor)
    assert (await peer.send(bob, inbox, first))[0] == 202
    assert peer.fetches == ["/actors/bob"]

    # The same key id, a new key: the cached copy fails, one fetch finds it.
    await asyncio.sleep(0.3)
    rotated = peer.users["bob"] = RemoteUser("bob", generate_private_key(), peer.origin)
    like = peer.activity(rotated, "Like", f"{server.actor}/posts/1")
    assert (await peer.send(rotated, inbox, like))[0] == 202
    assert peer.fetches == ["/actors/bob", "/actors/bob"]
    # Once fetched, the new key is the cached one.
    again = peer.activity(rotated, "Like", f"{server.actor}/posts/2")
    assert (await peer.send(rotated, inbox, again))[0] == 202
    assert len(peer.fetches) == 2


async def test_fetches_are_signed_for_servers_that_demand_it(
    server: MumbleServer, peer: Peer
) -> None:
    peer.require_signed_fetch = True
    bob = peer.user("bob")
    follow = peer.activity(bob, "Follow", server.actor)
    assert (await peer.send(bob, f"{server.origin}/inbox", follow))[0] == 202
    assert peer.refused_fetches == []

    # Control: the same server, fetching unsigned, is refused.
    async def no_signer() -> None:
        return None

    server.fed.fetcher.signer = no_signer
    carol = peer.user("carol")
    follow = peer.activity(carol, "Follow", server.actor)
    status, answer = await peer.send(carol, f"{server.origin}/inbox", follow)
    assert status == 401 and "401" in answer["error"]
    assert peer.refused_fetches == ["the request is not signed"]


async def test_an_actor_asked_for_in_another_case_is_sent_to_its_own_url(
    server: MumbleServer,
) -> None:
    async with server.session.get(
        f"{server.origin}/users/Alice",
        headers={"Accept": "application/activity+json"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 301
        assert resp.headers["Location"] == server.actor
    async with server.session.get(
        f"{server.origin}/users/Alice", headers={"Accept": "application/activity+json"}
    ) as resp:
        assert resp.status == 200
        assert (await resp.json(content_type=None))["id"] == server.actor
