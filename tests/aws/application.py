"""An application with its own activity handler, for MUMBLE_APPLICATION."""

from __future__ import annotations

from mumble import ActivityContext, Mumble, Settings

app = Mumble(Settings(origin="https://social.example", backend="aws"))
likes: list[str] = []


@app.on("Like")
async def remember_like(ctx: ActivityContext) -> None:
    likes.append(ctx.actor_id)


#: An application whose handler publishes: it thanks every liker in a post.
thankful = Mumble(Settings(origin="https://social.example", backend="aws"))


@thankful.on("Like")
async def thank(ctx: ActivityContext) -> None:
    await ctx.federation.posts.create(
        "alice", {"type": "Note", "content": f"<p>thanks, {ctx.actor_id}</p>"}
    )
