"""Processes the benchmarks run: a Mumble server, a no-op server, an inbox sink.

Each runs in its own process so that the load generator and the server do
not share an event loop or a core: ``python -m benchmarks.harness MODE ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import subprocess
import sys
from pathlib import Path

from aiohttp import web


def serve_mumble(origin: str, data: Path, port: int) -> None:
    from mumble import Mumble, Settings

    settings = Settings(origin=origin, data_dir=data, allow_private_addresses=True)
    web.run_app(
        Mumble(settings).web_app(),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
    )


def serve_noop(port: int) -> None:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/{tail:.*}", accept)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_sink(port: int) -> None:
    """Counts deliveries per path; GET /_count answers how many arrived."""
    received: dict[str, int] = {}

    async def inbox(request: web.Request) -> web.Response:
        await request.read()
        received[request.path] = received.get(request.path, 0) + 1
        return web.Response(status=202)

    async def count(request: web.Request) -> web.Response:
        return web.json_response(
            {"posts": sum(received.values()), "inboxes": len(received)}
        )

    app = web.Application()
    app.router.add_get("/_count", count)
    app.router.add_post("/{tail:.*}", inbox)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["mumble", "noop", "sink"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin", default="")
    parser.add_argument("--data", type=Path, default=Path("data"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.mode == "mumble":
        serve_mumble(args.origin, args.data, args.port)
    elif args.mode == "noop":
        serve_noop(args.port)
    else:
        serve_sink(args.port)


def start(*args: str) -> subprocess.Popen[bytes]:
    """Start one of this module's servers in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.harness", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a process, from /proc, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def wait_http(url: str, timeout: float = 20.0) -> None:
    import aiohttp

    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.1)


def report(result: dict[str, object]) -> None:
    print(json.dumps(result, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
