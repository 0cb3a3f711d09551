"""What the AWS backend does beyond the shared contract, against moto.

The contract itself (records, blobs, tasks, counts) is the conformance suite
(tests/test_backend_conformance.py), which runs on this backend too. Here:
where things are stored, that queries are Queries, retries on throttling,
conditional writes that lose a race, staging and the local driver.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Collection
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mumble.backends import Task, TaskOutcome
from mumble.backends.aws import AwsBackend
from mumble.backends.aws.counts import apply_stream
from mumble.backends.aws.steps import StepContext
from mumble.errors import BadRequest, PayloadTooLarge

from .faults import AppliedThenLost, Faults, dynamodb_error, s3_error
from .service import BUCKET, OBJECT_TABLE, SSM_PREFIX, USER_TABLE
from .stream import stream_batches

THROTTLED = dynamodb_error(400, "ThrottlingException")


async def stored_item(backend: AwsBackend, table: str, ns: str, key: str) -> Any:
    response = await backend.clients.dynamodb.get_item(
        TableName=table, Key={"pk": {"S": ns}, "sk": {"S": key}}
    )
    return response.get("Item")


async def test_records_sit_in_their_namespace_table_as_json(
    backend: AwsBackend,
) -> None:
    document = {"f": 1.5, "big": 2**70, "nested": [None, True, {"é": ""}]}
    await backend.put("users", "alice", document)
    await backend.put("replies", "https://x.example/n/1", document)

    user = await stored_item(backend, USER_TABLE, "users", "alice")
    assert json.loads(user["value"]["S"]) == document
    assert await stored_item(backend, OBJECT_TABLE, "users", "alice") is None
    reply = await stored_item(backend, OBJECT_TABLE, "replies", "https://x.example/n/1")
    assert json.loads(reply["value"]["S"]) == document
    assert await backend.get("replies", "https://x.example/n/1") == document


async def test_private_keys_are_secure_parameters_not_records(
    backend: AwsBackend,
) -> None:
    pem = {"pem": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"}
    assert await backend.put("private-keys", "alice", pem, only_new=True)
    assert not await backend.put("private-keys", "alice", {"pem": "y"}, only_new=True)

    name = f"{SSM_PREFIX}/private-keys/alice"
    parameter = await backend.clients.ssm.get_parameter(Name=name)
    assert parameter["Parameter"]["Type"] == "SecureString"
    assert await backend.get("private-keys", "alice") == pem
    assert [r.key for r in await backend.query("private-keys")] == ["alice"]
    for table in (USER_TABLE, OBJECT_TABLE):
        assert await stored_item(backend, table, "private-keys", "alice") is None

    assert await backend.delete("private-keys", "alice") == pem
    assert await backend.get("private-keys", "alice") is None
    assert await backend.get("private-keys", "../domain") is None


async def test_the_origin_is_the_configured_one_or_the_domain_parameter(
    backend: AwsBackend,
) -> None:
    assert await backend.origin() == "https://social.example"
    assert await backend.origin("") == "https://social.example"
    assert await backend.origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    await backend.clients.ssm.put_parameter(
        Name=f"{SSM_PREFIX}/domain", Value="http://127.0.0.1:8080", Overwrite=True
    )
    assert await backend.origin() == "http://127.0.0.1:8080"


async def test_blobs_are_objects_under_media(backend: AwsBackend) -> None:
    await backend.put_blob("alice/a.png", b"\x89PNG", "image/png")
    stored = await backend.clients.s3.head_object(
        Bucket=BUCKET, Key="media/alice/a.png"
    )
    assert stored["ContentType"] == "image/png"


class Operations:
    """The DynamoDB operations a client sends, with their requests."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-send.dynamodb", self)

    def __call__(self, request: Any, **kwargs: Any) -> None:
        operation = request.headers["X-Amz-Target"].decode().split(".")[-1]
        self.sent.append((operation, json.loads(request.body)))


async def test_queries_are_dynamodb_queries_bounded_by_the_prefix(
    backend: AwsBackend,
) -> None:
    for key in ("a 1", "b 1", "b 2", "b 3", "c 1"):
        await backend.put("q", key, {})
    operations = Operations(backend.clients.dynamodb)

    async def keys(**kwargs: Any) -> list[str]:
        return [r.key for r in await backend.query("q", "b ", **kwargs)]

    assert await keys() == ["b 1", "b 2", "b 3"]
    assert await keys(after="b 1", limit=1) == ["b 2"]
    # ``after`` outside the prefix: before it, or past it, in either order.
    assert await keys(after="a") == ["b 1", "b 2", "b 3"]
    assert await keys(after="c") == []
    assert await keys(after="c", descending=True) == ["b 3", "b 2", "b 1"]
    assert await keys(after="a", descending=True) == []

    assert {name for name, _ in operations.sent} == {"Query"}
    starts = [body.get("ExclusiveStartKey") for _, body in operations.sent]
    assert starts == [None, {"pk": {"S": "q"}, "sk": {"S": "b 1"}}, None, None]
    assert all(body["ConsistentRead"] for _, body in operations.sent)


async def test_throttling_is_retried_with_backoff(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    faults = Faults(backend.clients.dynamodb, "dynamodb.PutItem", [THROTTLED] * 2)
    assert await backend.put("ns", "k", {"v": 1})
    assert faults.calls == 3
    assert len(backoffs) == 2 and all(delay > 0 for delay in backoffs)
    assert await backend.get("ns", "k") == {"v": 1}


async def test_persistent_throttling_fails_after_the_configured_attempts(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    faults = Faults(backend.clients.dynamodb, "dynamodb.PutItem", [THROTTLED] * 9)
    with pytest.raises(ClientError, match="Throttling"):
        await backend.put("ns", "k", {"v": 1})
    assert faults.calls == backend.settings.max_attempts == 4
    assert await backend.get("ns", "k") is None


async def test_errors_of_our_own_are_not_retried(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    invalid = dynamodb_error(400, "ValidationException")
    faults = Faults(backend.clients.dynamodb, "dynamodb.GetItem", [invalid])
    with pytest.raises(ClientError, match="ValidationException"):
        await backend.get("ns", "k")
    assert (faults.calls, backoffs) == (1, [])


async def test_s3_server_errors_are_retried(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    await backend.put_blob("a.bin", b"data", "application/octet-stream")
    faults = Faults(backend.clients.s3, "s3.GetObject", [s3_error(503, "SlowDown")])
    assert await backend.get_blob("a.bin") == (b"data", "application/octet-stream")
    assert faults.calls == 2 and len(backoffs) == 1


async def test_a_conditional_write_that_loses_a_race_returns_false(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    await backend.put("ns", "k", {"winner": True})
    lost = dynamodb_error(400, "ConditionalCheckFailedException")
    faults = Faults(backend.clients.dynamodb, "dynamodb.PutItem", [lost])
    assert not await backend.put("ns", "k", {"winner": False}, only_new=True)
    assert (faults.calls, backoffs) == (1, [])
    assert await backend.get("ns", "k") == {"winner": True}


async def test_a_conditional_write_whose_answer_was_lost_still_won(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    lost = AppliedThenLost(backend.clients.dynamodb, "dynamodb.PutItem")
    assert await backend.put("ns", "k", {"v": 1}, only_new=True)
    assert lost.calls == 2 and len(backoffs) == 1
    assert await backend.get("ns", "k") == {"v": 1}
    # Another writer still loses.
    assert not await backend.put("ns", "k", {"v": 2}, only_new=True)


async def test_a_delivery_claim_whose_answer_was_lost_is_staged(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    AppliedThenLost(backend.clients.dynamodb, "dynamodb.PutItem")
    task = delivery("a9", "https://p.example/inbox")
    assert await backend.submit([task]) == 1
    assert await staged_inboxes(backend) == [["https://p.example/inbox"]]
    assert await backend.submit([task]) == 0


async def test_a_claim_that_fails_leaves_every_delivery_to_submit_again(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    tasks = [delivery("a11", f"https://{h}.example/inbox") for h in "pqr"]
    failing = [dynamodb_error(500, "InternalServerError")] * 4

    def claims_the_second(request: Any) -> bool:
        item = json.loads(request.body).get("Item", {})
        return bool(item.get("sk", {}).get("S") == tasks[1].id)

    Faults(
        backend.clients.dynamodb, "dynamodb.PutItem", failing, match=claims_the_second
    )
    with pytest.raises(ClientError):
        await backend.submit(tasks)
    assert await staged_inboxes(backend) == []
    # The fan-out is retried: every inbox is staged.
    assert await backend.submit(tasks) == 3
    assert await staged_inboxes(backend) == [sorted(t.payload["inbox"] for t in tasks)]


async def test_a_group_that_fails_to_stage_leaves_it_and_the_next_to_submit_again(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    tasks = [delivery("a12", f"https://h{i:03}.example/inbox") for i in range(201)]
    Faults(backend.clients.s3, "s3.PutObject", [s3_error(500, "InternalError")] * 4)
    with pytest.raises(ClientError):
        await backend.submit(tasks)
    assert await backend.submit(tasks) == 201
    assert sum(map(len, await staged_inboxes(backend))) == 201


async def test_a_claim_left_by_a_submit_that_died_is_taken_over(
    backend: AwsBackend,
) -> None:
    task = delivery("a10", "https://p.example/inbox")
    # Claimed, then the function was stopped before it staged anything.
    assert await backend._claim(task.id, "a10")
    assert await staged_inboxes(backend) == []

    assert await backend.submit([task]) == 1
    assert await staged_inboxes(backend) == [["https://p.example/inbox"]]
    # Staged, the claim is held: a repeat is a duplicate.
    assert await backend.submit([task]) == 0
    assert await staged_inboxes(backend) == [["https://p.example/inbox"]]


async def test_an_expired_claim_is_taken_again_before_dynamodb_removes_it(
    backend: AwsBackend,
) -> None:
    assert await backend.claim("leases", "x", 60, by="first")
    assert not await backend.claim("leases", "x", 60, by="second")
    assert await backend.claim("leases", "y", -1, by="first")
    assert await backend.claim("leases", "y", 60, by="second")
    assert (await backend.get("leases", "y") or {})["by"] == "second"


async def test_a_claim_is_released_only_by_who_holds_it(backend: AwsBackend) -> None:
    first = await backend.claim("leases", "x", -1)  # held, then expired
    assert first is not None
    second = await backend.claim("leases", "x", 60)
    assert second is not None and second != first
    # The first holder, finishing late, lets go of nothing.
    await backend.release("leases", "x", first)
    assert await backend.claim("leases", "x", 60) is None
    await backend.release("leases", "x", second)
    assert await backend.claim("leases", "x", 60) is not None


async def test_a_user_whose_creating_write_lost_its_answer_is_whole(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    from mumble.users import Users

    AppliedThenLost(backend.clients.dynamodb, "dynamodb.PutItem")
    user, _token = await Users(backend).create("carol")
    assert (await backend.get("users", "carol") or {})["public_key_pem"] == (
        user.public_key_pem
    )
    assert await backend.get("private-keys", "carol") is not None


def inbound(ident: str, **payload: Any) -> Task:
    return Task(ident, "inbound", {"activity": {"id": ident}, **payload})


async def test_concurrent_submits_stage_an_inbound_task_once(
    backend: AwsBackend,
) -> None:
    tasks = [inbound("inbound:1", copy=i) for i in range(8)]
    counts = await asyncio.gather(*(backend.submit([task]) for task in tasks))
    assert sum(counts) == 1
    [key] = await backend.staging.keys("inbound/")
    staged = await backend.staging.read(key)
    assert staged is not None
    winner = staged["task"]["payload"]["copy"]
    assert counts[winner] == 1, "the staged task is the one whose submit won"


async def test_a_conditional_put_in_conflict_is_asked_again(
    backend: AwsBackend,
) -> None:
    conflict = s3_error(409, "ConditionalRequestConflict")
    faults = Faults(backend.clients.s3, "s3.PutObject", [conflict])
    assert await backend.submit([inbound("inbound:2")]) == 1
    assert faults.calls == 2
    assert await backend.submit([inbound("inbound:2", copy=True)]) == 0
    [key] = await backend.staging.keys("inbound/")
    staged = await backend.staging.read(key)
    assert staged is not None and "copy" not in staged["task"]["payload"]


def delivery(activity: str, inbox: str) -> Task:
    return Task(
        f"deliver:{activity}:{inbox}",
        "deliver",
        {"activity": activity, "username": "alice", "inbox": inbox},
    )


async def staged_inboxes(backend: AwsBackend) -> list[list[str]]:
    inboxes = []
    for key in await backend.staging.keys("outbound/deliver/"):
        document = await backend.staging.read(key)
        assert document is not None
        inboxes.append(sorted(t["payload"]["inbox"] for t in document["tasks"]))
    return sorted(inboxes)


async def test_deliveries_are_grouped_per_activity_and_staged_once(
    backend: AwsBackend,
) -> None:
    first = [delivery("a1", f"https://{h}.example/inbox") for h in "pqr"]
    other = [delivery("a2", "https://p.example/inbox")]
    assert await backend.submit(first + other) == 4
    assert await staged_inboxes(backend) == [
        ["https://p.example/inbox"],
        [
            "https://p.example/inbox",
            "https://q.example/inbox",
            "https://r.example/inbox",
        ],
    ]
    assert await backend.submit(first) == 0
    # Of an overlapping set, only the inbox not pending is staged.
    overlapping = [*first[2:], delivery("a1", "https://s.example/inbox")]
    assert await backend.submit(overlapping) == 1
    groups = await staged_inboxes(backend)
    assert ["https://s.example/inbox"] in groups and len(groups) == 3


async def test_a_large_delivery_is_staged_in_groups(backend: AwsBackend) -> None:
    tasks = [delivery("big", f"https://h{i}.example/inbox") for i in range(210)]
    assert await backend.submit(tasks) == 210
    assert sorted(len(g) for g in await staged_inboxes(backend)) == [10, 200]


async def run_until(
    backend: AwsBackend,
    runner: Any,
    done: Any,
    timeout: float = 15.0,
    kinds: Collection[str] = (),
) -> None:
    stop = asyncio.Event()
    worker = asyncio.create_task(
        backend.run_tasks(runner, stop=stop, concurrency=4, kinds=kinds)
    )
    deadline = time.monotonic() + timeout
    try:
        while not await done():
            assert time.monotonic() < deadline, "the work did not finish in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 5)


async def test_run_tasks_quarantines_a_dropped_inbound_task(
    backend: AwsBackend,
) -> None:
    await backend.submit([inbound("inbound:3")])

    async def runner(task: Task) -> TaskOutcome:
        return TaskOutcome.drop("the signature's key is not the actor's")

    async def moved() -> bool:
        staged = await backend.staging.keys("inbound/")
        return not staged and bool(await backend.staging.keys("quarantine/"))

    await run_until(backend, runner, moved)
    [key] = await backend.staging.keys("quarantine/")
    kept = await backend.staging.read(key)
    assert kept is not None
    assert kept["reason"] == "the signature's key is not the actor's"
    assert kept["staged"]["task"]["id"] == "inbound:3"


async def test_run_tasks_delivers_every_inbox_and_records_the_drops(
    backend: AwsBackend,
) -> None:
    inboxes = [f"https://{h}.example/inbox" for h in ("ok", "slow", "gone")]
    await backend.submit([delivery("a3", inbox) for inbox in inboxes])
    runs: list[tuple[str, int]] = []

    async def runner(task: Task) -> TaskOutcome:
        inbox = task.payload["inbox"]
        runs.append((inbox, task.attempts))
        if "gone" in inbox:
            return TaskOutcome.drop(f"{inbox} answered 410")
        if "slow" in inbox and task.attempts == 0:
            return TaskOutcome.retry(time.time() + 0.2, "503")
        return TaskOutcome()

    async def settled() -> bool:
        staged = await backend.staging.keys("outbound/deliver/")
        return not staged and not await backend.query("delivery-claims")

    await run_until(backend, runner, settled)
    assert Counter(runs) == {
        (inboxes[0], 0): 1,
        (inboxes[1], 0): 1,
        (inboxes[1], 1): 1,
        (inboxes[2], 0): 1,
    }
    [key] = await backend.staging.keys("quarantine/outbound/deliver/")
    kept = await backend.staging.read(key)
    assert kept is not None
    assert [(f["inbox"], f["error"]) for f in kept["failures"]] == [
        (inboxes[2], "Mumble.PermanentDeliveryError")
    ]
    assert await backend.submit([delivery("a3", inbox) for inbox in inboxes]) == 3


async def test_a_redelivered_or_conflicting_stream_batch_counts_once(
    backend: AwsBackend,
) -> None:
    await backend.put("followers", "alice https://r.example/u/1", {})
    await backend.put("followers", "alice https://r.example/u/2", {})
    [batch] = await stream_batches(backend.settings)
    ctx = StepContext(backend, runner=None)  # type: ignore[arg-type]
    conflict = dynamodb_error(400, "TransactionCanceledException")
    body = json.loads(conflict[2]) | {
        "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]
    }
    faults = Faults(
        backend.clients.dynamodb,
        "dynamodb.TransactWriteItems",
        [(conflict[0], conflict[1], json.dumps(body).encode())],
    )
    assert await apply_stream(ctx, batch) == {"batchItemFailures": []}
    assert faults.calls == 3  # two records, one of them asked again
    # Redelivered from the second record, then whole: nothing counts twice.
    assert await apply_stream(ctx, {"Records": batch["Records"][1:]}) == {
        "batchItemFailures": []
    }
    assert await apply_stream(ctx, batch) == {"batchItemFailures": []}
    assert await backend.get("counts", "alice") == {"followers": 2}


async def test_keys_and_values_dynamodb_cannot_hold_are_refused(
    backend: AwsBackend,
) -> None:
    with pytest.raises(BadRequest):
        await backend.put("ns", "", {})
    with pytest.raises(BadRequest):
        await backend.put("ns", "k" * 1025, {})
    with pytest.raises(PayloadTooLarge) as caught:
        await backend.put("ns", "big", {"text": "x" * 420_000})
    assert caught.value.status == 413
    assert await backend.get("ns", "") is None
    assert await backend.delete("ns", "") is None


async def test_increments_add_to_a_stored_field_until_it_is_replaced(
    backend: AwsBackend,
) -> None:
    await backend.put("c", "k", {"likes": 5, "title": "t"})
    assert await backend.increment("c", "k", "likes") == 6
    assert await backend.get("c", "k") == {"likes": 6, "title": "t"}
    await backend.put("c", "k", {"likes": 1})
    assert await backend.get("c", "k") == {"likes": 1}


async def test_run_tasks_runs_only_the_kinds_asked_for(backend: AwsBackend) -> None:
    await backend.submit(
        [
            inbound("inbound:4"),
            delivery("a4", "https://p.example/inbox"),
            Task("refresh:1", "refresh", {}),
        ]
    )
    ran: list[str] = []

    async def runner(task: Task) -> TaskOutcome:
        ran.append(task.kind)
        return TaskOutcome()

    both_ran: list[float] = []

    async def ran_both_and_then_some() -> bool:
        if not both_ran and {"inbound", "refresh"} <= set(ran):
            both_ran.append(time.monotonic())
        # Time for the delivery to run too, were it listed.
        return bool(both_ran) and time.monotonic() - both_ran[0] > 0.5

    await run_until(
        backend, runner, ran_both_and_then_some, kinds={"refresh", "inbound"}
    )
    assert sorted(ran) == ["inbound", "refresh"]
    assert len(await backend.staging.keys("outbound/deliver/")) == 1


async def test_run_tasks_quarantines_an_unreadable_delivery_object(
    backend: AwsBackend,
) -> None:
    await backend.submit([delivery("a5", "https://p.example/inbox")])
    [key] = await backend.staging.keys("outbound/deliver/")
    document = await backend.staging.read(key)
    assert document is not None
    document["tasks"][0]["payload"] = "not an object"
    await backend.staging.remove(key)
    await backend.staging.create(key, document)

    async def runner(task: Task) -> TaskOutcome:
        raise AssertionError("an unreadable delivery must not run")

    async def quarantined() -> bool:
        return bool(await backend.staging.keys("quarantine/"))

    await run_until(backend, runner, quarantined)
    kept = await backend.staging.read(f"quarantine/{key}")
    assert kept is not None and "payload" in kept["reason"]


async def test_the_local_driver_tries_a_push_again_when_aws_failed_it(
    backend: AwsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mumble.backends.aws.driver.TRANSIENT_RETRY_SECONDS", 0.1)
    assert await backend.submit([delivery("a13", "https://p.example/inbox")]) == 1
    runs: list[int] = []

    async def runner(task: Task) -> TaskOutcome:
        runs.append(task.attempts)
        if len(runs) == 1:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {}},
                "GetItem",
            )
        return TaskOutcome()

    async def settled() -> bool:
        return not await backend.staging.keys("outbound/deliver/")

    await run_until(backend, runner, settled)
    assert runs == [0, 0], "tried again, and the attempt not counted"
    assert await backend.staging.keys("quarantine/") == []
