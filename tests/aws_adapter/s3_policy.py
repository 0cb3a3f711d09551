"""S3's checks of a browser POST upload, in front of moto, which skips them.

moto stores whatever key a form POST names: it checks neither the policy's
signature nor its conditions. This gate checks what S3 checks before it
stores anything (the Signature V4 of the policy, its expiration, every
condition, and that every form field is covered by one), answers 403 or
400 as S3 does, and passes what it accepts on to moto unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

# Fields S3 never requires a condition for.
UNCONDITIONED = {"policy", "x-amz-signature", "file"}


class Refused(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def check_form(bucket: str, fields: dict[str, str], size: int, secret: str) -> None:
    """Raise Refused unless S3 would store this upload."""
    encoded = fields.get("policy", "")
    if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise Refused(403, "InvalidAccessKeyId")
    _key_id, date, region, service, _ = fields.get("x-amz-credential", "////").split(
        "/"
    )
    expected = hmac.new(
        signing_key(secret, date, region, service), encoded.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, fields.get("x-amz-signature", "")):
        raise Refused(403, "SignatureDoesNotMatch")
    policy = json.loads(base64.b64decode(encoded))
    expiration = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    if expiration.replace(tzinfo=UTC) < datetime.now(UTC):
        raise Refused(403, "AccessDenied")
    covered = set()
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, value),) = condition.items()
            op, name = "eq", name.lower()
        elif condition[0] == "content-length-range":
            if not condition[1] <= size <= condition[2]:
                raise Refused(400, "EntityTooLarge" if size else "EntityTooSmall")
            continue
        else:
            op, name, value = (
                condition[0],
                condition[1].lstrip("$").lower(),
                condition[2],
            )
        covered.add(name)
        actual = bucket if name == "bucket" else fields.get(name)
        if actual is None:
            raise Refused(403, "AccessDenied")
        if op == "eq" and actual != value:
            raise Refused(403, "AccessDenied")
        if op == "starts-with" and not actual.startswith(value):
            raise Refused(403, "AccessDenied")
    for name in fields:
        if name not in UNCONDITIONED | covered and not name.startswith("x-ignore-"):
            raise Refused(403, "AccessDenied")


def gate(moto_endpoint: str, secret: str) -> web.Application:
    """An S3 endpoint for POST uploads that enforces the policy, backed by moto."""

    async def upload(request: web.Request) -> web.StreamResponse:
        bucket = request.match_info["bucket"]
        form = await request.post()
        fields: dict[str, str] = {}
        names: dict[str, str] = {}
        file: Any = None
        for name, value in form.items():
            if isinstance(value, str):
                fields[name.lower()] = value
                names[name.lower()] = name
            else:
                file = value
        if file is None:
            return web.Response(status=400, text="InvalidArgument")
        content = file.file.read()
        try:
            check_form(bucket, fields, len(content), secret)
        except Refused as exc:
            return web.Response(status=exc.status, text=exc.code)
        data = aiohttp.FormData()
        for name, value in fields.items():
            data.add_field(names[name], value)
        data.add_field("file", content, filename=file.filename)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{moto_endpoint}/{bucket}", data=data) as resp,
        ):
            return web.Response(status=resp.status, body=await resp.read())

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/{bucket}", upload)
    return app
