from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer, unused_port

from mumble import Federation, Mumble, Settings
from mumble.backends.embedded import EmbeddedBackend
from mumble.web_base import FEDERATION
from tests.peer import Peer

FAST_RETRIES = (0.3, 0.6, 1.0)


def make_settings(data_dir: Path, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "origin": f"http://127.0.0.1:{port}",
        "data_dir": data_dir,
        "allow_private_addresses": True,
        "retry_delays": FAST_RETRIES,
        "host_cooldown_seconds": 2.0,
        "fetch_timeout": 5.0,
    }
    return Settings(**(values | overrides))


class MumbleServer:
    """A Mumble application on a real port, with one user, ``alice``."""

    def __init__(self, settings: Settings, app: Mumble | None = None) -> None:
        self.settings = settings
        self.app = app or Mumble(settings)
        self.server: TestServer | None = None
        self.token = ""
        self.session = aiohttp.ClientSession()

    @property
    def fed(self) -> Federation:
        assert self.server is not None
        return self.server.app[FEDERATION]

    @property
    def origin(self) -> str:
        return self.settings.origin

    @property
    def actor(self) -> str:
        return f"{self.origin}/users/alice"

    async def start(self, *, create_user: bool = True) -> MumbleServer:
        port = int(self.origin.rsplit(":", 1)[1])
        self.server = TestServer(self.app.web_app(), host="127.0.0.1", port=port)
        await self.server.start_server()
        if create_user and await self.fed.users.get("alice") is None:
            _user, self.token = await self.fed.users.create("alice")
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def close(self) -> None:
        await self.stop()
        await self.session.close()

    async def get(
        self, path: str, accept: str = "application/activity+json"
    ) -> tuple[int, Any]:
        url = path if path.startswith("http") else self.origin + path
        async with self.session.get(
            url, headers={"Accept": accept}, allow_redirects=False
        ) as resp:
            text = await resp.text()
            if resp.content_type.endswith("json"):
                import json

                return resp.status, json.loads(text)
            return resp.status, text

    async def outbox(
        self, body: dict[str, Any], token: str | None = None
    ) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {self.token if token is None else token}",
            "Content-Type": "application/activity+json",
        }
        async with self.session.post(
            f"{self.actor}/outbox", json=body, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def count(self, key: str, name: str) -> int:
        record = await self.fed.backend.get("counts", key) or {}
        return int(record.get(name, 0))


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10.0
) -> None:
    """Wait until ``check`` holds; fail the test when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def embedded_backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    """An open embedded backend in a fresh data folder."""
    backend = EmbeddedBackend(tmp_path / "data")
    await backend.open()
    yield backend
    await backend.close()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await Peer.start()
    yield p
    await p.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", unused_port())


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[MumbleServer]:
    s = await MumbleServer(settings).start()
    yield s
    await s.close()
