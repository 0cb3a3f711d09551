"""Drive a real Fedify ActivityPub peer (``peer/peer.mjs``) from pytest.

    async with FedifyPeer.start() as peer:
        await peer.follow(mumble_actor_id)
        accept = await peer.wait_for(lambda a: a["type"] == "Accept")

The peer listens on 127.0.0.1 only; its actor is ``peer.actor_id``
(``http://127.0.0.1:PORT/users/alice``).  Everything it logged is in
``peer.log``, and is attached to any exception that leaves the ``async with``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any, TypedDict

import aiohttp

PEER_DIR = Path(__file__).resolve().parent / "peer"
START_TIMEOUT = 30.0
LOG_TAIL = 6000


class InboxActivity(TypedDict, total=False):
    """One activity the peer received and Fedify verified."""

    type: str
    id: str | None
    actor: str | None
    inbox: str  # "alice" (personal inbox) or "shared"
    receivedAt: str
    json: dict[str, Any]  # the body exactly as received
    object: dict[str, Any] | None  # Create/Update: the object Fedify resolved
    objectError: str


class FedifyPeerError(RuntimeError):
    """A control call failed, or the peer could not start."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def ensure_node_modules() -> None:
    """Run ``npm ci`` in the peer folder unless node_modules matches the lock."""
    installed = PEER_DIR / "node_modules" / ".package-lock.json"  # by npm
    wanted = PEER_DIR / "package-lock.json"
    lock_path = Path(tempfile.gettempdir()) / "mumble-fedify-peer-npm.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time
        if installed.exists() and installed.stat().st_mtime >= wanted.stat().st_mtime:
            return
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise FedifyPeerError(
                f"npm ci failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FedifyPeer:
    def __init__(
        self,
        port: int,
        process: asyncio.subprocess.Process,
        log_file: IO[bytes],
        session: aiohttp.ClientSession,
    ) -> None:
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.actor_id = f"{self.origin}/users/alice"
        self.inbox_url = f"{self.actor_id}/inbox"
        self.shared_inbox_url = f"{self.origin}/inbox"
        self.followers_url = f"{self.actor_id}/followers"
        self.process = process
        self._log_file = log_file
        self._log_text = ""  # the final log, kept once the file is closed
        self._session = session

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, *, ed25519: bool = True, log_level: str | None = None
    ) -> AsyncIterator[FedifyPeer]:
        """Start a peer; stop it on exit.

        ``ed25519=False`` gives alice only the RSA key (no Object Integrity
        Proofs on what she sends).  ``log_level="debug"`` makes Fedify verbose.
        """
        await asyncio.to_thread(ensure_node_modules)
        argv = ["node", "peer.mjs"]
        if not ed25519:
            argv.append("--no-ed25519")
        if log_level is not None:
            argv += ["--log-level", log_level]
        for attempt in range(3):  # the free port may be taken before node binds
            peer = await cls._launch(argv)
            try:
                await peer._wait_until_healthy()
                break
            except FedifyPeerError as exc:
                await peer._close()
                if attempt == 2 or "EADDRINUSE" not in peer.log:
                    exc.add_note(f"Fedify peer log:\n{peer.tail}")
                    raise
        try:
            yield peer
        except Exception as exc:
            exc.add_note(f"Fedify peer {peer.origin} log (tail):\n{peer.tail}")
            raise
        finally:
            await peer._close()

    @classmethod
    async def _launch(cls, argv: list[str]) -> FedifyPeer:
        port = _free_port()
        log_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _close)
        process = await asyncio.create_subprocess_exec(
            *argv,
            "--port",
            str(port),
            cwd=PEER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return cls(port, process, log_file, session)

    # ----------------------------------------------------------- lifecycle --

    async def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise FedifyPeerError(
                    f"peer exited with {self.process.returncode} during start"
                )
            try:
                async with self._session.get(
                    f"{self.origin}/_control/health",
                    timeout=aiohttp.ClientTimeout(total=2),
                ) as response:
                    if response.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.1)
        raise FedifyPeerError(f"peer not healthy after {START_TIMEOUT:.0f} s")

    async def _close(self) -> None:
        await self._session.close()
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._log_text = self._read_log()
        self._log_file.close()

    def _read_log(self) -> str:
        if self._log_file.closed:
            return self._log_text
        self._log_file.flush()
        return os.pread(self._log_file.fileno(), 1 << 24, 0).decode("utf-8", "replace")

    @property
    def log(self) -> str:
        """Everything the peer wrote to stdout/stderr so far."""
        return self._read_log()

    @property
    def tail(self) -> str:
        text = self.log
        return text if len(text) <= LOG_TAIL else "…" + text[-LOG_TAIL:]

    # ------------------------------------------------------------- control --

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.origin}/_control/{path}"
        async with self._session.request(method, url, json=body) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {"error": await response.text()}
            if response.status >= 300:
                message = data.get("error") if isinstance(data, dict) else data
                raise FedifyPeerError(
                    f"{method} /_control/{path} -> {response.status}: {message}",
                    response.status,
                )
            return data

    async def inbox(self) -> list[InboxActivity]:
        data = await self._call("GET", "inbox")
        return list(data["activities"])

    async def clear_inbox(self) -> None:
        await self._call("DELETE", "inbox")

    async def outbox(self) -> list[dict[str, Any]]:
        """Deliveries alice attempted: type, id, to, inbox, ok, error, status."""
        data = await self._call("GET", "outbox")
        return list(data["activities"])

    async def rejected(self) -> list[dict[str, Any]]:
        """Inbox requests refused because their signature did not verify."""
        data = await self._call("GET", "rejected")
        return list(data["requests"])

    async def lookup(
        self, url: str, *, signed: bool = True, summary: bool = False
    ) -> dict[str, Any]:
        """The object at ``url`` (fetched with a signed GET unless not ``signed``).

        Compact JSON-LD by default; with ``summary=True``, what Fedify
        understood of it: type, id, inbox, sharedInbox, followers,
        publicKeys ``[{"id", "owner", "algorithm"}]``...
        """
        body = {"url": url, "signed": signed, "summary": summary}
        data: dict[str, Any] = await self._call("POST", "lookup", body)
        return data

    async def follow(self, actor: str) -> str:
        data = await self._call("POST", "follow", {"actor": actor})
        return str(data["id"])

    async def unfollow(self, actor: str) -> str:
        data = await self._call("POST", "unfollow", {"actor": actor})
        return str(data["id"])

    async def reply(self, actor: str, in_reply_to: str, content: str) -> dict[str, str]:
        """Send Create(Note); returns ``{"id": create_id, "noteId": note_id}``."""
        body = {"actor": actor, "inReplyTo": in_reply_to, "content": content}
        data: dict[str, str] = await self._call("POST", "reply", body)
        return data

    async def like(self, actor: str, obj: str) -> str:
        data = await self._call("POST", "like", {"actor": actor, "object": obj})
        return str(data["id"])

    async def undo_like(self, actor: str, like_id: str, obj: str) -> str:
        body = {"actor": actor, "id": like_id, "object": obj}
        data = await self._call("POST", "undo-like", body)
        return str(data["id"])

    async def followers(self) -> list[str]:
        data = await self._call("GET", "followers")
        return list(data["followers"])

    async def following(self) -> list[dict[str, Any]]:
        """``[{"actor", "follow", "accepted", "rejected"}]``."""
        data = await self._call("GET", "following")
        return list(data["following"])

    async def wait_for(
        self,
        predicate: Callable[[InboxActivity], bool],
        timeout: float = 10.0,
    ) -> InboxActivity:
        """Poll the inbox until an activity matches ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            activities = await self.inbox()
            for activity in activities:
                if predicate(activity):
                    return activity
            if time.monotonic() >= deadline:
                seen = [(a.get("type"), a.get("id")) for a in activities]
                raise AssertionError(
                    f"no matching activity in {self.origin} inbox after "
                    f"{timeout} s; received: {seen}"
                )
            await asyncio.sleep(0.1)
