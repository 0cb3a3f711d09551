"""Allow-list sanitising of HTML that comes from peers or from the owner."""

from __future__ import annotations

import html
import re
from typing import Any

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


def clean_object(obj: dict[str, Any]) -> dict[str, Any]:
    """Sanitise an object's text fields, including their language maps."""
    out = dict(obj)
    for name in _TEXT_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = clean_html(out[name])
        mapped = out.get(f"{name}Map")
        if isinstance(mapped, dict):
            out[f"{name}Map"] = {
                str(k): clean_html(v) for k, v in mapped.items() if isinstance(v, str)
            }
    for item in (
        out.get("attachment", []) if isinstance(out.get("attachment"), list) else []
    ):
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            item["value"] = clean_html(item["value"])
    return out
