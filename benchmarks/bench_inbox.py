"""Signed Creates accepted per second by the inbox, next to a no-op handler.

The Mumble server and the no-op aiohttp server each run in a process of
their own and receive the same pre-signed requests from this process, with
the same concurrency. The sender's key is fetched once and then cached, as
it is for a peer that delivers often. Goal: Mumble accepts at least a
quarter of the no-op rate.

    python -m benchmarks.bench_inbox [--requests 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import unused_port

from benchmarks.harness import report, start, wait_http
from mumble import Mumble, Settings
from mumble.jsonld import CONTEXT, PUBLIC
from mumble.signatures import generate_private_key, public_key_pem, sign_request


async def create_user(origin: str, data: Path) -> None:
    fed = Mumble(Settings(origin=origin, data_dir=data)).federation()
    await fed.open()
    await fed.users.create("alice")
    await fed.close()


async def actor_server(key_pem: str) -> tuple[web.AppRunner, str]:
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    actor = {
        "@context": CONTEXT,
        "id": f"{origin}/bob",
        "type": "Person",
        "inbox": f"{origin}/bob/inbox",
        "preferredUsername": "bob",
        "publicKey": {
            "id": f"{origin}/bob#main-key",
            "owner": f"{origin}/bob",
            "publicKeyPem": key_pem,
        },
    }

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(actor), content_type="application/activity+json"
        )

    app = web.Application()
    app.router.add_get("/bob", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, origin


def signed_requests(
    count: int, inbox: str, remote: str, key: object
) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for _ in range(count):
        note = {
            "id": f"{remote}/notes/{uuid.uuid4().hex}",
            "type": "Note",
            "attributedTo": f"{remote}/bob",
            "content": "<p>benchmark</p>",
            "to": [PUBLIC],
        }
        activity = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{note['id']}/activity",
            "type": "Create",
            "actor": f"{remote}/bob",
            "to": [PUBLIC],
            "object": note,
        }
        body = json.dumps(activity).encode()
        headers = sign_request(
            "POST",
            inbox,
            key_id=f"{remote}/bob#main-key",
            private_key=key,  # type: ignore[arg-type]
            body=body,
            headers={"Content-Type": "application/activity+json"},
        )
        out.append((body, headers))
    return out


async def fire(
    requests: list[tuple[bytes, dict[str, str]]], url: str, concurrency: int
) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body, headers in queue:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, statuses


async def measure(
    mode_args: list[str],
    url: str,
    health: str,
    requests: list[tuple[bytes, dict[str, str]]],
    warmup: int,
    concurrency: int,
) -> tuple[float, dict[int, int]]:
    proc = start(*mode_args)
    try:
        await wait_http(health)
        await fire(requests[:warmup], url, concurrency)
        return await fire(requests[warmup:], url, concurrency)
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    key = generate_private_key()
    runner, remote = await actor_server(public_key_pem(key))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            port = unused_port()
            origin = f"http://127.0.0.1:{port}"
            await create_user(origin, Path(tmp))
            total = args.requests + args.warmup
            mumble_requests = signed_requests(total, f"{origin}/inbox", remote, key)
            mumble_time, mumble_status = await measure(
                ["mumble", "--port", str(port), "--origin", origin, "--data", tmp],
                f"{origin}/inbox",
                f"{origin}/.well-known/nodeinfo",
                mumble_requests,
                args.warmup,
                args.concurrency,
            )

        noop_port = unused_port()
        noop_url = f"http://127.0.0.1:{noop_port}/inbox"
        noop_requests = signed_requests(total, noop_url, remote, key)
        noop_time, noop_status = await measure(
            ["noop", "--port", str(noop_port)],
            noop_url,
            f"http://127.0.0.1:{noop_port}/",
            noop_requests,
            args.warmup,
            args.concurrency,
        )
    finally:
        await runner.cleanup()

    mumble_rate = mumble_status.get(202, 0) / mumble_time
    noop_rate = noop_status.get(202, 0) / noop_time
    report(
        {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "mumble_accepted_per_second": round(mumble_rate),
            "mumble_statuses": mumble_status,
            "noop_per_second": round(noop_rate),
            "noop_statuses": noop_status,
            "ratio": round(mumble_rate / noop_rate, 3),
            "goal": ">= 0.25",
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
