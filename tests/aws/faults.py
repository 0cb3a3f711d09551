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
