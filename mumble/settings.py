"""Configuration of a Mumble application."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

#: Delays between delivery attempts, in seconds: about three days in all.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    24 * 3600,
    24 * 3600,
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a Mumble application needs to know about where it runs.

    ``origin`` is the canonical ``scheme://host[:port]`` of every id the
    application mints. It is never derived from request headers: behind a proxy
    those name the proxy, and ids that change with them break signatures.
    """

    origin: str
    data_dir: Path = Path("data")
    backend: str = "embedded"
    allow_private_addresses: bool = False
    max_body_bytes: int = 1024 * 1024
    body_timeout: float = 30.0
    fetch_timeout: float = 30.0
    #: Actors and their keys: asked for while a peer waits for its answer,
    #: which it does not wait long for.
    actor_fetch_timeout: float = 10.0
    connect_timeout: float = 5.0
    max_redirects: int = 3
    actor_cache_seconds: float = 24 * 3600
    delivery_concurrency: int = 32
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    host_failure_threshold: int = 5
    host_cooldown_seconds: float = 600.0
    auto_accept_follows: bool = True
    software_name: str = "mumble"

    def __post_init__(self) -> None:
        parts = urlsplit(self.origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"origin must be http(s)://host[:port], not {self.origin!r}"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("origin must not carry a path, query or fragment")
        object.__setattr__(self, "origin", f"{parts.scheme}://{parts.netloc.lower()}")

    @property
    def host(self) -> str:
        """The origin's ``host[:port]``, as it appears in handles."""
        return urlsplit(self.origin).netloc
