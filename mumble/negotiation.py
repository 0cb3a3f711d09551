"""Content negotiation: who wants ActivityStreams and who wants a web page."""

from __future__ import annotations

from dataclasses import dataclass

ACTIVITY_JSON = "application/activity+json"
LD_JSON = "application/ld+json"
AS_PROFILE = "https://www.w3.org/ns/activitystreams"


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]
    q: float


def parse_accept(header: str) -> list[MediaRange]:
    """Parse an Accept header: parameters quoted or not, spaces or none, q-values."""
    ranges = []
    for part in _split(header, ","):
        pieces = _split(part, ";")
        if not pieces or not pieces[0]:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            params[name.strip().lower()] = value
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        ranges.append(MediaRange(pieces[0].lower(), params, q))
    return ranges


def _split(text: str, separator: str) -> list[str]:
    """Split on a separator outside double quotes, trimming each piece."""
    out, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            out.append(current.strip())
            current = ""
        else:
            current += char
    out.append(current.strip())
    return out


def _is_activity(r: MediaRange) -> bool:
    if r.type == ACTIVITY_JSON:
        return True
    if r.type == LD_JSON:
        profile = r.params.get("profile")
        return profile is None or AS_PROFILE in profile.split()
    return False


def wants_activity_json(header: str | None) -> bool:
    """True when ActivityStreams JSON is preferred at least as much as HTML."""
    if not header:
        return False
    ranges = parse_accept(header)
    best_as = max((r.q for r in ranges if _is_activity(r)), default=0.0)
    best_html = max(
        (r.q for r in ranges if r.type in ("text/html", "application/xhtml+xml")),
        default=0.0,
    )
    return best_as > 0 and best_as >= best_html


def wants_json(header: str | None) -> bool:
    """True when a client asks for plain JSON or ActivityStreams (not HTML)."""
    if wants_activity_json(header):
        return True
    ranges = parse_accept(header or "")
    json_q = max((r.q for r in ranges if r.type == "application/json"), default=0.0)
    html_q = max((r.q for r in ranges if r.type == "text/html"), default=0.0)
    return json_q > 0 and json_q >= html_q
