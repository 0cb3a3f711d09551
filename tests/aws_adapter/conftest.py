"""Fixtures of the Lambda adapter tests: recorded events, an echo app, moto."""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from mumble.backends.aws.adapter import LambdaAdapter

EVENTS = Path(__file__).parent / "events"
API_DOMAIN = "d1abc2def3.execute-api.us-east-1.amazonaws.com"
SECRET = "origin-secret-for-tests"

needs_aws = pytest.mark.skipif(
    not os.environ.get("MUMBLE_TEST_AWS"),
    reason="set MUMBLE_TEST_AWS to run the tests against moto",
)


def recorded(name: str) -> dict[str, Any]:
    """A fresh copy of a recorded event."""
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


def v1_event(
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    *,
    query: dict[str, list[str]] | None = None,
    body: bytes | None = None,
) -> dict[str, Any]:
    """The recorded REST API event, asking for something else."""
    event = recorded("apiGatewayProxyEvent")
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        multi.setdefault(name, []).append(value)
    event.update(
        httpMethod=method,
        path=path,
        resource="/{proxy+}",
        headers={name: values[-1] for name, values in multi.items()},
        multiValueHeaders=multi,
        queryStringParameters=(
            {k: v[-1] for k, v in query.items()} if query is not None else None
        ),
        multiValueQueryStringParameters=query,
        body=base64.b64encode(body).decode() if body is not None else None,
        isBase64Encoded=body is not None,
    )
    event["requestContext"].update(httpMethod=method, path=path, domainName=API_DOMAIN)
    return event


def v2_event(
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    query: str = "",
    body: bytes | None = None,
    cookies: list[str] | None = None,
) -> dict[str, Any]:
    """The recorded HTTP API event, asking for something else."""
    event = recorded("apiGatewayProxyV2Event")
    event.update(
        rawPath=path,
        rawQueryString=query,
        headers={k.lower(): v for k, v in headers.items()},
        body=base64.b64encode(body).decode() if body is not None else None,
        isBase64Encoded=body is not None,
    )
    if cookies is None:
        event.pop("cookies")
    else:
        event["cookies"] = cookies
    event["requestContext"]["http"].update(method=method, path=path)
    event["requestContext"]["domainName"] = API_DOMAIN
    return event


def body_of(result: dict[str, Any]) -> bytes:
    body = result.get("body") or ""
    return base64.b64decode(body) if result["isBase64Encoded"] else body.encode()


def json_of(result: dict[str, Any]) -> Any:
    return json.loads(body_of(result))


def header(result: dict[str, Any], name: str) -> list[str]:
    """Every value of a response header, from either payload format."""
    if "multiValueHeaders" in result:
        return [
            v
            for k, values in result["multiValueHeaders"].items()
            if k.lower() == name.lower()
            for v in values
        ]
    values = [v for k, v in result["headers"].items() if k.lower() == name.lower()]
    if name.lower() == "set-cookie":
        values += result.get("cookies", [])
    return values


async def echo(request: web.Request) -> web.StreamResponse:
    """Report the request exactly as the application received it."""
    body = await request.read()
    if request.path.startswith("/binary"):
        return web.Response(body=bytes(range(256)), content_type="image/png")
    response = web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "query": [list(item) for item in request.query.items()],
            "headers": [list(item) for item in request.headers.items()],
            "cookies": dict(request.cookies),
            "body": base64.b64encode(body).decode(),
            "remote": request.remote,
            "host": request.host,
        }
    )
    response.set_cookie("session", "abc", httponly=True)
    response.set_cookie("theme", "dark")
    return response


@pytest.fixture
async def echo_adapter() -> AsyncIterator[LambdaAdapter]:
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    async with LambdaAdapter(app, max_body_bytes=64 * 1024, origin_secret=SECRET) as a:
        yield a


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = unused_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


MOTO_CREDENTIALS = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}
