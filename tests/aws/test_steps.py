"""How the workflow steps turn a task's run into workflow data (no AWS needed)."""

from __future__ import annotations

import time

from mumble.backends import Task, TaskOutcome
from mumble.backends.aws.steps import CRASH_LIMIT, outcome_result, run_task


async def crash(task: Task) -> TaskOutcome:
    raise RuntimeError("a bug")


async def test_a_crashing_runner_is_retried_later_and_later_then_dropped() -> None:
    first = await run_task(crash, Task("t", "k", {}))
    assert first["status"] == "retry" and first["counted"]
    assert 55 <= first["wait_seconds"] <= 61
    third = await run_task(crash, Task("t", "k", {}, attempts=2))
    assert 235 <= third["wait_seconds"] <= 241
    last = await run_task(crash, Task("t", "k", {}, attempts=CRASH_LIMIT - 1))
    assert last == {"status": "drop", "reason": "internal error; gave up"}


async def test_a_task_not_due_waits_without_spending_an_attempt() -> None:
    due = time.time() + 30

    async def runner(task: Task) -> TaskOutcome:
        raise AssertionError("ran before it was due")

    result = await run_task(runner, Task("t", "k", {}, due=due))
    assert result["status"] == "retry" and not result["counted"]
    assert result["retry_at"] == due and 29 <= result["wait_seconds"] <= 30


def test_outcomes_become_the_status_the_workflows_branch_on() -> None:
    now = 1000.0
    assert outcome_result(TaskOutcome(), now)["status"] == "done"
    retry = outcome_result(TaskOutcome.retry(now + 1.2, "503"), now)
    assert (retry["status"], retry["wait_seconds"], retry["reason"]) == (
        "retry",
        2,
        "503",
    )
    assert outcome_result(TaskOutcome.drop("410"), now) == {
        "status": "drop",
        "reason": "410",
    }
