"""Presigned uploads: the owner asks for a form, then posts the file to S3."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from mumble import Mumble, Settings
from mumble.backends.aws.adapter import LambdaAdapter
from mumble.backends.aws.media import (
    MediaUploads,
    S3Presigner,
    UploadPolicy,
    add_media_routes,
)
from mumble.web_base import FEDERATION
from tests.aws_adapter.conftest import (
    API_DOMAIN,
    MOTO_CREDENTIALS,
    json_of,
    needs_aws,
    v2_event,
)
from tests.aws_adapter.s3_policy import gate

BUCKET = "mumble-media"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def s3_client(endpoint: str) -> Callable[[], AbstractAsyncContextManager[S3Presigner]]:
    """An aiobotocore S3 client, opened by MediaUploads on first use."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()

    def open_client() -> AbstractAsyncContextManager[S3Presigner]:
        client: AbstractAsyncContextManager[S3Presigner] = session.create_client(
            "s3",
            endpoint_url=endpoint,
            config=AioConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
            **MOTO_CREDENTIALS,
        )
        return client

    return open_client


@dataclass
class Site:
    adapter: LambdaAdapter
    token: str

    async def ask(
        self, body: Any, token: str | None = None, user: str = "alice"
    ) -> dict[str, Any]:
        headers = {
            "Host": API_DOMAIN,
            "Authorization": f"Bearer {self.token if token is None else token}",
            "Content-Type": "application/json",
        }
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        event = v2_event("POST", f"/users/{user}/media", headers, body=raw)
        return await self.adapter.handle(event)


async def site_for(tmp_path: Path, endpoint: str) -> AsyncIterator[Site]:
    settings = Settings(origin="https://social.example", data_dir=tmp_path / "data")
    app = Mumble(settings).web_app(worker=False)
    policy = UploadPolicy(bucket=BUCKET, max_bytes=1024, expires_seconds=300)
    add_media_routes(app, MediaUploads(policy, s3_client(endpoint)))
    async with LambdaAdapter(app, max_body_bytes=settings.max_body_bytes) as adapter:
        _user, token = await app[FEDERATION].users.create("alice")
        await app[FEDERATION].users.create("bob")
        yield Site(adapter, token)


@pytest.fixture
async def offline_site(tmp_path: Path) -> AsyncIterator[Site]:
    # Presigning is local: this endpoint is never contacted.
    async for site in site_for(tmp_path, "http://127.0.0.1:9"):
        yield site


def policy_of(form: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(base64.b64decode(form["fields"]["policy"]))
    return doc


async def test_the_owner_gets_a_form_confined_to_a_fresh_folder(
    offline_site: Site,
) -> None:
    result = await offline_site.ask({"mediaType": "image/png"})

    assert result["statusCode"] == 200, result
    form = json_of(result)
    prefix = form["keyPrefix"]
    assert prefix.startswith("media/alice/") and prefix.endswith("/")
    assert len(prefix) > len("media/alice/x/")
    assert form["url"] == f"http://127.0.0.1:9/{BUCKET}"
    assert form["fields"]["key"] == prefix + "${filename}"
    assert form["fields"]["Content-Type"] == "image/png"
    assert form["maxBytes"] == 1024
    conditions = policy_of(form)["conditions"]
    assert ["starts-with", "$key", prefix] in conditions
    assert ["content-length-range", 1, 1024] in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert {"bucket": BUCKET} in conditions

    again = json_of(await offline_site.ask({"mediaType": "image/png"}))
    assert again["keyPrefix"] != prefix


@pytest.mark.parametrize(
    ("body", "token", "user", "status"),
    [
        ({"mediaType": "image/png"}, "", "alice", 401),
        ({"mediaType": "image/png"}, "wrong", "alice", 401),
        ({"mediaType": "image/png"}, None, "bob", 401),
        ({"mediaType": "image/png"}, None, "nobody", 404),
        ({"mediaType": "text/html"}, None, "alice", 415),
        ({"mediaType": 3}, None, "alice", 400),
        (["image/png"], None, "alice", 400),
        (b"not json", None, "alice", 400),
    ],
)
async def test_refused_requests(
    offline_site: Site, body: Any, token: str | None, user: str, status: int
) -> None:
    result = await offline_site.ask(body, token, user)
    assert result["statusCode"] == status, result
    assert "fields" not in json_of(result)


# posting to S3 (moto, behind a gate that enforces the policy as S3 does)


@pytest.fixture
async def s3(moto_endpoint: str) -> AsyncIterator[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, **MOTO_CREDENTIALS)
    client.create_bucket(Bucket=BUCKET)
    server = TestServer(gate(moto_endpoint, "testing"), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def site(tmp_path: Path, s3: str) -> AsyncIterator[Site]:
    async for site in site_for(tmp_path, s3):
        yield site


async def post_form(
    form: dict[str, Any], content: bytes, **changes: str
) -> tuple[int, str]:
    data = aiohttp.FormData()
    for name, value in (form["fields"] | changes).items():
        data.add_field(name, value)
    data.add_field("file", content, filename="cat.png", content_type="image/png")
    async with (
        aiohttp.ClientSession() as session,
        session.post(form["url"], data=data) as resp,
    ):
        return resp.status, await resp.text()


def stored(moto_endpoint: str, key: str) -> tuple[bytes, str] | None:
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, **MOTO_CREDENTIALS)
    try:
        obj = client.get_object(Bucket=BUCKET, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    return obj["Body"].read(), obj["ContentType"]


@needs_aws
async def test_an_upload_into_the_prefix_is_stored(
    site: Site, moto_endpoint: str
) -> None:
    form = json_of(await site.ask({"mediaType": "image/png"}))
    key = form["keyPrefix"] + "cat.png"

    status, _ = await post_form(form, PNG, key=key)

    assert status == 204
    assert stored(moto_endpoint, key) == (PNG, "image/png")


@needs_aws
async def test_uploads_outside_the_prefix_are_refused(
    site: Site, moto_endpoint: str
) -> None:
    form = json_of(await site.ask({"mediaType": "image/png"}))
    for key in (
        "media/bob/cat.png",
        "media/alice/cat.png",
        "cat.png",
        "media/alice/" + "0" * 32 + "/cat.png",
    ):
        status, text = await post_form(form, PNG, key=key)
        assert status == 403, (key, text)
        assert stored(moto_endpoint, key) is None


@needs_aws
async def test_what_the_policy_does_not_allow_is_refused(
    site: Site, moto_endpoint: str
) -> None:
    form = json_of(await site.ask({"mediaType": "image/png"}))
    key = form["keyPrefix"] + "cat.png"
    policy = policy_of(form)
    policy["conditions"] = [
        c
        for c in policy["conditions"]
        if not (isinstance(c, list) and c[0] == "starts-with")
    ]
    loosened = base64.b64encode(json.dumps(policy).encode()).decode()

    cases = {
        "too large": ((b"x" * 1025), {"key": key}, 400),
        "empty": (b"", {"key": key}, 400),
        "another type": (PNG, {"key": key, "Content-Type": "text/html"}, 403),
        "an extra field": (PNG, {"key": key, "acl": "public-read"}, 403),
        "a loosened policy": (PNG, {"key": "media/bob/x.png", "policy": loosened}, 403),
    }
    for case, (content, changes, status) in cases.items():
        answered, text = await post_form(form, content, **changes)
        assert answered == status, (case, text)
    assert stored(moto_endpoint, key) is None
    assert stored(moto_endpoint, "media/bob/x.png") is None
