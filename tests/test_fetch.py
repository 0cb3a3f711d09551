"""Outbound HTTP: what the fetcher refuses to reach, and how long it waits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mumble import Settings
from mumble.errors import FetchError
from mumble.fetch import FETCHES_PER_HOST, Fetcher, _PublicOnlyResolver
from tests.conftest import eventually


def fetcher(tmp_path: Path, **overrides: Any) -> Fetcher:
    return Fetcher(
        Settings(origin="https://social.example", data_dir=tmp_path, **overrides)
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/actor",
        "http://localhost/actor",
        "http://api.localhost/actor",
        "http://[::1]/actor",
        "http://10.1.2.3/actor",
        "http://169.254.169.254/latest/meta-data",
        # Digits of other scripts, which IDNA turns into 127.0.0.1.
        "http://\u2460\u2461\u2466.0.0.1:8186/admin",
        "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/actor",
        "http://LOCALHOST./actor",
    ],
)
def test_private_addresses_are_refused_however_they_are_written(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(FetchError, match="not a public address"):
        fetcher(tmp_path).check_url(url)


def test_public_names_and_addresses_pass_the_check(tmp_path: Path) -> None:
    for url in ("https://mastodon.example/users/a", "http://93.184.216.34/x"):
        fetcher(tmp_path).check_url(url)


class FakeResolver:
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int, family: Any) -> list[dict[str, Any]]:
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": family,
                "proto": 0,
                "flags": 0,
            }
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    resolver = _PublicOnlyResolver()
    resolver._inner = FakeResolver(["127.0.0.1", "10.0.0.7"])  # type: ignore[assignment]
    with pytest.raises(OSError, match="no public address"):
        await resolver.resolve("rebind.example", 443, socket.AF_INET)

    resolver._inner = FakeResolver(["10.0.0.7", "93.184.216.34"])  # type: ignore[assignment]
    answers = await resolver.resolve("mixed.example", 443, socket.AF_INET)
    assert [a["host"] for a in answers] == ["93.184.216.34"]


@pytest.fixture
async def slow_site() -> AsyncIterator[tuple[str, list[str]]]:
    """Redirects that each take a while, and a path that never answers."""
    hits: list[str] = []
    stop = asyncio.Event()

    async def hop(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        await asyncio.sleep(0.4)
        number = int(request.match_info["n"])
        raise web.HTTPFound(f"/hop/{number + 1}")

    async def silent(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        await stop.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/silent/{n}", silent)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}", hits
    stop.set()
    await server.close()


async def test_redirects_share_one_deadline(
    tmp_path: Path, slow_site: tuple[str, list[str]]
) -> None:
    base, hits = slow_site
    client = fetcher(tmp_path, allow_private_addresses=True, fetch_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(FetchError, match="no answer in 1 s"):
        await client.get_json(f"{base}/hop/0")
    await client.close()
    assert time.monotonic() - started < 1.5
    assert len(hits) <= 3


async def test_a_busy_host_makes_more_fetches_wait_then_fail(
    tmp_path: Path, slow_site: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mumble.fetch.FETCH_QUEUE_SECONDS", 0.3)
    base, hits = slow_site
    client = fetcher(tmp_path, allow_private_addresses=True, fetch_timeout=5.0)
    waiting = [
        asyncio.create_task(client.get_json(f"{base}/silent/{i}"))
        for i in range(FETCHES_PER_HOST)
    ]
    await eventually(lambda: len(hits) >= FETCHES_PER_HOST)
    started = time.monotonic()
    with pytest.raises(FetchError, match="is busy"):
        await client.get_json(f"{base}/silent/late")
    assert 0.25 < time.monotonic() - started < 1
    # Deliveries (POSTs) take no fetch slot.
    response = await client.request("POST", f"{base}/hop/0", body=b"{}")
    assert response.status == 405
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert client._hosts == {}, "a host with nothing in flight is forgotten"
    await client.close()


async def test_a_burst_of_fetches_to_a_quick_host_all_succeed(tmp_path: Path) -> None:
    async def actor(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return web.json_response({"id": str(request.url)})

    app = web.Application()
    app.router.add_get("/actors/{n}", actor)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = fetcher(tmp_path, allow_private_addresses=True)
    try:
        base = f"http://127.0.0.1:{server.port}"
        docs = await asyncio.gather(
            *(
                client.get_json(f"{base}/actors/{i}")
                for i in range(5 * FETCHES_PER_HOST)
            )
        )
        assert len(docs) == 5 * FETCHES_PER_HOST
    finally:
        await client.close()
        await server.close()


async def test_fetches_to_many_hosts_together_leave_connections_for_the_rest(
    tmp_path: Path, slow_site: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mumble.fetch.FETCHES_AT_ONCE", 2)
    monkeypatch.setattr("mumble.fetch.FETCH_QUEUE_SECONDS", 0.3)
    base, hits = slow_site
    port = base.rsplit(":", 1)[1]
    client = fetcher(tmp_path, allow_private_addresses=True, fetch_timeout=5.0)
    # Two names of one silent server: two hosts, each under its own cap.
    waiting = [
        asyncio.create_task(client.get_json(f"http://{host}:{port}/silent/x"))
        for host in ("127.0.0.1", "localhost")
    ]
    await eventually(lambda: len(hits) >= 2)
    with pytest.raises(FetchError, match="fetches in flight to all hosts"):
        await client.get_json(f"{base}/silent/third")
    # Deliveries still go out.
    assert (await client.request("POST", f"{base}/hop/0", body=b"{}")).status == 405
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert client._hosts == {}
    await client.close()
