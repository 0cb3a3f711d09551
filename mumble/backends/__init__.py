"""Storage and task backends behind one small contract (see :mod:`.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backend, Record, Task, TaskOutcome

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Backend", "Record", "Task", "TaskOutcome", "create_backend"]


def create_backend(settings: Settings) -> Backend:
    """Build the backend the settings name; imports only that backend's code."""
    if settings.backend == "embedded":
        from .embedded import EmbeddedBackend

        return EmbeddedBackend(settings.data_dir)
    if settings.backend == "aws":
        import os

        from .aws import AwsBackend, AwsSettings

        return AwsBackend(AwsSettings.from_environ(os.environ))
    raise ValueError(f"unknown backend {settings.backend!r}")
