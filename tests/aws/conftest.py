from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiobotocore.endpoint import AioEndpoint

from mumble.backends.aws import AwsBackend, AwsSettings

from .service import MotoService, require_aws_tests, shared_service, stop_shared_service


@pytest.fixture(scope="session")
def moto_service() -> Iterator[MotoService]:
    """moto in server mode on 127.0.0.1; skipped unless MUMBLE_TEST_AWS=moto."""
    require_aws_tests()
    yield shared_service()
    stop_shared_service()


@pytest.fixture
def aws_settings(moto_service: MotoService) -> AwsSettings:
    """A reset account with the deployment's bucket, tables and parameters."""
    return moto_service.create_resources()


@pytest.fixture
async def backend(aws_settings: AwsSettings) -> AsyncIterator[AwsBackend]:
    b = AwsBackend(aws_settings)
    await b.open()
    yield b
    await b.close()


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays botocore waits before retrying; recorded, and cut short."""
    delays: list[float] = []
    sleep = AioEndpoint._sleep

    async def record(self: AioEndpoint, amount: float) -> None:
        delays.append(amount)
        await sleep(self, min(amount, 0.01))

    monkeypatch.setattr(AioEndpoint, "_sleep", record)
    return delays
