"""Faults AWS answers with, injected where botocore sends a request.

A handler on botocore's ``before-send`` event answers in place of the
service, so the client's own retry logic sees exactly what a throttled or
conflicting request gets from AWS.
"""

from __future__ import annotations

import json
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
    ) -> None:
        self.client = client
        self.event = f"before-send.{event}"
        self.answers = list(answers)
        self.calls = 0
        client.meta.events.register(self.event, self)

    def __call__(self, request: Any, **kwargs: Any) -> AioAWSResponse | None:
        self.calls += 1
        if not self.answers:
            return None
        status, headers, body = self.answers.pop(0)
        return AioAWSResponse(request.url, status, headers, _Body(body))

    def remove(self) -> None:
        self.client.meta.events.unregister(self.event, self)


class AppliedThenLost:
    """Lets the next ``times`` requests of one operation reach the service, then
    answers each with a 500, as if the service's answer had been lost.

    botocore then retries a request that has already taken effect.
    """

    def __init__(self, client: Any, event: str, times: int = 1) -> None:
        self.client = client
        self.event = f"before-send.{event}"
        self.left = times
        self.calls = 0
        client.meta.events.register(self.event, self)

    async def __call__(self, request: Any, **kwargs: Any) -> AioAWSResponse | None:
        import aiohttp

        self.calls += 1
        if not self.left:
            return None
        self.left -= 1
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
        status, answer_headers, body = dynamodb_error(500, "InternalServerError")
        return AioAWSResponse(request.url, status, answer_headers, _Body(body))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
