"""The AWS backend: DynamoDB records, S3 blobs and staged work, SSM secrets.

Records are DynamoDB items (layout in :mod:`.tables`). ``put(only_new=True)``
is a conditional write, so of concurrent writers exactly one gets True and
the others False, and nothing is written twice. Each such write carries a
token of its own: when botocore retries a write whose answer was lost, the
retry fails its condition on the item the first try stored, and the token
tells that this call was the writer. ``delete`` returns the old
item from the same call. ``query`` is one DynamoDB Query per page (never a
Scan), ordered and bounded by the sort key. Reads are strongly consistent.

The documents of objects, activities and outgoing activities are kept in
S3 under ``objects/``, where their size is not bounded by DynamoDB's
400 KB; their items hold the S3 key of the document (see :mod:`.documents`).

Counts are not written here. The tables' streams feed the statistics
handler (:mod:`.counts`), which applies :func:`mumble.statistics.count_changes`
to every change and adds the results to the ``counts`` namespace, so a count
follows its records within moments instead of in the same transaction.

Tasks are staged in S3 (layout in :mod:`.bucket`): an inbound activity or
another single task is one object; the deliveries of one activity are
grouped into objects of up to 200 inboxes, and a DynamoDB claim per task
keeps an inbox from being staged twice while its delivery is pending. In
AWS, creating a staged object starts a Step Functions workflow; elsewhere
:meth:`AwsBackend.run_tasks` drives the same workflow steps in this process
(see :mod:`.driver`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ..base import Backend, Record, Task, TaskRunner, storable_key
from .bucket import (
    DELIVERY_GROUP_SIZE,
    delivery_key,
    inbound_key,
    media_key,
    task_key,
)
from .clients import AwsClients, error_code
from .documents import DOCUMENT, DOCUMENT_NAMESPACES, Documents
from .parameters import PRIVATE_KEYS, Parameters
from .settings import AwsSettings
from .staging import Staging, task_document
from .tables import (
    add_update,
    item_of,
    key_of,
    table_for,
    value_of,
)

log = logging.getLogger("mumble.aws.backend")

#: Claims of pending deliveries (one per task id) and how long one may stay
#: behind a workflow that never settled: longer than every retry together.
CLAIMS = "delivery-claims"
CLAIM_SECONDS = 7 * 24 * 3600
#: Conditional writes in flight at once when claiming many deliveries.
CLAIM_CONCURRENCY = 32
#: The attribute naming who wrote an item conditionally, and the deployed
#: tables' time-to-live attribute.
WRITER = "writer"
EXPIRES = "expires"
#: A delivery claim's activity, and the staged object its delivery is in
#: (absent until it is staged).
CLAIMED_FOR = "activity"
STAGED_AS = "staged"


class AwsBackend(Backend):
    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self.clients = AwsClients(settings)
        self.staging = Staging(self.clients, settings.bucket)
        self.parameters = Parameters(self.clients, settings.ssm_prefix)
        self.documents = Documents(self)
        self._wakeups: set[asyncio.Event] = set()
        self._opened = False

    async def open(self) -> None:
        await self.clients.open()
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        await self.clients.close()

    @property
    def _dynamodb(self) -> Any:
        return self.clients.dynamodb

    async def domain(self) -> str:
        """The deployment's domain name, from Parameter Store."""
        return await self.parameters.domain()

    async def origin(self, configured: str | None = None) -> str:
        """The origin every id is minted on, the same for every function.

        ``configured`` is ``MUMBLE_ORIGIN``; unset, it is ``https://`` and the
        domain name in Parameter Store (taken as it is if it has a scheme).
        """
        if configured:
            return configured
        domain = await self.domain()
        return domain if "://" in domain else f"https://{domain}"

    # records

    async def get(self, ns: str, key: str) -> dict[str, Any] | None:
        if ns == PRIVATE_KEYS:
            return await self.parameters.get(key)
        if not storable_key(key):
            return None
        if ns in DOCUMENT_NAMESPACES:
            return await self.documents.get(ns, key)
        response = await self._dynamodb.get_item(
            TableName=table_for(self.settings, ns),
            Key=key_of(ns, key),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return None if item is None else value_of(item)

    async def put(
        self, ns: str, key: str, value: dict[str, Any], *, only_new: bool = False
    ) -> bool:
        if ns == PRIVATE_KEYS:
            return await self.parameters.put(key, value, only_new)
        if ns in DOCUMENT_NAMESPACES:
            return await self.documents.put(ns, key, value, only_new=only_new)
        table, item = table_for(self.settings, ns), item_of(ns, key, value)
        if only_new:
            return await self.insert(table, item)
        await self._dynamodb.put_item(TableName=table, Item=item)
        return True

    async def insert(
        self,
        table: str,
        item: dict[str, Any],
        condition: str = "attribute_not_exists(pk)",
        values: dict[str, Any] | None = None,
    ) -> bool:
        """Write ``item`` if ``condition`` holds; True if this call wrote it."""
        won, _, _ = await self.insert_or_find(table, item, condition, values)
        return won

    async def insert_or_find(
        self,
        table: str,
        item: dict[str, Any],
        condition: str = "attribute_not_exists(pk)",
        values: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> tuple[bool, dict[str, Any], bool]:
        """:meth:`insert`, and when another write holds the place, its item;
        and whether botocore had to send the write more than once.

        ``token`` names this writer in the item (a fresh one by default).
        """
        token = token or secrets.token_hex(16)
        request: dict[str, Any] = {
            "TableName": table,
            "Item": item | {WRITER: {"S": token}},
            "ConditionExpression": condition,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            response = await self._dynamodb.put_item(**request)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            existing = exc.response.get("Item")
            if existing is None:
                answer = await self._dynamodb.get_item(
                    TableName=table,
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    ConsistentRead=True,
                )
                existing = answer.get("Item") or {}
            return existing.get(WRITER, {}).get("S") == token, existing, True
        retries = response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        return True, {}, bool(retries)

    async def delete(self, ns: str, key: str) -> dict[str, Any] | None:
        if ns == PRIVATE_KEYS:
            return await self.parameters.delete(key)
        if not storable_key(key):
            return None
        if ns in DOCUMENT_NAMESPACES:
            return await self.documents.delete(ns, key)
        response = await self._dynamodb.delete_item(
            TableName=table_for(self.settings, ns),
            Key=key_of(ns, key),
            ReturnValues="ALL_OLD",
        )
        old = response.get("Attributes")
        return None if not old else value_of(old)

    async def query(
        self,
        ns: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> list[Record]:
        if ns == PRIVATE_KEYS:
            return await self.parameters.query(prefix, after, limit, descending)
        request: dict[str, Any] = {
            "TableName": table_for(self.settings, ns),
            "KeyConditionExpression": "pk = :ns",
            "ExpressionAttributeValues": {":ns": {"S": ns}},
            "ScanIndexForward": not descending,
            "ConsistentRead": True,
        }
        if prefix:
            request["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            request["ExpressionAttributeValues"][":prefix"] = {"S": prefix}
        if after is not None and not after.startswith(prefix):
            # DynamoDB refuses a start key outside the key condition. Outside the
            # prefix, ``after`` is either before every match or after all of them.
            if (after < prefix) == descending:
                return []
            after = None
        if after:
            request["ExclusiveStartKey"] = key_of(ns, after)
        elif after == "" and descending:
            return []
        records: list[Record] = []
        while len(records) < limit:
            request["Limit"] = limit - len(records)
            page = await self._dynamodb.query(**request)
            records.extend(await self._records(page["Items"]))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return records

    async def _records(self, items: list[dict[str, Any]]) -> list[Record]:
        async def document(item: dict[str, Any]) -> dict[str, Any] | None:
            found = await self.documents.read(item[DOCUMENT]["S"])
            if found is None:
                # Moved on since the page was read: follow the item.
                found = await self.documents.get(item["pk"]["S"], item["sk"]["S"])
            return found

        documents = await asyncio.gather(
            *(document(item) for item in items if DOCUMENT in item)
        )
        found = iter(documents)
        records = []
        for item in items:
            value = next(found) if DOCUMENT in item else value_of(item)
            if value is not None:
                records.append(Record(item["sk"]["S"], value))
        return records

    async def increment(self, ns: str, key: str, name: str, delta: int = 1) -> int:
        response = await self._dynamodb.update_item(
            TableName=table_for(self.settings, ns),
            Key=key_of(ns, key),
            ReturnValues="ALL_NEW",
            **add_update(name, delta),
        )
        return int(value_of(response["Attributes"])[name])

    # blobs

    async def put_blob(self, key: str, data: bytes, content_type: str) -> None:
        await self.clients.s3.put_object(
            Bucket=self.settings.bucket,
            Key=media_key(key),
            Body=data,
            ContentType=content_type,
        )

    async def get_blob(self, key: str) -> tuple[bytes, str] | None:
        try:
            response = await self.clients.s3.get_object(
                Bucket=self.settings.bucket, Key=media_key(key)
            )
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as stream:
            data: bytes = await stream.read()
        return data, str(response.get("ContentType", "application/octet-stream"))

    # tasks

    async def submit(self, tasks: Sequence[Task]) -> int:
        deliveries: dict[str, dict[str, Task]] = defaultdict(dict)
        singles: dict[str, Task] = {}
        for task in tasks:
            activity = task.payload.get("activity")
            if task.kind == "deliver" and isinstance(activity, str):
                deliveries[activity].setdefault(task.id, task)
            else:
                singles.setdefault(task.id, task)
        counts = await asyncio.gather(
            *(self._stage_single(task) for task in singles.values()),
            *(
                self._stage_deliveries(activity, list(group.values()))
                for activity, group in deliveries.items()
            ),
        )
        count = sum(counts)
        if count:
            for wakeup in self._wakeups:
                wakeup.set()
        return count

    async def _stage_single(self, task: Task) -> int:
        if task.kind == "inbound":
            key = inbound_key(task.id)
        else:
            key = task_key(task.kind, task.id)
        return int(await self.staging.create(key, {"task": task_document(task)}))

    async def _stage_deliveries(self, activity: str, tasks: list[Task]) -> int:
        gate = asyncio.Semaphore(CLAIM_CONCURRENCY)

        async def claim(task: Task) -> bool:
            async with gate:
                return await self._claim(task.id, activity)

        outcomes = await asyncio.gather(
            *(claim(task) for task in tasks), return_exceptions=True
        )
        claimed = [
            task for task, won in zip(tasks, outcomes, strict=True) if won is True
        ]
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            # Unclaimed, they can be submitted again instead of being lost.
            await self.release_claims([task.id for task in claimed])
            raise failed[0]
        for start in range(0, len(claimed), DELIVERY_GROUP_SIZE):
            group = claimed[start : start + DELIVERY_GROUP_SIZE]
            key = delivery_key(activity, [task.id for task in group])
            document = {
                "activity": activity,
                "tasks": [task_document(task) for task in group],
            }
            try:
                await self.staging.create(key, document)
            except BaseException:
                # This group and the ones after it were not staged.
                await self.release_claims([task.id for task in claimed[start:]])
                raise
            await self._mark_staged(activity, key, [task.id for task in group])
        return len(claimed)

    async def claim(
        self, ns: str, key: str, seconds: float, **value: Any
    ) -> str | None:
        """Take ``ns``/``key`` for ``seconds`` unless another holds it still.

        Returns the holder's token, for :meth:`release`, or None. A claim past
        its time can be taken again at once: DynamoDB's TTL may take days to
        remove an expired item.
        """
        now = time.time()
        item = item_of(ns, key, value)
        item[EXPIRES] = {"N": str(int(now + seconds))}
        holder = secrets.token_hex(16)
        won, _, _ = await self.insert_or_find(
            table_for(self.settings, ns),
            item,
            f"attribute_not_exists(pk) OR {EXPIRES} < :now",
            {":now": {"N": str(int(now))}},
            token=holder,
        )
        return holder if won else None

    async def release(self, ns: str, key: str, holder: str) -> None:
        """Let go of a claim, if ``holder`` still holds it (it may have expired
        and been taken by another)."""
        await self.delete_if(ns, key, WRITER, holder)

    async def delete_if(self, ns: str, key: str, attribute: str, value: str) -> bool:
        """Delete an item while its string ``attribute`` is ``value``; True if so."""
        try:
            await self._dynamodb.delete_item(
                TableName=table_for(self.settings, ns),
                Key=key_of(ns, key),
                ConditionExpression="#attribute = :value",
                ExpressionAttributeNames={"#attribute": attribute},
                ExpressionAttributeValues={":value": {"S": value}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _claim_item(self, task_id: str, activity: str) -> dict[str, Any]:
        item = item_of(CLAIMS, task_id, {"activity": activity})
        item[EXPIRES] = {"N": str(int(time.time() + CLAIM_SECONDS))}
        item[CLAIMED_FOR] = {"S": activity}
        return item

    async def _claim(self, task_id: str, activity: str) -> bool:
        """Claim one delivery for staging.

        A claim of the same activity that was never staged is taken over: it
        was left by a submit that died between claiming and staging (a
        function stopped at its timeout), and holding it would lose the
        delivery until the claim expired.
        """
        return await self.insert(
            table_for(self.settings, CLAIMS),
            self._claim_item(task_id, activity),
            f"attribute_not_exists(pk) OR {EXPIRES} < :now OR "
            f"({CLAIMED_FOR} = :activity AND attribute_not_exists({STAGED_AS}))",
            {":now": {"N": str(int(time.time()))}, ":activity": {"S": activity}},
        )

    async def _mark_staged(self, activity: str, key: str, task_ids: list[str]) -> None:
        """Note that these claims' deliveries are staged, at ``key``."""
        items = [
            self._claim_item(task_id, activity) | {STAGED_AS: {"S": key}}
            for task_id in task_ids
        ]
        await self._batch_write(
            CLAIMS, [{"PutRequest": {"Item": item}} for item in items], "staged"
        )

    async def release_claims(self, task_ids: Sequence[str]) -> None:
        """Let these deliveries be submitted again (their workflow has settled)."""
        requests = [
            {"DeleteRequest": {"Key": key_of(CLAIMS, task_id)}} for task_id in task_ids
        ]
        # Unreleased, they expire on their own (CLAIM_SECONDS); until then, a
        # repeat of these deliveries is taken for a duplicate.
        await self._batch_write(CLAIMS, requests, "released")

    async def _batch_write(
        self, ns: str, requests: Sequence[dict[str, Any]], done: str
    ) -> None:
        """Write in batches of 25, retrying what DynamoDB leaves unprocessed."""
        table = table_for(self.settings, ns)
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {table: list(requests[start : start + 25])}
            for attempt in range(8):
                response = await self._dynamodb.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                await asyncio.sleep(0.05 * 2**attempt)
            else:
                log.warning("%d %s records were not %s", len(pending[table]), ns, done)

    async def run_tasks(
        self,
        runner: TaskRunner,
        *,
        stop: asyncio.Event,
        concurrency: int = 16,
        kinds: Collection[str] = (),
    ) -> None:
        """Drive staged work here, with the steps the AWS workflows run."""
        from .driver import LocalDriver

        if not self._opened:
            raise RuntimeError("the AWS backend is not open")
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        try:
            driver = LocalDriver(self, runner, concurrency=concurrency, kinds=kinds)
            await driver.run(stop, wakeup)
        finally:
            self._wakeups.discard(wakeup)
