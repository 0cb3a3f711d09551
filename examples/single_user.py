"""A single-user ActivityPub server built on Mumble.

One person runs it and gets ``@name@their.domain``: Mastodon and other
servers can find the account, follow it, and receive its posts. Run it with::

    python examples/single_user.py serve --user alice --origin https://example.com

and act as the owner from another terminal::

    python examples/single_user.py post "Hello, fediverse"
    python examples/single_user.py follow someone@example.social

Mumble does the federation bookkeeping itself (accepting follows, counting
replies, likes and shares); this application adds what a person running a
server wants to see: a line in the log for each interaction with them.
"""

from __future__ import annotations

import logging
import sys

from mumble import ActivityContext, Mumble, Settings
from mumble.cli import main
from mumble.jsonld import id_of

log = logging.getLogger("example")


def create(settings: Settings) -> Mumble:
    app = Mumble(settings)

    @app.on("Follow")
    async def new_follower(ctx: ActivityContext) -> None:
        log.info("new follower: %s", ctx.actor_id)

    @app.on("Create")
    async def reply_or_mention(ctx: ActivityContext) -> None:
        obj = ctx.object if isinstance(ctx.object, dict) else {}
        if obj.get("inReplyTo"):
            log.info("%s replied to %s", ctx.actor_id, id_of(obj.get("inReplyTo")))

    @app.on("Like")
    async def liked(ctx: ActivityContext) -> None:
        log.info("%s liked %s", ctx.actor_id, id_of(ctx.object))

    @app.on("Announce")
    async def shared(ctx: ActivityContext) -> None:
        log.info("%s shared %s", ctx.actor_id, id_of(ctx.object))

    return app


if __name__ == "__main__":
    sys.exit(main(app_factory=create))
