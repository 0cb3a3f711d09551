"""A scriptable remote server for tests: actors with keys, and a recording inbox.

It signs what it sends with the same draft-cavage rules peers use, verifies
what it receives with Mumble's verifier (so a delivery that would fail at a
real peer fails here too), and can be told to answer with any status.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from mumble.errors import FetchError
from mumble.jsonld import CONTEXT
from mumble.signatures import (
    PublicKey,
    SignedRequest,
    generate_private_key,
    load_public_key,
    public_key_pem,
    sign_request,
    verify_request,
)


@dataclass
class RemoteUser:
    name: str
    key: rsa.RSAPrivateKey
    origin: str

    @property
    def id(self) -> str:
        return f"{self.origin}/actors/{self.name}"

    @property
    def key_id(self) -> str:
        return f"{self.id}#main-key"

    @property
    def inbox(self) -> str:
        return f"{self.id}/inbox"

    def document(self, shared_inbox: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "@context": CONTEXT,
            "id": self.id,
            "type": "Person",
            "preferredUsername": self.name,
            "inbox": self.inbox,
            "publicKey": {
                "id": self.key_id,
                "owner": self.id,
                "publicKeyPem": public_key_pem(self.key),
            },
        }
        if shared_inbox:
            doc["endpoints"] = {"sharedInbox": f"{self.origin}/inbox"}
        return doc


@dataclass
class Delivered:
    path: str
    activity: dict[str, Any]
    verified: bool
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


class Peer:
    """Start with ``await Peer.start()``; stop with ``await peer.close()``."""

    def __init__(self) -> None:
        self.users: dict[str, RemoteUser] = {}
        self.received: list[Delivered] = []
        self.fetches: list[str] = []
        self.answer_status: dict[str, int] = {}
        self.answer_headers: dict[str, dict[str, str]] = {}
        self.shared_inbox = True
        #: Answer 401 to a fetch of an actor that is not signed, or whose
        #: signature does not verify (Mastodon's "authorized fetch").
        self.require_signed_fetch = False
        self.refused_fetches: list[str] = []
        self.server: TestServer | None = None
        self.session: aiohttp.ClientSession | None = None
        self._remote_keys: dict[str, PublicKey] = {}

    @classmethod
    async def start(cls) -> Peer:
        peer = cls()
        app = web.Application()
        app.router.add_get("/actors/{name}", peer._actor)
        app.router.add_post("/actors/{name}/inbox", peer._inbox)
        app.router.add_post("/inbox", peer._inbox)
        peer.server = TestServer(app, host="127.0.0.1")
        await peer.server.start_server()
        peer.session = aiohttp.ClientSession()
        return peer

    async def close(self) -> None:
        if self.session:
            await self.session.close()
        if self.server:
            await self.server.close()

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def user(
        self, name: str = "bob", key: rsa.RSAPrivateKey | None = None
    ) -> RemoteUser:
        if name not in self.users:
            self.users[name] = RemoteUser(
                name, key or generate_private_key(), self.origin
            )
        return self.users[name]

    async def _actor(self, request: web.Request) -> web.Response:
        self.fetches.append(request.path)
        if self.require_signed_fetch:
            signed = SignedRequest(request.method, request.raw_path, request.headers)
            verification = await verify_request(signed, self._key_of_sender)
            if not verification.ok:
                self.refused_fetches.append(verification.reason)
                return web.json_response({"error": verification.reason}, status=401)
        user = self.users.get(request.match_info["name"])
        status = self.answer_status.get(request.path)
        if status:
            return web.json_response({"error": "as told"}, status=status)
        if user is None:
            return web.json_response({"error": "no such actor"}, status=404)
        return web.Response(
            body=json.dumps(user.document(self.shared_inbox)),
            content_type="application/activity+json",
        )

    async def _inbox(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = SignedRequest(request.method, request.raw_path, request.headers, body)
        verification = await verify_request(signed, self._key_of_sender)
        self.received.append(
            Delivered(
                request.path,
                json.loads(body),
                verification.ok,
                verification.reason,
                dict(request.headers),
            )
        )
        status = self.answer_status.get(request.path, 202)
        return web.Response(
            status=status, headers=self.answer_headers.get(request.path, {})
        )

    async def _key_of_sender(self, key_id: str, refresh: bool) -> PublicKey:
        assert self.session is not None
        url = key_id.split("#", 1)[0]
        try:
            async with self.session.get(
                url, headers={"Accept": "application/activity+json"}
            ) as resp:
                doc = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            # Recorded as a delivery that did not verify, as a server would.
            raise FetchError(f"{url}: {exc}") from exc
        key = doc["publicKey"]
        return PublicKey(key["id"], doc["id"], load_public_key(key["publicKeyPem"]))

    def activity(
        self, user: RemoteUser, kind: str, obj: Any, **extra: Any
    ) -> dict[str, Any]:
        return {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{user.id}/activities/{uuid.uuid4().hex}",
            "type": kind,
            "actor": user.id,
            "object": obj,
            **extra,
        }

    async def send(
        self,
        user: RemoteUser,
        inbox: str,
        activity: dict[str, Any],
        *,
        key_user: RemoteUser | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Sign and POST an activity; ``key_user`` signs in someone else's name."""
        assert self.session is not None
        data = body if body is not None else json.dumps(activity).encode()
        signer = key_user or user
        send = sign_request(
            "POST",
            inbox,
            key_id=signer.key_id,
            private_key=signer.key,
            body=data,
            headers={"Content-Type": "application/activity+json"},
        )
        send.update(headers or {})
        async with self.session.post(inbox, data=data, headers=send) as resp:
            try:
                answer = await resp.json(content_type=None)
            except ValueError:
                answer = {}
            return resp.status, answer or {}
