"""Counts from the DynamoDB streams: the statistics handler's work.

Each stream record of a counted namespace goes through
:func:`mumble.statistics.count_changes`; the resulting count changes are
atomic ADDs on the ``counts`` namespace, the same update
:meth:`AwsBackend.increment` makes.

Streams deliver at least once: a batch is retried whole or from a failed
record, and two pollers can overlap. So the ADDs of one record and a marker
naming its ``eventID`` (unique per stream record) are written in one
transaction, on the condition that the marker is absent. A record applied
before cancels its own transaction and is skipped; none is counted twice.
Markers expire through the table's TTL attribute ``expires`` after two
days, longer than the stream keeps a record (24 hours).

Records are applied one after the other, in stream order: transactions on
the same count (a post being liked) would only conflict with each other.
More throughput comes from the event source's ParallelizationFactor.

A record that cannot be read or applied is reported in
``batchItemFailures`` (Lambda's ReportBatchItemFailures), so Lambda retries
it, and after it, instead of losing it; the rest of the batch is applied.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ...statistics import COUNTED_NAMESPACES, count_changes
from .clients import error_code
from .events import (
    MalformedEvent,
    RecordChange,
    record_change,
    sequence_of,
    stream_records,
)
from .tables import add_update, item_of, key_of, table_for

if TYPE_CHECKING:
    from .backend import AwsBackend
    from .steps import StepContext

log = logging.getLogger("mumble.aws.counts")

MARKERS = "stream-records"
MARKER_SECONDS = 2 * 24 * 3600
#: Transactions on one hot count (a popular post) conflict; they are retried.
CONFLICT_RETRIES = 6


async def apply_change(backend: AwsBackend, change: RecordChange) -> bool:
    """Apply one record change's counts, once; True if this call applied them."""
    if change.ns not in COUNTED_NAMESPACES:
        return False
    updates = count_changes(change.ns, change.key, change.old, change.new)
    if not updates:
        return False
    settings = backend.settings
    marker = item_of(MARKERS, change.event_id, {"at": time.time()})
    marker["expires"] = {"N": str(int(time.time() + MARKER_SECONDS))}
    items: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": table_for(settings, MARKERS),
                "Item": marker,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
    ]
    items += [
        {
            "Update": {
                "TableName": table_for(settings, "counts"),
                "Key": key_of("counts", update.key),
                **add_update(update.name, update.delta),
            }
        }
        for update in updates
    ]
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            await backend.clients.dynamodb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons = [
                r.get("Code") for r in exc.response.get("CancellationReasons", ())
            ]
            if error_code(exc) != "TransactionCanceledException":
                raise
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            if "TransactionConflict" not in reasons or attempt == CONFLICT_RETRIES:
                raise
            await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))
        else:
            return True
    raise AssertionError("unreachable")


async def apply_stream(ctx: StepContext, event: Mapping[str, Any]) -> dict[str, Any]:
    """The statistics handler: apply a stream batch, report what failed."""
    failures: list[dict[str, str]] = []
    for record in stream_records(event):
        try:
            await apply_change(ctx.backend, record_change(record))
        except MalformedEvent as exc:
            log.warning("unreadable stream record: %s", exc.message)
        except Exception:
            # Reported, so Lambda delivers it again instead of losing it.
            log.exception("stream record %s not applied", sequence_of(record))
        else:
            continue
        failures.append({"itemIdentifier": sequence_of(record)})
    return {"batchItemFailures": failures}
