"""Delivery of local activities to remote inboxes.

Sending is persisted work from the start. :meth:`Delivery.deliver` stores
the activity and submits one ``fanout`` task, and answers; so an owner's
post costs the request a few writes, however many followers it reaches.
:meth:`Delivery.fan_out` runs that task: it works out the inboxes (each
follower's shared inbox where it has one, every inbox once; remote actors
addressed directly are fetched here) and submits one ``deliver`` task per
inbox. :meth:`Delivery.attempt` runs one of those: it signs and POSTs, and
says what should happen next: done, retry later (with growing delays, or
when ``Retry-After`` says), or stop for good (404, 410 and other permanent
answers; a gone follower is removed).

Hosts that keep failing are left alone for a while instead of being
hammered; their tasks wait without spending an attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .backends import Task, TaskOutcome
from .errors import FetchError, MumbleError
from .ids import http_url
from .jsonld import PUBLIC, as_list, id_of, is_public
from .signatures import digest_header, parse_http_date, sign_request

if TYPE_CHECKING:
    from .federation import Federation

log = logging.getLogger("mumble.delivery")

PERMANENT = frozenset({400, 403, 404, 405, 410, 413, 414, 415, 422, 501})
GONE = frozenset({404, 410})
MAX_RETRY_AFTER = 24 * 3600.0
#: Actors addressed directly that are looked up at once.
ADDRESSEES_AT_ONCE = 8


@dataclass
class HostHealth:
    failures: int = 0
    resume_at: float = 0.0


class Delivery:
    def __init__(self, federation: Federation) -> None:
        self.fed = federation
        self.settings = federation.settings
        self._bodies: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._hosts: dict[str, HostHealth] = {}

    async def recipients(self, username: str, activity: dict[str, Any]) -> set[str]:
        """The inboxes an activity goes to, from its addressing."""
        inboxes: set[str] = set()
        followers = self.fed.ids.followers(username)
        addresses = [
            id_of(a)
            for name in ("to", "cc", "bto", "bcc", "audience")
            for a in as_list(activity.get(name))
        ]
        remote: set[str] = set()
        for address in addresses:
            if not address or is_public(address) or address == PUBLIC:
                continue
            if address == followers:
                inboxes |= await self.fed.follows.follower_inboxes(username)
            elif not self.fed.ids.is_local(address):
                remote.add(address)
        # Actors addressed directly are looked up at once, a few at a time,
        # so that a silent server holds up the others by one timeout at most.
        gate = asyncio.Semaphore(ADDRESSEES_AT_ONCE)

        async def inbox_of(address: str) -> str | None:
            async with gate:
                try:
                    return (await self.fed.actors.get(address)).delivery_inbox
                except (FetchError, MumbleError, ValueError) as exc:
                    log.warning("not delivering to %s: %s", address, exc)
                    return None

        found = await asyncio.gather(*(inbox_of(a) for a in sorted(remote)))
        return inboxes | {inbox for inbox in found if inbox}

    async def deliver(self, username: str, activity: dict[str, Any]) -> None:
        """Queue an activity for every inbox its addressing reaches.

        The inboxes are worked out by the ``fanout`` task this submits.
        """
        activity_id = await self._keep(username, activity)
        task = Task(
            id="fanout:" + hashlib.sha256(activity_id.encode()).hexdigest(),
            kind="fanout",
            # The blind copies are needed to find their inboxes, and kept
            # nowhere else.
            payload={"activity": activity, "username": username},
        )
        await self.fed.backend.submit([task])

    async def fan_out(self, task: Task) -> TaskOutcome:
        """Run a ``fanout`` task: one ``deliver`` task per inbox reached."""
        username, activity = task.payload["username"], task.payload["activity"]
        if await self.fed.backend.get("outgoing", activity["id"]) is None:
            return TaskOutcome.drop("the activity was withdrawn")
        inboxes = await self.recipients(username, activity)
        await self._queue(username, activity["id"], inboxes)
        return TaskOutcome()

    async def _keep(self, username: str, activity: dict[str, Any]) -> str:
        """Store what every delivery of an activity sends: all but blind copies."""
        public = {k: v for k, v in activity.items() if k not in ("bto", "bcc")}
        await self.fed.backend.put(
            "outgoing", public["id"], {"activity": public, "username": username}
        )
        return str(public["id"])

    async def send(
        self, username: str, activity: dict[str, Any], inboxes: Iterable[str]
    ) -> int:
        """Queue an activity for the given inboxes; return how many tasks were new."""
        return await self._queue(
            username, await self._keep(username, activity), inboxes
        )

    async def _queue(
        self, username: str, activity_id: str, inboxes: Iterable[str]
    ) -> int:
        now = time.time()
        tasks = [
            Task(
                id="deliver:"
                + hashlib.sha256(f"{activity_id} {inbox}".encode()).hexdigest(),
                kind="deliver",
                payload={"activity": activity_id, "username": username, "inbox": inbox},
                due=now,
            )
            for inbox in sorted(set(inboxes))
        ]
        count = await self.fed.backend.submit(tasks) if tasks else 0
        log.info("queued %s to %d inboxes", activity_id, count)
        return count

    async def withdraw(self, activity_id: str) -> None:
        """Stop delivering an activity: its waiting tasks are dropped when they run."""
        self._bodies.pop(activity_id, None)
        await self.fed.backend.delete("outgoing", activity_id)

    async def _body(self, activity_id: str) -> tuple[bytes, str] | None:
        cached = self._bodies.get(activity_id)
        if cached is not None:
            return cached
        record = await self.fed.backend.get("outgoing", activity_id)
        if record is None:
            return None
        body = json.dumps(record["activity"], ensure_ascii=False).encode()
        entry = (body, digest_header(body))
        self._bodies[activity_id] = entry
        while len(self._bodies) > 256:
            self._bodies.popitem(last=False)
        return entry

    def _retry_at(self, attempts: int, floor: float = 0.0) -> float | None:
        delays = self.settings.retry_delays
        if attempts >= len(delays):
            return None
        delay = max(delays[attempts] * random.uniform(0.9, 1.1), floor)
        return time.time() + delay

    async def attempt(self, task: Task) -> TaskOutcome:
        """Run one delivery task."""
        inbox = http_url(task.payload["inbox"])
        if inbox is None:
            return TaskOutcome.drop("the inbox is not a valid URL")
        username = task.payload["username"]
        host = urlsplit(inbox).netloc
        health = self._hosts.setdefault(host, HostHealth())
        if health.resume_at > time.time():
            return TaskOutcome.retry(
                health.resume_at, f"{host} is resting", count_attempt=False
            )
        entry = await self._body(task.payload["activity"])
        if entry is None:
            return TaskOutcome.drop("the activity is no longer stored")
        body, digest = entry
        key = await self.fed.users.private_key(username)
        headers = sign_request(
            "POST",
            inbox,
            key_id=self.fed.ids.key(username),
            private_key=key,
            body=body,
            digest=digest,
            headers={
                "Content-Type": "application/activity+json",
                "Accept": "application/activity+json",
            },
        )
        try:
            response = await self.fed.fetcher.request(
                "POST", inbox, body=body, signed_headers=headers
            )
        except FetchError as exc:
            return self._failed(task, health, host, str(exc))

        status = response.status
        if 200 <= status < 300:
            health.failures, health.resume_at = 0, 0.0
            return TaskOutcome()
        if status in GONE:
            removed = await self.fed.follows.remove_followers_at(username, inbox)
            log.info(
                "%s answered %d: dropped, %d followers removed", inbox, status, removed
            )
            return TaskOutcome.drop(f"{inbox} answered {status}")
        if status in PERMANENT:
            log.info("%s answered %d: not retrying", inbox, status)
            return TaskOutcome.drop(f"{inbox} answered {status}")
        floor = 0.0
        if status in (429, 503):
            floor = retry_after_seconds(response.headers.get("Retry-After"))
        return self._failed(task, health, host, f"{inbox} answered {status}", floor)

    def _failed(
        self, task: Task, health: HostHealth, host: str, reason: str, floor: float = 0.0
    ) -> TaskOutcome:
        health.failures += 1
        if health.failures >= self.settings.host_failure_threshold:
            health.resume_at = time.time() + self.settings.host_cooldown_seconds
            log.warning(
                "%s failed %d times in a row; resting it", host, health.failures
            )
        at = self._retry_at(task.attempts, floor)
        if at is None:
            log.warning(
                "giving up on %s after %d attempts: %s",
                task.payload["inbox"],
                task.attempts + 1,
                reason,
            )
            return TaskOutcome.drop(f"gave up: {reason}")
        return TaskOutcome.retry(at, reason)


def retry_after_seconds(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for (a number or a date), capped."""
    if not value:
        return 0.0
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,12}", value):
        seconds = float(value)
    else:
        when = parse_http_date(value)
        seconds = 0.0 if when is None else when - time.time()
    return max(0.0, min(seconds, MAX_RETRY_AFTER))
