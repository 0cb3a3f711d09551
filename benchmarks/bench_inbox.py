"""Signed Creates accepted per second by the inbox, next to a no-op handler.

The Mumble server and the no-op aiohttp server each run in a process of
their own and receive the same pre-signed requests from this process, with
the same concurrency. The sender's key is fetched once and then cached, as
it is for a peer that delivers often. Goal: Mumble accepts at least a
quarter of the no-op rate.

    python -m benchmarks.bench_inbox [--rounds 5] [--round-size 1000]

The servers take turns, round by round, and the medians are reported: on a
machine whose speed wanders, both then see the same machine. Besides the
rates, the servers' own CPU time per request is reported, which the
sender's share of the cores does not blur.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
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


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """One server under test, and what its rounds measured."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    requests: list[tuple[bytes, dict[str, str]]]
    rates: list[float] = field(default_factory=list)
    cpu_per_request: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    async def round(self, size: int, concurrency: int) -> None:
        batch, self.requests = self.requests[:size], self.requests[size:]
        cpu = cpu_seconds(self.proc.pid)
        elapsed, statuses = await fire(batch, self.url, concurrency)
        self.cpu_per_request.append((cpu_seconds(self.proc.pid) - cpu) / len(batch))
        self.rates.append(statuses.get(202, 0) / elapsed)
        for status, count in statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-size", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    key = generate_private_key()
    runner, remote = await actor_server(public_key_pem(key))
    total = args.rounds * args.round_size + args.warmup
    servers: list[Server] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            port, noop_port = unused_port(), unused_port()
            origin = f"http://127.0.0.1:{port}"
            noop = f"http://127.0.0.1:{noop_port}"
            await create_user(origin, Path(tmp))
            servers = [
                Server(
                    "mumble",
                    f"{origin}/inbox",
                    start(
                        "mumble", "--port", str(port), "--origin", origin, "--data", tmp
                    ),
                    signed_requests(total, f"{origin}/inbox", remote, key),
                ),
                Server(
                    "noop",
                    f"{noop}/inbox",
                    start("noop", "--port", str(noop_port)),
                    signed_requests(total, f"{noop}/inbox", remote, key),
                ),
            ]
            await wait_http(f"{origin}/.well-known/nodeinfo")
            await wait_http(f"{noop}/")
            for server in servers:
                warm = server.requests[: args.warmup]
                server.requests = server.requests[args.warmup :]
                await fire(warm, server.url, args.concurrency)
            # Rounds alternate, so both servers see the same machine.
            for _ in range(args.rounds):
                for server in servers:
                    await server.round(args.round_size, args.concurrency)
        finally:
            for server in servers:
                server.proc.terminate()
                server.proc.wait(10)
            await runner.cleanup()

    mumble, noop_server = servers
    rate = statistics.median(mumble.rates)
    noop_rate = statistics.median(noop_server.rates)
    cpu = statistics.median(mumble.cpu_per_request)
    noop_cpu = statistics.median(noop_server.cpu_per_request)
    report(
        {
            "rounds": args.rounds,
            "requests_per_round": args.round_size,
            "concurrency": args.concurrency,
            "mumble_accepted_per_second": round(rate),
            "noop_per_second": round(noop_rate),
            "ratio": round(rate / noop_rate, 3),
            "mumble_server_cpu_ms_per_request": round(cpu * 1000, 3),
            "noop_server_cpu_ms_per_request": round(noop_cpu * 1000, 3),
            "cpu_ratio": round(noop_cpu / cpu, 3),
            "statuses": {"mumble": mumble.statuses, "noop": noop_server.statuses},
            "goal": "ratio >= 0.25",
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
