"""The running federation: every component of one Mumble instance, wired once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from .actors import RemoteActors
from .auth import OwnerAuth, OwnerToken
from .backends import Backend, Task, TaskOutcome
from .delivery import Delivery
from .fetch import Fetcher
from .follows import Follows
from .ids import Ids
from .inbox import Handler, Inbox
from .posts import Posts
from .settings import Settings
from .signatures import PrivateKeyType
from .users import LocalUser, Users

log = logging.getLogger("mumble.federation")

#: Inbound activities processed at once; each is short unless it fetches.
INBOUND_CONCURRENCY = 16
#: Activities whose inboxes are being worked out at once: each reads every
#: follower, so a few are plenty.
FANOUT_CONCURRENCY = 2


class Federation:
    """Components share this object; nothing here touches the network or disk
    until :meth:`open` is awaited."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        handlers: Mapping[str, Sequence[Handler]] | None = None,
        *,
        auth: OwnerAuth | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.ids = Ids(settings.origin)
        self.users = Users(backend)
        self.auth: OwnerAuth = auth or OwnerToken(self.users)
        self._signer: str | None = None
        self.fetcher = Fetcher(settings, signer=self._fetch_signer)
        self.actors = RemoteActors(
            backend,
            self.fetcher,
            max_age=settings.actor_cache_seconds,
            fetch_timeout=min(settings.actor_fetch_timeout, settings.fetch_timeout),
        )
        self.follows = Follows(self)
        self.posts = Posts(self)
        self.delivery = Delivery(self)
        self.inbox = Inbox(self, handlers or {})
        self._stop: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def _fetch_signer(self) -> tuple[str, PrivateKeyType] | None:
        """Fetches are signed by the first local user, for servers that demand it."""
        if self._signer is None:
            users = await self.users.all()
            if not users:
                return None
            self._signer = min(u.username for u in users)
        return self.ids.key(self._signer), await self.users.private_key(self._signer)

    async def local_user(self, url: object) -> LocalUser | None:
        """The local user an actor URL names, whatever the letter case."""
        ref = self.ids.parse(url)
        if ref is None or ref.kind != "actor":
            return None
        return await self.users.get(ref.username)

    async def open(self) -> None:
        await self.backend.open()

    async def close(self) -> None:
        await self.stop_worker()
        await self.fetcher.close()
        await self.backend.close()

    async def run_task(self, task: Task) -> TaskOutcome:
        """Run one persisted task, whatever backend scheduled it."""
        if task.kind == "inbound":
            return await self.inbox.process(task)
        if task.kind == "deliver":
            return await self.delivery.attempt(task)
        if task.kind == "fanout":
            return await self.delivery.fan_out(task)
        return TaskOutcome.drop(f"unknown task kind {task.kind}")

    def start_worker(self) -> None:
        """Run persisted tasks in the background of this process.

        Inbound activities and deliveries have runners of their own, so a slow
        or silent peer holds up only deliveries to it, never the inbox.
        """
        if self._workers:
            return
        self._stop = asyncio.Event()
        runners = (
            (("inbound",), INBOUND_CONCURRENCY),
            (("deliver",), self.settings.delivery_concurrency),
            (("fanout",), FANOUT_CONCURRENCY),
        )
        self._workers = [
            asyncio.create_task(
                self.backend.run_tasks(
                    self.run_task, stop=self._stop, concurrency=size, kinds=kinds
                ),
                name=f"mumble-{kinds[0]}",
            )
            for kinds, size in runners
        ]

    async def stop_worker(self) -> None:
        if not self._workers or self._stop is None:
            return
        self._stop.set()
        _done, pending = await asyncio.wait(self._workers, timeout=10)
        for worker in pending:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
