from __future__ import annotations

import pytest

from mumble.negotiation import parse_accept, wants_activity_json


@pytest.mark.parametrize(
    "header",
    [
        "application/activity+json",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        "application/ld+json;profile=https://www.w3.org/ns/activitystreams",
        'application/ld+json ; profile="https://www.w3.org/ns/activitystreams" ; q=0.9',
        "application/activity+json, application/ld+json",
        "text/html;q=0.5, application/activity+json",
        "application/ld+json",
    ],
)
def test_activitystreams_requests_get_json(header: str) -> None:
    assert wants_activity_json(header)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "*/*",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "application/json",
        'application/ld+json; profile="https://example.com/other"',
        "application/activity+json;q=0",
        "application/activity+json;q=0.5, text/html",
    ],
)
def test_browsers_and_others_get_html(header: str | None) -> None:
    assert not wants_activity_json(header)


def test_parameters_parse_with_quotes_spaces_and_q_values() -> None:
    [r] = parse_accept('application/ld+json ;q=0.3; profile="a;b, c"')
    assert r.type == "application/ld+json" and r.q == 0.3
    assert parse_accept("text/html;q=zero")[0].q == 0.0


async def test_the_actor_answers_json_or_html_and_varies_on_accept(server) -> None:  # type: ignore[no-untyped-def]
    async with server.session.get(
        server.actor, headers={"Accept": "application/activity+json"}
    ) as resp:
        assert resp.headers["Content-Type"] == "application/activity+json"
        assert resp.headers["Vary"] == "Accept"
    async with server.session.get(
        server.actor, headers={"Accept": "text/html"}
    ) as resp:
        assert resp.content_type == "text/html" and resp.headers["Vary"] == "Accept"
        assert "@alice@" in await resp.text()
    async with server.session.get(
        f"{server.origin}/@alice",
        headers={"Accept": "application/activity+json"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302 and resp.headers["Location"] == server.actor


async def test_the_front_page_leads_to_the_owners_profile(server) -> None:  # type: ignore[no-untyped-def]
    async with server.session.get(f"{server.origin}/", allow_redirects=False) as resp:
        assert (
            resp.status == 302 and resp.headers["Location"] == f"{server.origin}/@alice"
        )
