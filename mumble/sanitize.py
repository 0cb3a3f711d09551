"""Allow-list sanitising of HTML that comes from peers or from the owner."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

from .errors import BadRequest

_TAGS = {
    "p",
    "br",
    "a",
    "span",
    "em",
    "strong",
    "b",
    "i",
    "u",
    "s",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
}
_ATTRIBUTES = {"a": {"href", "class"}, "span": {"class"}, "ol": {"start"}}
_TEXT_FIELDS = ("content", "summary", "name")
MAX_TEXT_LENGTH = 100_000
MAX_TAGS = 5_000


def clean_html(value: str) -> str:
    """Keep only harmless tags and attributes, and only http(s) links."""
    import nh3

    return nh3.clean(
        value,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https"},
        link_rel="nofollow noopener noreferrer",
    )


def text_to_html(text: str) -> str:
    """Turn the owner's plain text into paragraphs, with links made clickable."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p]
    out = []
    for paragraph in paragraphs:
        escaped = html.escape(paragraph).replace("\n", "<br>")
        linked = re.sub(
            r"https?://[^\s<>&\"]+",
            lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>',
            escaped,
        )
        out.append(f"<p>{linked}</p>")
    return "".join(out)


def _check_size(value: str) -> None:
    # The sanitiser's time grows with the square of the nesting, so size and
    # markup are bounded before it runs.
    if len(value) > MAX_TEXT_LENGTH or value.count("<") > MAX_TAGS:
        raise BadRequest("the text is too large or has too much markup to show")


def _clean_object_sync(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    for name in _TEXT_FIELDS:
        if isinstance(out.get(name), str):
            _check_size(out[name])
            out[name] = clean_html(out[name])
        mapped = out.get(f"{name}Map")
        if isinstance(mapped, dict):
            for value in mapped.values():
                if isinstance(value, str):
                    _check_size(value)
            out[f"{name}Map"] = {
                str(k): clean_html(v) for k, v in mapped.items() if isinstance(v, str)
            }
    attachments = out.get("attachment")
    if isinstance(attachments, list):
        out["attachment"] = [_clean_field(item) for item in attachments]
    elif isinstance(attachments, dict):
        out["attachment"] = _clean_field(attachments)
    return out


def _clean_field(item: Any) -> Any:
    if isinstance(item, dict) and isinstance(item.get("value"), str):
        _check_size(item["value"])
        return item | {"value": clean_html(item["value"])}
    return item


async def clean_object(obj: dict[str, Any]) -> dict[str, Any]:
    """Sanitise an object's text fields, language maps and profile fields.

    Runs in a worker thread; raises :class:`BadRequest` for text too large
    or too deeply marked up to be worth sanitising.
    """
    return await asyncio.to_thread(_clean_object_sync, obj)
