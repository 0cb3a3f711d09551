"""The events AWS delivers, from recorded samples (``tests/aws/events``)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent / "events"


@cache
def _sample(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return document


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of a recorded event."""
    return copy.deepcopy(_sample(name))


def object_created(bucket: str, key: str) -> dict[str, Any]:
    """S3's Object Created event for ``key``, as EventBridge delivers it."""
    event = sample("s3EventBridgeNotificationObjectCreatedEvent")
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"]["key"] = key
    return event


def stream_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A DynamoDB stream batch as Lambda delivers it."""
    return {"Records": records}


def stream_record(
    event_id: str,
    sequence: str,
    name: str,
    keys: dict[str, Any],
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One stream record shaped like the recorded sample's first record."""
    record = sample("dynamoStreamEvent")["Records"][0]
    record["eventID"] = event_id
    record["eventName"] = name
    change = record["dynamodb"]
    change["Keys"] = keys
    change["SequenceNumber"] = sequence
    change.pop("NewImage", None)
    if old is not None:
        change["OldImage"] = old
    if new is not None:
        change["NewImage"] = new
    return record
