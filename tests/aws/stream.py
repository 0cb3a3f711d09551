"""A stand-in for Lambda's DynamoDB stream poller.

It reads both tables' streams from moto and hands each batch, in the shape
Lambda delivers, to the statistics handler's function; records the handler
reports as failed are delivered again, as Lambda would.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.session import get_session

from mumble.backends.aws import AwsSettings

log = logging.getLogger("tests.aws.stream")

Handle = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

#: Loading botocore's models takes a second; once per session is enough.
session = functools.cache(get_session)


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A record from GetRecords as the Lambda event carries it."""
    change = dict(record["dynamodb"])
    when = change.get("ApproximateCreationDateTime")
    if when is not None and not isinstance(when, int | float):
        change["ApproximateCreationDateTime"] = when.timestamp()
    return record | {"dynamodb": change, "eventSourceARN": stream_arn}


class StreamPump:
    def __init__(self, settings: AwsSettings, handle: Handle) -> None:
        self.settings = settings
        self.handle = handle
        self.batches: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> StreamPump:
        kwargs = {
            "region_name": self.settings.region,
            "endpoint_url": self.settings.endpoint_url,
        }
        dynamodb = await self._stack.enter_async_context(
            session().create_client("dynamodb", **kwargs)
        )
        streams = await self._stack.enter_async_context(
            session().create_client("dynamodbstreams", **kwargs)
        )
        shards: list[tuple[str, str]] = []
        for table in (self.settings.user_table, self.settings.object_table):
            described = await dynamodb.describe_table(TableName=table)
            arn = described["Table"]["LatestStreamArn"]
            stream = await streams.describe_stream(StreamArn=arn)
            for shard in stream["StreamDescription"]["Shards"]:
                iterator = await streams.get_shard_iterator(
                    StreamArn=arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="TRIM_HORIZON",
                )
                shards.append((arn, iterator["ShardIterator"]))
        self._task = asyncio.create_task(self._pump(streams, shards))
        return self

    async def _pump(self, streams: Any, shards: list[tuple[str, str]]) -> None:
        pending: dict[int, list[dict[str, Any]]] = {}
        while True:
            try:
                await self._poll(streams, shards, pending)
            except Exception:
                # Lambda's poller keeps going too; the test sees the error.
                log.exception("the stream pump failed; polling again")
            await asyncio.sleep(0.03)

    async def _poll(
        self,
        streams: Any,
        shards: list[tuple[str, str]],
        pending: dict[int, list[dict[str, Any]]],
    ) -> None:
        for index, (arn, iterator) in enumerate(shards):
            if not pending.get(index):
                page = await streams.get_records(ShardIterator=iterator)
                shards[index] = (arn, page["NextShardIterator"])
                pending[index] = [lambda_record(r, arn) for r in page["Records"]]
            records = pending[index]
            if not records:
                continue
            event = {"Records": records}
            self.batches.append(event)
            result = await self.handle(event)
            failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
            # Lambda delivers again from the first failed record (from the
            # start when a failure names none), and what follows it.
            first = min((int(f or 0) for f in failed), default=None)
            pending[index] = [
                r
                for r in records
                if first is not None and int(r["dynamodb"]["SequenceNumber"]) >= first
            ]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stack.aclose()


async def stream_batches(settings: AwsSettings) -> list[dict[str, Any]]:
    """What each table's stream holds, as the batch Lambda would deliver of it."""
    kwargs = {"region_name": settings.region, "endpoint_url": settings.endpoint_url}
    batches: list[dict[str, Any]] = []
    async with (
        session().create_client("dynamodb", **kwargs) as dynamodb,
        session().create_client("dynamodbstreams", **kwargs) as streams,
    ):
        for table in (settings.user_table, settings.object_table):
            described = await dynamodb.describe_table(TableName=table)
            arn = described["Table"]["LatestStreamArn"]
            stream = await streams.describe_stream(StreamArn=arn)
            records: list[dict[str, Any]] = []
            for shard in stream["StreamDescription"]["Shards"]:
                iterator = await streams.get_shard_iterator(
                    StreamArn=arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="TRIM_HORIZON",
                )
                page = await streams.get_records(
                    ShardIterator=iterator["ShardIterator"]
                )
                records += [lambda_record(r, arn) for r in page["Records"]]
            if records:
                batches.append({"Records": records})
    return batches
