"""The workflow steps: what each Lambda of a state machine does.

Each step takes the JSON its state receives and returns the JSON the state
machine continues with. The Lambda handlers (:mod:`.handlers`) call these
functions and nothing else, and so does the local driver
(:mod:`.driver`) behind :meth:`AwsBackend.run_tasks`: one implementation,
two ways of sequencing it.

A task's outcome becomes ``status``: ``done``, ``retry`` (with ``retry_at``
and ``wait_seconds``) or ``drop`` (with ``reason``). The state machines turn
``retry`` into a Wait (inbound, outbound) or into a retried error (deliver)
and ``drop`` into quarantine or a recorded failure; the local driver does
the same in memory.

=========================  ================================================
``translate_inbound``      run the inbound task staged under ``inbound/``
``translate_outbound``     run a task staged under ``outbound/tasks/``
``expand``                 list the inboxes of a staged delivery object
``push``                   deliver the staged activity to one inbox
``settle``                 remove a delivery object once every inbox is
                           done, quarantining the failures
``quarantine``             move a dropped staged object to ``quarantine/``
=========================  ================================================
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..base import Task, TaskOutcome, TaskRunner
from .clients import is_transient
from .events import MalformedEvent, StagedRef, staged_ref
from .staging import InvalidStagedObject, task_document, task_from
from .workflows import EXECUTION_TIMEOUTS, STEP_TIMEOUTS

if TYPE_CHECKING:
    from .backend import AwsBackend

log = logging.getLogger("mumble.aws.steps")

#: Who is translating a staged object: held for as long as the step may run,
#: so that one whose function was stopped is taken over afterwards.
LEASES = "translate-leases"
LEASE_SECONDS = (
    max(STEP_TIMEOUTS["translate_inbound"], STEP_TIMEOUTS["translate_outbound"]) + 30
)
LEASE_WAIT_SECONDS = 30

#: Which execution delivers a staged delivery object, for as long as one may.
DELIVERING = "deliveries-running"
DELIVERING_SECONDS = EXECUTION_TIMEOUTS["deliver"] + 3600

#: A runner that fails unexpectedly is retried after 1, 2, 4 ... minutes and
#: given up at the fifth failure, as on the embedded backend.
CRASH_RETRY_SECONDS = 60.0
CRASH_LIMIT = 5


@dataclass(frozen=True)
class StepContext:
    """What a step works with: the backend and the runner of tasks."""

    backend: AwsBackend
    runner: TaskRunner


Step = Callable[[StepContext, Mapping[str, Any]], Awaitable[dict[str, Any]]]


def outcome_result(outcome: TaskOutcome, now: float) -> dict[str, Any]:
    """A task outcome as workflow data."""
    if outcome.done:
        return {"status": "done", "reason": outcome.reason}
    if outcome.retry_at is not None:
        return {
            "status": "retry",
            "reason": outcome.reason,
            "retry_at": outcome.retry_at,
            "wait_seconds": max(0, math.ceil(outcome.retry_at - now)),
            "counted": outcome.count_attempt,
        }
    return {"status": "drop", "reason": outcome.reason or "dropped"}


async def run_task(runner: TaskRunner, task: Task) -> dict[str, Any]:
    """Run one task unless it is not due yet; a crash is retried, then dropped."""
    now = time.time()
    if task.due > now:
        outcome = TaskOutcome.retry(task.due, "not due yet", count_attempt=False)
    else:
        try:
            outcome = await runner(task)
        except Exception as exc:
            if is_transient(exc):
                # AWS's fault, not the task's: the workflow retries the step.
                raise
            log.exception("task %s (%s) failed", task.id, task.kind)
            if task.attempts + 1 >= CRASH_LIMIT:
                outcome = TaskOutcome.drop("internal error; gave up")
            else:
                delay = CRASH_RETRY_SECONDS * 2**task.attempts
                outcome = TaskOutcome.retry(now + delay, "internal error")
    return outcome_result(outcome, time.time())


async def _translate(
    ctx: StepContext, event: Mapping[str, Any], workflow: str
) -> dict[str, Any]:
    ref = staged_ref(event, ctx.backend.settings.bucket, workflow)
    # S3 and EventBridge may start two executions for one object; only one
    # runs it at a time, and the other comes back when it has finished. The
    # lease comes first: the object is read only by the one that holds it.
    holder = await ctx.backend.claim(LEASES, ref.key, LEASE_SECONDS)
    if holder is None:
        return ref.location | {
            "status": "retry",
            "reason": "another execution is running it",
            "retry_at": time.time() + LEASE_WAIT_SECONDS,
            "wait_seconds": LEASE_WAIT_SECONDS,
            "attempts": ref.attempts,
        }
    try:
        result = await _run_staged(ctx, ref)
    finally:
        await ctx.backend.release(LEASES, ref.key, holder)
    counted = int(result.pop("counted", False))
    return ref.location | result | {"attempts": ref.attempts + counted}


async def _run_staged(ctx: StepContext, ref: StagedRef) -> dict[str, Any]:
    """Run the task staged at ``ref``, whose lease the caller holds."""
    staging = ctx.backend.staging
    try:
        document = await staging.read(ref.key)
        if document is None:
            # Another execution finished it: an event delivered twice.
            return {"status": "done", "reason": "already handled"}
        task = task_from(document.get("task"))
    except InvalidStagedObject as exc:
        return {"status": "drop", "reason": exc.message}
    task = replace(task, attempts=task.attempts + ref.attempts)
    result = await run_task(ctx.runner, task)
    if result["status"] == "done":
        await staging.remove(ref.key)
    return result


async def translate_inbound(
    ctx: StepContext, event: Mapping[str, Any]
) -> dict[str, Any]:
    """Run an inbound activity staged under ``inbound/``."""
    return await _translate(ctx, event, "inbound")


async def translate_outbound(
    ctx: StepContext, event: Mapping[str, Any]
) -> dict[str, Any]:
    """Run a task staged under ``outbound/tasks/``."""
    return await _translate(ctx, event, "outbound")


async def expand(ctx: StepContext, event: Mapping[str, Any]) -> dict[str, Any]:
    """The inboxes of a delivery object, one workflow item each.

    The workflow names its execution; the first to expand an object delivers
    it, and any other is told it is a duplicate.
    """
    ref = staged_ref(event, ctx.backend.settings.bucket, "deliver")
    execution = event.get("execution")
    if isinstance(execution, str) and execution:
        claimed = await ctx.backend.claim(
            DELIVERING, ref.key, DELIVERING_SECONDS, execution=execution
        )
        if claimed is None:
            running = await ctx.backend.get(DELIVERING, ref.key) or {}
            # The same execution, expanding again after a retry, goes on.
            if running.get("execution") != execution:
                return ref.location | {"inboxes": [], "reason": "", "duplicate": True}
    try:
        document = await ctx.backend.staging.read(ref.key)
        tasks = [] if document is None else document.get("tasks")
        if not isinstance(tasks, list):
            raise InvalidStagedObject(f"{ref.key} lists no tasks")
        items = [
            {"inbox": task.payload.get("inbox"), "task": task_document(task)}
            for task in map(task_from, tasks)
        ]
    except InvalidStagedObject as exc:
        return ref.location | {"inboxes": [], "reason": exc.message}
    return ref.location | {"inboxes": items, "reason": ""}


async def push(ctx: StepContext, event: Mapping[str, Any]) -> dict[str, Any]:
    """Deliver to one inbox of a delivery object."""
    if not isinstance(event, Mapping):
        raise MalformedEvent("a delivery item is a JSON object")
    try:
        task = task_from(event.get("task"))
    except InvalidStagedObject as exc:
        raise MalformedEvent(f"not a delivery item: {exc.message}") from exc
    result = await run_task(ctx.runner, task)
    return {"inbox": event.get("inbox"), "task": task_document(task)} | result


async def settle(ctx: StepContext, event: Mapping[str, Any]) -> dict[str, Any]:
    """Finish a delivery object: remove it, or quarantine it with its failures."""
    ref = staged_ref(event, ctx.backend.settings.bucket, "deliver")
    # No results is not "nothing failed": removing the object on that word
    # would lose every delivery it holds.
    results = event.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise MalformedEvent("results must be a list of objects")
    reason = event.get("reason") or ""
    staging = ctx.backend.staging
    try:
        document = await staging.read(ref.key)
        tasks = [] if document is None else document.get("tasks", [])
        task_ids = [str(t["id"]) for t in tasks if isinstance(t, dict) and "id" in t]
    except InvalidStagedObject:
        task_ids = []
    # A settle retried after it removed the object still knows, from the
    # results, which deliveries it has to let go of.
    released = sorted(
        set(task_ids) | {str(r["id"]) for r in results if isinstance(r.get("id"), str)}
    )
    failures = [r for r in results if r.get("status") != "done"]
    delivered = len(results) - len(failures)
    reported = {r.get("id") for r in results}
    failures += [
        {"id": task_id, "status": "failed", "error": "no result for this delivery"}
        for task_id in task_ids
        if task_id not in reported
    ]
    target = None
    if reason or failures:
        total = len(failures) + delivered
        why = str(reason or f"{len(failures)} of {total} deliveries failed")
        target = await staging.quarantine(ref.key, why, failures)
    else:
        await staging.remove(ref.key)
    # Released only now, so an inbox cannot be staged again while it is pending.
    await ctx.backend.release_claims(released)
    await ctx.backend.delete(DELIVERING, ref.key)
    return ref.location | {
        "delivered": delivered,
        "failed": len(failures),
        "quarantined": target,
    }


async def quarantine(ctx: StepContext, event: Mapping[str, Any]) -> dict[str, Any]:
    """Move a dropped staged object under ``quarantine/``, with the reason."""
    ref = staged_ref(event, ctx.backend.settings.bucket)
    reason = event.get("reason")
    why = reason if isinstance(reason, str) and reason else "dropped"
    target = await ctx.backend.staging.quarantine(ref.key, why)
    return ref.location | {"quarantined": target, "reason": why}


STEPS: dict[str, Step] = {
    "translate_inbound": translate_inbound,
    "translate_outbound": translate_outbound,
    "expand": expand,
    "push": push,
    "settle": settle,
    "quarantine": quarantine,
}
