"""The events AWS hands to Mumble's handlers, read strictly.

Two shapes name a staged object: S3's "Object Created" event as EventBridge
delivers it (``detail.bucket.name``, ``detail.object.key``), and the input a
workflow passes from step to step (``bucket``, ``key``, ``attempts``). The
DynamoDB stream delivers batches of record changes. Anything else raises
:class:`MalformedEvent`, a 400 that says what is wrong; nothing is changed
or deleted because of an event that could not be read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import BadRequest
from .bucket import workflow_of
from .tables import value_of

STREAM_EVENTS = ("INSERT", "MODIFY", "REMOVE")


class MalformedEvent(BadRequest):
    """An event that is not what the handler takes."""


@dataclass(frozen=True)
class StagedRef:
    """A staged object as an event names it, with the retries counted so far."""

    bucket: str
    key: str
    attempts: int = 0

    @property
    def location(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key}


def _dig(value: Any, *names: str) -> Any:
    """``value[names[0]][names[1]]...``, or None where a level is not an object."""
    for name in names:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"the event has no {what}")
    return value


def staged_ref(event: Any, bucket: str, workflow: str | None = None) -> StagedRef:
    """The staged object an event names, in ``bucket`` and ``workflow``'s prefix."""
    if not isinstance(event, Mapping):
        raise MalformedEvent("the event is not a JSON object")
    if "detail" in event or "detail-type" in event:
        if event.get("source") != "aws.s3" or event.get("detail-type") != (
            "Object Created"
        ):
            raise MalformedEvent("the event is not S3's Object Created")
        name = _text(_dig(event, "detail", "bucket", "name"), "bucket name")
        key = _text(_dig(event, "detail", "object", "key"), "object key")
        attempts: Any = 0
    else:
        name = _text(event.get("bucket"), "bucket")
        key = _text(event.get("key"), "key")
        attempts = event.get("attempts", 0)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
        raise MalformedEvent("attempts must be a whole number")
    if name != bucket:
        raise MalformedEvent(f"the event names bucket {name!r}, not {bucket!r}")
    found = workflow_of(key)
    if found is None or (workflow is not None and found != workflow):
        raise MalformedEvent(f"{key!r} is not staged work of {workflow or 'Mumble'}")
    return StagedRef(name, key, attempts)


@dataclass(frozen=True)
class RecordChange:
    """One change from a DynamoDB stream: the record before and after."""

    event_id: str
    sequence: str
    ns: str
    key: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def stream_records(event: Any) -> list[Any]:
    """The records of a DynamoDB stream batch (each still to be read)."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise MalformedEvent("the event is not a DynamoDB stream batch")
    return records


def sequence_of(record: Any) -> str:
    """A stream record's sequence number, or "" when it has none."""
    if not isinstance(record, Mapping):
        return ""
    sequence = _dig(record, "dynamodb", "SequenceNumber")
    return sequence if isinstance(sequence, str) else ""


def record_change(record: Any) -> RecordChange:
    """Read one stream record; the table must stream new and old images."""
    if not isinstance(record, Mapping) or record.get("eventSource") != "aws:dynamodb":
        raise MalformedEvent("the record is not from a DynamoDB stream")
    name = record.get("eventName")
    if name not in STREAM_EVENTS:
        raise MalformedEvent(f"unknown stream event {name!r}")
    change = record.get("dynamodb")
    if not isinstance(change, Mapping):
        raise MalformedEvent("the record has no change")
    keys = change.get("Keys")
    if not isinstance(keys, Mapping):
        raise MalformedEvent("the record has no keys")
    ns = _text(_dig(keys, "pk", "S"), "namespace (pk)")
    key = _text(_dig(keys, "sk", "S"), "key (sk)")
    old_image = change.get("OldImage") if name != "INSERT" else {}
    new_image = change.get("NewImage") if name != "REMOVE" else {}
    if not (isinstance(old_image, Mapping) and isinstance(new_image, Mapping)):
        raise MalformedEvent("the stream must carry new and old images")
    try:
        old = value_of(old_image) if name != "INSERT" else None
        new = value_of(new_image) if name != "REMOVE" else None
    except (ValueError, TypeError, AttributeError) as exc:
        raise MalformedEvent(f"the images of {ns}/{key} cannot be read") from exc
    return RecordChange(
        event_id=_text(record.get("eventID"), "eventID"),
        sequence=sequence_of(record),
        ns=ns,
        key=key,
        old=old,
        new=new,
    )
