"""The Lambda handlers, run in-process on the events AWS delivers, against moto.

Each handler runs as Lambda runs it: synchronously, in its own thread and
event loop, with its settings read from ``MUMBLE_*`` variables at the first
invocation. The stand-ins are moto for the AWS services and the test for
Step Functions, which hands each step the previous step's output.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from mumble import Federation, Settings
from mumble.backends import Task
from mumble.backends.aws import AwsBackend, AwsSettings, handlers, steps
from mumble.backends.aws.bucket import inbound_key
from mumble.backends.aws.clients import is_transient
from mumble.backends.aws.counts import apply_stream
from mumble.backends.aws.events import MalformedEvent
from mumble.backends.aws.handlers import Container, TransientAwsError
from mumble.backends.aws.steps import Step, StepContext

from . import application
from .faults import Faults, dynamodb_error, s3_error
from .samples import object_created, stream_record
from .service import BUCKET, MotoService
from .stream import stream_batches

ORIGIN = "https://social.example"
POST = f"{ORIGIN}/users/alice/posts/1"
BOB = "https://remote.example/users/bob"


@pytest.fixture
def container(
    moto_service: MotoService, aws_settings: AwsSettings
) -> Iterator[Container]:
    environ = moto_service.environ() | {
        "MUMBLE_APPLICATION": "tests.aws.application:app",
        # The remote inboxes of these tests are on 127.0.0.1.
        "MUMBLE_ALLOW_PRIVATE_ADDRESSES": "1",
    }
    c = Container(environ)
    yield c
    c.close()


async def invoke(container: Container, step: Step, event: Any) -> dict[str, Any]:
    """One Lambda invocation, on its own thread as in a Lambda container."""
    return await asyncio.to_thread(container.invoke, step, event)


def inbound_task(activity: dict[str, Any]) -> Task:
    key = activity["id"]
    return Task(
        id="inbound:" + hashlib.sha256(key.encode()).hexdigest(),
        kind="inbound",
        payload={
            "activity": activity,
            "recipient": None,
            "actor": activity["actor"],
            "key": key,
            "received": time.time(),
        },
    )


async def test_an_inbound_like_is_translated_and_counted_once(
    backend: AwsBackend, container: Container
) -> None:
    await backend.put("objects", POST, {"object": {"id": POST}, "local": True})
    like = {"id": f"{BOB}/likes/1", "type": "Like", "actor": BOB, "object": POST}
    task = inbound_task(like)
    assert await backend.submit([task]) == 1
    key = inbound_key(task.id)
    application.likes.clear()

    result = await invoke(
        container, steps.translate_inbound, object_created(BUCKET, key)
    )

    assert result["status"] == "done"
    assert await backend.staging.read(key) is None
    assert await backend.get("reactions", f"{POST} likes {BOB}") is not None
    assert await backend.get("seen", like["id"]) is not None
    assert application.likes == [BOB], "the application's handler ran"

    [objects_batch] = [
        batch
        for batch in await stream_batches(backend.settings)
        if any(
            r["dynamodb"]["Keys"]["pk"]["S"] == "reactions" for r in batch["Records"]
        )
    ]
    for _ in range(2):  # delivered twice, as streams may
        outcome = await invoke(container, apply_stream, objects_batch)
        assert outcome == {"batchItemFailures": []}
        assert await backend.get("counts", POST) == {"likes": 1}


async def test_aws_failing_a_step_past_its_retries_is_a_named_transient_error(
    backend: AwsBackend, container: Container, backoffs: list[float]
) -> None:
    task = inbound_task({"id": f"{BOB}/likes/9", "type": "Like", "actor": BOB})
    assert await backend.submit([task]) == 1
    key = inbound_key(task.id)
    # The container's own clients: the fault goes where the step sends.
    clients = (await asyncio.to_thread(container.invoke, _clients, None))["s3"]
    slow = s3_error(503, "SlowDown")
    Faults(clients, "s3.GetObject", [slow] * 20)

    with pytest.raises(TransientAwsError, match="SlowDown"):
        await invoke(container, steps.translate_inbound, object_created(BUCKET, key))
    assert len(backoffs) >= 3, "botocore retried first"
    assert await backend.staging.read(key) is not None, "the work is kept"


async def test_aws_failing_inside_a_task_is_retried_by_the_workflow_not_counted(
    backend: AwsBackend, container: Container, backoffs: list[float]
) -> None:
    like = {"id": f"{BOB}/likes/10", "type": "Like", "actor": BOB, "object": POST}
    task = inbound_task(like)
    assert await backend.submit([task]) == 1
    event = object_created(BUCKET, inbound_key(task.id))
    clients = await asyncio.to_thread(container.invoke, _clients, None)
    throttled = dynamodb_error(400, "ThrottlingException")
    faults = Faults(clients["dynamodb"], "dynamodb.GetItem", [throttled] * 40)

    for _ in range(3):
        with pytest.raises(TransientAwsError, match="Throttling"):
            await invoke(container, steps.translate_inbound, event)
    faults.remove()
    # No attempt was counted against the task: it runs as if for the first time.
    result = await invoke(container, steps.translate_inbound, event)
    assert (result["status"], result["attempts"]) == ("done", 0)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionClosedError(endpoint_url="https://s3.example"),
        ReadTimeoutError(endpoint_url="https://s3.example"),
        EndpointConnectionError(endpoint_url="https://s3.example"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_dropped_and_refused_connections_are_transient(error: Exception) -> None:
    assert is_transient(error)


def test_a_refusal_of_our_own_is_not_transient() -> None:
    invalid = ClientError(
        {"Error": {"Code": "ValidationException"}, "ResponseMetadata": {}}, "PutItem"
    )
    assert not is_transient(invalid) and not is_transient(KeyError("x"))


async def _clients(ctx: StepContext, event: Any) -> dict[str, Any]:
    return {"s3": ctx.backend.clients.s3, "dynamodb": ctx.backend.clients.dynamodb}


async def test_a_step_failing_on_its_own_is_not_called_transient(
    container: Container,
) -> None:
    async def broken(ctx: StepContext, event: Any) -> dict[str, Any]:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await invoke(container, broken, {})


async def test_an_execution_that_finds_the_object_leased_does_not_read_it(
    backend: AwsBackend, container: Container
) -> None:
    task = inbound_task({"id": f"{BOB}/likes/11", "type": "Like", "actor": BOB})
    assert await backend.submit([task]) == 1
    key = inbound_key(task.id)
    holder = await backend.claim(steps.LEASES, key, 60)
    assert holder is not None
    clients = await asyncio.to_thread(container.invoke, _clients, None)
    reads = Faults(clients["s3"], "s3.GetObject", [], match=lambda r: key in str(r.url))

    result = await invoke(
        container, steps.translate_inbound, object_created(BUCKET, key)
    )
    assert result["status"] == "retry" and result["attempts"] == 0
    assert reads.calls == 0
    await backend.release(steps.LEASES, key, holder)


async def test_one_object_translated_by_two_executions_at_once_runs_once(
    backend: AwsBackend, moto_service: MotoService
) -> None:
    await backend.put("objects", POST, {"object": {"id": POST}, "local": True})
    environ = moto_service.environ() | {
        "MUMBLE_APPLICATION": "tests.aws.application:app"
    }
    containers = [Container(environ), Container(environ)]
    try:
        for round_ in range(3):
            like = {
                "id": f"{BOB}/likes/race-{round_}",
                "type": "Like",
                "actor": BOB,
                "object": POST,
            }
            task = inbound_task(like)
            assert await backend.submit([task]) == 1
            event = object_created(BUCKET, inbound_key(task.id))
            application.likes.clear()

            results = await asyncio.gather(
                *(invoke(c, steps.translate_inbound, event) for c in containers)
            )
            assert sorted(r["status"] for r in results) in (
                ["done", "done"],  # one after the other: the second found nothing
                ["done", "retry"],
            )
            assert application.likes == [BOB], "the handler ran exactly once"
            # The one that waited finds the work done when it comes back.
            again = await invoke(containers[0], steps.translate_inbound, event)
            assert (again["status"], again["reason"]) == ("done", "already handled")
            assert application.likes == [BOB]
    finally:
        for c in containers:
            await asyncio.to_thread(c.close)


async def test_a_post_is_fanned_out_by_the_outbound_workflow(
    backend: AwsBackend, container: Container
) -> None:
    fed = Federation(Settings(origin=ORIGIN, backend="aws"), backend)
    await fed.users.create("alice")
    followers = [f"https://s{i}.example/users/u{j}" for i in range(3) for j in range(2)]
    for actor in followers:
        inbox = actor.rsplit("/users/", 1)[0] + "/inbox"
        await backend.put(
            "followers", f"alice {actor}", {"actor": actor, "inbox": inbox}
        )

    activity = await fed.posts.create("alice", {"type": "Note", "content": "hi"})
    # The owner's request stored the post and staged one task, nothing more.
    assert await backend.staging.keys("outbound/deliver/") == []
    [key] = await backend.staging.keys("outbound/tasks/")
    assert key.startswith("outbound/tasks/fanout/")

    result = await invoke(
        container, steps.translate_outbound, object_created(BUCKET, key)
    )
    assert result["status"] == "done"
    assert await backend.staging.read(key) is None
    [group] = await backend.staging.keys("outbound/deliver/")
    staged = await backend.staging.read(group)
    assert staged is not None and staged["activity"] == activity["id"]
    assert sorted(t["payload"]["inbox"] for t in staged["tasks"]) == [
        f"https://s{i}.example/inbox" for i in range(3)
    ]
    await fed.fetcher.close()


async def test_a_dropped_inbound_activity_is_quarantined(
    backend: AwsBackend, container: Container
) -> None:
    forged = {
        "id": f"{BOB}/creates/1",
        "type": "Create",
        "actor": BOB,
        "object": {"id": "https://elsewhere.example/notes/1", "type": "Note"},
    }
    task = inbound_task(forged)
    await backend.submit([task])
    key = inbound_key(task.id)

    result = await invoke(
        container, steps.translate_inbound, object_created(BUCKET, key)
    )
    assert result["status"] == "drop"
    assert "origin" in result["reason"]
    moved = await invoke(container, steps.quarantine, result)

    assert moved["quarantined"] == f"quarantine/{key}"
    assert await backend.staging.read(key) is None
    kept = await backend.staging.read(moved["quarantined"])
    assert kept is not None
    assert kept["reason"] == result["reason"]
    assert kept["staged"]["task"]["payload"]["activity"] == forged


async def test_the_lambda_entry_point_reads_its_settings_on_first_use(
    backend: AwsBackend, moto_service: MotoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    delete = {
        "id": f"{BOB}/deletes/1",
        "type": "Delete",
        "actor": BOB,
        "object": f"{BOB}/notes/9",
    }
    task = inbound_task(delete)
    await backend.submit([task])
    for name, value in moto_service.environ().items():
        monkeypatch.setenv(name, value)
    try:
        result = await asyncio.to_thread(
            handlers.translate_inbound,
            object_created(BUCKET, inbound_key(task.id)),
            None,
        )
    finally:
        await asyncio.to_thread(handlers.close_container)
    assert result["status"] == "done"
    assert await backend.get("seen", delete["id"]) is not None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, "no bucket"),
        ([1, 2], "not a JSON object"),
        ({"bucket": "another-bucket", "key": "inbound/x.json"}, "another-bucket"),
        ({"bucket": BUCKET, "key": "media/x.png"}, "not staged work"),
        ({"bucket": BUCKET, "key": "inbound/x.json", "attempts": -1}, "attempts"),
        ({"source": "aws.ec2", "detail-type": "Object Created"}, "not S3"),
        ({"source": "aws.s3", "detail-type": "Object Created", "detail": 3}, "bucket"),
    ],
)
async def test_malformed_events_are_refused_and_change_nothing(
    backend: AwsBackend, container: Container, event: Any, message: str
) -> None:
    task = inbound_task(
        {"id": f"{BOB}/likes/2", "type": "Like", "actor": BOB, "object": POST}
    )
    await backend.submit([task])
    with pytest.raises(MalformedEvent, match=message) as caught:
        await invoke(container, steps.translate_inbound, event)
    assert caught.value.status == 400
    assert await backend.staging.read(inbound_key(task.id)) is not None


async def test_an_unreadable_staged_object_is_dropped_not_run(
    backend: AwsBackend, container: Container
) -> None:
    key = "inbound/garbage.json"
    await backend.clients.s3.put_object(Bucket=BUCKET, Key=key, Body=b"not json")
    result = await invoke(
        container, steps.translate_inbound, object_created(BUCKET, key)
    )
    assert result["status"] == "drop"
    moved = await invoke(container, steps.quarantine, result)
    kept = await backend.staging.read(moved["quarantined"])
    assert kept is not None and kept["staged"] == "not json"


async def test_bad_stream_records_are_reported_and_the_rest_applied(
    backend: AwsBackend, container: Container
) -> None:
    await backend.put("followers", f"alice {BOB}", {"actor": BOB})
    [users_batch] = [
        b
        for b in await stream_batches(backend.settings)
        if b["Records"][0]["dynamodb"]["Keys"]["pk"]["S"] == "followers"
    ]
    keys = {"pk": {"S": "followers"}, "sk": {"S": "alice https://x.example/u"}}
    no_images = stream_record("e-2", "900002", "MODIFY", keys)
    no_keys = stream_record("e-3", "900003", "INSERT", {}, new={"value": {"S": "{}"}})
    not_json = stream_record("e-4", "900004", "INSERT", keys, new={"value": {"S": "{"}})
    batch = {"Records": [*users_batch["Records"], no_images, no_keys, not_json, "x"]}

    outcome = await invoke(container, apply_stream, batch)

    assert outcome["batchItemFailures"] == [
        {"itemIdentifier": "900002"},
        {"itemIdentifier": "900003"},
        {"itemIdentifier": "900004"},
        {"itemIdentifier": ""},
    ]
    assert await backend.get("counts", "alice") == {"followers": 1}
    with pytest.raises(MalformedEvent, match="stream batch"):
        await invoke(container, apply_stream, {"Records": "none"})


class Inboxes:
    """Remote inboxes on 127.0.0.1: one accepts, one is gone."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], str]] = []

    async def accept(self, request: web.Request) -> web.Response:
        self.received.append((await request.json(), request.headers["Signature"]))
        return web.Response(status=202)

    async def gone(self, request: web.Request) -> web.Response:
        return web.Response(status=410)


@pytest.fixture
async def inboxes() -> AsyncIterator[tuple[Inboxes, str]]:
    remote = Inboxes()
    app = web.Application()
    app.router.add_post("/ok/inbox", remote.accept)
    app.router.add_post("/gone/inbox", remote.gone)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield remote, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_a_staged_delivery_is_expanded_pushed_and_settled(
    backend: AwsBackend, container: Container, inboxes: tuple[Inboxes, str]
) -> None:
    remote, base = inboxes
    ok, gone = f"{base}/ok/inbox", f"{base}/gone/inbox"
    fed = Federation(Settings(origin=ORIGIN, backend="aws"), backend)
    await fed.users.create("alice")
    activity = {
        "id": f"{ORIGIN}/users/alice/activities/1",
        "type": "Create",
        "actor": f"{ORIGIN}/users/alice",
        "object": {"id": POST, "type": "Note", "content": "hi"},
    }
    assert await fed.delivery.send("alice", activity, [ok, gone]) == 2
    [key] = await backend.staging.keys("outbound/deliver/")

    expanded = await invoke(container, steps.expand, object_created(BUCKET, key))
    assert sorted(i["inbox"] for i in expanded["inboxes"]) == [gone, ok]
    pushed = {
        item["inbox"]: await invoke(container, steps.push, item)
        for item in expanded["inboxes"]
    }
    assert pushed[ok]["status"] == "done"
    assert pushed[gone]["status"] == "drop"
    [(body, signature)] = remote.received
    assert body["id"] == activity["id"]
    assert f'keyId="{ORIGIN}/users/alice#main-key"' in signature

    # What the Map's Delivered and Failed states make of the two outcomes.
    results = [
        {"id": pushed[ok]["task"]["id"], "inbox": ok, "status": "done"},
        {
            "id": pushed[gone]["task"]["id"],
            "inbox": gone,
            "status": "failed",
            "error": "Mumble.PermanentDeliveryError",
            "cause": pushed[gone]["reason"],
        },
    ]
    settled = await invoke(
        container,
        steps.settle,
        {"bucket": BUCKET, "key": key, "reason": "", "results": results},
    )
    assert (settled["delivered"], settled["failed"]) == (1, 1)
    assert await backend.staging.read(key) is None
    kept = await backend.staging.read(settled["quarantined"])
    assert kept is not None and kept["failures"] == results[1:]
    # Settled, the deliveries may be submitted again.
    assert await fed.delivery.send("alice", activity, [ok, gone]) == 2
    await fed.fetcher.close()


def delivery_task(activity: str, inbox: str) -> Task:
    return Task(
        f"deliver:{activity} {inbox}",
        "deliver",
        {"activity": activity, "username": "alice", "inbox": inbox},
    )


async def test_only_one_execution_delivers_a_staged_delivery_object(
    backend: AwsBackend, container: Container
) -> None:
    assert await backend.submit([delivery_task("a3", "https://p.example/inbox")]) == 1
    [key] = await backend.staging.keys("outbound/deliver/")
    first = {"bucket": BUCKET, "key": key, "attempts": 0, "execution": "arn:x:1"}
    second = first | {"execution": "arn:x:2"}

    expanded = await invoke(container, steps.expand, first)
    assert [i["inbox"] for i in expanded["inboxes"]] == ["https://p.example/inbox"]
    # Expanded again by the same execution (a retried invocation): the same.
    again = await invoke(container, steps.expand, first)
    assert again["inboxes"] == expanded["inboxes"]
    # Another execution for the same object, from a duplicated S3 event.
    duplicate = await invoke(container, steps.expand, second)
    assert (duplicate["inboxes"], duplicate["duplicate"]) == ([], True)

    results = [{"id": expanded["inboxes"][0]["task"]["id"], "status": "done"}]
    await invoke(container, steps.settle, first | {"reason": "", "results": results})
    assert await backend.get(steps.DELIVERING, key) is None


async def test_a_settle_retried_after_its_release_failed_lets_the_claims_go(
    backend: AwsBackend, container: Container, backoffs: list[float]
) -> None:
    task = delivery_task("a4", "https://p.example/inbox")
    assert await backend.submit([task]) == 1
    [key] = await backend.staging.keys("outbound/deliver/")
    event = {"bucket": BUCKET, "key": key, "attempts": 0, "execution": "arn:x:3"}
    expanded = await invoke(container, steps.expand, event)
    results = [{"id": expanded["inboxes"][0]["task"]["id"], "status": "done"}]
    clients = await asyncio.to_thread(container.invoke, _clients, None)
    failing = [dynamodb_error(500, "InternalServerError")] * 8
    faults = Faults(clients["dynamodb"], "dynamodb.BatchWriteItem", failing)
    settle = event | {"reason": "", "results": results}
    with pytest.raises(TransientAwsError):
        await invoke(container, steps.settle, settle)
    faults.remove()
    # Step Functions retries the step with the same input; the object is gone.
    await invoke(container, steps.settle, settle)
    assert await backend.submit([task]) == 1


async def test_settle_without_results_refuses_and_keeps_the_deliveries(
    backend: AwsBackend, container: Container
) -> None:
    inboxes = ["https://p.example/inbox", "https://q.example/inbox"]
    assert await backend.submit([delivery_task("a1", i) for i in inboxes]) == 2
    [key] = await backend.staging.keys("outbound/deliver/")

    for event in (
        {"bucket": BUCKET, "key": key},
        {"bucket": BUCKET, "key": key, "results": None},
    ):
        with pytest.raises(MalformedEvent, match="results"):
            await invoke(container, steps.settle, event)
    assert await backend.staging.read(key) is not None
    # Still claimed: submitting them again is a duplicate.
    assert await backend.submit([delivery_task("a1", i) for i in inboxes]) == 0


async def test_settle_counts_a_delivery_missing_from_the_results_as_failed(
    backend: AwsBackend, container: Container
) -> None:
    tasks = [delivery_task("a2", f"https://{h}.example/inbox") for h in "pq"]
    assert await backend.submit(tasks) == 2
    [key] = await backend.staging.keys("outbound/deliver/")
    results = [
        {"id": tasks[0].id, "inbox": "https://p.example/inbox", "status": "done"}
    ]

    settled = await invoke(
        container,
        steps.settle,
        {"bucket": BUCKET, "key": key, "reason": "", "results": results},
    )
    assert (settled["delivered"], settled["failed"]) == (1, 1)
    kept = await backend.staging.read(settled["quarantined"])
    assert kept is not None and [f["id"] for f in kept["failures"]] == [tasks[1].id]


@pytest.mark.parametrize("event", [[1, 2], "x", None, 7])
async def test_push_refuses_an_event_that_is_not_an_object(
    container: Container, event: Any
) -> None:
    with pytest.raises(MalformedEvent, match="JSON object"):
        await invoke(container, steps.push, event)


async def test_the_settings_of_tasks_come_from_the_environment(
    backend: AwsBackend, moto_service: MotoService
) -> None:
    deployed = Container(moto_service.environ())
    local = Container(
        moto_service.environ()
        | {
            "MUMBLE_ORIGIN": "http://127.0.0.1:8080",
            "MUMBLE_ALLOW_PRIVATE_ADDRESSES": "true",
        }
    )
    try:
        settings = await deployed.settings()
        assert (settings.origin, settings.backend) == (ORIGIN, "aws")
        assert settings.allow_private_addresses is False
        settings = await local.settings()
        assert settings.origin == "http://127.0.0.1:8080"
        assert settings.allow_private_addresses is True
    finally:
        await deployed.aclose()
        await local.aclose()


async def test_private_addresses_are_reached_only_when_the_environment_allows(
    backend: AwsBackend, moto_service: MotoService, inboxes: tuple[Inboxes, str]
) -> None:
    remote, base = inboxes
    fed = Federation(Settings(origin=ORIGIN, backend="aws"), backend)
    await fed.users.create("alice")
    activity = {
        "id": f"{ORIGIN}/users/alice/activities/2",
        "type": "Create",
        "actor": f"{ORIGIN}/users/alice",
        "object": {"id": POST, "type": "Note", "content": "hi"},
    }
    await fed.delivery.send("alice", activity, [f"{base}/ok/inbox"])
    [key] = await backend.staging.keys("outbound/deliver/")
    for flag, status in (("", "retry"), ("1", "done")):
        container = Container(
            moto_service.environ() | {"MUMBLE_ALLOW_PRIVATE_ADDRESSES": flag}
        )
        try:
            expanded = await invoke(
                container, steps.expand, object_created(BUCKET, key)
            )
            [item] = expanded["inboxes"]
            pushed = await invoke(container, steps.push, item)
        finally:
            await asyncio.to_thread(container.close)
        assert pushed["status"] == status, pushed
        if status == "retry":
            assert "not a public address" in pushed["reason"]
        assert len(remote.received) == (status == "done")
    await fed.fetcher.close()
