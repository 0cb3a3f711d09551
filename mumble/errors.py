"""Errors that carry the HTTP status they are answered with.

Every error Mumble raises on purpose derives from :class:`MumbleError`::

    MumbleError
    ├── BadRequest (ValueError)            400  malformed input
    │   ├── RequestTimeout                 408  a body too slow to arrive
    │   ├── PayloadTooLarge                413
    │   └── UnsupportedMediaType           415
    ├── Unauthorized (PermissionError)     401  missing or inauthentic signature
    ├── Forbidden (PermissionError)        403
    ├── NotFound (LookupError)             404
    ├── Gone (LookupError)                 410
    └── FetchError (ConnectionError)       502  a remote document could not be had
"""

from __future__ import annotations


class MumbleError(Exception):
    """Root of Mumble's errors; ``status`` is the HTTP answer it maps to."""

    status = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__


class BadRequest(MumbleError, ValueError):
    status = 400


class RequestTimeout(BadRequest):
    status = 408


class PayloadTooLarge(BadRequest):
    status = 413


class UnsupportedMediaType(BadRequest):
    status = 415


class Unauthorized(MumbleError, PermissionError):
    status = 401


class Forbidden(MumbleError, PermissionError):
    status = 403


class NotFound(MumbleError, LookupError):
    status = 404


class Gone(MumbleError, LookupError):
    status = 410


class FetchError(MumbleError, ConnectionError):
    """A remote document could not be fetched, parsed or trusted."""

    status = 502
