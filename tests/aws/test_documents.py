"""Records kept as documents in S3: every write and read, with races and faults.

Each race is set up where botocore sends a request: another writer gets in
just before a read, or between a write taking effect and its answer, which
is then lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mumble.backends.aws import AwsBackend, AwsSettings

from .faults import AppliedThenLost, Before, Faults, dynamodb_error
from .service import OBJECT_TABLE

NOTE = "https://remote.example/notes/1"


async def documents(backend: AwsBackend) -> list[str]:
    return sorted(await backend.staging.keys("objects/"))


async def stored_item(backend: AwsBackend, ns: str, key: str) -> Any:
    response = await backend.clients.dynamodb.get_item(
        TableName=OBJECT_TABLE, Key={"pk": {"S": ns}, "sk": {"S": key}}
    )
    return response.get("Item")


def writes_to(ns: str) -> Any:
    """Matches the DynamoDB requests that write an item of ``ns``."""
    return lambda request: (
        json.loads(request.body or b"{}").get("Item", {}).get("pk", {}).get("S") == ns
    )


def reads_a_document(request: Any) -> bool:
    return "/objects/" in str(request.url)


@pytest.fixture
async def other(aws_settings: AwsSettings) -> AsyncIterator[AwsBackend]:
    """A second writer, with clients of its own."""
    backend = AwsBackend(aws_settings)
    await backend.open()
    yield backend
    await backend.close()


async def test_objects_and_activities_are_documents_in_s3_that_items_point_at(
    backend: AwsBackend,
) -> None:
    first = {"object": {"id": NOTE, "content": "x" * (500 * 1024)}}
    assert await backend.put("objects", NOTE, first)

    [place] = await documents(backend)
    assert place.startswith("objects/objects/")
    item = await stored_item(backend, "objects", NOTE)
    assert set(item) == {"pk", "sk", "document", "writer"}
    assert item["document"]["S"] == place
    assert await backend.get("objects", NOTE) == first

    # An overwrite moves the item to a new document and removes the old one.
    assert await backend.put("objects", NOTE, {"object": {"id": NOTE}})
    [moved] = await documents(backend)
    assert moved != place
    assert await backend.get("objects", NOTE) == {"object": {"id": NOTE}}
    # A losing writer leaves the winner's document alone, and none of its own.
    assert not await backend.put("objects", NOTE, {"late": True}, only_new=True)
    assert await documents(backend) == [moved]
    assert [r.value for r in await backend.query("objects")] == [
        {"object": {"id": NOTE}}
    ]

    assert await backend.delete("objects", NOTE) == {"object": {"id": NOTE}}
    assert await documents(backend) == []
    assert await backend.get("objects", NOTE) is None
    assert await backend.delete("objects", NOTE) is None


@pytest.mark.parametrize("only_new", [False, True])
async def test_a_write_whose_answer_was_lost_keeps_one_document(
    backend: AwsBackend, backoffs: list[float], only_new: bool
) -> None:
    if not only_new:
        await backend.put("activities", "a", {"v": 1})
    AppliedThenLost(backend.clients.dynamodb, "dynamodb.PutItem")
    assert await backend.put("activities", "a", {"v": 2}, only_new=only_new)
    assert await backend.get("activities", "a") == {"v": 2}
    assert len(await documents(backend)) == 1


@pytest.mark.parametrize("only_new", [False, True])
async def test_a_write_that_took_effect_but_failed_leaves_a_readable_record(
    backend: AwsBackend, backoffs: list[float], only_new: bool
) -> None:
    if not only_new:
        await backend.put("objects", NOTE, {"v": 1})
    fault = AppliedThenLost(
        backend.clients.dynamodb,
        "dynamodb.PutItem",
        keep_failing=True,
        match=writes_to("objects"),
    )
    with pytest.raises(Exception, match="InternalServerError"):
        await backend.put("objects", NOTE, {"v": 2}, only_new=only_new)
    fault.remove()
    # It took effect: the record is the new one, whole, and nothing is left over.
    assert await backend.get("objects", NOTE) == {"v": 2}
    assert len(await documents(backend)) == 1


async def test_a_delete_whose_answer_was_lost_removes_the_document(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    await backend.put("objects", NOTE, {"v": 1})
    AppliedThenLost(backend.clients.dynamodb, "dynamodb.DeleteItem")
    assert await backend.delete("objects", NOTE) == {"v": 1}
    assert await documents(backend) == []
    assert await backend.get("objects", NOTE) is None


async def test_a_reader_during_a_replace_sees_the_record(
    backend: AwsBackend, other: AwsBackend
) -> None:
    await backend.put("objects", NOTE, {"v": 1})
    await backend.put("objects", NOTE + "/2", {"v": 1})
    # Between reading the item and reading its document, it is replaced.
    Before(
        backend.clients.s3,
        "s3.GetObject",
        lambda: other.put("objects", NOTE, {"v": 2}),
        match=reads_a_document,
    )
    assert await backend.get("objects", NOTE) == {"v": 2}
    Before(
        backend.clients.s3,
        "s3.GetObject",
        lambda: other.put("objects", NOTE, {"v": 3}),
        match=reads_a_document,
    )
    records = await backend.query("objects", "https://remote.example/")
    assert [(r.key, r.value) for r in records] == [
        (NOTE, {"v": 3}),
        (NOTE + "/2", {"v": 1}),
    ]


async def test_a_writer_overtaken_while_its_answer_was_lost_keeps_the_record(
    backend: AwsBackend, other: AwsBackend, backoffs: list[float]
) -> None:
    await backend.put("objects", NOTE, {"v": 0})
    # Ours takes effect; the other writer replaces it; our answer was lost
    # and botocore sends ours again.
    AppliedThenLost(
        backend.clients.dynamodb,
        "dynamodb.PutItem",
        then=lambda: other.put("objects", NOTE, {"v": "other"}),
        match=writes_to("objects"),
    )
    assert await backend.put("objects", NOTE, {"v": "ours"})
    assert await backend.get("objects", NOTE) == {"v": "other"}
    assert len(await documents(backend)) == 1


async def test_many_writers_at_once_leave_one_readable_document(
    backend: AwsBackend, aws_settings: AwsSettings
) -> None:
    await backend.put("objects", NOTE, {"v": 0})
    writers = [AwsBackend(aws_settings) for _ in range(4)]
    for writer in writers:
        await writer.open()
    try:
        results = await asyncio.gather(
            *(w.put("objects", NOTE, {"v": i}) for i, w in enumerate(writers * 3))
        )
        assert all(results)
        news = await asyncio.gather(
            *(
                w.put("activities", "new", {"v": i}, only_new=True)
                for i, w in enumerate(writers * 3)
            )
        )
        assert sum(news) == 1
    finally:
        for writer in writers:
            await writer.close()
    assert (await backend.get("objects", NOTE) or {}).get("v") in range(12)
    assert len(await documents(backend)) == 2


async def stored_document(backend: AwsBackend, key: str) -> Any:
    """The record's item, checked to name a document that is there."""
    item = await stored_item(backend, "objects", key)
    if item is not None:
        assert item["document"]["S"] in await documents(backend)
    return item


@pytest.mark.parametrize("only_new", [False, True])
async def test_a_create_retried_after_a_racing_delete_leaves_no_dangling_item(
    backend: AwsBackend, other: AwsBackend, backoffs: list[float], only_new: bool
) -> None:
    # Ours takes effect; the record is deleted; our answer was lost and
    # botocore sends ours again, which finds the place free.
    AppliedThenLost(
        backend.clients.dynamodb,
        "dynamodb.PutItem",
        then=lambda: other.delete("objects", NOTE),
        match=writes_to("objects"),
    )
    assert await backend.put("objects", NOTE, {"v": 1}, only_new=only_new)
    # The delete came after ours: the record is gone, and wholly.
    assert await stored_document(backend, NOTE) is None
    assert await documents(backend) == []
    assert await backend.put("objects", NOTE, {"v": 2}, only_new=True)


async def test_a_write_that_cannot_look_first_leaves_no_document(
    backend: AwsBackend, backoffs: list[float]
) -> None:
    failing = [dynamodb_error(500, "InternalServerError")] * 8
    Faults(backend.clients.dynamodb, "dynamodb.GetItem", failing)
    with pytest.raises(ClientError):
        await backend.put("objects", NOTE, {"v": 1})
    assert await documents(backend) == []


async def test_a_failed_write_overtaken_before_it_settles_leaves_one_document(
    backend: AwsBackend, other: AwsBackend, backoffs: list[float]
) -> None:
    await backend.put("objects", NOTE, {"v": 0})
    AppliedThenLost(
        backend.clients.dynamodb,
        "dynamodb.PutItem",
        then=lambda: other.put("objects", NOTE, {"v": "other"}),
        keep_failing=True,
        match=writes_to("objects"),
    )
    with pytest.raises(ClientError):
        await backend.put("objects", NOTE, {"v": "ours"})
    assert await backend.get("objects", NOTE) == {"v": "other"}
    assert len(await documents(backend)) == 1


async def test_a_delete_overtaken_by_a_write_leaves_the_write_whole(
    backend: AwsBackend, other: AwsBackend
) -> None:
    await backend.put("objects", NOTE, {"v": 1})
    # A replace lands between the delete's look and its delete.
    Before(
        backend.clients.dynamodb,
        "dynamodb.DeleteItem",
        lambda: other.put("objects", NOTE, {"v": 2}),
    )
    assert await backend.delete("objects", NOTE) == {"v": 1}
    assert await backend.get("objects", NOTE) == {"v": 2}
    assert await stored_document(backend, NOTE) is not None
    assert len(await documents(backend)) == 1


async def test_a_delete_whose_answer_was_lost_while_the_record_was_made_again(
    backend: AwsBackend, other: AwsBackend, backoffs: list[float]
) -> None:
    await backend.put("objects", NOTE, {"v": 1})
    AppliedThenLost(
        backend.clients.dynamodb,
        "dynamodb.DeleteItem",
        then=lambda: other.put("objects", NOTE, {"v": 2}),
    )
    assert await backend.delete("objects", NOTE) == {"v": 1}
    # The new record was made after our delete, and stays whole.
    assert await backend.get("objects", NOTE) == {"v": 2}
    assert len(await documents(backend)) == 1
