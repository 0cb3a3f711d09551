"""The AWS service clients one backend shares: S3, DynamoDB and SSM.

They are opened together on the running event loop and closed together.
Every call goes through botocore's retry handler (standard or adaptive
mode, from the settings): throttling, 5xx answers and dropped connections
are retried with exponential backoff and jitter before an error reaches
Mumble. Conditional-write failures are answers, not faults, and are never
retried.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from .settings import AwsSettings

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
POOL_CONNECTIONS = 64


@functools.cache
def _session() -> Any:
    """One botocore session per process: it loads each service model once."""
    # Imported here: loading botocore costs time nobody should pay for
    # importing Mumble.
    from aiobotocore.session import get_session  # type: ignore[import-untyped]

    return get_session()


class AwsClients:
    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._stack: contextlib.AsyncExitStack | None = None
        self._clients: dict[str, Any] = {}

    async def open(self) -> None:
        if self._stack is not None:
            return
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped]

        settings = self.settings
        session = _session()
        stack = contextlib.AsyncExitStack()
        try:
            for service in ("s3", "dynamodb", "ssm"):
                config = AioConfig(
                    retries={
                        "mode": settings.retry_mode,
                        "total_max_attempts": settings.max_attempts,
                    },
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    max_pool_connections=POOL_CONNECTIONS,
                    # A custom endpoint (moto) has no per-bucket host names.
                    s3={"addressing_style": "path"} if settings.endpoint_url else None,
                )
                self._clients[service] = await stack.enter_async_context(
                    session.create_client(
                        service,
                        region_name=settings.region,
                        endpoint_url=settings.endpoint_url,
                        config=config,
                    )
                )
        except BaseException:
            await stack.aclose()
            self._clients.clear()
            raise
        self._stack = stack

    async def close(self) -> None:
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        self._clients.clear()
        await stack.aclose()

    def _client(self, service: str) -> Any:
        try:
            return self._clients[service]
        except KeyError:
            raise RuntimeError("the AWS backend is not open") from None

    @property
    def s3(self) -> Any:
        return self._client("s3")

    @property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @property
    def ssm(self) -> Any:
        return self._client("ssm")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or "" for anything else."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


#: Error codes of AWS that mean "later", not "never".
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalServerError",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "ThrottledException",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "TransactionInProgressException",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether an AWS call failed in a way that another try may not."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        ConnectionError as BotoConnectionError,
    )
    from botocore.exceptions import HTTPClientError

    # Connections refused, dropped or timed out, on either side of sending.
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error_code(exc) in _TRANSIENT_CODES or (
        isinstance(status, int) and status >= 500
    )
