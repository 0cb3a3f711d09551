"""Mumble: an ActivityPub framework on aiohttp."""

from .app import Mumble
from .errors import (
    BadRequest,
    FetchError,
    Forbidden,
    Gone,
    MumbleError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from .federation import Federation
from .inbox import ActivityContext
from .settings import Settings

__all__ = [
    "ActivityContext",
    "BadRequest",
    "Federation",
    "FetchError",
    "Forbidden",
    "Gone",
    "Mumble",
    "MumbleError",
    "NotFound",
    "PayloadTooLarge",
    "Settings",
    "Unauthorized",
    "UnsupportedMediaType",
]
