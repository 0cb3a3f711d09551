"""The backend contract, run against every backend.

Each backend is provided by a fixture factory in ``BACKENDS``; one that needs
a service the environment does not offer is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mumble.backends import Backend, Task, TaskOutcome
from mumble.backends.base import MAX_KEY_BYTES
from mumble.backends.embedded import EmbeddedBackend
from mumble.errors import BadRequest
from tests.aws.conformance import aws

BackendFactory = Callable[[Path], Awaitable[Backend]]


async def embedded(tmp_path: Path) -> Backend:
    return EmbeddedBackend(tmp_path / "data")


BACKENDS: dict[str, BackendFactory] = {"embedded": embedded, "aws": aws}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Backend]:
    b = await BACKENDS[request.param](tmp_path)
    await b.open()
    yield b
    await b.close()


async def test_put_get_and_delete_return_what_was_stored(backend: Backend) -> None:
    assert await backend.get("ns", "k") is None
    assert await backend.put("ns", "k", {"a": 1, "nested": {"b": [1, "x"]}})
    assert await backend.get("ns", "k") == {"a": 1, "nested": {"b": [1, "x"]}}
    assert await backend.get("other", "k") is None
    assert await backend.delete("ns", "k") == {"a": 1, "nested": {"b": [1, "x"]}}
    assert await backend.delete("ns", "k") is None
    assert await backend.get("ns", "k") is None


async def test_only_new_writes_once(backend: Backend) -> None:
    assert await backend.put("ns", "k", {"v": 1}, only_new=True)
    assert not await backend.put("ns", "k", {"v": 2}, only_new=True)
    assert await backend.get("ns", "k") == {"v": 1}
    assert await backend.put("ns", "k", {"v": 3})
    assert await backend.get("ns", "k") == {"v": 3}


async def test_concurrent_only_new_writes_have_one_winner(backend: Backend) -> None:
    results = await asyncio.gather(
        *(backend.put("ns", "race", {"i": i}, only_new=True) for i in range(10))
    )
    assert results.count(True) == 1


async def test_keys_past_the_limit_are_refused_and_found_nowhere(
    backend: Backend,
) -> None:
    longest = "k" * (MAX_KEY_BYTES - 2) + "\u00e9"
    assert len(longest.encode()) == MAX_KEY_BYTES
    assert await backend.put("ns", longest, {"v": 1})
    assert await backend.get("ns", longest) == {"v": 1}
    for key in ("", longest + "k", "\u00e9" * 513):
        with pytest.raises(BadRequest, match="key"):
            await backend.put("ns", key, {"v": 2})
        assert await backend.get("ns", key) is None
        assert await backend.delete("ns", key) is None
    assert [r.key for r in await backend.query("ns")] == [longest]


async def test_objects_as_large_as_a_request_are_kept_whole(backend: Backend) -> None:
    big = {"object": {"content": "\u00e9" * (600 * 1024)}, "n": [1.5, None]}
    for ns in ("objects", "activities", "outgoing"):
        assert await backend.put(ns, "https://x.example/n/1", big)
        assert await backend.get(ns, "https://x.example/n/1") == big
        assert [r.value for r in await backend.query(ns)] == [big]
        assert await backend.delete(ns, "https://x.example/n/1") == big
        assert await backend.get(ns, "https://x.example/n/1") is None


async def test_query_orders_pages_and_filters_by_prefix(backend: Backend) -> None:
    for key in ("a 3", "a 1", "a 2", "b 1", "a", "a 10"):
        await backend.put("q", key, {"key": key})
    keys = [r.key for r in await backend.query("q", "a ")]
    assert keys == ["a 1", "a 10", "a 2", "a 3"]
    assert [r.key for r in await backend.query("q", "a ", limit=2)] == ["a 1", "a 10"]
    assert [r.key for r in await backend.query("q", "a ", after="a 10", limit=2)] == [
        "a 2",
        "a 3",
    ]
    assert [
        r.key for r in await backend.query("q", "a ", descending=True, limit=3)
    ] == ["a 3", "a 2", "a 10"]
    assert [
        r.key for r in await backend.query("q", "a ", descending=True, after="a 2")
    ] == ["a 10", "a 1"]
    assert [r.value["key"] for r in await backend.query("q", "b")] == ["b 1"]
    assert await backend.query("empty") == []


async def test_query_handles_keys_with_unicode_and_urls(backend: Backend) -> None:
    keys = [
        "alice https://x.example/u/1",
        "alice https://x.example/u/é",
        "alice https://x.example/u/2",
    ]
    for key in keys:
        await backend.put("u", key, {})
    assert [r.key for r in await backend.query("u", "alice ")] == sorted(keys)


async def test_increment_counts_from_zero_and_keeps_other_fields(
    backend: Backend,
) -> None:
    assert await backend.increment("c", "post", "likes") == 1
    assert await backend.increment("c", "post", "likes", 2) == 3
    assert await backend.increment("c", "post", "shares", -1) == -1
    await asyncio.gather(*(backend.increment("c", "post", "likes") for _ in range(20)))
    assert await backend.get("c", "post") == {"likes": 23, "shares": -1}


async def test_blobs_keep_bytes_and_content_type(backend: Backend) -> None:
    data = bytes(range(256)) * 10
    await backend.put_blob("media/alice/a.png", data, "image/png")
    assert await backend.get_blob("media/alice/a.png") == (data, "image/png")
    assert await backend.get_blob("media/alice/missing.png") is None


async def run_until(
    backend: Backend,
    runner: Callable[[Task], Awaitable[TaskOutcome]],
    done: Callable[[], bool],
    timeout: float = 10.0,
) -> None:
    stop = asyncio.Event()
    worker = asyncio.create_task(backend.run_tasks(runner, stop=stop, concurrency=4))
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "tasks did not finish in time"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 5)


async def test_tasks_run_once_each_and_duplicates_collapse(backend: Backend) -> None:
    tasks = [Task(f"t{i}", "k", {"i": i}) for i in range(5)]
    assert await backend.submit(tasks) == 5
    assert await backend.submit(tasks[:2]) == 0
    ran: list[int] = []

    async def runner(task: Task) -> TaskOutcome:
        ran.append(task.payload["i"])
        return TaskOutcome()

    await run_until(backend, runner, lambda: len(ran) >= 5)
    await asyncio.sleep(0.2)
    assert sorted(ran) == [0, 1, 2, 3, 4]


async def test_a_retried_task_runs_again_later_with_its_attempts_counted(
    backend: Backend,
) -> None:
    await backend.submit([Task("r", "k", {})])
    seen: list[tuple[int, float]] = []

    async def runner(task: Task) -> TaskOutcome:
        seen.append((task.attempts, time.time()))
        if len(seen) < 3:
            return TaskOutcome.retry(time.time() + 0.3, "not yet")
        return TaskOutcome()

    await run_until(backend, runner, lambda: len(seen) >= 3)
    assert [a for a, _ in seen] == [0, 1, 2]
    assert seen[1][1] - seen[0][1] >= 0.25


async def test_a_dropped_task_is_not_run_again(backend: Backend) -> None:
    await backend.submit([Task("d", "k", {})])
    runs: list[str] = []

    async def runner(task: Task) -> TaskOutcome:
        runs.append(task.id)
        return TaskOutcome.drop("permanent")

    await run_until(backend, runner, lambda: bool(runs))
    await asyncio.sleep(0.3)
    assert runs == ["d"]


async def test_a_crashing_runner_does_not_lose_the_task(backend: Backend) -> None:
    await backend.submit([Task("c", "k", {})])
    runs: list[int] = []

    async def runner(task: Task) -> TaskOutcome:
        runs.append(task.attempts)
        raise RuntimeError("boom")

    await run_until(backend, runner, lambda: bool(runs))
    assert runs == [0]
    stored = await backend.submit([Task("c", "k", {})])
    assert stored == 0, "the task must still be stored after a crash"


async def test_tasks_due_later_wait(backend: Backend) -> None:
    await backend.submit([Task("later", "k", {}, due=time.time() + 60)])
    runs: list[str] = []

    async def runner(task: Task) -> TaskOutcome:
        runs.append(task.id)
        return TaskOutcome()

    stop = asyncio.Event()
    worker = asyncio.create_task(backend.run_tasks(runner, stop=stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(worker, 5)
    assert runs == []


async def counts_become(
    backend: Backend, key: str, expected: dict[str, int], timeout: float = 10.0
) -> None:
    """Counts may be derived after the change (from a stream); wait for them."""
    deadline = time.monotonic() + timeout
    while True:
        got = {k: v for k, v in (await backend.get("counts", key) or {}).items() if v}
        if got == expected:
            return
        assert time.monotonic() < deadline, f"counts of {key}: {got} != {expected}"
        await asyncio.sleep(0.05)


async def test_counts_follow_the_records_of_counted_namespaces(
    backend: Backend,
) -> None:
    assert await backend.put(
        "followers", "alice https://r.example/u/1", {"actor": "1"}, only_new=True
    )
    assert not await backend.put(
        "followers", "alice https://r.example/u/1", {"actor": "1"}, only_new=True
    )
    await backend.put("followers", "alice https://r.example/u/2", {"actor": "2"})
    await backend.put(
        "followers", "alice https://r.example/u/2", {"actor": "2", "again": True}
    )
    await backend.put("following", "alice https://r.example/u/3", {"state": "pending"})
    await counts_become(backend, "alice", {"followers": 2})
    await backend.put("following", "alice https://r.example/u/3", {"state": "accepted"})
    await backend.put("outbox", "alice 0001 p1", {"activity": "a"})
    await counts_become(backend, "alice", {"followers": 2, "following": 1, "posts": 1})
    await backend.delete("followers", "alice https://r.example/u/1")
    await backend.delete("followers", "alice https://r.example/u/1")
    await backend.delete("following", "alice https://r.example/u/3")
    await counts_become(backend, "alice", {"followers": 1, "posts": 1})

    post = "https://l.example/users/alice/posts/1"
    await backend.put(
        "reactions", f"{post} likes https://r.example/u/1", {}, only_new=True
    )
    await backend.put(
        "reactions", f"{post} shares https://r.example/u/1", {}, only_new=True
    )
    await backend.put(
        "replies", f"{post} 2026-01-01T00:00:00Z https://r.example/n/1", {"id": "n1"}
    )
    await counts_become(backend, post, {"likes": 1, "shares": 1, "replies": 1})
    await backend.delete("reactions", f"{post} likes https://r.example/u/1")
    await counts_become(backend, post, {"shares": 1, "replies": 1})
