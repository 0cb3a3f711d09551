"""The local driver: runs staged work in this process, as the workflows would.

In AWS, a staged object starts a Step Functions execution; here, a loop
lists the staged prefixes (only those of ``kinds``, when given) and
sequences the same steps (:mod:`.steps`) as the state machines
(:mod:`.workflows`) do, per staged object:

* ``inbound/`` and ``outbound/tasks/``: translate; on ``retry`` wait until
  ``retry_at`` and translate again with the attempts counted; on ``drop``
  quarantine.
* ``outbound/deliver/``: expand, push every inbox (at most ``concurrency``
  steps at once over all work), retrying each at its ``retry_at``; a drop,
  or a push that raises, is recorded as a failure; once every inbox is
  finished, settle.

Retry times and attempts live in this process (Step Functions keeps them in
the execution). After a restart, staged work starts again from its first
step: nothing staged is lost, a pending inbox may be pushed once more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..base import TaskRunner
from .bucket import prefixes_of, workflow_of
from .clients import is_transient
from .steps import (
    CRASH_RETRY_SECONDS,
    StepContext,
    expand,
    push,
    quarantine,
    settle,
    translate_inbound,
    translate_outbound,
)
from .workflows import PERMANENT_ERROR

if TYPE_CHECKING:
    from .backend import AwsBackend

log = logging.getLogger("mumble.aws.driver")

TRANSLATE = {"inbound": translate_inbound, "outbound": translate_outbound}
#: How long a push that AWS failed waits before it is tried again.
TRANSIENT_RETRY_SECONDS = 5.0


@dataclass
class _Item:
    """One inbox of a delivery object, until it is done or failed."""

    data: dict[str, Any]
    due: float = 0.0
    running: bool = False


@dataclass
class _Staged:
    """One staged object being driven, and where its workflow stands."""

    key: str
    workflow: str
    due: float = 0.0
    attempts: int = 0
    running: bool = False
    expanded: bool = False
    reason: str = ""
    items: list[_Item] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


class LocalDriver:
    def __init__(
        self,
        backend: AwsBackend,
        runner: TaskRunner,
        *,
        concurrency: int,
        kinds: Collection[str] = (),
    ) -> None:
        self.backend = backend
        self.ctx = StepContext(backend, runner)
        self.concurrency = max(1, concurrency)
        self.prefixes = prefixes_of(kinds)
        self._staged: dict[str, _Staged] = {}
        self._finished: dict[str, float] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event, wakeup: asyncio.Event) -> None:
        next_listing = 0.0
        try:
            while not stop.is_set():
                if wakeup.is_set() or time.monotonic() >= next_listing:
                    wakeup.clear()
                    await self._discover()
                    next_listing = time.monotonic() + self.backend.settings.poll_seconds
                next_due = self._start_due_jobs()
                await self._idle(stop, wakeup, next_listing, next_due)
        finally:
            for job in self._running:
                job.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _discover(self) -> None:
        started = time.time()
        try:
            listed = [
                key
                for prefix in self.prefixes
                for key in await self.backend.staging.keys(prefix)
            ]
        except Exception:
            log.exception("could not list staged work; trying again later")
            return
        for key in listed:
            workflow = workflow_of(key)
            # A key finished after this listing began was listed before it was
            # removed; a key finished before then and listed again is new work.
            if workflow is None or self._finished.get(key, 0.0) >= started:
                continue
            if key not in self._staged:
                self._staged[key] = _Staged(key, workflow)
        self._finished = {k: t for k, t in self._finished.items() if t >= started}

    def _start_due_jobs(self) -> float | None:
        """Start what is due, as far as concurrency allows; return the next due time."""
        now = time.time()
        next_due: float | None = None

        def later(due: float) -> None:
            nonlocal next_due
            next_due = due if next_due is None else min(next_due, due)

        for staged in list(self._staged.values()):
            if staged.running:
                continue
            if staged.due > now:
                later(staged.due)
                continue
            if staged.workflow == "deliver" and staged.expanded and staged.items:
                for item in staged.items:
                    if item.running:
                        continue
                    if item.due > now:
                        later(item.due)
                    elif len(self._running) < self.concurrency:
                        item.running = True
                        self._start(self._push(staged, item))
                continue
            if len(self._running) >= self.concurrency:
                continue
            staged.running = True
            if staged.workflow != "deliver":
                self._start(self._guarded(staged, self._translate(staged)))
            elif not staged.expanded:
                self._start(self._guarded(staged, self._expand(staged)))
            else:
                self._start(self._guarded(staged, self._settle(staged)))
        return next_due

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        job = asyncio.create_task(work)
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def _idle(
        self,
        stop: asyncio.Event,
        wakeup: asyncio.Event,
        next_listing: float,
        next_due: float | None,
    ) -> None:
        """Wait for new work, a finished job, the next due time or the stop."""
        timeout = next_listing - time.monotonic()
        if next_due is not None:
            timeout = min(timeout, next_due - time.time())
        waiters = {
            asyncio.ensure_future(wakeup.wait()),
            asyncio.ensure_future(stop.wait()),
        }
        try:
            await asyncio.wait(
                waiters | self._running,
                timeout=max(0.0, timeout),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _finish(self, staged: _Staged) -> None:
        self._staged.pop(staged.key, None)
        self._finished[staged.key] = time.time()

    async def _guarded(self, staged: _Staged, step: Awaitable[None]) -> None:
        """Run one step of ``staged``; if the step itself fails, try again later."""
        try:
            await step
        except Exception:
            log.exception("a step of %s failed; trying again later", staged.key)
            staged.due = time.time() + CRASH_RETRY_SECONDS
        finally:
            staged.running = False

    async def _translate(self, staged: _Staged) -> None:
        event = {
            "bucket": self.backend.settings.bucket,
            "key": staged.key,
            "attempts": staged.attempts,
        }
        result = await TRANSLATE[staged.workflow](self.ctx, event)
        if result["status"] == "retry":
            staged.due = float(result["retry_at"])
            staged.attempts = int(result["attempts"])
            return
        if result["status"] == "drop":
            await quarantine(self.ctx, result)
        self._finish(staged)

    async def _expand(self, staged: _Staged) -> None:
        event = {"bucket": self.backend.settings.bucket, "key": staged.key}
        result = await expand(self.ctx, event)
        staged.items = [_Item(item) for item in result["inboxes"]]
        staged.reason = result["reason"]
        staged.expanded = True

    async def _push(self, staged: _Staged, item: _Item) -> None:
        task = item.data.get("task") or {}
        outcome: dict[str, Any] = {
            "id": task.get("id"),
            "inbox": item.data.get("inbox"),
        }
        try:
            result = await push(self.ctx, item.data)
        except Exception as exc:
            if is_transient(exc):
                # AWS's own failure: the workflow retries these, and so do we.
                log.warning("AWS failed a push to %s: %s", item.data.get("inbox"), exc)
                item.running = False
                item.due = time.time() + TRANSIENT_RETRY_SECONDS
                return
            # The deliver workflow's Catch records a failed push the same way.
            log.exception("pushing to %s failed", item.data.get("inbox"))
            result = {
                "status": "error",
                "error": type(exc).__name__,
                "reason": str(exc),
            }
        finally:
            item.running = False
        if result["status"] == "retry":
            item.due = float(result["retry_at"])
            task["attempts"] = int(task.get("attempts", 0)) + int(result["counted"])
            return
        if result["status"] == "done":
            outcome["status"] = "done"
        else:
            outcome |= {
                "status": "failed",
                "error": result.get("error", PERMANENT_ERROR),
                "cause": result.get("reason", ""),
            }
        staged.results.append(outcome)
        staged.items.remove(item)

    async def _settle(self, staged: _Staged) -> None:
        event = {
            "bucket": self.backend.settings.bucket,
            "key": staged.key,
            "results": staged.results,
            "reason": staged.reason,
        }
        await settle(self.ctx, event)
        self._finish(staged)
