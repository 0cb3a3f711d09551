"""The application object a Mumble server is built from."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .auth import OwnerAuth
from .backends import Backend, create_backend
from .federation import Federation
from .inbox import Handler
from .settings import Settings
from .web import add_routes, error_middleware
from .web_base import FEDERATION

ACTIVITY_TYPES = frozenset(
    {
        "Follow",
        "Undo",
        "Create",
        "Like",
        "Announce",
        "Delete",
        "Update",
        "Accept",
        "Reject",
        "Add",
        "Remove",
        "Block",
        "Move",
        "Flag",
    }
)


class Mumble:
    """An ActivityPub server: register handlers per activity type, then serve.

    Mumble's own bookkeeping for each activity (followers, replies, counts,
    the Accept of a Follow) runs first; a registered handler runs after it
    succeeded, once per activity, however often the activity was delivered::

        app = Mumble(Settings(origin="https://example.com"))

        @app.on("Create")
        async def on_create(ctx: ActivityContext) -> None:
            ...

        web.run_app(app.web_app())
    """

    def __init__(
        self,
        settings: Settings,
        *,
        backend: Backend | None = None,
        auth: Callable[[Federation], OwnerAuth] | None = None,
    ) -> None:
        self.settings = settings
        self._backend = backend
        self._auth = auth
        self.handlers: dict[str, list[Handler]] = defaultdict(list)

    def on(self, activity_type: str) -> Callable[[Handler], Handler]:
        """Register a handler for an activity type."""
        if activity_type not in ACTIVITY_TYPES:
            raise ValueError(f"unknown activity type {activity_type!r}")

        def register(handler: Handler) -> Handler:
            self.handlers[activity_type].append(handler)
            return handler

        return register

    def federation(self) -> Federation:
        """A federation over the configured backend, not yet opened."""
        backend = self._backend or create_backend(self.settings)
        fed = Federation(self.settings, backend, self.handlers)
        if self._auth is not None:
            fed.auth = self._auth(fed)
        return fed

    def web_app(self, *, worker: bool = True) -> web.Application:
        """The aiohttp application; with ``worker``, it also runs persisted tasks."""
        fed = self.federation()
        app = web.Application(
            middlewares=[error_middleware], client_max_size=self.settings.max_body_bytes
        )
        app[FEDERATION] = fed
        add_routes(app)

        async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
            await fed.open()
            if worker:
                fed.start_worker()
            yield
            await fed.close()

        app.cleanup_ctx.append(lifecycle)
        return app
