"""What every HTTP endpoint shares: the app key, JSON answers, common look-ups."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from .errors import BadRequest, NotFound, RequestTimeout, Unauthorized
from .federation import Federation
from .negotiation import ACTIVITY_JSON
from .users import LocalUser

FEDERATION = web.AppKey("federation", Federation)


def json_response(
    doc: Any,
    *,
    status: int = 200,
    content_type: str = ACTIVITY_JSON,
    headers: dict[str, str] | None = None,
) -> web.Response:
    out = {"Content-Type": content_type, "Vary": "Accept"} | (headers or {})
    # Error messages quote what peers sent, which may hold a byte that was
    # not UTF-8; the answer must still go out.
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8", "replace")
    return web.Response(body=body, status=status, headers=out)


async def read_body(request: web.Request) -> bytes:
    """The request's body, if it arrives within the settings' ``body_timeout``.

    A client that sends a byte now and then would otherwise hold a
    connection, and the memory of a body, for as long as it likes.
    """
    timeout = request.app[FEDERATION].settings.body_timeout
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout:g} s") from None
    except (RequestPayloadError, HttpProcessingError) as exc:
        # A compressed body that does not decompress, or a body cut short.
        raise BadRequest(f"the body could not be read: {exc}") from None
    except ConnectionResetError:
        raise BadRequest("the client went away before its body arrived") from None


async def user_or_404(request: web.Request) -> tuple[Federation, LocalUser]:
    fed = request.app[FEDERATION]
    user = await fed.users.get(request.match_info["username"])
    if user is None:
        raise NotFound("no such user")
    return fed, user


async def owner_or_401(request: web.Request) -> tuple[Federation, LocalUser]:
    """The user of the path, when the bearer token proves the caller owns it."""
    fed, user = await user_or_404(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this needs the owner's bearer token")
    if not await fed.auth.is_owner(user.username, token.strip()):
        raise Unauthorized("the token is not the owner's")
    return fed, user


def page_param(request: web.Request) -> str | None:
    page = request.query.get("page")
    if page is not None and (not page or len(page) > 512):
        raise BadRequest("malformed page parameter")
    return page


async def count(fed: Federation, key: str, name: str) -> int:
    record = await fed.backend.get("counts", key) or {}
    return int(record.get(name, 0))
