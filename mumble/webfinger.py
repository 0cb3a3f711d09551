"""WebFinger (RFC 7033): answering for local users, and looking up remote ones."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from aiohttp import web

from .errors import BadRequest, FetchError, NotFound
from .ids import http_url
from .web_base import FEDERATION, json_response

if TYPE_CHECKING:
    from .federation import Federation

JRD = "application/jrd+json"
_HANDLE = re.compile(r"^@?([^@\s/]+)@([^@\s/]+)$")


def parse_handle(resource: str) -> tuple[str, str] | None:
    """``acct:user@host``, ``user@host`` or ``@user@host`` as (user, host)."""
    value = resource.strip()
    if value.lower().startswith("acct:"):
        value = value[5:]
    match = _HANDLE.match(value)
    return (match.group(1), match.group(2).lower()) if match else None


def local_username(fed: Federation, resource: str) -> str | None:
    """The local username a resource names, in any of the forms peers use."""
    handle = parse_handle(resource)
    if handle is not None:
        user, host = handle
        return user.lower() if host == fed.settings.host.lower() else None
    if http_url(resource) is None:
        return None
    parts = urlsplit(resource)
    origin = f"{parts.scheme}://{parts.netloc.lower()}"
    if origin != fed.settings.origin:
        return None
    path = parts.path.rstrip("/")
    for prefix in ("/users/", "/@"):
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            return path[len(prefix) :].lower()
    return None


async def handle_webfinger(request: web.Request) -> web.Response:
    fed = request.app[FEDERATION]
    resource = request.query.get("resource", "")
    if not resource:
        raise BadRequest("the resource parameter is missing")
    username = local_username(fed, resource)
    user = await fed.users.get(username) if username else None
    if user is None:
        raise NotFound("no such user here")
    actor = fed.ids.actor(user.username)
    doc = {
        "subject": f"acct:{user.username}@{fed.settings.host}",
        "aliases": [actor, fed.ids.profile(user.username)],
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": actor},
            {
                "rel": "http://webfinger.net/rel/profile-page",
                "type": "text/html",
                "href": fed.ids.profile(user.username),
            },
        ],
    }
    return json_response(
        doc, content_type=JRD, headers={"Access-Control-Allow-Origin": "*"}
    )


async def resolve(fed: Federation, handle: str) -> str:
    """The actor URL of ``user@host`` or an actor URL; looked up over WebFinger."""
    if handle.startswith(("https://", "http://")):
        if http_url(handle) is None:
            raise BadRequest(f"{handle[:200]!r} is not a valid URL")
        return handle
    parsed = parse_handle(handle)
    if parsed is None:
        raise BadRequest(f"{handle!r} is neither a handle nor a URL")
    user, host = parsed
    scheme = (
        "http"
        if fed.settings.allow_private_addresses and _looks_local(host)
        else "https"
    )
    url = f"{scheme}://{host}/.well-known/webfinger?resource={quote(f'acct:{user}@{host}')}"
    if http_url(url) is None:
        raise BadRequest(f"{handle[:200]!r} names no valid host")
    doc = await fed.fetcher.get_json(url, accept=JRD, sign=False)
    for link in doc.get("links", []) if isinstance(doc.get("links"), list) else []:
        if (
            isinstance(link, dict)
            and link.get("rel") == "self"
            and str(link.get("type", "")).split(";")[0].strip()
            in ("application/activity+json", "application/ld+json")
            and isinstance(link.get("href"), str)
        ):
            return str(link["href"])
    raise FetchError(f"{handle} has no ActivityPub actor")


def _looks_local(host: str) -> bool:
    name = host.split(":", 1)[0]
    return name in ("localhost", "127.0.0.1", "[::1]") or name.endswith(".localhost")
