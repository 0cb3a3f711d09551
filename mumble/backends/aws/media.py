"""Presigned uploads: the owner's client sends media straight to S3.

The owner asks ``POST /users/{username}/media`` (authenticated by the
federation's :class:`~mumble.auth.OwnerAuth`) for a presigned POST form.
S3 accepts that form only for a key under ``media/<username>/<random>/``,
of the media type asked for, up to the size limit, until it expires: the
same confinement the identity pool's role gives a client that uploads with
credentials of its own. Nothing passes through the function but the form.

Ask with ``{"mediaType": "image/png"}``; post every returned field
unchanged, then the file as the last field, to the returned ``url``. The key
ends in ``${filename}``, which S3 replaces with the uploaded file's name;
any other key under ``keyPrefix`` is accepted too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ...errors import BadRequest, UnsupportedMediaType
from ...jsonld import parse_json
from ...web_base import json_response, owner_or_401, read_body

log = logging.getLogger("mumble.aws.media")

DEFAULT_MAX_BYTES = 40 * 1024 * 1024
DEFAULT_MEDIA_TYPES = frozenset(
    {
        "image/avif",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "video/mp4",
        "video/webm",
        "audio/mpeg",
        "audio/ogg",
    }
)


@dataclass(frozen=True, kw_only=True)
class UploadPolicy:
    """What a presigned upload may be: bucket, prefix, size, types, lifetime."""

    bucket: str
    prefix: str = "media"
    max_bytes: int = DEFAULT_MAX_BYTES
    expires_seconds: int = 600
    media_types: frozenset[str] = DEFAULT_MEDIA_TYPES

    def user_prefix(self, username: str) -> str:
        return f"{self.prefix.strip('/')}/{username}/"


@dataclass(frozen=True)
class PresignedUpload:
    """A form the client posts to S3 as it is, with the file as the last field."""

    url: str
    fields: Mapping[str, str]
    key_prefix: str
    max_bytes: int
    expires_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "fields": dict(self.fields),
            "keyPrefix": self.key_prefix,
            "maxBytes": self.max_bytes,
            "expiresAt": self.expires_at,
        }


class S3Presigner(Protocol):
    """The one call of an S3 client (aiobotocore's) that presigning needs."""

    async def generate_presigned_post(
        self,
        *,
        Bucket: str,
        Key: str,
        Fields: dict[str, Any] | None = None,
        Conditions: list[Any] | None = None,
        ExpiresIn: int = 3600,
    ) -> dict[str, Any]: ...


async def presign_upload(
    s3: S3Presigner, policy: UploadPolicy, username: str, media_type: str
) -> PresignedUpload:
    """A presigned POST for one file of ``media_type`` under the user's prefix."""
    if media_type not in policy.media_types:
        raise UnsupportedMediaType(f"uploads of {media_type or 'nothing'} are refused")
    # A fresh folder per form: one form cannot overwrite another's uploads.
    prefix = f"{policy.user_prefix(username)}{secrets.token_hex(16)}/"
    post = await s3.generate_presigned_post(
        Bucket=policy.bucket,
        # botocore turns a key ending in ${filename} into a starts-with
        # condition on the prefix, instead of an exact key.
        Key=prefix + "${filename}",
        Fields={"Content-Type": media_type},
        Conditions=[
            ["starts-with", "$key", prefix],
            {"Content-Type": media_type},
            ["content-length-range", 1, policy.max_bytes],
        ],
        ExpiresIn=policy.expires_seconds,
    )
    return PresignedUpload(
        url=post["url"],
        fields={str(k): str(v) for k, v in post["fields"].items()},
        key_prefix=prefix,
        max_bytes=policy.max_bytes,
        expires_at=int(time.time()) + policy.expires_seconds,
    )


class MediaUploads:
    """The upload endpoint's policy, and an S3 client opened on first use."""

    def __init__(
        self,
        policy: UploadPolicy,
        open_client: Callable[[], AbstractAsyncContextManager[S3Presigner]],
    ) -> None:
        self.policy = policy
        self._open_client = open_client
        self._client: S3Presigner | None = None
        self._stack: AsyncExitStack | None = None
        self._lock: asyncio.Lock | None = None

    async def client(self) -> S3Presigner:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(self._open_client())
                self._stack = stack
            return self._client

    async def presign(self, username: str, media_type: str) -> PresignedUpload:
        return await presign_upload(
            await self.client(), self.policy, username, media_type
        )

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self._client = None


MEDIA_UPLOADS = web.AppKey("media_uploads", MediaUploads)


async def handle_presign(request: web.Request) -> web.StreamResponse:
    """Answer the owner with a presigned upload form, as JSON."""
    _fed, user = await owner_or_401(request)
    doc = parse_json(await read_body(request))
    media_type = doc.get("mediaType") if isinstance(doc, dict) else None
    if not isinstance(media_type, str):
        raise BadRequest('the body needs a "mediaType"')
    upload = await request.app[MEDIA_UPLOADS].presign(
        user.username, media_type.strip().lower()
    )
    log.info("presigned an upload of %s for %s", media_type, user.username)
    return json_response(upload.to_json(), content_type="application/json")


def add_media_routes(app: web.Application, uploads: MediaUploads) -> None:
    """Serve presigned uploads on ``app``; the S3 client closes with it."""
    app[MEDIA_UPLOADS] = uploads

    async def close(_app: web.Application) -> None:
        await uploads.close()

    app.router.add_post("/users/{username}/media", handle_presign)
    app.on_cleanup.append(close)
