"""The API function's entry point: built lazily, once, from the environment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from mumble import Federation, Settings
from mumble.backends.aws import api
from mumble.backends.aws.api import ApiFunction, ApiSettings, build_adapter
from mumble.backends.aws.handlers import Container
from mumble.backends.aws.settings import AwsConfigurationError, AwsSettings
from mumble.web_base import FEDERATION
from tests.aws_adapter.conftest import (
    API_DOMAIN,
    MOTO_CREDENTIALS,
    SECRET,
    header,
    json_of,
    needs_aws,
    recorded,
    v1_event,
    v2_event,
)
from tests.aws_adapter.test_cognito import resign

DOMAIN = "social.example"
ALICE = f"https://{DOMAIN}/users/alice"


def test_importing_the_entry_point_loads_and_builds_nothing_heavy() -> None:
    code = (
        "import sys, mumble.backends.aws.api as api;"
        "heavy = ['boto3', 'botocore', 'aiobotocore', 'jwt', 'moto', 'pyld'];"
        "print([m for m in heavy if m in sys.modules], api._function.cache_info().currsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] 0"


BACKEND_ENVIRON = {
    "MUMBLE_AWS_REGION": "eu-west-1",
    "MUMBLE_BUCKET": "b",
    "MUMBLE_USER_TABLE": "u",
    "MUMBLE_OBJECT_TABLE": "o",
}


def test_a_missing_setting_is_named_and_the_next_event_tries_again() -> None:
    function = ApiFunction(BACKEND_ENVIRON)
    try:
        for _ in range(2):
            with pytest.raises(AwsConfigurationError) as caught:
                function(recorded("apiGatewayProxyV2Event_GET"))
            assert "MUMBLE_COGNITO_USER_POOL_ID" in caught.value.message
            assert "MUMBLE_COGNITO_CLIENT_ID" in caught.value.message
    finally:
        function.close()


def test_api_settings_fall_back_to_the_backend_settings() -> None:
    environ = BACKEND_ENVIRON | {
        "MUMBLE_AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "MUMBLE_COGNITO_USER_POOL_ID": "eu-west-1_abc",
        "MUMBLE_COGNITO_CLIENT_ID": "client",
    }
    settings = ApiSettings.from_environ(environ, AwsSettings.from_environ(environ))
    assert settings.origin is None and settings.origin_secret is None
    config = settings.cognito()
    assert config.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc"
    assert (
        config.jwks_url == "http://127.0.0.1:5000/eu-west-1_abc/.well-known/jwks.json"
    )

    environ |= {
        "MUMBLE_ORIGIN": "https://social.example",
        "MUMBLE_COGNITO_REGION": "us-west-2",
        "MUMBLE_COGNITO_ENDPOINT_URL": "http://127.0.0.1:6000",
        "MUMBLE_ORIGIN_SECRET": "s",
        "MUMBLE_MAX_UPLOAD_BYTES": "1000",
    }
    settings = ApiSettings.from_environ(environ, AwsSettings.from_environ(environ))
    assert (settings.origin, settings.origin_secret) == ("https://social.example", "s")
    assert settings.max_upload_bytes == 1000
    assert settings.cognito().jwks_url.startswith("http://127.0.0.1:6000/")
    assert "us-west-2" in settings.cognito().issuer

    with pytest.raises(AwsConfigurationError):
        ApiSettings.from_environ(
            environ | {"MUMBLE_MAX_UPLOAD_BYTES": "lots"},
            AwsSettings.from_environ(environ),
        )


# a deployment on moto


@dataclass(frozen=True)
class Deployment:
    environ: dict[str, str]
    endpoint: str
    bucket: str
    id_token: str
    foreign_token: str


def provision(endpoint: str) -> Deployment:
    """What the CDK app creates, under fresh names, and alice in Cognito."""
    import boto3

    from tests.aws.service import create_record_table
    from tests.aws_adapter.test_cognito import _login, _pool_with_alice

    suffix = uuid.uuid4().hex[:8]
    bucket, users, objects = (f"mumble-{n}-{suffix}" for n in ("media", "u", "o"))
    prefix = f"/mumble-{suffix}"

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, **MOTO_CREDENTIALS)

    client("s3").create_bucket(Bucket=bucket)
    for table in (users, objects):
        create_record_table(client("dynamodb"), table, streams=True)
    client("ssm").put_parameter(Name=f"{prefix}/domain", Value=DOMAIN, Type="String")
    idp = client("cognito-idp")
    pool_id, client_id, _ = _pool_with_alice(idp, f"owners-{suffix}")
    foreign_pool, foreign_client, _ = _pool_with_alice(idp, f"foreign-{suffix}")
    environ = {
        "MUMBLE_AWS_REGION": "us-east-1",
        "MUMBLE_AWS_ENDPOINT_URL": endpoint,
        "MUMBLE_BUCKET": bucket,
        "MUMBLE_USER_TABLE": users,
        "MUMBLE_OBJECT_TABLE": objects,
        "MUMBLE_SSM_PREFIX": prefix,
        "MUMBLE_COGNITO_USER_POOL_ID": pool_id,
        "MUMBLE_COGNITO_CLIENT_ID": client_id,
        "MUMBLE_ORIGIN_SECRET": SECRET,
    }
    return Deployment(
        environ=environ,
        endpoint=endpoint,
        bucket=bucket,
        id_token=_login(idp, pool_id, client_id)["IdToken"],
        foreign_token=_login(idp, foreign_pool, foreign_client)["IdToken"],
    )


async def create_alice(environ: dict[str, str]) -> None:
    from mumble.backends.aws import AwsBackend

    backend = AwsBackend(AwsSettings.from_environ(environ))
    fed = Federation(Settings(origin=f"https://{DOMAIN}"), backend)
    await fed.open()
    try:
        await fed.users.create("alice")
    finally:
        await fed.close()


def deploy(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    """A provisioned deployment with alice, and the credentials Lambda gives."""
    # The default credential chain is what the function uses in Lambda.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOTO_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv(
        "AWS_SECRET_ACCESS_KEY", MOTO_CREDENTIALS["aws_secret_access_key"]
    )
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    deployment = provision(endpoint)
    asyncio.run(create_alice(deployment.environ))
    return deployment


@pytest.fixture
def deployment(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    return deploy(moto_endpoint, monkeypatch)


@pytest.fixture
def function(deployment: Deployment) -> Iterator[ApiFunction]:
    function = ApiFunction(deployment.environ)
    yield function
    function.close()


def outbox_event(token: str) -> dict[str, Any]:
    headers = {
        "Host": API_DOMAIN,
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/activity+json",
    }
    note = json.dumps({"type": "Note", "content": "Hello from the API function"})
    return v2_event("POST", "/users/alice/outbox", headers, body=note.encode())


@needs_aws
def test_discovery_and_the_actor_come_from_the_deployment(
    function: ApiFunction,
) -> None:
    # The origin is the domain in Parameter Store; Host is CloudFront's.
    headers = {
        "Host": API_DOMAIN,
        "X-Mumble-Original-Host": DOMAIN,
        "X-Mumble-Origin-Secret": SECRET,
    }
    event = v1_event(
        "GET",
        "/.well-known/webfinger",
        list(headers.items()),
        query={"resource": [f"acct:alice@{DOMAIN}"]},
    )
    result = function(event)
    assert result["statusCode"] == 200, result
    assert json_of(result)["subject"] == f"acct:alice@{DOMAIN}"

    result = function(
        v2_event("GET", "/users/alice", {"Accept": "application/activity+json"})
    )
    assert result["statusCode"] == 200, result
    assert json_of(result)["id"] == ALICE
    assert header(result, "Vary") == ["Accept"]


@needs_aws
def test_the_outbox_takes_the_owners_cognito_token_only(
    function: ApiFunction, deployment: Deployment
) -> None:
    expired = resign(deployment.id_token, exp=int(time.time()) - 120)
    assert function(outbox_event(expired))["statusCode"] == 401
    assert function(outbox_event(deployment.foreign_token))["statusCode"] == 401

    result = function(outbox_event(deployment.id_token))
    assert result["statusCode"] == 201, result
    assert json_of(result)["actor"] == ALICE


@needs_aws
def test_the_owner_uploads_media_with_a_presigned_form(
    function: ApiFunction, deployment: Deployment
) -> None:
    headers = {
        "Authorization": f"Bearer {deployment.id_token}",
        "Content-Type": "application/json",
    }
    body = json.dumps({"mediaType": "image/png"}).encode()
    result = function(v2_event("POST", "/users/alice/media", headers, body=body))
    assert result["statusCode"] == 200, result
    form = json_of(result)
    assert form["url"] == f"{deployment.endpoint}/{deployment.bucket}"
    assert form["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    key = form["keyPrefix"] + "cat.png"

    async def upload() -> int:
        data = aiohttp.FormData()
        for name, value in (form["fields"] | {"key": key}).items():
            data.add_field(name, value)
        data.add_field("file", b"\x89PNG data", filename="cat.png")
        async with (
            aiohttp.ClientSession() as session,
            session.post(form["url"], data=data) as resp,
        ):
            return resp.status

    assert asyncio.run(upload()) == 204
    import boto3

    s3 = boto3.client("s3", endpoint_url=deployment.endpoint, **MOTO_CREDENTIALS)
    stored = s3.get_object(Bucket=deployment.bucket, Key=key)
    assert stored["Body"].read() == b"\x89PNG data"


@needs_aws
def test_bad_events_and_unsigned_deliveries_get_4xx(function: ApiFunction) -> None:
    assert function({"not": "an event"})["statusCode"] == 400
    headers = {"Content-Type": "application/activity+json"}
    body = json.dumps({"type": "Follow", "actor": "https://x.example/a"}).encode()
    result = function(v2_event("POST", "/inbox", headers, body=body))
    assert result["statusCode"] == 401
    assert json_of(result) == {"error": "the request is not signed"}


@needs_aws
def test_the_lambda_handler_builds_once_per_container(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in deployment.environ.items():
        monkeypatch.setenv(name, value)
    api._function.cache_clear()
    try:
        first = api.handler(recorded("apiGatewayProxyV2Event_GET"), None)
        built = api._function()
        second = api.handler(v2_event("GET", "/users/alice", {}), None)
        assert api._function() is built
        assert first["statusCode"] == 404
        assert second["statusCode"] == 200
    finally:
        api._function().close()
        api._function.cache_clear()


@needs_aws
async def test_the_api_and_the_workflows_mint_the_same_ids(
    deployment: Deployment,
) -> None:
    """Given one environment, both build the same origin and address policy."""
    import boto3

    local = {
        "MUMBLE_ORIGIN": "http://127.0.0.1:8080",
        "MUMBLE_ALLOW_PRIVATE_ADDRESSES": "1",
    }
    cases = [
        ({}, None, "https://social.example", False),
        (local, None, "http://127.0.0.1:8080", True),
        # A domain parameter written with its scheme is taken as it is.
        ({}, "http://127.0.0.1:9090", "http://127.0.0.1:9090", False),
    ]
    ssm = boto3.client("ssm", endpoint_url=deployment.endpoint, **MOTO_CREDENTIALS)
    for extra, domain, origin, private in cases:
        environ = deployment.environ | extra
        if domain is not None:
            ssm.put_parameter(
                Name=f"{environ['MUMBLE_SSM_PREFIX']}/domain",
                Value=domain,
                Overwrite=True,
            )
        adapter = await build_adapter(environ)
        container = Container(environ)
        try:
            served = adapter.app[FEDERATION].settings
            run = await container.settings()
        finally:
            await adapter.close()
            await container.aclose()
        assert (served.origin, served.allow_private_addresses) == (origin, private)
        assert (run.origin, run.allow_private_addresses) == (origin, private)
