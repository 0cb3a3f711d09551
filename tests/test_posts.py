"""Posts: publishing the owner's, and what peers do to them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mumble import Federation, Settings
from mumble.backends import Task, TaskOutcome
from mumble.backends.embedded import EmbeddedBackend
from mumble.inbox import ActivityContext
from mumble.jsonld import PUBLIC
from mumble.posts import sortable_time
from tests.conftest import eventually

ORIGIN = "https://social.example"
BOB = "https://remote.example/users/bob"


class FlakyBackend(EmbeddedBackend):
    """Fails the next writes to the namespaces in ``failing``, once each."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.failing: set[str] = set()

    async def put(
        self, ns: str, key: str, value: dict[str, Any], *, only_new: bool = False
    ) -> bool:
        if ns in self.failing:
            self.failing.discard(ns)
            raise ConnectionError(f"{ns} is unavailable")
        return await super().put(ns, key, value, only_new=only_new)

    async def submit(self, tasks: Any) -> int:
        if "tasks" in self.failing:
            self.failing.discard("tasks")
            raise ConnectionError("the task queue is unavailable")
        return await super().submit(tasks)


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Federation]:
    backend = FlakyBackend(tmp_path / "data")
    federation = Federation(Settings(origin=ORIGIN, data_dir=tmp_path), backend)
    await federation.open()
    await federation.users.create("alice")
    yield federation
    await federation.close()


async def stored(fed: Federation) -> dict[str, list[str]]:
    names = ("objects", "activities", "outbox", "outgoing", "replies", "reply-of")
    return {ns: [r.key for r in await fed.backend.query(ns)] for ns in names}


@pytest.mark.parametrize("failing", ["activities", "outbox", "tasks"])
async def test_a_post_that_cannot_be_stored_whole_leaves_nothing(
    fed: Federation, failing: str
) -> None:
    backend = fed.backend
    assert isinstance(backend, FlakyBackend)
    backend.failing.add(failing)
    with pytest.raises(ConnectionError):
        await fed.posts.create("alice", {"type": "Note", "content": "hi"})
    assert await stored(fed) == {ns: [] for ns in await stored(fed)}
    assert (await backend.get("counts", "alice") or {}).get("posts", 0) == 0


async def test_a_post_is_stored_and_queued_for_fanning_out(fed: Federation) -> None:
    activity = await fed.posts.create("alice", {"type": "Note", "content": "hi"})
    kept = await stored(fed)
    assert kept["objects"] == [activity["object"]["id"]]
    assert kept["activities"] == kept["outgoing"] == [activity["id"]]
    [task] = await fed.backend.task_states()  # type: ignore[attr-defined]
    assert task["kind"] == "fanout"


async def reply(fed: Federation, post: str, published: object) -> dict[str, Any]:
    note = {
        "id": f"{BOB}/notes/1",
        "type": "Note",
        "attributedTo": BOB,
        "inReplyTo": post,
        "content": "a reply",
        "published": published,
        "to": [PUBLIC],
    }
    activity = {"id": f"{note['id']}/create", "type": "Create", "actor": BOB}
    await fed.posts.on_create(ActivityContext(fed, activity | {"object": note}, BOB))
    return note


async def test_a_reply_whose_listing_failed_is_listed_when_it_comes_again(
    fed: Federation,
) -> None:
    activity = await fed.posts.create("alice", {"type": "Note", "content": "hi"})
    post = activity["object"]["id"]
    backend = fed.backend
    assert isinstance(backend, FlakyBackend)
    backend.failing.add("replies")
    with pytest.raises(ConnectionError):
        await reply(fed, post, "2026-01-02T03:04:05Z")

    # Delivered again, with another timestamp: listed once, under the first key.
    await reply(fed, post, "2026-06-01T00:00:00+02:00")
    await reply(fed, post, "2026-06-01T00:00:00+02:00")
    [key] = (await stored(fed))["replies"]
    assert key == f"{post} 2026-01-02T03:04:05Z {BOB}/notes/1"
    assert (await fed.posts.counts(post))["replies"] == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"),
        ("2026-01-02T05:04:05.123+02:00", "2026-01-02T03:04:05Z"),
    ],
)
def test_peer_timestamps_become_fixed_width_utc(value: str, expected: str) -> None:
    assert sortable_time(value) == expected


@pytest.mark.parametrize(
    "value", ["x" * 5000, "2026-01-02", "tomorrow", None, 17, "2026-01-02T03:04:05"]
)
def test_a_timestamp_that_is_none_becomes_now(value: object) -> None:
    assert len(sortable_time(value)) == len("2026-01-02T03:04:05Z")
    assert sortable_time(value) >= "2026-"


async def test_a_post_deleted_before_its_fanout_ran_is_never_delivered(
    fed: Federation,
) -> None:
    await fed.backend.put(
        "followers",
        f"alice {BOB}",
        {"actor": BOB, "inbox": "https://remote.example/inbox"},
    )
    activity = await fed.posts.create("alice", {"type": "Note", "content": "oops"})
    await fed.posts.delete("alice", activity["object"]["id"])

    ran: dict[str, list[str]] = {}

    async def runner(task: Task) -> TaskOutcome:
        if task.kind == "fanout":
            outcome = await fed.run_task(task)
            ran.setdefault(task.payload["activity"]["type"], []).append(
                outcome.reason or "done"
            )
            return outcome
        ran.setdefault("deliver", []).append(task.payload["activity"])
        return TaskOutcome()

    stop = asyncio.Event()
    worker = asyncio.create_task(fed.backend.run_tasks(runner, stop=stop))
    await eventually(lambda: "deliver" in ran and len(ran) == 3)
    stop.set()
    await worker
    assert ran["Create"] == ["the activity was withdrawn"]
    assert ran["Delete"] == ["done"]
    assert ran["deliver"] == [f"{activity['object']['id']}#delete"]
