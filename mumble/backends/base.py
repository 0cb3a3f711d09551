"""The backend contract.

A backend keeps three things: records (JSON documents addressed by a
namespace and an ordered key, with atomic counters and insert-if-absent),
blobs (media), and tasks (persisted work, retried until done). Everything
else Mumble stores, from followers to delivery queues, is built on these few
methods, so a new backend has little to write and one conformance suite
(``tests/test_backend_conformance.py``) tells whether it is right.

A key is 1 to :data:`MAX_KEY_BYTES` bytes of UTF-8, on every backend alike
(DynamoDB's limit for a sort key): ``put`` refuses a longer one with
:class:`~mumble.errors.BadRequest`, and ``get`` and ``delete`` find nothing
at one.

Counts are derived, not written: a backend applies
:func:`mumble.statistics.count_changes` to every change of a record in
:data:`mumble.statistics.COUNTED_NAMESPACES` and keeps the results in the
``counts`` namespace, either with the change or soon after it.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest

#: The longest record key, in bytes of UTF-8.
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class Record:
    key: str
    value: dict[str, Any]


@dataclass(frozen=True)
class Task:
    """A unit of persisted work. ``id`` deduplicates: submitting it twice is a no-op."""

    id: str
    kind: str
    payload: dict[str, Any]
    due: float = 0.0
    attempts: int = 0


@dataclass(frozen=True)
class TaskOutcome:
    """What became of one run of a task: done, retry at ``retry_at``, or dropped."""

    done: bool = True
    retry_at: float | None = None
    reason: str = ""
    count_attempt: bool = field(default=True)

    @classmethod
    def retry(
        cls, at: float, reason: str, *, count_attempt: bool = True
    ) -> TaskOutcome:
        return cls(False, at, reason, count_attempt)

    @classmethod
    def drop(cls, reason: str) -> TaskOutcome:
        return cls(False, None, reason)


TaskRunner = Callable[[Task], Awaitable[TaskOutcome]]


def storable_key(key: str) -> bool:
    """Whether every backend can keep a record at ``key``."""
    try:
        return 0 < len(key.encode()) <= MAX_KEY_BYTES
    except UnicodeEncodeError:
        return False


def check_key(ns: str, key: str) -> None:
    """Refuse, as a peer's or client's fault, a key no backend can keep."""
    if not storable_key(key):
        raise BadRequest(f"a {ns} key must have 1 to {MAX_KEY_BYTES} bytes")


class Backend(abc.ABC):
    """Storage and persisted tasks for a Mumble application."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare connections and schema; called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` took."""

    @abc.abstractmethod
    async def get(self, ns: str, key: str) -> dict[str, Any] | None:
        """The record at ``ns``/``key``, or None."""

    @abc.abstractmethod
    async def put(
        self, ns: str, key: str, value: dict[str, Any], *, only_new: bool = False
    ) -> bool:
        """Store a record; with ``only_new``, only if absent. True if it was written."""

    @abc.abstractmethod
    async def delete(self, ns: str, key: str) -> dict[str, Any] | None:
        """Remove a record and return what it held, or None if there was none."""

    @abc.abstractmethod
    async def query(
        self,
        ns: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> list[Record]:
        """Records whose key starts with ``prefix``, in key order, past ``after``."""

    @abc.abstractmethod
    async def increment(self, ns: str, key: str, name: str, delta: int = 1) -> int:
        """Atomically add ``delta`` to the integer field ``name``; return the new value.

        A missing record or field counts from zero.
        """

    @abc.abstractmethod
    async def put_blob(self, key: str, data: bytes, content_type: str) -> None:
        """Store media or another opaque payload."""

    @abc.abstractmethod
    async def get_blob(self, key: str) -> tuple[bytes, str] | None:
        """The blob's bytes and content type, or None."""

    @abc.abstractmethod
    async def submit(self, tasks: Sequence[Task]) -> int:
        """Persist tasks for running; return how many were new."""

    @abc.abstractmethod
    async def run_tasks(
        self,
        runner: TaskRunner,
        *,
        stop: asyncio.Event,
        concurrency: int = 16,
        kinds: Collection[str] = (),
    ) -> None:
        """Run due tasks with ``runner`` until ``stop`` is set.

        With ``kinds``, only tasks of those kinds: separate runners keep slow
        deliveries from holding up inbound work.

        A task whose outcome asks for a retry is kept and run again at its
        ``retry_at``; one that is done or dropped is removed. A task being run
        when the process dies runs again after a restart.
        """
