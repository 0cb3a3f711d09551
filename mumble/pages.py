"""The few web pages a person sees: a profile and a post."""

from __future__ import annotations

import html
from typing import Any

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;"
    "padding:0 1rem;"
    "color:#222}header{border-bottom:1px solid #ddd;margin-bottom:1rem}"
    "article{border-bottom:1px solid #eee;padding:.5rem 0}"
    ".meta{color:#666;font-size:.85rem}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _post(note: dict[str, Any], counts: dict[str, int]) -> str:
    # Content was sanitised when the post was stored; it is shown as HTML.
    content = note.get("content", "")
    link = html.escape(str(note.get("id", "")), quote=True)
    when = html.escape(str(note.get("published", "")))
    return (
        f'<article class="post"><div class="content">{content}</div>'
        f'<p class="meta"><a href="{link}">{when}</a> · '
        f'<span class="replies">{_count(counts["replies"], "reply", "replies")}'
        "</span> · "
        f'<span class="likes">{_count(counts["likes"], "like", "likes")}</span> · '
        f'<span class="shares">{_count(counts["shares"], "share", "shares")}'
        "</span></p></article>"
    )


def profile_page(
    actor: dict[str, Any],
    handle: str,
    stats: dict[str, int],
    posts: list[tuple[dict[str, Any], dict[str, int]]],
) -> str:
    name = html.escape(str(actor.get("name") or actor.get("preferredUsername")))
    header = (
        f'<header><h1 class="name">{name}</h1>'
        f'<p class="handle">{html.escape(handle)}</p>'
        '<p class="stats">'
        + " · ".join(
            f'<span class="{key}">{_count(stats.get(key, 0), one, key)}</span>'
            for key, one in (
                ("followers", "follower"),
                ("following", "following"),
                ("posts", "post"),
            )
        )
        + "</p></header>"
    )
    items = (
        "".join(_post(note, counts) for note, counts in posts) or "<p>No posts yet.</p>"
    )
    return _page(f"{name} ({handle})", header + f"<main>{items}</main>")


def post_page(note: dict[str, Any], counts: dict[str, int], author: str) -> str:
    header = f'<header><p class="author">{html.escape(author)}</p></header>'
    return _page(f"Post by {author}", header + f"<main>{_post(note, counts)}</main>")
