"""Faults AWS answers with, injected where botocore sends a request.

A handler on botocore's ``before-send`` event answers in place of the
service, so the client's own retry logic sees exactly what a throttled or
conflicting request gets from AWS.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.awsrequest import AioAWSResponse


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        return self.data


def dynamodb_error(status: int, code: str) -> tuple[int, dict[str, str], bytes]:
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}
    headers = {"content-type": "application/x-amz-json-1.0"}
    return status, headers, json.dumps(body).encode()


def s3_error(status: int, code: str) -> tuple[int, dict[str, str], bytes]:
    body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>"
    return status, {"content-type": "application/xml"}, body.encode()


class Faults:
    """Answers the next requests of one operation with ``answers``, then lets go."""

    def __init__(
        self,
        client: Any,
        event: str,
        answers: list[tuple[int, dict[str, str], bytes]],
        *,
        match: Callable[[Any], bool] = lambda request: True,
    ) -> None:
        self.client = client
        self.event = f"before-send.{event}"
        self.answers = list(answers)
        self.match = match
        self.calls = 0
        client.meta.events.register(self.event, self)

    def __call__(self, request: Any, **kwargs: Any) -> AioAWSResponse | None:
        if not self.match(request):
            return None
        self.calls += 1
        if not self.answers:
            return None
        status, headers, body = self.answers.pop(0)
        return AioAWSResponse(request.url, status, headers, _Body(body))

    def remove(self) -> None:
        self.client.meta.events.unregister(self.event, self)


class AppliedThenLost:
    """Lets the next matching request of one operation reach the service, then
    answers it with a 500, as if the service's answer had been lost.

    botocore then retries a request that has already taken effect. ``then``
    runs between the two (another writer getting in); with ``keep_failing``,
    every later matching request is answered 500 too, so botocore gives up.
    """

    def __init__(
        self,
        client: Any,
        event: str,
        times: int = 1,
        *,
        then: Callable[[], Awaitable[Any]] | None = None,
        keep_failing: bool = False,
        match: Callable[[Any], bool] = lambda request: True,
    ) -> None:
        self.client = client
        self.event = f"before-send.{event}"
        self.left = times
        self.then = then
        self.keep_failing = keep_failing
        self.match = match
        self.calls = 0
        client.meta.events.register(self.event, self)

    async def __call__(self, request: Any, **kwargs: Any) -> AioAWSResponse | None:
        if not self.match(request):
            return None
        self.calls += 1
        if self.left:
            self.left -= 1
            await _send(request)
            if self.then is not None:
                await self.then()
        elif not self.keep_failing:
            return None
        status, answer_headers, body = dynamodb_error(500, "InternalServerError")
        return AioAWSResponse(request.url, status, answer_headers, _Body(body))

    def remove(self) -> None:
        self.client.meta.events.unregister(self.event, self)


class Before:
    """Runs ``action`` once, just before the first matching request is sent."""

    def __init__(
        self,
        client: Any,
        event: str,
        action: Callable[[], Awaitable[Any]],
        *,
        match: Callable[[Any], bool] = lambda request: True,
    ) -> None:
        self.action = action
        self.match = match
        self.done = False
        client.meta.events.register(f"before-send.{event}", self)

    async def __call__(self, request: Any, **kwargs: Any) -> None:
        if not self.done and self.match(request):
            self.done = True
            await self.action()


async def _send(request: Any) -> None:
    """Send a prepared botocore request to the service as it is."""
    import aiohttp

    headers = {
        _text(name): _text(value)
        for name, value in request.headers.items()
        if _text(name).lower() != "content-length"
    }
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            request.method, request.url, headers=headers, data=request.body
        ) as response,
    ):
        assert response.status < 300, await response.text()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
