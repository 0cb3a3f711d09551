"""Lambda handlers: one per workflow step, and one for the streams' statistics.

Every handler is the same small layer around an async function of
:mod:`.steps` (or :func:`.counts.apply_stream`): read nothing at import;
at the first invocation of a Lambda container, read the settings from the
environment, open the backend's clients and keep them, with the event loop
they belong to, for the container's next invocations. The origin is
``MUMBLE_ORIGIN`` or else ``https://`` and the domain name in Parameter
Store, read once, by the same rule as the API function
(:meth:`~.backend.AwsBackend.origin`): both must mint the same ids. A
:class:`~mumble.federation.Federation`, whose caches (users, remote actors,
host health) would otherwise carry one invocation's findings into the next,
is built only when a step runs a task, for that task; its HTTP session is
closed when the task ends.

Handlers take what AWS delivers: Step Functions task input, S3 "Object
Created" through EventBridge (for a translate step wired straight to a
rule), and DynamoDB stream batches (``statistics``). An event that cannot be
read raises :class:`~.events.MalformedEvent`, with nothing changed.

``MUMBLE_APPLICATION`` may name the application (``module:attribute``, a
:class:`~mumble.Mumble`) whose activity handlers run after Mumble's own.

The tests call these handlers in-process on the events AWS sends, against
moto; that the same functions run inside Lambda is AWS's part.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...settings import Settings
from ..base import Task, TaskOutcome
from . import steps
from .clients import is_transient
from .counts import apply_stream
from .events import MalformedEvent
from .settings import PREFIX, AwsConfigurationError, AwsSettings
from .steps import Step, StepContext

if TYPE_CHECKING:
    from ...federation import Federation
    from ...inbox import Handler
    from .backend import AwsBackend

log = logging.getLogger("mumble.aws.handlers")

LambdaHandler = Callable[[Any, Any], dict[str, Any]]


class TransientAwsError(Exception):
    """S3, DynamoDB or SSM still failing after botocore's own retries.

    Lambda reports it by this class's name, which every workflow task
    retries with backoff (:data:`.workflows.TRANSIENT_AWS_ERROR`).
    """


class Container:
    """What one Lambda container keeps between invocations, built on first use.

    ``configure`` makes the framework's settings from the origin; by default
    they are the AWS backend's, private addresses allowed only when
    ``MUMBLE_ALLOW_PRIVATE_ADDRESSES`` says so.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        configure: Callable[[str], Settings] | None = None,
    ) -> None:
        self.environ = dict(environ)
        self.configure = configure
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backend: AwsBackend | None = None
        self._origin: str | None = None
        self._activity_handlers: Mapping[str, Sequence[Handler]] | None = None

    def invoke(self, step: Step, event: Any) -> dict[str, Any]:
        """Run one step to completion, as one Lambda invocation."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self.run(step, event))

    async def run(self, step: Step, event: Any) -> dict[str, Any]:
        backend = await self.backend()
        try:
            return await step(StepContext(backend, self.run_task), event)
        except MalformedEvent as exc:
            log.warning("refused a %s event: %s", step.__name__, exc.message)
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s: AWS is not answering yet: %s", step.__name__, exc)
            raise TransientAwsError(f"{step.__name__}: {exc}") from exc

    async def run_task(self, task: Task) -> TaskOutcome:
        """Run one task, as a step does: on a federation built for it alone.

        This is the runner every step of an invocation is given; the local
        driver (:meth:`AwsBackend.run_tasks`) can be given it too, so that
        staged work runs here exactly as in the workflows' functions.
        """
        backend = await self.backend()
        federation = await self._federation(backend)
        try:
            return await federation.run_task(task)
        finally:
            await federation.fetcher.close()

    async def backend(self) -> AwsBackend:
        if self._backend is None:
            from .backend import AwsBackend

            backend = AwsBackend(AwsSettings.from_environ(self.environ))
            await backend.open()
            self._backend = backend
        return self._backend

    async def settings(self) -> Settings:
        """The framework's settings of this container's tasks."""
        backend = await self.backend()
        if self._origin is None:
            self._origin = await backend.origin(self.environ.get(PREFIX + "ORIGIN"))
        if self.configure is not None:
            return self.configure(self._origin)
        return Settings(
            origin=self._origin,
            backend="aws",
            allow_private_addresses=backend.settings.allow_private_addresses,
        )

    async def _federation(self, backend: AwsBackend) -> Federation:
        from ...federation import Federation

        return Federation(await self.settings(), backend, self._application_handlers())

    def _application_handlers(self) -> Mapping[str, Sequence[Handler]]:
        if self._activity_handlers is None:
            name = self.environ.get(PREFIX + "APPLICATION", "")
            if not name:
                self._activity_handlers = {}
                return self._activity_handlers
            module, _, attribute = name.partition(":")
            try:
                application = getattr(importlib.import_module(module), attribute)
            except (ImportError, AttributeError, ValueError) as exc:
                raise AwsConfigurationError(
                    f"{PREFIX}APPLICATION names nothing importable: {name}"
                ) from exc
            self._activity_handlers = application.handlers
        return self._activity_handlers

    async def aclose(self) -> None:
        """Close the clients, on the loop that opened them (for tests)."""
        if self._backend is not None:
            backend, self._backend = self._backend, None
            await backend.close()

    def close(self) -> None:
        """Close the clients and the loop (for tests; Lambda just freezes)."""
        if self._loop is None:
            return
        self._loop.run_until_complete(self.aclose())
        self._loop.close()
        self._loop = None


_container: Container | None = None


def container() -> Container:
    """This process's container, reading the environment on first use."""
    global _container
    if _container is None:
        _container = Container(os.environ)
    return _container


def close_container() -> None:
    """Close and forget this process's container."""
    global _container
    if _container is not None:
        _container.close()
        _container = None


def lambda_handler(step: Step) -> LambdaHandler:
    """A Lambda handler (``event, context``) running ``step`` in the container."""

    def handle(event: Any, context: Any) -> dict[str, Any]:
        return container().invoke(step, event)

    handle.__name__ = handle.__qualname__ = step.__name__
    handle.__doc__ = step.__doc__
    return handle


translate_inbound = lambda_handler(steps.translate_inbound)
translate_outbound = lambda_handler(steps.translate_outbound)
expand = lambda_handler(steps.expand)
push = lambda_handler(steps.push)
settle = lambda_handler(steps.settle)
quarantine = lambda_handler(steps.quarantine)
statistics = lambda_handler(apply_stream)
