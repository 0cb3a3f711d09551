from __future__ import annotations

import pytest

from mumble.errors import FetchError
from mumble.jsonld import AS_CONTEXT, SECURITY_CONTEXT
from tests.conftest import MumbleServer
from tests.peer import Peer


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
