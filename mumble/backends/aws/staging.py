"""Staged work in S3: write once, read, remove, quarantine, list.

A staged object is a JSON document, either one task (``{"task": {...}}``)
or one activity's deliveries (``{"activity": id, "tasks": [...]}``). It is
written with ``If-None-Match: *``, so the same key is created once however
often, and concurrently, it is submitted; a losing writer is told so and
nothing is overwritten (an overwrite would start a second workflow).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ...errors import MumbleError
from ..base import Task
from .bucket import quarantine_key
from .clients import AwsClients, error_code

log = logging.getLogger("mumble.aws.staging")

#: S3 answers 409 while another conditional write of the same key is in
#: flight; the outcome is unknown until it ends, so ask again.
CONFLICT_RETRIES = 5


class InvalidStagedObject(MumbleError):
    """A staged object that is not a task document; it is quarantined, never run."""

    status = 422


def task_document(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "kind": task.kind,
        "payload": task.payload,
        "due": task.due,
        "attempts": task.attempts,
    }


def task_from(document: Any) -> Task:
    """The task a staged document (or a workflow item) describes."""
    if not isinstance(document, dict):
        raise InvalidStagedObject("a task is a JSON object")
    ident, kind, payload = (document.get(k) for k in ("id", "kind", "payload"))
    if not (isinstance(ident, str) and isinstance(kind, str)):
        raise InvalidStagedObject("a task needs a string id and kind")
    if not isinstance(payload, dict):
        raise InvalidStagedObject("a task's payload is a JSON object")
    try:
        due = float(document.get("due", 0.0))
        attempts = int(document.get("attempts", 0))
    except (TypeError, ValueError) as exc:
        raise InvalidStagedObject("a task's due and attempts are numbers") from exc
    return Task(ident, kind, payload, due, attempts)


class Staging:
    def __init__(self, clients: AwsClients, bucket: str) -> None:
        self.clients = clients
        self.bucket = bucket

    async def create(self, key: str, document: dict[str, Any]) -> bool:
        """Write ``document`` at ``key`` unless it exists; True if this call did."""
        body = json.dumps(document, ensure_ascii=False).encode()
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                await self.clients.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                code = error_code(exc)
                if code == "PreconditionFailed":
                    return False
                if code != "ConditionalRequestConflict" or attempt == CONFLICT_RETRIES:
                    raise
                await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))
            else:
                return True
        raise AssertionError("unreachable")

    async def read(self, key: str) -> dict[str, Any] | None:
        """The staged document at ``key``, or None once it is gone."""
        raw = await self.read_bytes(key)
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidStagedObject(f"{key} is not JSON") from exc
        if not isinstance(document, dict):
            raise InvalidStagedObject(f"{key} is not a JSON object")
        return document

    async def read_bytes(self, key: str) -> bytes | None:
        try:
            response = await self.clients.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as stream:
            data: bytes = await stream.read()
        return data

    async def remove(self, key: str) -> None:
        await self.clients.s3.delete_object(Bucket=self.bucket, Key=key)

    async def quarantine(
        self, key: str, reason: str, failures: Sequence[dict[str, Any]] = ()
    ) -> str | None:
        """Move a staged object under ``quarantine/`` with why; None if it was gone."""
        raw = await self.read_bytes(key)
        if raw is None:
            return None
        try:
            staged: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            staged = raw.decode("utf-8", "replace")
        target = quarantine_key(key)
        document = {"key": key, "reason": reason, "failures": list(failures)}
        await self.clients.s3.put_object(
            Bucket=self.bucket,
            Key=target,
            Body=json.dumps(document | {"staged": staged}, ensure_ascii=False),
            ContentType="application/json",
        )
        await self.remove(key)
        log.warning("quarantined %s: %s", key, reason)
        return target

    async def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, in key order."""
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = await self.clients.s3.list_objects_v2(**kwargs)
            keys.extend(item["Key"] for item in page.get("Contents", ()))
            if not page.get("IsTruncated"):
                return keys
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
