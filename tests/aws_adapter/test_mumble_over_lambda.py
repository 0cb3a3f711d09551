"""A real Mumble application (embedded backend) answering Lambda events.

The signed deliveries are signed as a remote server signs for the public
host, then handed over the way CloudFront and API Gateway hand them to the
function: Host replaced by the API domain, the original Host and Date in the
deployment's own headers, the body base64. They verify only when the raw
body, path, query and the restored Host and Date reach the verifier as sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mumble import Mumble, Settings
from mumble.backends.aws.adapter import LambdaAdapter
from mumble.signatures import sign_request
from mumble.web_base import FEDERATION
from tests.aws_adapter.conftest import (
    API_DOMAIN,
    SECRET,
    body_of,
    header,
    json_of,
    v1_event,
    v2_event,
)
from tests.peer import Peer, RemoteUser

ORIGIN = "https://social.example"
ALICE = f"{ORIGIN}/users/alice"


class Deployment:
    """Mumble behind the adapter, as the API function runs it."""

    def __init__(self, adapter: LambdaAdapter, token: str) -> None:
        self.adapter = adapter
        self.token = token

    @property
    def fed(self) -> Any:
        return self.adapter.app[FEDERATION]

    async def tasks(self) -> list[dict[str, Any]]:
        states: list[dict[str, Any]] = await self.fed.backend.task_states()
        return states


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    settings = Settings(
        origin=ORIGIN, data_dir=tmp_path / "data", allow_private_addresses=True
    )
    app = Mumble(settings).web_app(worker=False)
    adapter = LambdaAdapter(
        app, max_body_bytes=settings.max_body_bytes, origin_secret=SECRET
    )
    async with adapter:
        _user, token = await app[FEDERATION].users.create("alice")
        yield Deployment(adapter, token)


def signed_delivery(
    peer: Peer, sender: RemoteUser, url: str
) -> tuple[bytes, dict[str, str]]:
    activity = peer.activity(sender, "Follow", ALICE)
    body = json.dumps(activity).encode()
    headers = sign_request(
        "POST",
        url,
        key_id=sender.key_id,
        private_key=sender.key,
        body=body,
        headers={"Content-Type": "application/activity+json"},
    )
    return body, headers


def through_cloudfront(
    signed: dict[str, str], secret: str | None = SECRET, *, keep_date: bool = False
) -> dict[str, str]:
    """The headers CloudFront sends on to API Gateway for a signed request."""
    dropped = ("Host",) if keep_date else ("Host", "Date")
    headers = {k: v for k, v in signed.items() if k not in dropped}
    headers |= {
        "Host": API_DOMAIN,
        "Via": "1.1 0123456789abcdef.cloudfront.net (CloudFront)",
        "X-Amz-Cf-Id": "cf-request-id",
        "X-Mumble-Original-Host": signed["Host"],
        "X-Mumble-Original-Date": signed["Date"],
    }
    if secret is not None:
        headers["X-Mumble-Origin-Secret"] = secret
    return headers


# discovery and actors


@pytest.mark.parametrize("version", ["1.0", "2.0"])
async def test_webfinger(deployment: Deployment, version: str) -> None:
    event = (
        v1_event(
            "GET",
            "/.well-known/webfinger",
            [("Host", API_DOMAIN)],
            query={"resource": ["acct:alice@social.example"]},
        )
        if version == "1.0"
        else v2_event(
            "GET",
            "/.well-known/webfinger",
            {"Host": API_DOMAIN},
            query="resource=acct%3Aalice%40social.example",
        )
    )
    result = await deployment.adapter.handle(event)

    assert result["statusCode"] == 200
    assert header(result, "Content-Type")[0].startswith("application/jrd+json")
    jrd = json_of(result)
    assert jrd["subject"] == "acct:alice@social.example"
    assert {"rel": "self", "type": "application/activity+json", "href": ALICE} in [
        {k: link.get(k) for k in ("rel", "type", "href")} for link in jrd["links"]
    ]


@pytest.mark.parametrize(
    "accept",
    [
        "application/activity+json",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
    ],
)
async def test_actor_as_activitystreams(deployment: Deployment, accept: str) -> None:
    event = v2_event("GET", "/users/alice", {"Host": API_DOMAIN, "Accept": accept})
    result = await deployment.adapter.handle(event)

    assert result["statusCode"] == 200
    assert header(result, "Content-Type")[0].startswith("application/activity+json")
    assert header(result, "Vary") == ["Accept"]
    actor = json_of(result)
    assert actor["id"] == ALICE
    assert actor["inbox"] == f"{ALICE}/inbox"
    assert actor["publicKey"]["owner"] == ALICE


async def test_actor_as_a_web_page(deployment: Deployment) -> None:
    event = v1_event(
        "GET", "/users/alice", [("Host", API_DOMAIN), ("Accept", "text/html")]
    )
    result = await deployment.adapter.handle(event)

    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is False
    assert header(result, "Content-Type")[0].startswith("text/html")
    assert header(result, "Vary") == ["Accept"]
    assert "@alice@social.example" in body_of(result).decode()


async def test_unknown_user_is_404(deployment: Deployment) -> None:
    event = v2_event("GET", "/users/nobody", {"Host": API_DOMAIN})
    result = await deployment.adapter.handle(event)
    assert result["statusCode"] == 404
    assert json_of(result) == {"error": "no such user"}


# signed deliveries


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("keep_date", [False, True])
async def test_signed_delivery_through_cloudfront_verifies(
    deployment: Deployment, peer: Peer, version: str, keep_date: bool
) -> None:
    bob = peer.user("bob")
    body, signed = signed_delivery(peer, bob, f"{ALICE}/inbox")
    headers = through_cloudfront(signed, keep_date=keep_date)
    event = (
        v1_event("POST", "/users/alice/inbox", list(headers.items()), body=body)
        if version == "1.0"
        else v2_event("POST", "/users/alice/inbox", headers, body=body)
    )
    result = await deployment.adapter.handle(event)

    assert result["statusCode"] == 202, result
    assert json_of(result) == {"status": "accepted"}
    tasks = await deployment.tasks()
    assert [t["kind"] for t in tasks] == ["inbound"]


async def test_signed_delivery_with_a_raw_query_verifies(
    deployment: Deployment, peer: Peer
) -> None:
    bob = peer.user("bob")
    query = "via=a+b&x=%2F%7e&via=c"
    body, signed = signed_delivery(peer, bob, f"{ORIGIN}/inbox?{query}")
    event = v2_event(
        "POST", "/inbox", through_cloudfront(signed), query=query, body=body
    )
    result = await deployment.adapter.handle(event)
    assert result["statusCode"] == 202, result


async def test_rest_query_rebuilt_in_another_encoding_does_not_verify(
    deployment: Deployment, peer: Peer
) -> None:
    """Payload 1.0 has no raw query: a '+' for a space cannot be told apart."""
    bob = peer.user("bob")
    body, signed = signed_delivery(peer, bob, f"{ORIGIN}/inbox?via=a+b")
    headers = list(through_cloudfront(signed).items())
    event = v1_event("POST", "/inbox", headers, query={"via": ["a b"]}, body=body)
    result = await deployment.adapter.handle(event)
    assert result["statusCode"] == 401

    body, signed = signed_delivery(peer, bob, f"{ORIGIN}/inbox?via=a%20b")
    headers = list(through_cloudfront(signed).items())
    event = v1_event("POST", "/inbox", headers, query={"via": ["a b"]}, body=body)
    assert (await deployment.adapter.handle(event))["statusCode"] == 202


@pytest.mark.parametrize("secret", [None, "wrong"])
async def test_without_the_origin_secret_the_host_is_the_api_and_it_fails(
    deployment: Deployment, peer: Peer, secret: str | None
) -> None:
    bob = peer.user("bob")
    body, signed = signed_delivery(peer, bob, f"{ALICE}/inbox")
    # Date stays as sent, so that only the Host makes the difference.
    headers = through_cloudfront(signed, secret, keep_date=True)
    event = v2_event("POST", "/users/alice/inbox", headers, body=body)
    result = await deployment.adapter.handle(event)

    assert result["statusCode"] == 401
    assert json_of(result) == {"error": "signature does not verify"}
    assert await deployment.tasks() == []


async def test_a_changed_body_byte_fails_the_digest(
    deployment: Deployment, peer: Peer
) -> None:
    bob = peer.user("bob")
    body, signed = signed_delivery(peer, bob, f"{ALICE}/inbox")
    altered = body.replace(b'"Follow"', b'"Follow" ')
    event = v2_event(
        "POST", "/users/alice/inbox", through_cloudfront(signed), body=altered
    )
    result = await deployment.adapter.handle(event)

    assert result["statusCode"] == 401
    assert "digest" in json_of(result)["error"]


async def test_a_path_other_than_the_signed_one_fails(
    deployment: Deployment, peer: Peer
) -> None:
    bob = peer.user("bob")
    body, signed = signed_delivery(peer, bob, f"{ORIGIN}/inbox")
    event = v2_event(
        "POST", "/users/alice/inbox", through_cloudfront(signed), body=body
    )
    assert (await deployment.adapter.handle(event))["statusCode"] == 401


async def test_an_inbox_body_over_the_limit_is_413(deployment: Deployment) -> None:
    body = b"{" + b" " * (1024 * 1024) + b"}"
    headers = {"Host": API_DOMAIN, "Content-Type": "application/activity+json"}
    event = v2_event("POST", "/inbox", headers, body=body)
    result = await deployment.adapter.handle(event)
    assert result["statusCode"] == 413


async def test_outbox_with_the_owner_token(deployment: Deployment) -> None:
    note = {"type": "Note", "content": "Hello from Lambda"}
    headers = {
        "Host": API_DOMAIN,
        "Authorization": f"Bearer {deployment.token}",
        "Content-Type": "application/activity+json",
    }
    event = v2_event(
        "POST", "/users/alice/outbox", headers, body=json.dumps(note).encode()
    )
    result = await deployment.adapter.handle(event)

    assert result["statusCode"] == 201, result
    created = json_of(result)
    assert created["type"] == "Create"
    assert header(result, "Location") == [created["id"]]

    event = v2_event("GET", "/users/alice/outbox", {"Host": API_DOMAIN})
    outbox = json_of(await deployment.adapter.handle(event))
    assert outbox["totalItems"] == 1
