"""The URLs of local things, all derived from the configured origin."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

USERNAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class LocalRef:
    """What a local URL points at: ``kind`` is actor, post, activity or collection."""

    kind: str
    username: str
    item: str = ""


@dataclass(frozen=True)
class Ids:
    origin: str

    def actor(self, username: str) -> str:
        return f"{self.origin}/users/{username}"

    def key(self, username: str) -> str:
        return f"{self.actor(username)}#main-key"

    def inbox(self, username: str) -> str:
        return f"{self.actor(username)}/inbox"

    def outbox(self, username: str) -> str:
        return f"{self.actor(username)}/outbox"

    def followers(self, username: str) -> str:
        return f"{self.actor(username)}/followers"

    def following(self, username: str) -> str:
        return f"{self.actor(username)}/following"

    def profile(self, username: str) -> str:
        return f"{self.origin}/@{username}"

    def post(self, username: str, post_id: str) -> str:
        return f"{self.actor(username)}/posts/{post_id}"

    def activity(self, username: str, activity_id: str) -> str:
        return f"{self.actor(username)}/activities/{activity_id}"

    @property
    def shared_inbox(self) -> str:
        return f"{self.origin}/inbox"

    def is_local(self, url: object) -> bool:
        return isinstance(url, str) and (
            url == self.origin or url.startswith(self.origin + "/")
        )

    def parse(self, url: object) -> LocalRef | None:
        """Tell what a local URL names; None for remote or unknown URLs."""
        if not self.is_local(url):
            return None
        assert isinstance(url, str)
        path = urlsplit(url).path
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "users":
            return None
        username = parts[1]
        if len(parts) == 2:
            return LocalRef("actor", username)
        if len(parts) == 4 and parts[2] in ("posts", "activities"):
            return LocalRef(parts[2][:-1], username, parts[3])
        if len(parts) == 3:
            return LocalRef("collection", username, parts[2])
        return None


#: The longest IRI taken from a peer, in bytes of UTF-8. Records are keyed by
#: these, alone or with a local id and a time, within the backend's key limit.
MAX_IRI_BYTES = 512


def http_url(value: object) -> str | None:
    """The value if it is a well-formed http(s) URL with a host, else None."""
    if not isinstance(value, str) or len(value) > MAX_IRI_BYTES:
        return None
    try:
        if len(value.encode()) > MAX_IRI_BYTES:
            return None
    except UnicodeEncodeError:
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    if any(c.isspace() or ord(c) < 32 for c in value):
        return None
    return value


def too_long(value: object) -> bool:
    """Whether a peer's IRI is past :data:`MAX_IRI_BYTES`, to say so plainly."""
    return isinstance(value, str) and (
        len(value) > MAX_IRI_BYTES
        or len(value.encode(errors="surrogatepass")) > MAX_IRI_BYTES
    )


def same_origin(a: object, b: object) -> bool:
    """Whether two URLs share scheme, host and port; malformed URLs share nothing."""
    if http_url(a) is None or http_url(b) is None:
        return False
    pa, pb = urlsplit(str(a)), urlsplit(str(b))
    return (pa.scheme, pa.netloc.lower()) == (pb.scheme, pb.netloc.lower())
