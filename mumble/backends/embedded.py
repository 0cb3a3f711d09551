"""The embedded backend: SQLite and the file system, nothing to start.

One SQLite database in the data folder holds records and tasks; blobs are
files beside it. All SQLite work runs on one dedicated thread, so the event
loop never waits on the disk and the connection is never shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..statistics import COUNTED_NAMESPACES, count_changes
from .base import (
    Backend,
    Record,
    Task,
    TaskOutcome,
    TaskRunner,
    check_key,
    storable_key,
)

log = logging.getLogger("mumble.backends.embedded")

T = TypeVar("T")
R = TypeVar("R")

LEASE_SECONDS = 600.0
#: Runs that end in an unexpected exception before a task is set aside.
MAX_CRASHES = 5

#: How long a dropped task is kept for inspection before it is removed.
DEAD_TASK_SECONDS = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL,
    due REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    leased_until REAL NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'queued',
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (state, due);
CREATE INDEX IF NOT EXISTS tasks_kind_due ON tasks (state, kind, due);
"""


def _settle_futures(
    outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class _Batcher(Generic[T, R]):
    """Writes that arrive together run as one call, so one transaction, on the
    database thread: under load, one commit serves many requests."""

    def __init__(
        self,
        call: Callable[..., Awaitable[Any]],
        write: Callable[[list[T]], list[R]],
        after: Callable[[list[T], list[R]], None] | None = None,
    ) -> None:
        self._call = call
        self._write = write
        self._after = after
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def add(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._call(self._write, [item for item, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            if self._after is not None:
                self._after([item for item, _ in batch], results)


class EmbeddedBackend(Backend):
    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._ops: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._ops_lock = threading.Lock()
        self._draining = False
        # Each task runner's wake-up, with the kinds it runs (empty: all).
        self._wakeups: dict[asyncio.Event, tuple[str, ...]] = {}
        self._opened = False
        self._submits = _Batcher[list[Task], int](self._call, self._submit, self._woken)
        self._settles = _Batcher[tuple[Task, TaskOutcome], None](
            self._call, self._settle
        )

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on the database thread.

        Calls queue up and the thread runs all that are waiting at once, then
        hands every result back to the loop in one go: under load this costs
        one thread hand-off per batch instead of one per call.
        """
        if self._executor is None:
            raise RuntimeError("the backend is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._ops_lock:
            self._ops.append((partial(fn, *args), future))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain, loop)
        return await future

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            with self._ops_lock:
                ops, self._ops = self._ops, []
                if not ops:
                    self._draining = False
                    return
            outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            for call, future in ops:
                try:
                    outcomes.append((future, call(), None))
                except Exception as exc:
                    outcomes.append((future, None, exc))
            loop.call_soon_threadsafe(_settle_futures, outcomes)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the backend is not open")
        return self._db

    async def open(self) -> None:
        if self._executor is not None:
            return
        # The folder holds the users' private keys: only its owner may look in.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.data_dir / "blobs").mkdir(exist_ok=True)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mumble-sqlite")
        self._opened = True
        await self._call(self._open_sync)

    def _open_sync(self) -> None:
        path = self.data_dir / "mumble.sqlite3"
        # SQLite gives its journal files the database's mode; a database made
        # before this rule existed is brought into line too.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        for file in (
            path,
            path.with_name(path.name + "-wal"),
            path.with_name(path.name + "-shm"),
        ):
            if file.exists():
                os.chmod(file, 0o600)
        db = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        # This process owns the database: leases left by a previous run are void.
        db.execute("UPDATE tasks SET leased_until = 0 WHERE state = 'queued'")
        self._db = db

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._call(self.db.close)
        self._executor.shutdown(wait=True)
        self._executor = None
        self._db = None

    # records

    async def get(self, ns: str, key: str) -> dict[str, Any] | None:
        if not storable_key(key):
            return None
        row = await self._call(
            self._fetchone, "SELECT value FROM records WHERE ns=? AND key=?", (ns, key)
        )
        return json.loads(row[0]) if row else None

    def _fetchone(self, sql: str, args: tuple[Any, ...]) -> Any:
        return self.db.execute(sql, args).fetchone()

    async def put(
        self, ns: str, key: str, value: dict[str, Any], *, only_new: bool = False
    ) -> bool:
        check_key(ns, key)
        if ns in COUNTED_NAMESPACES:
            written, _old = await self._call(
                self._counted_write, ns, key, value, only_new
            )
            return bool(written)
        verb = "INSERT OR IGNORE" if only_new else "INSERT OR REPLACE"
        sql = f"{verb} INTO records (ns, key, value) VALUES (?, ?, ?)"
        count: int = await self._call(self._change, sql, (ns, key, json.dumps(value)))
        return count > 0

    def _change(self, sql: str, args: tuple[Any, ...]) -> int:
        return self.db.execute(sql, args).rowcount

    def _counted_write(
        self, ns: str, key: str, value: dict[str, Any] | None, only_new: bool
    ) -> tuple[bool, dict[str, Any] | None]:
        """Change a record and the counts it implies in one transaction."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT value FROM records WHERE ns=? AND key=?", (ns, key)
            ).fetchone()
            old = json.loads(row[0]) if row else None
            if (only_new and old is not None) or (value is None and old is None):
                db.execute("COMMIT")
                return False, old
            if value is None:
                db.execute("DELETE FROM records WHERE ns=? AND key=?", (ns, key))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO records (ns, key, value) VALUES (?, ?, ?)",
                    (ns, key, json.dumps(value)),
                )
            for change in count_changes(ns, key, old, value):
                self._increment("counts", change.key, change.name, change.delta)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return True, old

    async def delete(self, ns: str, key: str) -> dict[str, Any] | None:
        if not storable_key(key):
            return None
        if ns in COUNTED_NAMESPACES:
            _written, old = await self._call(self._counted_write, ns, key, None, False)
            return old  # type: ignore[no-any-return]
        row = await self._call(
            self._fetchone,
            "DELETE FROM records WHERE ns=? AND key=? RETURNING value",
            (ns, key),
        )
        return json.loads(row[0]) if row else None

    async def query(
        self,
        ns: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> list[Record]:
        sql = "SELECT key, value FROM records WHERE ns = ? AND substr(key, 1, ?) = ?"
        args: list[Any] = [ns, len(prefix), prefix]
        if after is not None:
            sql += " AND key < ?" if descending else " AND key > ?"
            args.append(after)
        sql += f" ORDER BY key {'DESC' if descending else 'ASC'} LIMIT ?"
        args.append(limit)
        rows = await self._call(self._fetchall, sql, tuple(args))
        return [Record(k, json.loads(v)) for k, v in rows]

    def _fetchall(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        return self.db.execute(sql, args).fetchall()

    async def increment(self, ns: str, key: str, name: str, delta: int = 1) -> int:
        return await self._call(self._increment, ns, key, name, delta)  # type: ignore[no-any-return]

    def _increment(self, ns: str, key: str, name: str, delta: int) -> int:
        path = "$." + json.dumps(name)
        row = self.db.execute(
            "INSERT INTO records (ns, key, value) VALUES (?, ?, json_object(?, ?)) "
            "ON CONFLICT (ns, key) DO UPDATE SET value = json_set(value, ?, "
            "coalesce(json_extract(value, ?), 0) + ?) "
            "RETURNING json_extract(value, ?)",
            (ns, key, name, delta, path, path, delta, path),
        ).fetchone()
        return int(row[0])

    # blobs

    def _blob_path(self, key: str) -> Path:
        return self.data_dir / "blobs" / hashlib.sha256(key.encode()).hexdigest()

    async def put_blob(self, key: str, data: bytes, content_type: str) -> None:
        path = self._blob_path(key)
        await asyncio.to_thread(path.write_bytes, data)
        await self.put("blobs", key, {"content_type": content_type, "size": len(data)})

    async def get_blob(self, key: str) -> tuple[bytes, str] | None:
        meta = await self.get("blobs", key)
        if meta is None:
            return None
        data = await asyncio.to_thread(self._blob_path(key).read_bytes)
        return data, str(meta["content_type"])

    # tasks

    async def submit(self, tasks: Sequence[Task]) -> int:
        return await self._submits.add(list(tasks))

    def _woken(self, batches: list[list[Task]], counts: list[int]) -> None:
        kinds = {
            t.kind for tasks, n in zip(batches, counts, strict=True) if n for t in tasks
        }
        for wakeup, only in self._wakeups.items():
            if kinds and (not only or kinds.intersection(only)):
                wakeup.set()

    def _submit(self, batches: list[list[Task]]) -> list[int]:
        counts = []
        with self.db:
            self.db.execute("BEGIN")
            for tasks in batches:
                before = self.db.total_changes
                self.db.executemany(
                    "INSERT OR IGNORE INTO tasks (id, kind, payload, due, attempts) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (t.id, t.kind, json.dumps(t.payload), t.due, t.attempts)
                        for t in tasks
                    ],
                )
                counts.append(self.db.total_changes - before)
        return counts

    def _claim(self, limit: int, now: float, kinds: tuple[str, ...]) -> list[Task]:
        only = f" AND kind IN ({', '.join('?' * len(kinds))})" if kinds else ""
        rows = self.db.execute(
            "UPDATE tasks SET leased_until = ? WHERE id IN (SELECT id FROM tasks "
            f"WHERE state = 'queued' AND due <= ? AND leased_until <= ?{only} "
            "ORDER BY due LIMIT ?) RETURNING id, kind, payload, due, attempts",
            (now + LEASE_SECONDS, now, now, *kinds, limit),
        ).fetchall()
        return [Task(i, k, json.loads(p), d, a) for i, k, p, d, a in rows]

    def _next_due(self, kinds: tuple[str, ...]) -> float | None:
        only = f" AND kind IN ({', '.join('?' * len(kinds))})" if kinds else ""
        row = self.db.execute(
            "SELECT min(max(due, leased_until)) FROM tasks "
            f"WHERE state = 'queued'{only}",
            kinds,
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def _settle(self, settled: list[tuple[Task, TaskOutcome]]) -> list[None]:
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            for task, outcome in settled:
                self._settle_one(task, outcome, now)
            if any(not o.done and o.retry_at is None for _, o in settled):
                self.db.execute(
                    "DELETE FROM tasks WHERE state = 'dead' AND due < ?",
                    (now - DEAD_TASK_SECONDS,),
                )
        return [None] * len(settled)

    def _settle_one(self, task: Task, outcome: TaskOutcome, now: float) -> None:
        if outcome.done:
            self.db.execute("DELETE FROM tasks WHERE id = ?", (task.id,))
        elif outcome.retry_at is not None:
            self.db.execute(
                "UPDATE tasks SET due = ?, leased_until = 0, attempts = attempts + ?, "
                "last_error = ? WHERE id = ?",
                (outcome.retry_at, int(outcome.count_attempt), outcome.reason, task.id),
            )
        else:
            # A dropped task's due time becomes the time it was dropped.
            self.db.execute(
                "UPDATE tasks SET state = 'dead', attempts = attempts + 1, "
                "due = ?, last_error = ? WHERE id = ?",
                (now, outcome.reason, task.id),
            )

    async def task_states(self) -> list[dict[str, Any]]:
        """Every stored task, for inspection and tests."""
        rows = await self._call(
            self._fetchall,
            "SELECT id, kind, state, due, attempts, last_error FROM tasks ORDER BY due",
            (),
        )
        names = ("id", "kind", "state", "due", "attempts", "last_error")
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def run_tasks(
        self,
        runner: TaskRunner,
        *,
        stop: asyncio.Event,
        concurrency: int = 16,
        kinds: Collection[str] = (),
    ) -> None:
        assert self._opened, "the backend is not open"
        only = tuple(sorted(kinds))
        wakeup = asyncio.Event()
        self._wakeups[wakeup] = only
        running: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                free = concurrency - len(running)
                # Claim in batches: one query per quarter of the slots, not per task.
                if free <= 0 or (running and free < max(1, concurrency // 4)):
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                wakeup.clear()
                claimed: list[Task] = await self._call(
                    self._claim, free, time.time(), only
                )
                for task in claimed:
                    job = asyncio.create_task(self._run_one(runner, task))
                    running.add(job)
                    job.add_done_callback(running.discard)
                if not claimed:
                    await self._idle(stop, wakeup, running, only)
        finally:
            self._wakeups.pop(wakeup, None)
            for job in running:
                job.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _idle(
        self,
        stop: asyncio.Event,
        wakeup: asyncio.Event,
        running: set[asyncio.Task[None]],
        kinds: tuple[str, ...],
    ) -> None:
        """Wait for a submission, a finished task, the next due time or the stop."""
        next_due = await self._call(self._next_due, kinds)
        timeout = (
            1.0 if next_due is None else max(0.0, min(1.0, next_due - time.time()))
        )
        waiters = {
            asyncio.ensure_future(wakeup.wait()),
            asyncio.ensure_future(stop.wait()),
        }
        try:
            await asyncio.wait(
                waiters | running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _run_one(self, runner: TaskRunner, task: Task) -> None:
        try:
            outcome = await runner(task)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s (%s) failed", task.id, task.kind)
            if task.attempts + 1 >= MAX_CRASHES:
                outcome = TaskOutcome.drop("internal error; gave up")
            else:
                delay = 60.0 * 2**task.attempts
                outcome = TaskOutcome.retry(time.time() + delay, "internal error")
        with contextlib.suppress(RuntimeError):
            await self._settles.add((task, outcome))
