"""An application with its own activity handler, for MUMBLE_APPLICATION."""

from __future__ import annotations

from mumble import ActivityContext, Mumble, Settings

app = Mumble(Settings(origin="https://social.example", backend="aws"))
likes: list[str] = []


@app.on("Like")
async def remember_like(ctx: ActivityContext) -> None:
    likes.append(ctx.actor_id)
