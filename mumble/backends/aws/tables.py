"""How records sit in the two DynamoDB tables.

Both tables have the same key schema: partition key ``pk`` (string) holds the
namespace and sort key ``sk`` (string) holds the record's key, so one
namespace is one item collection and :meth:`AwsBackend.query` is a single
Query on it. The user table holds what is about local users (their records
and when they were last active) and their relationships, and the counts (of
users and of their posts: one namespace lives in one table); the object
table holds everything else (objects, activities, replies, reactions,
outboxes, caches, delivery claims).
:data:`USER_NAMESPACES` is the one place that decides.

An item is ``pk``, ``sk`` and ``value``, the record as a JSON string, which
keeps any JSON document intact (DynamoDB's own types would turn floats into
decimals and refuse empty sets). Counters written by
:meth:`AwsBackend.increment` are numeric attributes named ``n:<field>``, so
that ADD can change them atomically; reading a record adds them to the
document's fields of the same name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...errors import PayloadTooLarge
from ..base import check_key
from .settings import AwsSettings

USER_NAMESPACES = frozenset(
    {
        "users",
        "last-activity",
        "followers",
        "following",
        "follow-ids",
        "outgoing-follows",
        "counts",
        "stream-records",
    }
)
COUNTER_PREFIX = "n:"
#: DynamoDB refuses an item over 400 KB (and a sort key over the contract's
#: :data:`~mumble.backends.base.MAX_KEY_BYTES`).
MAX_ITEM_BYTES = 400 * 1024

Item = dict[str, dict[str, str]]


def table_for(settings: AwsSettings, ns: str) -> str:
    return settings.user_table if ns in USER_NAMESPACES else settings.object_table


def key_of(ns: str, key: str) -> Item:
    return {"pk": {"S": ns}, "sk": {"S": key}}


def item_of(ns: str, key: str, value: Mapping[str, Any]) -> Item:
    """The item that stores a record; raise 4xx for what DynamoDB cannot hold."""
    check_key(ns, key)
    document = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    size = len(ns.encode()) + len(key.encode()) + len(document.encode()) + 16
    if size > MAX_ITEM_BYTES:
        raise PayloadTooLarge(f"a {ns} record is over DynamoDB's 400 KB item limit")
    return key_of(ns, key) | {"value": {"S": document}}


def value_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The record an item (or a stream image) holds, counters included."""
    raw = item.get("value", {}).get("S")
    value: dict[str, Any] = json.loads(raw) if raw is not None else {}
    for name, attribute in item.items():
        if not name.startswith(COUNTER_PREFIX) or "N" not in attribute:
            continue
        field = name[len(COUNTER_PREFIX) :]
        base = value.get(field, 0)
        counted = int(attribute["N"])
        # A counter adds to the field the stored document had, as an increment
        # of that field would anywhere else.
        is_number = isinstance(base, int) and not isinstance(base, bool)
        value[field] = base + counted if is_number else counted
    return value


def add_update(name: str, delta: int) -> dict[str, Any]:
    """The UpdateItem arguments that add ``delta`` to counter ``name`` atomically."""
    return {
        "UpdateExpression": "ADD #counter :delta",
        "ExpressionAttributeNames": {"#counter": COUNTER_PREFIX + name},
        "ExpressionAttributeValues": {":delta": {"N": str(int(delta))}},
    }
