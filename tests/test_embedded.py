"""What the embedded backend does beyond the contract: its files and dead tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mumble.backends import Task, TaskOutcome
from mumble.backends.embedded import DEAD_TASK_SECONDS, EmbeddedBackend


@pytest.fixture
def backend(embedded_backend: EmbeddedBackend) -> EmbeddedBackend:
    return embedded_backend


async def test_a_dropped_task_is_kept_for_a_week_then_removed(
    backend: EmbeddedBackend,
) -> None:
    old, recent = Task("old", "inbound", {}), Task("recent", "inbound", {})
    await backend.submit([old, recent])
    await backend._call(backend._settle, [(old, TaskOutcome.drop("bad"))])
    # Dropped long ago, as far as the table can tell.
    await backend._call(
        backend._change,
        "UPDATE tasks SET due = due - ? WHERE id = 'old'",
        (DEAD_TASK_SECONDS + 60,),
    )
    assert {t["id"] for t in await backend.task_states()} == {"old", "recent"}

    await backend._call(backend._settle, [(recent, TaskOutcome.drop("bad too"))])
    [kept] = await backend.task_states()
    assert (kept["id"], kept["state"], kept["last_error"]) == (
        "recent",
        "dead",
        "bad too",
    )


async def test_the_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / "fresh")
    await backend.open()
    await backend.put("ns", "k", {"v": 1})
    await backend.close()
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700
    for name in ("mumble.sqlite3", "mumble.sqlite3-wal"):
        path = tmp_path / "fresh" / name
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, name
