"""Fixtures of the end-to-end tests on the AWS path: one deployment per module.

The deployment (moto, the gateway, the API function, the workflows) lasts
for a module; each test gets its own owner (a Cognito account and a Mumble
user, named afresh) and its own Fedify peer, so nothing one test leaves
behind is seen by the next.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from mumble.backends.aws import AwsBackend, AwsSettings
from mumble.users import Users
from tests.aws.conftest import moto_service  # noqa: F401 - the session's moto
from tests.aws.service import MotoService
from tests.interop.fedify_peer import FedifyPeer, node_available

from .harness import AwsDeployment


@pytest.fixture(scope="module")
def deployment(
    moto_service: MotoService,  # noqa: F811
) -> Iterator[AwsDeployment]:
    """Skipped unless MUMBLE_TEST_AWS=moto (by ``moto_service``) and node is there."""
    if not node_available():
        pytest.skip("node and npm are needed for the Fedify peer")
    with AwsDeployment.run(moto_service) as running:
        yield running


@dataclass
class Owner:
    """A Mumble user of the deployment, and its owner's Cognito ID token."""

    deployment: AwsDeployment
    username: str
    id_token: str
    backend: AwsBackend
    session: aiohttp.ClientSession
    #: The gateway's first exchange of this owner's test.
    first_exchange: int = 0

    @property
    def actor(self) -> str:
        return f"{self.deployment.origin}/users/{self.username}"

    async def get(self, url: str) -> tuple[int, Any]:
        """A GET through the gateway, as ActivityPub clients ask."""
        if url.startswith("/"):
            url = self.deployment.origin + url
        headers = {"Accept": "application/activity+json"}
        async with self.session.get(url, headers=headers) as response:
            body = await response.read()
            if response.content_type.endswith("json"):
                return response.status, json.loads(body)
            return response.status, body.decode()

    async def outbox(self, activity: dict[str, Any]) -> tuple[int, Any]:
        """POST to the owner's outbox through the gateway, with the ID token."""
        headers = {
            "Authorization": f"Bearer {self.id_token}",
            "Content-Type": "application/activity+json",
        }
        async with self.session.post(
            f"{self.actor}/outbox", data=json.dumps(activity), headers=headers
        ) as response:
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def owner(deployment: AwsDeployment) -> AsyncIterator[Owner]:
    """A new owner: the Cognito account, then the user, as the admin command does."""
    username = f"owner{uuid.uuid4().hex[:8]}"
    id_token = await asyncio.to_thread(deployment.owners.sign_up, username)
    backend = AwsBackend(AwsSettings.from_environ(deployment.environ))
    await backend.open()
    async with aiohttp.ClientSession() as session:
        try:
            # Its record in the user table, its RSA key in Parameter Store.
            await Users(backend).create(username)
            first = len(deployment.gateway.exchanges)
            yield Owner(deployment, username, id_token, backend, session, first)
        finally:
            await backend.close()


@pytest.fixture
async def fedify() -> AsyncIterator[FedifyPeer]:
    async with FedifyPeer.start() as peer:
        yield peer


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report shows what went through the gateway, and Fedify's log."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    owner, fedify = funcargs.get("owner"), funcargs.get("fedify")
    if report.failed and isinstance(owner, Owner):
        exchanges = owner.deployment.gateway.exchanges[owner.first_exchange :]
        report.sections.append(
            ("gateway", "\n".join(str(exchange) for exchange in exchanges))
        )
    if report.failed and isinstance(fedify, FedifyPeer):
        report.sections.append(("Fedify peer log (tail)", fedify.tail))
    return report
