"""Delivering one post to 10,000 followers spread over 2,000 shared inboxes.

A sink server in its own process stands for the 2,000 remote servers (one
shared inbox each, five followers behind each). The Mumble server runs in a
process of its own with its followers already stored; the clock runs from the
owner's POST to the outbox until the sink has received every delivery. Next
to it: the pure cost of the 2,000 RSA signatures the deliveries need, and
the Mumble server's peak memory. Goals: within 3x of the signatures, under
200 MB.

    python -m benchmarks.bench_delivery [--followers 10000] [--inboxes 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import unused_port

from benchmarks.harness import peak_rss_mb, report, start, wait_http
from mumble import Mumble, Settings
from mumble.signatures import generate_private_key, sign_request


async def prepare(
    origin: str, data: Path, sink: str, followers: int, inboxes: int
) -> str:
    """Create the user and its followers; return the owner token."""
    fed = Mumble(Settings(origin=origin, data_dir=data)).federation()
    await fed.open()
    _user, token = await fed.users.create("alice")
    for i in range(followers):
        inbox = f"{sink}/servers/{i % inboxes}/inbox"
        await fed.backend.put(
            "followers",
            f"alice {sink}/servers/{i % inboxes}/users/{i}",
            {
                "actor": f"{sink}/servers/{i % inboxes}/users/{i}",
                "inbox": inbox,
                "follow": f"f{i}",
            },
        )
    await fed.close()
    return token


def signature_cost(count: int) -> float:
    """Seconds to sign ``count`` delivery requests, and nothing else."""
    key = generate_private_key()
    body = b'{"type": "Create"}' * 20
    started = time.perf_counter()
    for i in range(count):
        sign_request(
            "POST",
            f"http://127.0.0.1/servers/{i}/inbox",
            key_id="k",
            private_key=key,
            body=body,
            digest="SHA-256=x",
            headers={"Content-Type": "application/activity+json"},
        )
    return time.perf_counter() - started


async def delivered(session: aiohttp.ClientSession, sink: str) -> int:
    async with session.get(f"{sink}/_count") as resp:
        return int((await resp.json())["posts"])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--inboxes", type=int, default=2_000)
    args = parser.parse_args()

    sink_port, port = unused_port(), unused_port()
    sink = f"http://127.0.0.1:{sink_port}"
    origin = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        token = await prepare(origin, Path(tmp), sink, args.followers, args.inboxes)
        sink_proc = start("sink", "--port", str(sink_port))
        server = start("mumble", "--port", str(port), "--origin", origin, "--data", tmp)
        try:
            await wait_http(f"{sink}/_count")
            await wait_http(f"{origin}/.well-known/nodeinfo")
            async with aiohttp.ClientSession() as session:
                started = time.perf_counter()
                async with session.post(
                    f"{origin}/users/alice/outbox",
                    json={"type": "Note", "content": "<p>to all</p>"},
                    headers={"Authorization": f"Bearer {token}"},
                ) as resp:
                    assert resp.status == 201, await resp.text()
                accepted = time.perf_counter() - started
                while await delivered(session, sink) < args.inboxes:
                    await asyncio.sleep(0.05)
                    if time.perf_counter() - started > 300:
                        raise TimeoutError("deliveries did not finish")
                elapsed = time.perf_counter() - started
                await asyncio.sleep(0.5)
                total = await delivered(session, sink)
            memory = peak_rss_mb(server.pid)
        finally:
            server.terminate()
            sink_proc.terminate()
            server.wait(10)
            sink_proc.wait(10)

    signing = signature_cost(args.inboxes)
    report(
        {
            "followers": args.followers,
            "inboxes": args.inboxes,
            "deliveries_received": total,
            "outbox_answered_seconds": round(accepted, 3),
            "delivery_seconds": round(elapsed, 3),
            "signatures_seconds": round(signing, 3),
            "ratio": round(elapsed / signing, 2),
            "goal_ratio": "<= 3",
            "server_peak_rss_mb": round(memory, 1),
            "goal_memory_mb": "< 200",
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
