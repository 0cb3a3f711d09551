"""Hostile peers and clients: every attack asserts the behaviour Mumble promises.

Bad input from the network gets a clear 4xx (401 for signatures, 400, 413 or
415 otherwise) and changes nothing in storage; an accepted activity has
exactly one effect, and only on what its sender owns; nothing private leaks;
the server fetches only from the origins it has reason to; and no peer can make
it answer 5xx, freeze, or wedge its task queue.

A test that fails here has found a fault: the assertion says what should
happen, the failure shows what does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import resource as rusage
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from multidict import CIMultiDict

from mumble import Mumble
from mumble.ids import http_url
from mumble.jsonld import CONTEXT, PUBLIC
from mumble.signatures import (
    digest_header,
    generate_private_key,
    http_date,
    public_key_pem,
)
from tests.conftest import MumbleServer, eventually, make_settings
from tests.peer import Peer, RemoteUser

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What a rejected request must leave untouched, and what an ignored one must.
EFFECT_NAMESPACES = (
    "followers",
    "following",
    "follow-ids",
    "follow-requests",
    "objects",
    "counts",
    "reactions",
    "reaction-ids",
    "replies",
    "reply-of",
    "outbox",
    "activities",
    "outgoing",
    "outgoing-follows",
)
ALL_NAMESPACES = (*EFFECT_NAMESPACES, "seen", "actors")

# How the task runner records an exception nobody expected; such a task is
# retried every minute, forever.
CRASHED = "internal error"


# A hostile web site: answers each path as a test says, records every request.


class Site:
    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.server: TestServer | None = None

    @classmethod
    async def start(cls) -> Site:
        site = cls()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", site._handle)
        site.server = TestServer(app, host="127.0.0.1")
        await site.server.start_server()
        return site

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append((request.method, request.path_qs))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.json_response({"error": "nothing here"}, status=404)
        return await handler(request)

    async def stall(self, seconds: float) -> None:
        """Hold a request until the site closes or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), seconds)

    def silent(self, seconds: float = 10) -> Handler:
        """A route that answers nothing until the site closes or ``seconds`` pass."""

        async def answer(request: web.Request) -> web.StreamResponse:
            await self.stall(seconds)
            return web.Response()

        return answer


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = await Site.start()
    yield s
    await s.close()


ServerFactory = Callable[..., Awaitable[MumbleServer]]

_KEYS: list[Any] = []
_next_key = 0


def pooled_key() -> Any:
    """RSA keys are slow to make; the tests reuse a few distinct ones."""
    global _next_key
    if len(_KEYS) < 8:
        _KEYS.append(generate_private_key())
        return _KEYS[-1]
    _next_key += 1
    return _KEYS[_next_key % len(_KEYS)]


@pytest.fixture(autouse=True)
def fast_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mumble.users.generate_private_key", pooled_key)
    monkeypatch.setattr("tests.peer.generate_private_key", pooled_key)


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Servers with settings of the test's choosing (short timeouts, no private addresses)."""
    started: list[MumbleServer] = []

    async def make(app_factory: Any = None, **overrides: Any) -> MumbleServer:
        settings = make_settings(
            tmp_path / f"data{len(started)}", unused_port(), **overrides
        )
        app = app_factory(settings) if app_factory else None
        server = await MumbleServer(settings, app).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()


# Observation helpers.


async def snapshot(
    server: MumbleServer, names: tuple[str, ...] = ALL_NAMESPACES
) -> dict[str, Any]:
    backend = server.fed.backend
    out: dict[str, Any] = {
        ns: [(r.key, r.value) for r in await backend.query(ns, limit=100_000)]
        for ns in names
    }
    out["tasks"] = sorted(t["id"] for t in await tasks(server))
    return out


async def effects(server: MumbleServer) -> dict[str, Any]:
    snap = await snapshot(server, EFFECT_NAMESPACES)
    del snap["tasks"]
    return snap


async def tasks(server: MumbleServer, kind: str | None = None) -> list[dict[str, Any]]:
    states = await server.fed.backend.task_states()  # type: ignore[attr-defined]
    return [t for t in states if kind is None or t["kind"] == kind]


async def settled(
    server: MumbleServer, kind: str = "inbound", timeout: float = 10.0
) -> None:
    """Wait until every task of ``kind`` has run at least once.

    Deliveries are queued by a ``fanout`` task, which must have run first.
    """
    kinds = ("fanout", "deliver") if kind == "deliver" else (kind,)

    async def check() -> bool:
        return all(
            t["state"] != "queued" or t["attempts"] > 0
            for t in await tasks(server)
            if t["kind"] in kinds
        )

    await eventually(check, timeout)


async def quiet(server: MumbleServer, timeout: float = 10.0) -> None:
    """Wait until no task at all is queued."""

    async def check() -> bool:
        return all(t["state"] != "queued" for t in await tasks(server))

    await eventually(check, timeout)


def note_of(user: RemoteUser, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"{user.id}/notes/{uuid.uuid4().hex}",
        "type": "Note",
        "attributedTo": user.id,
        "content": "<p>hello</p>",
        "to": [PUBLIC],
        "published": "2026-01-01T00:00:00Z",
        **fields,
    }


async def local_post(server: MumbleServer, **fields: Any) -> dict[str, Any]:
    status, activity = await server.outbox({"type": "Note", "content": "hi"} | fields)
    assert status == 201, activity
    return activity["object"]  # type: ignore[no-any-return]


async def follow(server: MumbleServer, peer: Peer, user: RemoteUser) -> dict[str, Any]:
    activity = peer.activity(user, "Follow", server.actor)
    status, _ = await peer.send(user, f"{server.actor}/inbox", activity)
    assert status == 202
    await eventually(
        lambda: any(
            d.activity.get("type") == "Accept"
            and d.activity["object"].get("id") == activity["id"]
            for d in peer.received
        )
    )
    return activity


def signed_headers(
    user: RemoteUser,
    url: str,
    body: bytes,
    *,
    names: tuple[str, ...] = (
        "(request-target)",
        "host",
        "date",
        "digest",
        "content-type",
    ),
    date: str | None = None,
    digest: str | None = None,
    created: int | None = None,
    expires: int | None = None,
    unsigned_params: str = "",
    key_id: str | None = None,
) -> dict[str, str]:
    """Headers of a correctly signed POST, with every parameter under control."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Host": parts.netloc,
        "Date": date or http_date(),
        "Digest": digest or digest_header(body),
        "Content-Type": "application/activity+json",
    }
    lookup = {k.lower(): v for k, v in headers.items()}
    lines = []
    for name in names:
        if name == "(request-target)":
            lines.append(f"{name}: post {target}")
        elif name == "(created)":
            lines.append(f"{name}: {created}")
        elif name == "(expires)":
            lines.append(f"{name}: {expires}")
        else:
            lines.append(f"{name}: {lookup[name]}")
    raw = user.key.sign("\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256())
    params = (
        f'keyId="{key_id or user.key_id}",algorithm="rsa-sha256",'
        f'headers="{" ".join(names)}",signature="{base64.b64encode(raw).decode()}"'
    )
    if created is not None:
        params += f",created={created}"
    if expires is not None:
        params += f",expires={expires}"
    headers["Signature"] = params + unsigned_params
    return headers


async def post_raw(
    url: str, body: bytes, headers: Any, timeout: float = 30.0
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp,
    ):
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def request_raw(
    method: str, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, await resp.text()


def mention(peer: Peer, user: RemoteUser, server: MumbleServer) -> dict[str, Any]:
    """A Create that Mumble stores, since it mentions the local user."""
    return peer.activity(user, "Create", note_of(user, to=[server.actor]))


async def assert_rejected(
    server: MumbleServer,
    status: int | tuple[int, ...],
    url: str,
    body: bytes,
    headers: Any,
) -> Any:
    """The request gets the given 4xx with a JSON error, and nothing is stored."""
    before = await snapshot(server)
    got, answer = await post_raw(url, body, headers)
    expected = status if isinstance(status, tuple) else (status,)
    assert got in expected, (got, answer)
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
    assert "Traceback" not in answer["error"]
    await asyncio.sleep(0.05)
    assert await snapshot(server) == before
    return answer


# HTTP Signatures.


async def test_a_correct_custom_signature_is_accepted(
    server: MumbleServer, peer: Peer
) -> None:
    """Control: the hand-built signatures the attacks below vary are valid as they are."""
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    status, answer = await post_raw(url, body, signed_headers(bob, url, body))
    assert status == 202, answer
    now = int(time.time())
    body = json.dumps(mention(peer, bob, server)).encode()
    headers = signed_headers(
        bob,
        url,
        body,
        names=("(request-target)", "(created)", "(expires)", "digest"),
        created=now,
        expires=now + 300,
    )
    del headers["Date"]
    status, answer = await post_raw(url, body, headers)
    assert status == 202, answer


@pytest.mark.parametrize(
    "valid_first", [True, False], ids=["valid-first", "garbage-first"]
)
async def test_duplicated_signature_headers_are_401(
    server: MumbleServer, peer: Peer, valid_first: bool
) -> None:
    """Two Signature headers make an ambiguous request; neither may be picked silently."""
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    good = signed_headers(bob, url, body)
    garbage = 'keyId="https://evil.example/k",signature="AAAA"'
    headers: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in good.items() if k != "Signature"
    )
    for value in (
        (good["Signature"], garbage) if valid_first else (garbage, good["Signature"])
    ):
        headers.add("Signature", value)
    await assert_rejected(server, 401, url, body, headers)


GARBLED_SIGNATURES = {
    "empty": "",
    "unterminated quote": 'keyId="k,signature="AAAA',
    "no equals": "keyId signature",
    "empty keyId": 'keyId="",headers="(request-target) date digest",signature="AAAA"',
    "signature not base64": 'keyId="k",signature="!!!"',
    "unknown pseudo-header": 'keyId="k",headers="(request-target) (bogus) date digest",signature="AAAA"',
    "(created) without value": 'keyId="k",headers="(request-target) (created) digest",signature="AAAA"',
    "created not a number": 'keyId="k",headers="(request-target) (created) digest",created="soon",signature="AAAA"',
    "algorithm none": 'keyId="k",algorithm="none",headers="(request-target) date digest",signature=""',
    "nul bytes": 'keyId="k\\u0000",signature="AAAA"',
    "only commas": ",,,,,",
    "huge headers list of missing headers": 'keyId="k",headers="'
    + " ".join(f"x-h{i}" for i in range(900))
    + '",signature="AAAA"',
}


async def test_garbled_signature_headers_are_401(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    for value in GARBLED_SIGNATURES.values():
        headers = signed_headers(bob, url, body) | {"Signature": value}
        await assert_rejected(server, 401, url, body, headers)


async def test_a_signature_header_over_the_size_limit_is_4xx(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    headers = signed_headers(bob, url, body)
    headers["Signature"] += ',headers="' + "date " * 8000 + '"'
    before = await snapshot(server)
    status, _ = await post_raw(url, body, headers)
    assert 400 <= status < 500
    assert await snapshot(server) == before


async def test_a_signature_made_in_the_future_is_401(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    later = int(time.time()) + 3 * 3600
    headers = signed_headers(
        bob, url, body, names=("(request-target)", "(created)", "digest"), created=later
    )
    await assert_rejected(server, 401, url, body, headers)
    body = json.dumps(mention(peer, bob, server)).encode()
    headers = signed_headers(bob, url, body, date=http_date(time.time() + 3 * 3600))
    await assert_rejected(server, 401, url, body, headers)


async def test_a_signature_that_expires_before_it_was_created_is_401(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    now = int(time.time())
    headers = signed_headers(
        bob,
        url,
        body,
        names=("(request-target)", "(created)", "(expires)", "digest"),
        created=now,
        expires=now - 600,
    )
    await assert_rejected(server, 401, url, body, headers)


async def test_an_unsigned_expires_parameter_cannot_extend_a_stale_signature(
    server: MumbleServer, peer: Peer
) -> None:
    """A Date two hours old is stale; an expires that the signature does not cover
    (anyone on the path can add it) must not make it fresh again."""
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    stale = time.time() - 2 * 3600
    headers = signed_headers(bob, url, body, date=http_date(stale))
    await assert_rejected(server, 401, url, body, headers)
    headers["Signature"] += f",expires={int(time.time()) + 3600}"
    await assert_rejected(server, 401, url, body, headers)


@pytest.mark.parametrize("where", ["expires", "created"])
async def test_huge_integer_signature_times_are_401_not_500(
    server: MumbleServer, peer: Peer, where: str
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    huge = int("9" * 400)
    if where == "expires":
        headers = signed_headers(bob, url, body, unsigned_params=f",expires={huge}")
    else:
        headers = signed_headers(
            bob,
            url,
            body,
            names=("(request-target)", "(created)", "digest"),
            created=huge,
        )
    await assert_rejected(server, 401, url, body, headers)


def _digest(algorithm: str, body: bytes) -> str:
    return (
        algorithm
        + "="
        + base64.b64encode(
            hashlib.new(algorithm.replace("-", "").lower(), body).digest()
        ).decode()
    )


DIGESTS: dict[str, Callable[[bytes], str]] = {
    "empty value": lambda b: "SHA-256=",
    "no equals sign": lambda b: "SHA-256",
    "not base64": lambda b: "SHA-256=%%%notbase64%%%",
    "only SHA-1": lambda b: _digest("SHA-1", b),
    "only MD5": lambda b: _digest("MD5", b),
    "of another body": lambda b: _digest("SHA-256", b + b" "),
    "SHA-512 of another body": lambda b: _digest("SHA-512", b + b"x"),
    "good then bad": lambda b: _digest("SHA-256", b) + "," + _digest("SHA-256", b"x"),
    "bad then good": lambda b: _digest("SHA-512", b"x") + ", " + _digest("SHA-256", b),
    "truncated": lambda b: _digest("SHA-256", b)[:-8],
}


async def test_digest_edge_cases_are_401(server: MumbleServer, peer: Peer) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    for make_digest in DIGESTS.values():
        headers = signed_headers(bob, url, body, digest=make_digest(body))
        await assert_rejected(server, 401, url, body, headers)


async def test_an_unsigned_content_digest_that_disagrees_is_401(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    headers = signed_headers(bob, url, body) | {
        "Content-Digest": "sha-256=:" + base64.b64encode(b"\0" * 32).decode() + ":"
    }
    await assert_rejected(server, 401, url, body, headers)


async def test_a_signature_that_covers_neither_target_nor_digest_is_401(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    headers = signed_headers(bob, url, body, names=("host", "date", "content-type"))
    await assert_rejected(server, 401, url, body, headers)


# keyId pointing at hostile places.


def _nested_json(depth: int) -> bytes:
    return b'{"type": "Person", "a": ' + b"[" * depth + b"]" * depth + b"}"


def _unknown_algorithm_pem() -> str:
    def tlv(tag: int, value: bytes) -> bytes:
        n = len(value)
        size = bytes([n]) if n < 128 else bytes([0x81, n])
        return bytes([tag]) + size + value

    oid = tlv(0x06, bytes([0x2A, 0x03, 0x04]))
    spki = tlv(0x30, tlv(0x30, oid) + tlv(0x03, b"\x00abc"))
    body = base64.b64encode(spki).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


_BOMB: bytes | None = None


def gzip_bomb() -> bytes:
    """About 150 KiB of gzip that inflates to 160 MiB of zeros."""
    global _BOMB
    if _BOMB is None:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        member = packer.compress(b"\0" * (10 << 20)) + packer.flush()
        _BOMB = member * 16
    return _BOMB


def json_answer(body: bytes | str, status: int = 200) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body.encode() if isinstance(body, str) else body,
            status=status,
            content_type="application/activity+json",
        )

    return answer


def redirect_to(location: str) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    return answer


def setup_redirect_loop(site: Site) -> str:
    site.routes["/loop"] = redirect_to("/loop")
    return site.url("/loop#main-key")


def setup_huge(site: Site) -> str:
    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/activity+json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"type": "Person", "pad": "')
        for _ in range(48):
            await resp.write(b"x" * 65536)
        await resp.write(b'"}')
        return resp

    site.routes["/huge"] = answer
    return site.url("/huge#main-key")


def setup_slow(site: Site) -> str:
    async def answer(request: web.Request) -> web.StreamResponse:
        await site.stall(10)
        return web.json_response({})

    site.routes["/slow"] = answer
    return site.url("/slow#main-key")


def setup_trickle(site: Site) -> str:
    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/activity+json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b" ")
            await site.stall(0.1)
            if site.release.is_set():
                break
        return resp

    site.routes["/trickle"] = answer
    return site.url("/trickle#main-key")


def setup_html(site: Site) -> str:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<html><body>hi</body></html>", content_type="text/html"
        )

    site.routes["/page"] = answer
    return site.url("/page#main-key")


def setup_nested(site: Site) -> str:
    site.routes["/nested"] = json_answer(_nested_json(100_000))
    return site.url("/nested#main-key")


def setup_bomb(site: Site) -> str:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=gzip_bomb(),
            headers={
                "Content-Type": "application/activity+json",
                "Content-Encoding": "gzip",
            },
        )

    site.routes["/bomb"] = answer
    return site.url("/bomb#main-key")


def setup_unknown_key_type(site: Site) -> str:
    actor = site.url("/odd")
    doc = {
        "@context": CONTEXT,
        "id": actor,
        "type": "Person",
        "inbox": actor + "/inbox",
        "publicKey": {
            "id": actor + "#main-key",
            "owner": actor,
            "publicKeyPem": _unknown_algorithm_pem(),
        },
    }
    site.routes["/odd"] = json_answer(json.dumps(doc))
    return actor + "#main-key"


def setup_bad_location(site: Site) -> str:
    site.routes["/badloc"] = redirect_to("http://[::1/actor")
    return site.url("/badloc#main-key")


def setup_not_a_list_of_keys(site: Site) -> str:
    actor = site.url("/weird")
    doc = {
        "id": actor,
        "type": "Person",
        "inbox": actor + "/inbox",
        "publicKey": [None, 5, "x", {"id": actor + "#main-key", "owner": [actor]}],
    }
    site.routes["/weird"] = json_answer(json.dumps(doc))
    return actor + "#main-key"


KEY_IDS: dict[str, Callable[[Site], str]] = {
    "redirect loop": setup_redirect_loop,
    "3 MiB chunked document": setup_huge,
    "server that never answers": setup_slow,
    "server that trickles": setup_trickle,
    "HTML page": setup_html,
    "deeply nested JSON": setup_nested,
    "gzip bomb": setup_bomb,
    "key of an unknown algorithm": setup_unknown_key_type,
    "redirect to a malformed URL": setup_bad_location,
    "publicKey of odd shapes": setup_not_a_list_of_keys,
    "malformed IPv6 URL": lambda site: "http://[::1/actor#main-key",
    "file URL": lambda site: "file:///etc/passwd#main-key",
    "not a URL": lambda site: "main-key",
    "giant": lambda site: site.url("/actor?" + "a" * 6000 + "#main-key"),
}


@pytest.mark.parametrize("setup", KEY_IDS.values(), ids=KEY_IDS.keys())
async def test_a_key_id_pointing_at_hostile_places_is_401(
    make_server: ServerFactory, site: Site, setup: Callable[[Site], str]
) -> None:
    server = await make_server(fetch_timeout=1.0)
    key_id = setup(site)
    mallory = RemoteUser("mallory", pooled_key(), site.url(""))
    activity = {
        "type": "Create",
        "actor": key_id.split("#", 1)[0]
        if key_id.startswith("http")
        else site.url("/a"),
        "object": {
            "id": site.url("/notes/1"),
            "type": "Note",
            "content": "x",
            "to": [server.actor],
        },
    }
    url = f"{server.origin}/inbox"
    body = json.dumps(activity).encode()
    headers = signed_headers(mallory, url, body, key_id=key_id)
    peak = rusage.getrusage(rusage.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    # An actor that is no usable URL makes the body no activity at all (400);
    # otherwise the key is what fails (401).
    status = 400 if http_url(activity["actor"]) is None else 401
    await assert_rejected(server, status, url, body, headers)
    assert time.monotonic() - started < 6.0
    grown_kib = rusage.getrusage(rusage.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kib < 64 * 1024, f"memory grew by {grown_kib} KiB"


async def test_a_slow_key_server_does_not_hold_up_other_requests(
    make_server: ServerFactory, site: Site, peer: Peer
) -> None:
    server = await make_server(fetch_timeout=3.0)
    key_id = setup_slow(site)
    mallory = RemoteUser("mallory", pooled_key(), site.url(""))
    url = f"{server.origin}/inbox"
    body = json.dumps(
        {"type": "Like", "actor": site.url("/slow"), "object": "x"}
    ).encode()
    pending = asyncio.create_task(
        post_raw(url, body, signed_headers(mallory, url, body, key_id=key_id))
    )
    await asyncio.sleep(0.2)
    started = time.monotonic()
    status, _ = await server.get("/users/alice")
    assert status == 200 and time.monotonic() - started < 0.5
    site.release.set()
    status, _ = await pending
    assert status == 401


PRIVATE_HOSTS = [
    "127.0.0.1",
    "localhost",
    "[::ffff:127.0.0.1]",
    "127.1",
    "2130706433",
    "0.0.0.0",
    "[::1]",
    "a.localhost",
]


async def test_a_key_id_at_a_private_address_is_never_fetched(
    make_server: ServerFactory, peer: Peer
) -> None:
    server = await make_server(allow_private_addresses=False)
    bob = peer.user("bob")
    port = urlsplit(peer.origin).port
    url = f"{server.origin}/inbox"
    body = json.dumps(peer.activity(bob, "Like", server.actor)).encode()
    for host in PRIVATE_HOSTS:
        key_id = f"http://{host}:{port}/actors/bob#main-key"
        headers = signed_headers(bob, url, body, key_id=key_id)
        await assert_rejected(server, 401, url, body, headers)
    assert peer.fetches == []


async def test_a_create_pointing_at_a_private_address_is_never_fetched(
    make_server: ServerFactory, peer: Peer
) -> None:
    server = await make_server(allow_private_addresses=False)
    bob = peer.user("bob")
    # The peer is on loopback, so its actor is known beforehand, as if fetched.
    await server.fed.actors.store(bob.document(), expected_origin=bob.id)
    for target, answer in (
        (f"{bob.id}/notes/private", 202),
        # On another origin than its actor's: refused at the door.
        ("http://10.0.0.1/note", 400),
        ("http://localhost/x", 400),
    ):
        status, _ = await peer.send(
            bob, f"{server.origin}/inbox", peer.activity(bob, "Create", target)
        )
        assert status == answer, target
    await settled(server)
    assert peer.fetches == []
    assert await server.fed.backend.query("objects", limit=10) == []


async def test_a_create_cannot_make_us_fetch_another_origin(
    server: MumbleServer, peer: Peer, site: Site
) -> None:
    """A Create by reference is only worth fetching on its actor's origin;
    anything else is a free signed GET at a third party, retried."""
    bob = peer.user("bob")
    site.routes["/victim"] = json_answer(json.dumps(note_of(bob)))
    status, answer = await peer.send(
        bob, f"{server.origin}/inbox", peer.activity(bob, "Create", site.url("/victim"))
    )
    assert status == 400 and "actor's origin" in answer["error"]
    await settled(server)
    assert site.hits == []


# Request bodies of odd shapes.


async def test_a_deeply_nested_body_is_400_not_500(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = (
        b'{"type": "Like", "actor": "'
        + bob.id.encode()
        + b'", "object": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}"
    )
    await assert_rejected(server, 400, url, body, signed_headers(bob, url, body))


async def test_a_malformed_activity_id_is_4xx_even_unsigned(
    server: MumbleServer, peer: Peer
) -> None:
    """The id check runs before the signature; it must not crash on a bad URL."""
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(
        {"type": "Like", "actor": bob.id, "id": "http://[::1/like", "object": "x"}
    ).encode()
    headers = signed_headers(bob, url, body) | {
        "Signature": 'keyId="k",signature="AAAA"'
    }
    await assert_rejected(server, (400, 401), url, body, headers)


async def test_an_activity_id_with_a_lone_surrogate_is_not_500(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    # json.dumps would escape the surrogate the same way; spelled out for clarity.
    body = (
        f'{{"type": "Like", "actor": "{bob.id}", '
        f'"id": "{bob.id}/likes/\\ud800", "object": "x"}}'
    ).encode()
    status, answer = await peer.send(bob, f"{server.origin}/inbox", {}, body=body)
    assert status in (202, 400), (status, answer)


def _odd_activities(
    peer: Peer, bob: RemoteUser, server: MumbleServer
) -> dict[str, Any]:
    base = note_of(bob, to=[server.actor])
    return {
        "actor as object": (
            202,
            peer.activity(bob, "Create", base)
            | {"actor": {"id": bob.id, "type": "Person"}},
        ),
        "actor as array": (
            400,
            peer.activity(bob, "Create", base) | {"actor": [bob.id, bob.id]},
        ),
        "numeric id": (400, peer.activity(bob, "Create", base) | {"id": 12345}),
        "type as array": (
            202,
            peer.activity(bob, "Create", base) | {"type": ["Create", "Add"]},
        ),
        "type of numbers": (400, peer.activity(bob, "Create", base) | {"type": [1, 2]}),
        # A Like of nothing, and a Create of two things: refused at the door.
        "null everywhere": (
            400,
            {
                "@context": None,
                "id": None,
                "type": "Like",
                "actor": bob.id,
                "object": None,
                "to": None,
                "cc": None,
            },
        ),
        "object array": (400, peer.activity(bob, "Create", [base, base])),
        "nested objects": (
            202,
            peer.activity(
                bob, "Create", base | {"object": {"object": {"object": base}}}
            ),
        ),
        "ids with spaces, newlines and unicode": (
            202,
            peer.activity(
                bob,
                "Create",
                base | {"id": f"{bob.id}/notes/a b\nc\u202e\u00e9\U0001f600"},
            ),
        ),
        "10k-element to and cc": (
            202,
            peer.activity(
                bob,
                "Create",
                base
                | {
                    "to": [server.actor] + [f"{bob.id}/x{i}" for i in range(10_000)],
                    "cc": [PUBLIC] * 10_000,
                },
            ),
        ),
        "a very long string": (
            202,
            peer.activity(bob, "Create", base | {"content": "x" * 900_000}),
        ),
        "huge numbers": (
            202,
            peer.activity(bob, "Create", base | {"n": 1e308, "m": 2**63 - 1}),
        ),
        # Beyond 64 bits, no peer's number: refused at the door.
        "an integer of 301 digits": (
            400,
            peer.activity(bob, "Create", base | {"m": 10**4000 // 10**3700}),
        ),
    }


ODD_NAMES = [
    "actor as object",
    "actor as array",
    "numeric id",
    "type as array",
    "type of numbers",
    "null everywhere",
    "object array",
    "nested objects",
    "ids with spaces, newlines and unicode",
    "10k-element to and cc",
    "a very long string",
    "huge numbers",
    "an integer of 301 digits",
]


async def test_activities_of_odd_shapes_get_4xx_or_are_handled(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    failures = []
    for name in ODD_NAMES:
        expected, activity = _odd_activities(peer, bob, server)[name]
        before = await snapshot(server)
        status, answer = await peer.send(bob, f"{server.origin}/inbox", activity)
        if status != expected:
            failures.append((name, status, answer))
        elif status != 202:
            if await snapshot(server) != before:
                failures.append((name, "stored something"))
        else:
            await settled(server)
            if [t for t in await tasks(server, "inbound") if t["state"] == "queued"]:
                failures.append((name, "left a task queued"))
    assert failures == []


async def test_a_chunked_body_over_the_limit_is_413(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(
        peer.activity(bob, "Create", note_of(bob, content="x" * (2 << 20)))
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    headers = signed_headers(bob, url, body)
    before = await snapshot(server)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=chunks(), headers=headers) as resp,
    ):
        assert resp.status == 413
    assert await snapshot(server) == before


async def test_a_gzip_bomb_as_a_request_body_is_413(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = gzip_bomb()
    headers = signed_headers(bob, url, body) | {"Content-Encoding": "gzip"}
    await assert_rejected(server, (400, 413), url, body, headers)


async def test_wrong_media_types_are_415(server: MumbleServer, peer: Peer) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(mention(peer, bob, server)).encode()
    for content_type in (
        "text/plain",
        "",
        "multipart/form-data; boundary=x",
        "application/activity+jsonx",
        "application/xml",
    ):
        headers = signed_headers(bob, url, body) | {"Content-Type": content_type}
        await assert_rejected(server, 415, url, body, headers)


# Activities that stay stuck or crash when processed: they must be discarded.


def _poison(peer: Peer, bob: RemoteUser, post_id: str) -> dict[str, dict[str, Any]]:
    return {
        "reply with a lone surrogate in its content": peer.activity(
            bob, "Create", note_of(bob, inReplyTo=post_id, content="\ud800")
        ),
        "reply with a lone surrogate in published": peer.activity(
            bob, "Create", note_of(bob, inReplyTo=post_id, published="\udfff")
        ),
        "object id with a malformed IPv6 host": peer.activity(
            bob, "Create", note_of(bob, inReplyTo=post_id) | {"id": "http://[::1/note"}
        ),
        "Delete of a malformed URL": peer.activity(bob, "Delete", "http://[::1/note"),
        "Update of the actor with a non-actor document": peer.activity(
            bob, "Update", {"id": bob.id, "type": "Note", "content": "not an actor"}
        ),
    }


POISON_NAMES = [
    "reply with a lone surrogate in its content",
    "reply with a lone surrogate in published",
    "object id with a malformed IPv6 host",
    "Delete of a malformed URL",
    "Update of the actor with a non-actor document",
]


@pytest.mark.parametrize("name", POISON_NAMES)
async def test_an_activity_that_cannot_be_processed_is_discarded_not_retried_forever(
    server: MumbleServer, peer: Peer, name: str
) -> None:
    bob = peer.user("bob")
    post = await local_post(server)
    await quiet(server)
    before = await effects(server)
    status, _ = await peer.send(
        bob, f"{server.origin}/inbox", _poison(peer, bob, post["id"])[name]
    )
    if status != 202:
        assert 400 <= status < 500
        return
    await settled(server)
    queued = [t for t in await tasks(server, "inbound") if t["state"] == "queued"]
    assert queued == [], queued
    assert await effects(server) == before


# Acting on what the sender does not own.


async def test_an_undo_of_someone_elses_follow_changes_nothing(
    server: MumbleServer, peer: Peer
) -> None:
    bob, eve = peer.user("bob"), peer.user("eve")
    activity = await follow(server, peer, bob)
    await quiet(server)
    inbox = f"{server.origin}/inbox"
    for inner in (
        activity["id"],
        {k: v for k, v in activity.items() if k != "@context"},
        {
            "id": activity["id"],
            "type": "Follow",
            "actor": eve.id,
            "object": server.actor,
        },
        {"id": activity["id"], "type": "Follow", "object": server.actor},
    ):
        await peer.send(eve, inbox, peer.activity(eve, "Undo", inner))
    await quiet(server)
    assert await server.count("alice", "followers") == 1
    _, page = await server.get("/users/alice/followers?page=true")
    assert page["orderedItems"] == [bob.id]


async def test_a_create_cannot_overwrite_an_object_of_another_actor(
    server: MumbleServer, peer: Peer
) -> None:
    """eve shares bob's server, so her ids pass the same-origin check; the stored
    reply is still bob's, and neither her Create nor her Delete may touch it."""
    bob, eve = peer.user("bob"), peer.user("eve")
    post = await local_post(server)
    inbox = f"{server.origin}/inbox"
    reply = note_of(bob, inReplyTo=post["id"], content="<p>bob's words</p>")
    await peer.send(bob, inbox, peer.activity(bob, "Create", reply))
    await quiet(server)
    forged = {k: v for k, v in reply.items() if k != "attributedTo"} | {
        "content": "<p>eve's words</p>"
    }
    await peer.send(eve, inbox, peer.activity(eve, "Create", forged))
    await peer.send(eve, inbox, peer.activity(eve, "Update", forged))
    await quiet(server)
    stored = await server.fed.backend.get("objects", reply["id"])
    assert stored is not None
    assert stored["actor"] == bob.id and "bob's words" in stored["object"]["content"]
    await peer.send(eve, inbox, peer.activity(eve, "Delete", reply["id"]))
    await quiet(server)
    assert (await server.fed.posts.counts(post["id"]))["replies"] == 1
    assert await server.fed.backend.get("objects", reply["id"]) is not None


@pytest.mark.parametrize("shape", ["array", "object"])
async def test_a_create_attributed_to_someone_else_is_refused(
    server: MumbleServer, peer: Peer, shape: str
) -> None:
    bob = peer.user("bob")
    post = await local_post(server)
    other = "https://elsewhere.example/users/carol"
    author: Any = [other] if shape == "array" else {"id": other, "type": "Person"}
    reply = note_of(bob, inReplyTo=post["id"], attributedTo=author)
    await peer.send(bob, f"{server.origin}/inbox", peer.activity(bob, "Create", reply))
    await quiet(server)
    assert await server.fed.backend.get("objects", reply["id"]) is None
    assert (await server.fed.posts.counts(post["id"]))["replies"] == 0


async def test_deletes_and_updates_of_local_posts_by_peers_change_nothing(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    post = await local_post(server)
    inbox = f"{server.origin}/inbox"
    await quiet(server)
    before = await effects(server)
    await peer.send(bob, inbox, peer.activity(bob, "Delete", post["id"]))
    await peer.send(
        bob,
        inbox,
        peer.activity(bob, "Delete", {"id": post["id"], "type": "Tombstone"}),
    )
    await peer.send(
        bob, inbox, peer.activity(bob, "Update", post | {"content": "pwned"})
    )
    await peer.send(bob, inbox, peer.activity(bob, "Delete", server.actor))
    await peer.send(
        bob,
        inbox,
        peer.activity(
            bob, "Update", {"id": server.actor, "type": "Person", "inbox": bob.inbox}
        ),
    )
    await quiet(server)
    assert await effects(server) == before
    status, doc = await server.get(post["id"])
    assert status == 200 and doc["content"] == post["content"]


async def test_accept_and_reject_of_someone_elses_follow_change_nothing(
    server: MumbleServer, peer: Peer
) -> None:
    bob, eve = peer.user("bob"), peer.user("eve")
    status, sent = await server.outbox({"type": "Follow", "object": bob.id})
    assert status == 201, sent
    await quiet(server)
    before = await effects(server)
    inbox = f"{server.origin}/inbox"
    bare = {k: v for k, v in sent.items() if k != "@context"}
    for kind in ("Accept", "Reject"):
        await peer.send(eve, inbox, peer.activity(eve, kind, sent["id"]))
        await peer.send(eve, inbox, peer.activity(eve, kind, bare))
        await peer.send(
            eve,
            inbox,
            peer.activity(
                eve, kind, {"type": "Follow", "actor": server.actor, "object": bob.id}
            ),
        )
    await quiet(server)
    assert await effects(server) == before


async def test_likes_and_announces_of_things_that_are_not_local_posts_store_nothing(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    post = await local_post(server)
    await quiet(server)
    before = await effects(server)
    inbox = f"{server.origin}/inbox"
    for kind in ("Like", "Announce"):
        for target in (
            f"{bob.id}/notes/remote",
            "https://elsewhere.example/notes/1",
            server.actor,
            f"{post['id']}/activity",
            f"{server.actor}/posts/nonexistent",
            post["id"].upper(),
            {"type": "Note", "content": "no id"},
        ):
            await peer.send(bob, inbox, peer.activity(bob, kind, target))
    await quiet(server)
    assert await effects(server) == before


async def test_reactions_to_a_deleted_post_are_not_counted(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    post = await local_post(server)
    body = json.dumps({"type": "Delete", "object": post["id"]}).encode()
    assert (await outbox_raw(server, body))[0] == 201
    await quiet(server)
    inbox = f"{server.origin}/inbox"
    await peer.send(bob, inbox, peer.activity(bob, "Like", post["id"]))
    await peer.send(bob, inbox, peer.activity(bob, "Announce", post["id"]))
    reply = note_of(bob, inReplyTo=post["id"])
    await peer.send(bob, inbox, peer.activity(bob, "Create", reply))
    await quiet(server)
    assert await server.fed.posts.counts(post["id"]) == {
        "replies": 0,
        "likes": 0,
        "shares": 0,
    }


async def test_replies_to_posts_that_are_not_local_are_not_counted(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    await local_post(server)
    await quiet(server)
    before = await effects(server)
    inbox = f"{server.origin}/inbox"
    for parent in (
        f"{server.actor}/posts/nonexistent",
        f"{server.origin}/users/carol/posts/x",
        "https://elsewhere.example/notes/1",
        f"{server.actor}/followers",
    ):
        await peer.send(
            bob, inbox, peer.activity(bob, "Create", note_of(bob, inReplyTo=parent))
        )
    await quiet(server)
    assert await effects(server) == before


@pytest.mark.parametrize(
    "target",
    [
        "remote actor",
        "unknown local user",
        "local post",
        "followers collection",
        "no object",
    ],
)
async def test_a_follow_of_something_that_is_not_a_local_user_changes_nothing(
    server: MumbleServer, peer: Peer, target: str
) -> None:
    bob = peer.user("bob")
    post = await local_post(server)
    await quiet(server)
    before = await effects(server)
    objects = {
        "remote actor": peer.user("carol").id,
        "unknown local user": f"{server.origin}/users/nobody",
        "local post": post["id"],
        "followers collection": f"{server.actor}/followers",
        "no object": None,
    }
    activity = peer.activity(bob, "Follow", objects[target])
    await peer.send(bob, f"{server.origin}/inbox", activity)
    await quiet(server)
    assert await effects(server) == before
    assert not any(d.activity.get("type") == "Accept" for d in peer.received)


async def test_a_follow_of_the_user_in_another_letter_case_is_one_follow_of_that_user(
    server: MumbleServer, peer: Peer
) -> None:
    """/users/ALICE finds alice; the follow must be alice's, not a ghost user's."""
    bob = peer.user("bob")
    activity = peer.activity(bob, "Follow", f"{server.origin}/users/ALICE")
    await peer.send(bob, f"{server.origin}/inbox", activity)
    await settled(server)
    await settled(server, "deliver")
    keys = [r.key for r in await server.fed.backend.query("followers", limit=100)]
    assert all(k.startswith("alice ") for k in keys), keys
    crashed = [t for t in await tasks(server) if t["last_error"] == CRASHED]
    assert crashed == []
    for delivered in peer.received:
        assert delivered.verified, delivered.reason
        assert delivered.activity["actor"] == server.actor


# Exactly one effect, however often and however concurrently it arrives.


async def test_the_same_follow_twenty_times_at_once_has_exactly_one_effect(
    make_server: ServerFactory, peer: Peer
) -> None:
    seen: list[str] = []

    def app_factory(settings: Any) -> Mumble:
        app = Mumble(settings)

        @app.on("Follow")
        async def on_follow(ctx: Any) -> None:
            seen.append(ctx.activity["id"])

        return app

    server = await make_server(app_factory)
    bob = peer.user("bob")
    activity = peer.activity(bob, "Follow", server.actor)
    inboxes = [f"{server.origin}/inbox", f"{server.actor}/inbox"]
    answers = await asyncio.gather(
        *(peer.send(bob, inboxes[i % 2], activity) for i in range(20))
    )
    assert {status for status, _ in answers} == {202}
    await quiet(server)
    await asyncio.sleep(0.3)
    await quiet(server)
    assert seen == [activity["id"]]
    assert await server.count("alice", "followers") == 1
    accepts = [d for d in peer.received if d.activity.get("type") == "Accept"]
    assert len(accepts) == 1


async def test_the_same_like_twenty_times_at_once_counts_once(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    post = await local_post(server)
    like = peer.activity(bob, "Like", post["id"])
    variants = [
        like,
        like | {"id": f"{bob.id}/likes/other"},
        {k: v for k, v in like.items() if k != "id"},
    ]
    inboxes = [f"{server.origin}/inbox", f"{server.actor}/inbox"]
    await asyncio.gather(
        *(peer.send(bob, inboxes[i % 2], variants[i % 3]) for i in range(21))
    )
    await quiet(server)
    assert (await server.fed.posts.counts(post["id"]))["likes"] == 1


# The outbox: only the owner, and only sensible bodies.


async def outbox_raw(
    server: MumbleServer,
    body: bytes,
    *,
    token: str | None = None,
    username: str = "alice",
    content_type: str = "application/activity+json",
    authorization: str | None = None,
) -> tuple[int, Any]:
    headers = {
        "Authorization": authorization
        if authorization is not None
        else f"Bearer {server.token if token is None else token}",
        "Content-Type": content_type,
    }
    return await post_raw(f"{server.origin}/users/{username}/outbox", body, headers)


async def test_the_outbox_refuses_anyone_but_the_owner(server: MumbleServer) -> None:
    _carol, carol_token = await server.fed.users.create("carol")
    before = await snapshot(server)
    body = json.dumps({"type": "Note", "content": "hi"}).encode()
    for authorization in (
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Basic {server.token}",
        f"Bearer {carol_token}",
        f"Bearer {server.token[:-1]}",
        f"Bearer {hashlib.sha256(server.token.encode()).hexdigest()}",
        "Bearer " + "x" * 7000,
    ):
        status, answer = await outbox_raw(server, body, authorization=authorization)
        assert status == 401, (authorization[:20], status, answer)
    status, _ = await outbox_raw(server, body, token=server.token, username="nobody")
    assert status == 404
    assert await snapshot(server) == before


OUTBOX_MALFORMED_BODIES: dict[str, tuple[int, bytes]] = {
    "not JSON": (400, b"{"),
    "an array": (400, b"[]"),
    "a string": (400, b'"Note"'),
    "no type": (400, b'{"content": "hi"}'),
    "a type that is not an object": (400, b'{"type": "Person", "content": "hi"}'),
    "no content": (400, b'{"type": "Note"}'),
    "content not a string": (400, b'{"type": "Note", "content": {"a": 1}}'),
    "whitespace content": (400, b'{"type": "Note", "content": "  \\n "}'),
    "Create of a string": (400, b'{"type": "Create", "object": "http://x/y"}'),
    "Create of a list": (
        400,
        b'{"type": "Create", "object": [{"type": "Note", "content": "a"}]}',
    ),
    "Follow without object": (400, b'{"type": "Follow"}'),
    "Follow of garbage": (400, b'{"type": "Follow", "object": "not a handle"}'),
    "Undo of a string": (400, b'{"type": "Undo", "object": "x"}'),
    "Delete of nothing": (400, b'{"type": "Delete"}'),
    "Delete of a post that does not exist": (
        404,
        b'{"type": "Delete", "object": "http://x/y"}',
    ),
    "Like": (400, b'{"type": "Like", "object": "http://x/y"}'),
    "over 1 MiB": (413, b'{"type": "Note", "content": "' + b"x" * (1 << 20) + b'"}'),
}

OUTBOX_HOSTILE_BODIES: dict[str, tuple[int, bytes]] = {
    "deeply nested": (
        400,
        b'{"type": "Note", "content": "x", "a": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}",
    ),
    "content with a lone surrogate": (400, b'{"type": "Note", "content": "\\ud800"}'),
    "summary with a lone surrogate": (
        400,
        b'{"type": "Note", "content": "x", "summary": "\\udc00"}',
    ),
    "Follow of a malformed URL": (
        400,
        b'{"type": "Follow", "object": "http://[::1/x"}',
    ),
}


async def test_malformed_outbox_bodies_are_4xx_and_store_nothing(
    server: MumbleServer,
) -> None:
    failures = []
    for name, (expected, body) in OUTBOX_MALFORMED_BODIES.items():
        before = await snapshot(server)
        status, answer = await outbox_raw(server, body)
        if status != expected or not (isinstance(answer, dict) and answer.get("error")):
            failures.append((name, status, answer))
        elif await snapshot(server) != before:
            failures.append((name, "stored something"))
    assert failures == []


@pytest.mark.parametrize(
    "case", OUTBOX_HOSTILE_BODIES.values(), ids=OUTBOX_HOSTILE_BODIES.keys()
)
async def test_hostile_outbox_bodies_are_4xx_and_store_nothing(
    server: MumbleServer, case: tuple[int, bytes]
) -> None:
    expected, body = case
    before = await snapshot(server)
    status, answer = await outbox_raw(server, body)
    assert status == expected, (status, answer)
    assert isinstance(answer, dict) and answer.get("error")
    assert await snapshot(server) == before


async def test_the_outbox_takes_only_activity_json(server: MumbleServer) -> None:
    before = await snapshot(server)
    body = json.dumps({"type": "Note", "content": "hi"}).encode()
    status, answer = await outbox_raw(server, body, content_type="text/plain")
    assert status == 415, (status, answer)
    assert await snapshot(server) == before


async def test_an_outbox_type_array_makes_a_post_of_the_object_type(
    server: MumbleServer,
) -> None:
    status, activity = await outbox_raw(
        server, json.dumps({"type": ["Create", "Note"], "content": "hi"}).encode()
    )
    assert status == 201, activity
    assert activity["type"] == "Create"
    assert activity["object"]["type"] == "Note"


async def test_scripts_in_posts_are_sanitised_everywhere(server: MumbleServer) -> None:
    evil = '<p onclick="x()">hi<script>alert(1)</script><a href="javascript:alert(2)">l</a><img src=x onerror=alert(3)></p>'
    status, activity = await outbox_raw(
        server,
        json.dumps(
            {
                "type": "Note",
                "content": evil,
                "summary": "<script>s</script>",
                "name": "<iframe>",
            }
        ).encode(),
    )
    assert status == 201, activity
    for text in (
        json.dumps(activity),
        (await server.get(activity["object"]["id"]))[1],
        (await server.get(activity["object"]["id"], accept="text/html"))[1],
        (await server.get("/@alice", accept="text/html"))[1],
    ):
        text = text if isinstance(text, str) else json.dumps(text)
        for bad in ("<script", "javascript:", "onerror", "onclick", "<iframe", "<img"):
            assert bad not in text


async def test_posts_are_served_as_strict_json(server: MumbleServer) -> None:
    """Python reads NaN and Infinity; peers do not. What goes out must be JSON."""
    status, answer = await outbox_raw(
        server, b'{"type": "Note", "content": "x", "sensitive": NaN, "n": -Infinity}'
    )
    if status != 201:
        assert status == 400
        return
    status, text = await request_raw(
        "GET", answer["object"]["id"], {"Accept": "application/activity+json"}
    )

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        pytest.fail(f"the post is served with {exc}, which is not JSON")


async def test_deleting_a_post_twice_keeps_its_tombstone(server: MumbleServer) -> None:
    post = await local_post(server)
    body = json.dumps({"type": "Delete", "object": post["id"]}).encode()
    assert (await outbox_raw(server, body))[0] == 201
    status, _ = await outbox_raw(server, body)
    assert status in (201, 404, 410)
    status, doc = await server.get(post["id"])
    assert status == 410
    assert doc["type"] == "Tombstone" and doc["formerType"] == "Note"


# Leaks.


async def test_a_deleted_post_is_not_served_by_its_activity(
    server: MumbleServer,
) -> None:
    post = await local_post(server, content="<p>regret</p>")
    status, _ = await outbox_raw(
        server, json.dumps({"type": "Delete", "object": post["id"]}).encode()
    )
    assert status == 201
    for path in (post["id"], f"{post['id']}/activity", "/users/alice/outbox?page=true"):
        status, doc = await server.get(path)
        assert "regret" not in json.dumps(doc), path


async def test_a_post_that_is_not_public_is_not_served_to_strangers(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    followers = f"{server.actor}/followers"
    post = await local_post(
        server, content="<p>for my followers only</p>", to=[followers], cc=[bob.id]
    )
    for path, accept in (
        ("/users/alice/outbox?page=true", "application/activity+json"),
        (post["id"], "application/activity+json"),
        (post["id"], "text/html"),
        (f"{post['id']}/activity", "application/activity+json"),
        ("/@alice", "text/html"),
    ):
        _, doc = await server.get(path, accept=accept)
        assert "followers only" not in json.dumps(doc), path


async def test_a_direct_post_goes_only_to_its_addressee(
    server: MumbleServer, peer: Peer
) -> None:
    peer.shared_inbox = False
    bob, carol = peer.user("bob"), peer.user("carol")
    await follow(server, peer, bob)
    await follow(server, peer, carol)
    await quiet(server)
    await local_post(server, content="<p>just for bob</p>", to=[bob.id], cc=[])
    await quiet(server)
    creates = [d.path for d in peer.received if d.activity.get("type") == "Create"]
    assert creates == ["/actors/bob/inbox"]


async def test_no_public_endpoint_shows_keys_or_tokens(
    server: MumbleServer, peer: Peer
) -> None:
    post = await local_post(server)
    secret_pem = (await server.fed.backend.get("private-keys", "alice"))["pem"]
    secrets = [
        "PRIVATE KEY",
        secret_pem.splitlines()[1],
        server.token,
        hashlib.sha256(server.token.encode()).hexdigest(),
        "token_sha256",
        "Traceback",
    ]
    paths = [
        "/users/alice",
        "/@alice",
        "/users/alice/outbox",
        "/users/alice/outbox?page=true",
        "/users/alice/followers?page=true",
        "/users/alice/following?page=true",
        urlsplit(post["id"]).path,
        urlsplit(post["id"]).path + "/activity",
        urlsplit(post["id"]).path + "/replies?page=true",
        "/.well-known/webfinger?resource=acct:alice@" + server.settings.host,
        "/.well-known/nodeinfo",
        "/nodeinfo/2.1",
        "/users/alice/posts/..%2F..%2Fprivate-keys",
        "/users/..%2Fprivate-keys/alice",
    ]
    for path in paths:
        for accept in ("application/activity+json", "text/html", "*/*"):
            status, text = await request_raw(
                "GET", server.origin + path, {"Accept": accept}
            )
            assert status < 500, path
            for secret in secrets:
                assert secret not in text, (path, secret)


# Every GET endpoint, whatever the query string, method, path or Accept.


def _get_paths(server: MumbleServer, post_id: str) -> list[str]:
    return [
        "/.well-known/webfinger",
        "/.well-known/nodeinfo",
        "/nodeinfo/2.1",
        "/@alice",
        "/users/alice",
        "/users/alice/outbox",
        "/users/alice/followers",
        "/users/alice/following",
        urlsplit(post_id).path,
        urlsplit(post_id).path + "/activity",
        urlsplit(post_id).path + "/replies",
        urlsplit(post_id).path + "/likes",
        "/users/alice/activities/x",
    ]


QUERIES = [
    "?page=",
    "?page",
    "?page=true&page=%%%",
    "?page=%ff%fe",
    "?page=%00",
    "?page=-1",
    "?page=" + "A" * 512,
    "?page=" + "A" * 513,
    "?page=====",
    "?page=__--",
    "?page=" + base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    "?resource=http://x.example/users/alice",
    "?resource=acct:alice@127.0.0.1:1@x",
    "?" + "x=1&" * 500,
    "?%ff=%ff",
]


async def test_query_strings_never_make_a_5xx(server: MumbleServer) -> None:
    post = await local_post(server)
    failures = []
    for path in _get_paths(server, post["id"]):
        for query in QUERIES:
            for accept in ("application/activity+json", "text/html"):
                status, _ = await request_raw(
                    "GET", server.origin + path + query, {"Accept": accept}
                )
                if status >= 500:
                    failures.append((path + query[:40], accept, status))
    assert failures == []


async def test_page_cursors_never_reach_another_users_items(
    server: MumbleServer,
) -> None:
    _carol, carol_token = await server.fed.users.create("carol")
    await local_post(server, content="<p>alice</p>")
    for _ in range(3):
        status, _ = await outbox_raw(
            server,
            json.dumps({"type": "Note", "content": "<p>carol</p>"}).encode(),
            token=carol_token,
            username="carol",
        )
        assert status == 201
    for key in ("", " ", "zzzz", "\uffff", "../carol ", "carol 9", "\x00", "a" * 300):
        cursor = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
        for collection in ("outbox", "followers", "following"):
            status, doc = await server.get(f"/users/alice/{collection}?page={cursor}")
            assert status in (200, 400), (key, collection, status)
            assert "carol" not in json.dumps(doc.get("orderedItems", [])), (
                key,
                collection,
            )


METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "POST", "GET"]


async def test_method_confusion_is_4xx(server: MumbleServer) -> None:
    post = await local_post(server)
    failures = []
    paths = [*_get_paths(server, post["id"]), "/inbox", "/users/alice/inbox"]
    for path in paths:
        for method in METHODS:
            status, _ = await request_raw(method, server.origin + path)
            if status >= 500 or (method not in ("GET", "POST") and status < 400):
                failures.append((method, path, status))
    assert failures == []


WEBFINGER_RESOURCES = [
    "http://[::1",
    "http://[::1/users/alice",
    "acct:alice@evil.example",
    "acct:../../private-keys@{host}",
    "acct:alice@{host}\r\nX-Injected: 1",
    "acct:",
    "@",
    "acct:alice@{host}@evil.example",
    "{origin}/users/alice/../carol",
    "{origin}/users/",
    "javascript:alert(1)",
    "x" * 6000,
]


async def test_webfinger_resource_injection_is_4xx(server: MumbleServer) -> None:
    failures = []
    for resource in WEBFINGER_RESOURCES:
        value = resource.format(host=server.settings.host, origin=server.origin)
        async with server.session.get(
            f"{server.origin}/.well-known/webfinger", params={"resource": value}
        ) as resp:
            if not 400 <= resp.status < 500 or "X-Injected" in resp.headers:
                failures.append((value[:40], resp.status))
    assert failures == []


ACCEPTS = [
    "application/activity+json, " * 300,
    "text/html;q=abc, application/activity+json;q=NaN",
    'application/ld+json; profile="unterminated',
    ";;;,,,;=;=",
    "*/*;q=inf",
    "application/activity+json;q=-1, text/html;q=1e999",
    "\u00e9/\u00e9",
    "a" * 8000,
]


async def test_odd_accept_headers_never_make_a_5xx(server: MumbleServer) -> None:
    post = await local_post(server)
    failures = []
    for path in (
        "/users/alice",
        "/@alice",
        urlsplit(post["id"]).path,
        "/users/alice/outbox",
    ):
        for accept in ACCEPTS:
            status, _ = await request_raw(
                "GET",
                server.origin + path,
                {"Accept": accept.encode("utf-8").decode("latin-1")},
            )
            if status >= 500:
                failures.append((path, accept[:30], status))
    status, _ = await request_raw(
        "GET", server.origin + "/users/alice", {"Accept": "a" * 20000}
    )
    assert 400 <= status < 500 or status == 200
    assert failures == []


TRAVERSALS = [
    "/users/..%2F..%2Fetc%2Fpasswd",
    "/users/%2e%2e/inbox",
    "/users/alice%00",
    "/users/alice/posts/..%2F..%2F..%2Fprivate-keys",
    "/users/alice/posts/%2e%2e%2factivities",
    "/users/alice/activities/..%2F..%2Fprivate-keys%2Falice",
    "/users/ALİCE",
    "/users/" + "a" * 4000,
    "/@..%2F..%2Fusers%2Falice",
]


async def test_path_traversal_finds_nothing(server: MumbleServer) -> None:
    await local_post(server)
    for path in TRAVERSALS:
        status, text = await request_raw(
            "GET", server.origin + path, {"Accept": "application/activity+json"}
        )
        assert status in (400, 404, 405), (path, status, text[:200])
        assert "PRIVATE" not in text


# Delivery to hostile peers.


class SlowPeer(Peer):
    """A peer whose inboxes can be told to hang."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = False
        self.release = asyncio.Event()

    async def _inbox(self, request: web.Request) -> web.Response:
        if self.slow:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), 8)
        return await super()._inbox(request)

    async def close(self) -> None:
        self.release.set()
        await super().close()


async def test_a_slow_peer_does_not_hold_up_the_inbox(
    make_server: ServerFactory, peer: Peer
) -> None:
    server = await make_server(delivery_concurrency=2, fetch_timeout=2.5)
    slow = await SlowPeer.start()
    try:
        slow.shared_inbox = False
        for name in ("s1", "s2", "s3"):
            await follow(server, slow, slow.user(name))
        await quiet(server)
        slow.slow = True
        post = await local_post(server)
        await asyncio.sleep(0.3)
        bob = peer.user("bob")
        started = time.monotonic()
        status, _ = await peer.send(
            bob, f"{server.origin}/inbox", peer.activity(bob, "Like", post["id"])
        )
        assert status == 202 and time.monotonic() - started < 1.0

        async def liked() -> bool:
            return (await server.fed.posts.counts(post["id"]))["likes"] == 1

        await eventually(liked, timeout=8)
        assert time.monotonic() - started < 1.0, (
            "the Like waited for the slow deliveries"
        )
    finally:
        await slow.close()


async def test_a_redirect_answer_to_a_delivery_is_not_followed(
    server: MumbleServer, peer: Peer, site: Site
) -> None:
    bob = peer.user("bob")
    site.routes["/elsewhere"] = json_answer("{}", status=202)
    peer.answer_status["/inbox"] = 307
    peer.answer_headers["/inbox"] = {"Location": site.url("/elsewhere")}
    await local_post(server, to=[bob.id])
    await settled(server, "deliver")
    assert site.hits == []
    assert await tasks(server, "deliver"), "a redirect is not a delivery"


RETRY_AFTERS = [
    "99999999999999999999",
    "\u00b2",
    "-5",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "soon",
    "1e9",
]


async def test_an_absurd_retry_after_is_capped_not_a_crash(
    make_server: ServerFactory, peer: Peer
) -> None:
    server = await make_server(host_failure_threshold=100)
    bob = peer.user("bob")
    peer.answer_status["/inbox"] = 429
    failures = []
    for retry_after in RETRY_AFTERS:
        peer.answer_headers["/inbox"] = {"Retry-After": retry_after}
        post = await local_post(server, to=[bob.id])
        await settled(server, "deliver")
        [task] = [
            t
            for t in await tasks(server, "deliver")
            if t["id"].endswith(
                hashlib.sha256(
                    f"{post['id']}/activity {peer.origin}/inbox".encode()
                ).hexdigest()
            )
        ]
        if (
            task["state"] != "queued"
            or "429" not in task["last_error"]
            or task["due"] > time.time() + 24 * 3600 + 60
        ):
            failures.append((retry_after, task["state"], task["last_error"]))
    assert failures == []


class SharedInboxUser(RemoteUser):
    shared: str = ""

    def document(self, shared_inbox: bool = True) -> dict[str, Any]:
        return super().document(True) | {"endpoints": {"sharedInbox": self.shared}}


async def test_a_follower_cannot_send_our_deliveries_to_another_origin(
    server: MumbleServer, peer: Peer, site: Site
) -> None:
    site.routes["/inbox"] = json_answer("{}", status=202)
    bob = SharedInboxUser("bob", pooled_key(), peer.origin)
    bob.shared = site.url("/inbox")
    peer.users["bob"] = bob
    await follow(server, peer, bob)
    await local_post(server)
    await quiet(server)
    assert site.hits == []


async def test_a_malformed_shared_inbox_does_not_wedge_a_delivery(
    server: MumbleServer, peer: Peer
) -> None:
    bob = SharedInboxUser("bob", pooled_key(), peer.origin)
    bob.shared = "http://[::1/inbox"
    peer.users["bob"] = bob
    await follow(server, peer, bob)
    await local_post(server)
    await settled(server, "deliver")
    crashed = [t for t in await tasks(server, "deliver") if t["last_error"] == CRASHED]
    assert crashed == [], "a malformed inbox URL is a permanent failure, not a crash"


async def test_a_create_is_never_delivered_after_its_delete(
    make_server: ServerFactory, peer: Peer
) -> None:
    server = await make_server(retry_delays=(0.2, 0.2, 2.0, 2.0))
    bob = peer.user("bob")
    peer.answer_status["/inbox"] = 503
    post = await local_post(server, to=[bob.id])

    async def failed_twice() -> bool:
        return any(t["attempts"] >= 2 for t in await tasks(server, "deliver"))

    await eventually(failed_twice)
    del peer.answer_status["/inbox"]
    start = len(peer.received)
    status, _ = await outbox_raw(
        server, json.dumps({"type": "Delete", "object": post["id"]}).encode()
    )
    assert status == 201
    await quiet(server, timeout=8)
    kinds = [d.activity["type"] for d in peer.received[start:]]
    assert "Delete" in kinds
    assert "Create" not in kinds[kinds.index("Delete") :], kinds


async def test_a_peer_that_is_down_gets_retries_and_the_inbox_stays_up(
    make_server: ServerFactory, peer: Peer
) -> None:
    server = await make_server(fetch_timeout=1.0)
    bob = peer.user("bob")
    await follow(server, peer, bob)
    await quiet(server)
    await peer.close()
    post = await local_post(server)
    await settled(server, "deliver")
    [task] = await tasks(server, "deliver")
    assert task["state"] == "queued" and task["attempts"] >= 1
    status, _ = await server.get(post["id"])
    assert status == 200


# CPU: sanitising what a peer sent must not freeze the server.


async def test_deeply_nested_html_in_a_reply_does_not_freeze_the_server(
    server: MumbleServer, peer: Peer
) -> None:
    """About 100 KiB of nested lists; the inbox takes up to 1 MiB."""
    bob = peer.user("bob")
    post = await local_post(server)
    await quiet(server)
    # The server runs on this test's event loop: a heartbeat on it measures
    # how long every request would have waited.
    gaps = [0.0]

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last - 0.02)
            last = now

    beating = asyncio.create_task(heartbeat())
    try:
        reply = note_of(bob, inReplyTo=post["id"], content="<ul>" * 25_000)
        status, _ = await peer.send(
            bob, f"{server.origin}/inbox", peer.activity(bob, "Create", reply)
        )
        assert status == 202
        await settled(server, timeout=30)
        status, _ = await server.get("/nodeinfo/2.1")
        assert status == 200
    finally:
        beating.cancel()
    assert max(gaps) < 0.5, f"the server could not answer for {max(gaps):.1f} s"


# Hostile requests that once got a 5xx, a crash or a wrong effect.


async def test_a_key_id_with_an_address_in_other_digits_is_never_fetched(
    make_server: ServerFactory, site: Site
) -> None:
    server = await make_server(allow_private_addresses=False)
    port = urlsplit(site.url("/")).port
    # Fullwidth digits: IDNA turns the host into 127.0.0.1 when connecting.
    host = "\uff11\uff12\uff17.\uff10.\uff10.\uff11"
    actor = f"http://{host}:{port}/admin"
    body = json.dumps(
        {"id": f"{actor}/1", "type": "Like", "actor": actor, "object": "x"}
    ).encode()
    user = RemoteUser("mallory", pooled_key(), f"http://{host}:{port}")
    url = f"{server.origin}/inbox"
    headers = signed_headers(user, url, body, key_id=f"{actor}#main-key")
    answer = await assert_rejected(server, 401, url, body, headers)
    assert "not a public address" in answer["error"]
    assert site.hits == []


def _signed_body(user: RemoteUser, url: str, body: bytes) -> tuple[bytes, Any]:
    return body, signed_headers(user, url, body)


async def test_a_body_in_utf16_is_400_whatever_it_holds(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    follow = peer.activity(bob, "Follow", server.actor) | {"summary": "\ud800"}
    text = json.dumps(follow, ensure_ascii=False)
    url = f"{server.origin}/inbox"
    body, headers = _signed_body(bob, url, text.encode("utf-16", "surrogatepass"))
    answer = await assert_rejected(server, 400, url, body, headers)
    assert answer["error"] == "the body is not UTF-8"


async def test_a_number_too_large_to_carry_is_400(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    text = json.dumps(peer.activity(bob, "Follow", server.actor))
    url = f"{server.origin}/inbox"
    body, headers = _signed_body(bob, url, (text[:-1] + ', "n": 1e999}').encode())
    await assert_rejected(server, 400, url, body, headers)


async def test_json_nested_deeper_than_any_activity_is_400(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    deep: Any = "end"
    for _ in range(900):
        deep = {"x": deep}
    activity = peer.activity(bob, "Follow", server.actor) | {
        "@context": ["https://www.w3.org/ns/activitystreams", {"x": "as:x"}],
        "deep": deep,
    }
    url = f"{server.origin}/inbox"
    body, headers = _signed_body(bob, url, json.dumps(activity).encode())
    answer = await assert_rejected(server, 400, url, body, headers)
    assert "nested more than 64" in answer["error"]


async def raw_request(
    url: str, head: bytes, body: bytes = b"", pause: float = 0
) -> int:
    """Send bytes as they are; return the status the server answers."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head)
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)
        writer.write(body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_header_bytes_that_are_not_utf8_are_401_not_500(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    body = json.dumps(peer.activity(bob, "Follow", server.actor)).encode()
    url = f"{server.origin}/inbox"
    headers = signed_headers(bob, url, body)
    for signature, extra in (
        # A signed header carrying a byte that is not UTF-8.
        (
            headers["Signature"].replace('headers="', 'headers="x-junk '),
            b"X-Junk: caf\xff\r\n",
        ),
        # A key id carrying one.
        (headers["Signature"].replace('keyId="', 'keyId="\xff'), b""),
    ):
        head = (
            f"POST /inbox HTTP/1.1\r\nHost: {headers['Host']}\r\n"
            f"Date: {headers['Date']}\r\nDigest: {headers['Digest']}\r\n"
            "Content-Type: application/activity+json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        ).encode() + extra
        head += b"Signature: " + signature.encode("latin-1") + b"\r\n\r\n"
        before = await snapshot(server)
        assert await raw_request(url, head, body) == 401
        assert await snapshot(server) == before


async def test_an_actor_document_cannot_speak_for_another_url_of_its_origin(
    server: MumbleServer, site: Site
) -> None:
    origin = site.url("").rstrip("/")
    victim = RemoteUser("victim", pooled_key(), origin)
    mallory_key = generate_private_key()
    forged = victim.document() | {
        "inbox": f"{origin}/mallory/inbox",
        "publicKey": {
            "id": f"{origin}/uploads/evil.json#k",
            "owner": victim.id,
            "publicKeyPem": public_key_pem(mallory_key),
        },
    }
    site.routes["/uploads/evil.json"] = json_answer(json.dumps(forged))
    site.routes["/actors/victim"] = json_answer(json.dumps(victim.document()))

    follow = {"id": f"{victim.id}/follows/1", "type": "Follow", "actor": victim.id}
    body = json.dumps(follow | {"object": server.actor}).encode()
    mallory = RemoteUser("victim", mallory_key, origin)
    url = f"{server.origin}/inbox"
    headers = signed_headers(mallory, url, body, key_id=f"{origin}/uploads/evil.json#k")
    await assert_rejected(server, 401, url, body, headers)
    # The document at the victim's own URL was asked, and nothing was kept.
    assert ("GET", "/actors/victim") in site.hits
    assert await server.fed.backend.get("actors", victim.id) is None


async def test_many_digests_of_one_body_are_refused_before_any_is_computed(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    body = json.dumps(peer.activity(bob, "Follow", server.actor)).encode()
    url = f"{server.origin}/inbox"
    digest = digest_header(body)
    headers = signed_headers(bob, url, body, digest=",".join([digest] * 9))
    answer = await assert_rejected(server, 401, url, body, headers)
    assert "more than 8 digests" in answer["error"]


async def test_a_body_that_arrives_too_slowly_is_408(
    make_server: ServerFactory,
) -> None:
    server = await make_server(body_timeout=0.5)
    port = urlsplit(server.origin).port
    head = (
        f"POST /inbox HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/activity+json\r\nSignature: x\r\n"
        "Content-Length: 100\r\nConnection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    # Ten bytes, then nothing more.
    status = await raw_request(server.origin, head + b'{"type": "', pause=0)
    assert status == 408
    assert time.monotonic() - started < 3


async def test_an_undo_that_overtakes_its_follow_leaves_no_follower(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    follow = peer.activity(bob, "Follow", server.actor)
    undo = peer.activity(bob, "Undo", follow["id"])
    assert (await peer.send(bob, f"{server.origin}/inbox", undo))[0] == 202
    await settled(server)
    assert (await peer.send(bob, f"{server.origin}/inbox", follow))[0] == 202
    await settled(server)
    await quiet(server)
    assert await server.fed.backend.get("followers", f"alice {bob.id}") is None
    assert not [d for d in peer.received if d.activity.get("type") == "Accept"]


async def test_an_undo_by_someone_else_does_not_cancel_a_follow(
    server: MumbleServer, peer: Peer
) -> None:
    bob, eve = peer.user("bob"), peer.user("eve")
    follow = peer.activity(bob, "Follow", server.actor)
    undo = peer.activity(eve, "Undo", follow["id"])
    assert (await peer.send(eve, f"{server.origin}/inbox", undo))[0] == 202
    await settled(server)
    await follow_accepted(server, peer, bob, follow)


async def follow_accepted(
    server: MumbleServer, peer: Peer, user: RemoteUser, activity: dict[str, Any]
) -> None:
    assert (await peer.send(user, f"{server.actor}/inbox", activity))[0] == 202
    await eventually(
        lambda: any(
            d.activity.get("type") == "Accept"
            and d.activity["object"].get("id") == activity["id"]
            for d in peer.received
        )
    )


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"type": "Note", "content": "hi"}, "a Note is not an activity"),
        ({"type": ["Person", "Service"]}, "a Person is not an activity"),
        ({"type": "Follow"}, "a Follow needs an object"),
        ({"type": "Create", "object": 7}, "a Create needs an object"),
        ({"type": "Like", "object": None}, "a Like needs an object"),
    ],
)
async def test_bodies_that_are_not_activities_or_lack_their_object_are_400(
    server: MumbleServer, peer: Peer, shape: dict[str, Any], message: str
) -> None:
    bob = peer.user("bob")
    doc = {"id": f"{bob.id}/things/1", "actor": bob.id} | shape
    url = f"{server.origin}/inbox"
    body, headers = _signed_body(bob, url, json.dumps(doc).encode())
    answer = await assert_rejected(server, 400, url, body, headers)
    assert answer["error"].startswith(message)


async def test_an_activity_type_peers_invented_is_taken_and_ignored(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    post = await local_post(server)
    react = peer.activity(bob, "EmojiReact", post["id"]) | {"content": "\U0001f44d"}
    before = await effects(server)
    assert (await peer.send(bob, f"{server.origin}/inbox", react))[0] == 202
    await settled(server)
    assert await effects(server) == before


async def test_forged_signatures_do_not_make_us_fetch_the_actor_each_time(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    await follow(server, peer, bob)
    fetched = len(peer.fetches)
    impostor = RemoteUser("bob", pooled_key(), peer.origin)
    for i in range(20):
        like = peer.activity(bob, "Like", f"{server.actor}/posts/{i}")
        status, _ = await peer.send(
            bob, f"{server.origin}/inbox", like, key_user=impostor
        )
        assert status == 401
    # One fetch, to look for a rotated key; then not again for a minute.
    assert len(peer.fetches) - fetched <= 1


class LoudUser(RemoteUser):
    def document(self, shared_inbox: bool = True) -> dict[str, Any]:
        return super().document(shared_inbox) | {
            "name": "Bob<script>alert(1)</script>",
            "summary": '<p onmouseover="x()">hi</p><script>steal()</script>',
            "attachment": [
                {
                    "type": "PropertyValue",
                    "name": "site",
                    "value": '<a href="javascript:x()">me</a><img src=x onerror=y()>',
                }
            ],
        }


async def test_a_remote_profile_is_sanitised_before_it_is_stored(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.users["bob"] = LoudUser("bob", pooled_key(), peer.origin)
    await follow(server, peer, bob)
    stored = await server.fed.backend.get("actors", bob.id)
    assert stored is not None
    text = json.dumps(stored["doc"])
    for bad in ("<script", "onmouseover", "javascript:", "onerror", "<img"):
        assert bad not in text, bad
    assert stored["doc"]["summary"] == "<p>hi</p>"


async def follow_from_a_silent_server(server: MumbleServer, site: Site) -> float:
    """A Follow signed by an actor whose server never answers; it must be 401.

    Returns how long the refusal took.
    """
    site.routes["/actors/silent"] = site.silent(5)
    silent = RemoteUser("silent", pooled_key(), site.url("").rstrip("/"))
    body = json.dumps(
        {
            "id": f"{silent.id}/follows/1",
            "type": "Follow",
            "actor": silent.id,
            "object": server.actor,
        }
    ).encode()
    url = f"{server.origin}/inbox"
    started = time.monotonic()
    await assert_rejected(server, 401, url, body, signed_headers(silent, url, body))
    return time.monotonic() - started


async def test_a_key_server_that_does_not_answer_is_asked_once(
    make_server: ServerFactory, site: Site
) -> None:
    server = await make_server(fetch_timeout=1.0)
    assert await follow_from_a_silent_server(server, site) < 2.5
    assert site.hits.count(("GET", "/actors/silent")) == 1


async def test_silent_addressees_hold_a_post_up_by_one_timeout_not_each(
    make_server: ServerFactory, site: Site, peer: Peer
) -> None:
    server = await make_server(fetch_timeout=1.0)
    addressees = [site.url(f"/actors/quiet{i}") for i in range(5)]
    for address in addressees:
        site.routes[urlsplit(address).path] = site.silent()
    bob = peer.user("bob")
    await follow(server, peer, bob)
    started = time.monotonic()
    await local_post(server, cc=[f"{server.actor}/followers", *addressees])
    await eventually(
        lambda: any(d.activity.get("type") == "Create" for d in peer.received)
    )
    assert time.monotonic() - started < 3


# More hostile requests that once got a 5xx, a crash or a wrong effect.


async def test_a_date_in_a_year_no_clock_reaches_is_401(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(peer.activity(bob, "Follow", server.actor)).encode()
    headers = signed_headers(bob, url, body, date="Fri, 1 Jan 99999999999 00:00:00 GMT")
    await assert_rejected(server, 401, url, body, headers)


async def test_a_compressed_body_that_does_not_decompress_is_400(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = b"\x1f\x8b\x08\x00not gzip at all"
    headers = signed_headers(bob, url, body) | {"Content-Encoding": "gzip"}
    await assert_rejected(server, 400, url, body, headers)


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example", "\u2488.com"])
async def test_a_key_id_whose_host_cannot_be_encoded_is_401(
    server: MumbleServer, peer: Peer, host: str
) -> None:
    bob = peer.user("bob")
    url = f"{server.origin}/inbox"
    body = json.dumps(peer.activity(bob, "Follow", server.actor)).encode()
    headers = signed_headers(bob, url, body, key_id=f"http://{host}/actor#k")
    await assert_rejected(server, 401, url, body, headers)


async def test_a_post_addressed_to_an_address_that_cannot_be_encoded_still_goes_out(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    await follow(server, peer, bob)
    await local_post(server, cc=[f"{server.actor}/followers", "http://a..b/users/x"])
    await eventually(
        lambda: any(d.activity.get("type") == "Create" for d in peer.received)
    )
    await quiet(server)
    assert not [t for t in await tasks(server) if t["state"] == "dead"]


async def test_a_follow_and_its_undo_processed_at_once_leave_no_follower(
    server: MumbleServer, peer: Peer
) -> None:
    followers = []
    for i in range(10):
        user = peer.user(f"racer{i}")
        follow = peer.activity(user, "Follow", server.actor)
        undo = peer.activity(user, "Undo", follow["id"])
        answers = await asyncio.gather(
            peer.send(user, f"{server.origin}/inbox", follow),
            peer.send(user, f"{server.origin}/inbox", undo),
        )
        assert [status for status, _ in answers] == [202, 202]
        followers.append(user)
    await settled(server)
    await quiet(server)
    for user in followers:
        assert await server.fed.backend.get("followers", f"alice {user.id}") is None


async def test_an_undo_by_another_actor_of_its_server_does_not_unrecord_it(
    server: MumbleServer, peer: Peer
) -> None:
    bob, eve = peer.user("bob"), peer.user("eve")
    follow = peer.activity(bob, "Follow", server.actor)
    for user in (bob, eve):
        undo = peer.activity(user, "Undo", follow["id"])
        assert (await peer.send(user, f"{server.origin}/inbox", undo))[0] == 202
        await settled(server)
    assert (await peer.send(bob, f"{server.origin}/inbox", follow))[0] == 202
    await settled(server)
    assert await server.fed.backend.get("followers", f"alice {bob.id}") is None


class ClaimingUser(RemoteUser):
    """Serves a document that claims to be ``claims``, with this user's key."""

    claims: str = ""

    def document(self, shared_inbox: bool = True) -> dict[str, Any]:
        return super().document(shared_inbox) | {
            "id": self.claims,
            "publicKey": {
                "id": f"{self.claims}#k",
                "owner": self.claims,
                "publicKeyPem": public_key_pem(self.key),
            },
        }


async def test_an_open_redirect_cannot_lend_its_origin_to_another_actor(
    server: MumbleServer, peer: Peer, site: Site
) -> None:
    # The victim's server (the site) has an open redirect; mallory's server
    # (the peer) serves a document that claims a URL of the victim's.
    claimed = site.url("/go?to=mallory")
    mallory = ClaimingUser("mallory", pooled_key(), peer.origin)
    mallory.claims = claimed
    peer.users["mallory"] = mallory
    site.routes["/go"] = redirect_to(mallory.id)

    follow = {"id": site.url("/go/f/1"), "type": "Follow", "actor": claimed}
    body = json.dumps(follow | {"object": server.actor}).encode()
    url = f"{server.origin}/inbox"
    headers = signed_headers(mallory, url, body, key_id=f"{claimed}#k")
    answer = await assert_rejected(server, 401, url, body, headers)
    assert "claims to be" in answer["error"]
    assert await server.fed.backend.get("followers", f"alice {claimed}") is None


async def test_a_context_that_renames_the_id_cannot_change_what_is_recorded(
    server: MumbleServer, peer: Peer
) -> None:
    bob = peer.user("bob")
    follow = peer.activity(bob, "Follow", server.actor)
    # As written, the id is its own; in our terms it would be another's.
    aliased = follow | {
        "@context": [
            "https://www.w3.org/ns/activitystreams",
            {"id": "as:unused", "realId": "@id"},
        ],
        "realId": f"{bob.id}/follows/someone-elses",
    }
    assert (await peer.send(bob, f"{server.origin}/inbox", aliased))[0] == 202
    await settled(server)
    assert await server.fed.backend.get("followers", f"alice {bob.id}") is None
    assert (
        await server.fed.backend.get("follow-ids", f"{bob.id}/follows/someone-elses")
        is None
    )


async def test_a_gone_shared_inbox_removes_no_follower(
    server: MumbleServer, peer: Peer
) -> None:
    bob, carol = peer.user("bob"), peer.user("carol")
    await follow(server, peer, bob)
    await follow(server, peer, carol)
    peer.answer_status["/inbox"] = 404
    await local_post(server)
    await settled(server, "deliver")
    await quiet(server)
    for user in (bob, carol):
        assert await server.fed.backend.get("followers", f"alice {user.id}")


async def test_a_key_whose_owner_is_gone_is_401(
    server: MumbleServer, peer: Peer, site: Site
) -> None:
    origin = site.url("").rstrip("/")
    owner = f"{origin}/actors/gone"
    site.routes["/keys/1"] = json_answer(
        json.dumps({"id": f"{origin}/keys/1", "type": "Key", "owner": owner})
    )
    site.routes["/actors/gone"] = json_answer("{}", status=410)
    mallory = RemoteUser("gone", pooled_key(), origin)
    body = json.dumps(
        {"id": f"{owner}/l/1", "type": "Like", "actor": owner, "object": "x"}
    ).encode()
    url = f"{server.origin}/inbox"
    headers = signed_headers(mallory, url, body, key_id=f"{origin}/keys/1")
    await assert_rejected(server, 401, url, body, headers)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"type": "Follow", "id": None}, "a Follow needs an id"),
        ({"type": "Create", "object": {"type": "Note"}}, "object needs an id"),
        ({"type": "Create", "object": {}}, "object needs an id"),
        ({"type": "Delete", "object": {}}, "object needs an id"),
        ({"type": "Delete", "object": ["a", "b"]}, "takes one object"),
        (
            {"type": "Follow", "object": "https://elsewhere.example/users/x"},
            "names no one here",
        ),
        ({"type": "Undo", "object": {}}, "needs an id or a type"),
    ],
)
@pytest.mark.parametrize(
    "spelling", ["{}", "as:{}", "https://www.w3.org/ns/activitystreams#{}"]
)
async def test_activities_that_would_be_dropped_later_are_400_at_the_door(
    server: MumbleServer,
    peer: Peer,
    shape: dict[str, Any],
    message: str,
    spelling: str,
) -> None:
    bob = peer.user("bob")
    doc = {"id": f"{bob.id}/a/1", "actor": bob.id, "object": server.actor} | shape
    doc = {k: v for k, v in doc.items() if v is not None}
    # However the type is written, with a context that makes it compacted.
    doc["type"] = spelling.format(doc["type"])
    doc["@context"] = ["https://www.w3.org/ns/activitystreams", {"x": "as:x"}]
    url = f"{server.origin}/inbox"
    body, headers = _signed_body(bob, url, json.dumps(doc).encode())
    answer = await assert_rejected(server, 400, url, body, headers)
    assert message in answer["error"]


async def test_a_like_and_its_undo_processed_at_once_leave_no_like(
    server: MumbleServer, peer: Peer
) -> None:
    post = await local_post(server)
    for i in range(10):
        user = peer.user(f"liker{i}")
        like = peer.activity(user, "Like", post["id"])
        undo = peer.activity(user, "Undo", like["id"])
        answers = await asyncio.gather(
            peer.send(user, f"{server.origin}/inbox", like),
            peer.send(user, f"{server.origin}/inbox", undo),
        )
        assert [status for status, _ in answers] == [202, 202]
    await settled(server)
    await quiet(server)
    assert await server.fed.backend.query("reactions") == []
    assert (await server.fed.posts.counts(post["id"]))["likes"] == 0


async def test_a_key_server_that_does_not_answer_holds_a_delivery_briefly(
    make_server: ServerFactory, site: Site
) -> None:
    server = await make_server(fetch_timeout=5.0, actor_fetch_timeout=0.5)
    assert await follow_from_a_silent_server(server, site) < 1.5
