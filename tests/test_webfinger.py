from __future__ import annotations

from urllib.parse import quote

import pytest

from mumble.webfinger import parse_handle
from tests.conftest import MumbleServer


@pytest.mark.parametrize(
    "form",
    [
        "acct:alice@{host}",
        "alice@{host}",
        "@alice@{host}",
        "acct:ALICE@{HOST}",
        "{origin}/users/alice",
        "{origin}/@alice",
    ],
)
async def test_every_common_form_of_the_resource_is_answered(
    server: MumbleServer, form: str
) -> None:
    host = server.settings.host
    resource = form.format(host=host, HOST=host.upper(), origin=server.origin)
    async with server.session.get(
        f"{server.origin}/.well-known/webfinger?resource={quote(resource)}"
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/jrd+json"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        doc = await resp.json(content_type=None)
    assert doc["subject"] == f"acct:alice@{host}"
    self_link = next(link for link in doc["links"] if link["rel"] == "self")
    assert self_link == {
        "rel": "self",
        "type": "application/activity+json",
        "href": server.actor,
    }
    assert any(
        link["rel"] == "http://webfinger.net/rel/profile-page" for link in doc["links"]
    )


@pytest.mark.parametrize(
    ("resource", "status"),
    [
        ("acct:alice@other.example", 404),
        ("acct:nobody@{host}", 404),
        ("https://other.example/users/alice", 404),
        ("", 400),
        ("acct:", 404),
    ],
)
async def test_other_hosts_and_users_are_404_and_a_missing_resource_400(
    server: MumbleServer, resource: str, status: int
) -> None:
    resource = resource.format(host=server.settings.host)
    async with server.session.get(
        f"{server.origin}/.well-known/webfinger?resource={quote(resource)}"
    ) as resp:
        assert resp.status == status
        assert "error" in await resp.json(content_type=None)


def test_handles_parse_in_their_common_forms() -> None:
    assert parse_handle("acct:Bob@Example.COM") == ("Bob", "example.com")
    assert parse_handle("@bob@example.com") == ("bob", "example.com")
    assert parse_handle("https://example.com/@bob") is None
    assert parse_handle("bob") is None


async def test_the_preferred_username_round_trips_through_webfinger(
    server: MumbleServer,
) -> None:
    _, actor = await server.get("/users/alice")
    handle = f"acct:{actor['preferredUsername']}@{server.settings.host}"
    _, doc = await server.get(
        f"/.well-known/webfinger?resource={quote(handle)}", accept="*/*"
    )
    assert doc["subject"] == handle


async def test_nodeinfo_is_discoverable_and_counts_users_and_posts(
    server: MumbleServer,
) -> None:
    await server.outbox({"type": "Note", "content": "hi"})
    _, discovery = await server.get("/.well-known/nodeinfo", accept="application/json")
    link = discovery["links"][0]
    assert link["rel"] == "http://nodeinfo.diaspora.software/ns/schema/2.1"
    async with server.session.get(link["href"]) as resp:
        assert resp.status == 200
        assert (
            "nodeinfo.diaspora.software/ns/schema/2.1" in resp.headers["Content-Type"]
        )
        doc = await resp.json(content_type=None)
    assert doc["version"] == "2.1" and doc["protocols"] == ["activitypub"]
    assert doc["software"]["name"] == "mumble"
    assert doc["usage"]["users"]["total"] == 1 and doc["usage"]["localPosts"] == 1
    assert doc["openRegistrations"] is False
