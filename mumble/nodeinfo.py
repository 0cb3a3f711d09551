"""NodeInfo 2.1 and its discovery document."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from .web_base import FEDERATION, json_response

PROFILE = "http://nodeinfo.diaspora.software/ns/schema/2.1"
DAY = 24 * 3600


def _version() -> str:
    try:
        return version("mumble")
    except PackageNotFoundError:
        return "0.0.0"


async def handle_discovery(request: web.Request) -> web.Response:
    fed = request.app[FEDERATION]
    doc = {"links": [{"rel": PROFILE, "href": f"{fed.settings.origin}/nodeinfo/2.1"}]}
    return json_response(
        doc,
        content_type="application/json",
        headers={"Access-Control-Allow-Origin": "*"},
    )


async def handle_nodeinfo(request: web.Request) -> web.Response:
    fed = request.app[FEDERATION]
    users = await fed.users.all()
    posts = 0
    for user in users:
        counts = await fed.backend.get("counts", user.username) or {}
        posts += int(counts.get("posts", 0))
    now = time.time()
    doc = {
        "version": "2.1",
        "software": {"name": fed.settings.software_name, "version": _version()},
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": False,
        "usage": {
            "users": {
                "total": len(users),
                "activeMonth": await fed.users.active_since(now - 30 * DAY),
                "activeHalfyear": await fed.users.active_since(now - 180 * DAY),
            },
            "localPosts": posts,
        },
        "metadata": {"nodeName": fed.settings.host, "singleUser": len(users) == 1},
    }
    return json_response(
        doc,
        content_type=f'application/json; profile="{PROFILE}#"',
        headers={"Access-Control-Allow-Origin": "*"},
    )
