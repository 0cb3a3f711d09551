"""Records whose values are JSON documents in S3, pointed at by DynamoDB items.

The namespaces of :data:`DOCUMENT_NAMESPACES` (objects, activities, outgoing
activities) hold documents larger than DynamoDB's 400 KB allows. Each write
puts its document under ``objects/`` at a key of its own, then points the
item at it, and only then removes the document the item pointed at before.

Writers and readers can meet, and an answer can be lost and the request
retried. The rules that keep every record readable:

- An item is repointed only from the document its writer read (a
  conditional write). A writer that finds it changed since has been
  overtaken: its write counts as made and at once replaced, as if it had
  come first, and it removes only its own document. So no retry can point
  an item back at a document someone else removed, and only the writer
  that moved an item away from a document removes it.
- A write that failed without an answer asks the item whether it points at
  the new document before removing anything.
- A reader that finds its document gone reads the item again: a writer
  moved it on between the two reads.
- A delete reads the item and its document first, and deletes the item
  only while it still names that document.
- A create that botocore had to send again, and that won, checks that its
  document is still there: a delete may have come between the two sends.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ..base import check_key
from .bucket import document_key
from .clients import error_code
from .tables import key_of, table_for

if TYPE_CHECKING:
    from .backend import AwsBackend

log = logging.getLogger("mumble.aws.documents")

DOCUMENT_NAMESPACES = frozenset({"objects", "activities", "outgoing"})
#: The attribute of an item that names its document.
DOCUMENT = "document"
#: Times a read follows an item that moved on while it was being read.
READ_ROUNDS = 12


class Documents:
    def __init__(self, backend: AwsBackend) -> None:
        self.backend = backend
        self.settings = backend.settings

    @property
    def _s3(self) -> Any:
        return self.backend.clients.s3

    @property
    def _dynamodb(self) -> Any:
        return self.backend.clients.dynamodb

    async def _pointer(self, ns: str, key: str) -> tuple[bool, str | None]:
        """Whether the item exists, and the document it names."""
        response = await self._dynamodb.get_item(
            TableName=table_for(self.settings, ns),
            Key=key_of(ns, key),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None:
            return False, None
        return True, item.get(DOCUMENT, {}).get("S")

    async def get(self, ns: str, key: str) -> dict[str, Any] | None:
        for _ in range(READ_ROUNDS):
            exists, place = await self._pointer(ns, key)
            if not exists or place is None:
                return None
            document = await self.read(place)
            if document is not None:
                return document
        log.warning("%s %s names a document that is not there", ns, key)
        return None

    async def put(
        self, ns: str, key: str, value: dict[str, Any], *, only_new: bool
    ) -> bool:
        check_key(ns, key)
        place = document_key(ns, key)
        await self._s3.put_object(
            Bucket=self.settings.bucket,
            Key=place,
            Body=json.dumps(value, ensure_ascii=False).encode(),
            ContentType="application/json",
        )
        before: str | None = None
        pointing = False
        try:
            exists, before = await self._pointer(ns, key)
            if only_new and exists:
                await self.remove(place)
                return False
            pointing = True
            won, found, retried = await self._point(ns, key, place, exists, before)
        except BaseException:
            if pointing:
                await self._settle_unknown(ns, key, place, before)
            else:
                await self.remove(place)  # nothing was pointed at it
            raise
        if won:
            if before is not None and before != place:
                await self.remove(before)
            if retried and before is None and await self.read(place) is None:
                # Created, then deleted before the answer came back, then
                # created again by botocore's retry: the delete removed our
                # document, and overtook us. Undo the retry's item.
                await self._unpoint(ns, key, place)
            return True
        # Another write came between our look and ours: for only_new that
        # one won; otherwise it overtook ours, which was made and replaced.
        await self.remove(place)
        now = found.get(DOCUMENT, {}).get("S")
        if before is not None and now != before:
            # The item has moved on from what we read, perhaps by our own
            # write before its answer was lost; nothing can point back at it.
            await self.remove(before)
        return not only_new

    async def _point(
        self, ns: str, key: str, place: str, exists: bool, before: str | None
    ) -> tuple[bool, dict[str, Any], bool]:
        """Point the item at ``place``, from what it was seen to hold."""
        if before is not None:
            condition = f"{DOCUMENT} = :before"
            values = {":before": {"S": before}}
        elif exists:
            condition, values = f"attribute_not_exists({DOCUMENT})", {}
        else:
            condition, values = "attribute_not_exists(pk)", {}
        item = key_of(ns, key) | {DOCUMENT: {"S": place}}
        return await self.backend.insert_or_find(
            table_for(self.settings, ns), item, condition, values
        )

    async def _unpoint(self, ns: str, key: str, place: str) -> None:
        """Delete the item if it still names ``place``."""
        await self.backend.delete_if(ns, key, DOCUMENT, place)

    async def _settle_unknown(
        self, ns: str, key: str, place: str, before: str | None
    ) -> None:
        """After a write that failed without an answer: keep what the item names."""
        try:
            _, now = await self._pointer(ns, key)
        except Exception:
            log.warning("left %s, which %s %s may name", place, ns, key)
            return
        if now != place:
            await self.remove(place)
        if before is not None and now != before:
            # Moved on from what we read (by us or after us): unused now.
            await self.remove(before)

    async def delete(self, ns: str, key: str) -> dict[str, Any] | None:
        """Delete a record while it still names the document read first.

        When the item is gone or has moved on by then, another write came
        while this delete ran: it counts as made first, and the document it
        read, which nothing names any more, is removed.
        """
        for _ in range(READ_ROUNDS):
            exists, place = await self._pointer(ns, key)
            if not exists:
                return None
            if place is None:
                await self._unpoint_plain(ns, key)
                return None
            document = await self.read(place)
            if document is None:
                continue  # replaced between the two reads: look again
            await self._unpoint(ns, key, place)
            await self.remove(place)
            return document
        log.warning("%s %s kept changing while being deleted", ns, key)
        return None

    async def _unpoint_plain(self, ns: str, key: str) -> None:
        await self._dynamodb.delete_item(
            TableName=table_for(self.settings, ns), Key=key_of(ns, key)
        )

    async def read(self, place: str) -> dict[str, Any] | None:
        """The document at ``place``; None when it is not there (any more)."""
        try:
            response = await self._s3.get_object(Bucket=self.settings.bucket, Key=place)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as stream:
            document: dict[str, Any] = json.loads(await stream.read())
        return document

    async def remove(self, place: str) -> None:
        """Remove a document nothing points at any more; a failure only leaks it."""
        try:
            await self._s3.delete_object(Bucket=self.settings.bucket, Key=place)
        except Exception:
            log.warning("could not remove the unused document %s", place, exc_info=True)
