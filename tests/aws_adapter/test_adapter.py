"""The adapter's translation: what the application receives, what AWS gets back."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from mumble.backends.aws.adapter import LambdaAdapter
from tests.aws_adapter.conftest import (
    API_DOMAIN,
    SECRET,
    body_of,
    header,
    json_of,
    recorded,
    v1_event,
    v2_event,
)


def seen(result: dict[str, Any]) -> dict[str, Any]:
    """What the echo application received."""
    assert result["statusCode"] == 200, result
    doc: dict[str, Any] = json_of(result)
    return doc


def received_headers(doc: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


async def test_recorded_rest_event_keeps_every_header_and_query_value(
    echo_adapter: LambdaAdapter,
) -> None:
    result = await echo_adapter.handle(recorded("apiGatewayProxyEvent"))
    doc = seen(result)

    assert doc["method"] == "GET"
    assert (
        doc["raw_path"]
        == "/my/path?parameter1=value1&parameter1=value2&parameter2=value"
    )
    assert doc["query"] == [
        ["parameter1", "value1"],
        ["parameter1", "value2"],
        ["parameter2", "value"],
    ]
    assert received_headers(doc, "Header2") == ["value1", "value2"]
    assert received_headers(doc, "Host") == ["id.execute-api.us-east-1.amazonaws.com"]
    assert base64.b64decode(doc["body"]) == b"Hello from Lambda!"
    assert doc["remote"] == "192.168.0.1"
    # REST results carry every header as a list, cookies included.
    assert "headers" not in result
    assert header(result, "Set-Cookie") == [
        "session=abc; HttpOnly; Path=/",
        "theme=dark; Path=/",
    ]


async def test_recorded_http_api_event_keeps_raw_query_and_cookies(
    echo_adapter: LambdaAdapter,
) -> None:
    result = await echo_adapter.handle(recorded("apiGatewayProxyV2Event"))
    doc = seen(result)

    assert doc["method"] == "POST"
    assert (
        doc["raw_path"]
        == "/my/path?parameter1=value1&parameter1=value2&parameter2=value"
    )
    assert received_headers(doc, "Header2") == ["value1,value2"]
    assert doc["cookies"] == {"cookie1": "", "cookie2": ""}
    assert json.loads(base64.b64decode(doc["body"])) == {
        "message": "hello world",
        "username": "tom",
    }
    # HTTP API results carry Set-Cookie in cookies, not among the headers.
    assert result["cookies"] == ["session=abc; HttpOnly; Path=/", "theme=dark; Path=/"]
    assert not [k for k in result["headers"] if k.lower() == "set-cookie"]
    assert result["isBase64Encoded"] is False


async def test_rest_cookie_headers_reach_the_app_as_one(
    echo_adapter: LambdaAdapter,
) -> None:
    event = v1_event(
        "GET", "/x", [("Host", API_DOMAIN), ("Cookie", "a=1"), ("cookie", "b=2")]
    )
    doc = seen(await echo_adapter.handle(event))
    assert doc["cookies"] == {"a": "1", "b": "2"}
    assert received_headers(doc, "Cookie") == ["a=1; b=2"]


async def test_function_url_event_is_served(echo_adapter: LambdaAdapter) -> None:
    doc = seen(await echo_adapter.handle(recorded("lambdaFunctionUrlEvent")))
    assert doc["raw_path"] == "/"
    assert doc["host"] == "<url-id>.lambda-url.us-east-1.on.aws"
    assert doc["remote"] == "123.123.123.123"


async def test_recorded_get_event_without_body(echo_adapter: LambdaAdapter) -> None:
    doc = seen(await echo_adapter.handle(recorded("apiGatewayProxyV2Event_GET")))
    assert doc["method"] == "GET"
    assert doc["body"] == ""
    assert received_headers(doc, "Host") == ["id.execute-api.us-east-1.amazonaws.com"]


async def test_raw_query_string_is_passed_byte_for_byte(
    echo_adapter: LambdaAdapter,
) -> None:
    query = "b=%2f&a=1+2&b=%2F%7e&empty=&flag"
    event = v2_event("GET", "/users/a%40b/x", {"Host": API_DOMAIN}, query=query)
    doc = seen(await echo_adapter.handle(event))
    assert doc["raw_path"] == "/users/a%40b/x?" + query


async def test_a_decoded_path_is_escaped_only_where_it_must_be(
    echo_adapter: LambdaAdapter,
) -> None:
    # HTTP APIs hand over rawPath percent-decoded.
    event = v2_event("GET", "/tags/caf\u00e9 au lait?#/100%", {"Host": API_DOMAIN})
    doc = seen(await echo_adapter.handle(event))
    assert doc["raw_path"] == "/tags/caf%C3%A9%20au%20lait%3F%23/100%25"


async def test_rest_query_is_rebuilt_with_every_value(
    echo_adapter: LambdaAdapter,
) -> None:
    event = v1_event(
        "GET",
        "/search",
        [("Host", API_DOMAIN)],
        query={"q": ["a b&c", "d/e"], "page": ["2"]},
    )
    doc = seen(await echo_adapter.handle(event))
    assert doc["raw_path"] == "/search?q=a%20b%26c&q=d%2Fe&page=2"
    assert doc["query"] == [["q", "a b&c"], ["q", "d/e"], ["page", "2"]]


async def test_rest_event_with_single_value_maps_only(
    echo_adapter: LambdaAdapter,
) -> None:
    event = v1_event("GET", "/x", [])
    event["multiValueHeaders"] = None
    event["multiValueQueryStringParameters"] = None
    event["headers"] = {"Host": API_DOMAIN, "X-One": "1"}
    event["queryStringParameters"] = {"k": "v"}
    doc = seen(await echo_adapter.handle(event))
    assert doc["raw_path"] == "/x?k=v"
    assert received_headers(doc, "X-One") == ["1"]


@pytest.mark.parametrize("version", ["1.0", "2.0"])
async def test_binary_bodies_arrive_and_leave_unchanged(
    echo_adapter: LambdaAdapter, version: str
) -> None:
    payload = bytes(range(256)) * 3
    headers = {"Host": API_DOMAIN, "Content-Type": "application/octet-stream"}
    event = (
        v1_event("PUT", "/upload", list(headers.items()), body=payload)
        if version == "1.0"
        else v2_event("PUT", "/upload", headers, body=payload)
    )
    doc = seen(await echo_adapter.handle(event))
    assert base64.b64decode(doc["body"]) == payload
    assert received_headers(doc, "Content-Length") == [str(len(payload))]

    event = (
        v1_event("GET", "/binary", [("Host", API_DOMAIN)])
        if version == "1.0"
        else v2_event("GET", "/binary", {"Host": API_DOMAIN})
    )
    result = await echo_adapter.handle(event)
    assert result["isBase64Encoded"] is True
    assert body_of(result) == bytes(range(256))
    assert header(result, "Content-Type") == ["image/png"]


async def test_a_plain_text_body_reaches_the_app_as_utf8(
    echo_adapter: LambdaAdapter,
) -> None:
    event = v2_event("POST", "/t", {"Host": API_DOMAIN})
    event.update(body="h\u00e9llo \u2603", isBase64Encoded=False)
    doc = seen(await echo_adapter.handle(event))
    assert base64.b64decode(doc["body"]) == "h\u00e9llo \u2603".encode()


async def test_a_body_at_the_limit_is_read_whole(echo_adapter: LambdaAdapter) -> None:
    payload = b"x" * (64 * 1024)
    event = v2_event("POST", "/t", {"Host": API_DOMAIN}, body=payload)
    doc = seen(await echo_adapter.handle(event))
    assert base64.b64decode(doc["body"]) == payload


async def test_hop_by_hop_headers_are_replaced(echo_adapter: LambdaAdapter) -> None:
    headers = {
        "Host": API_DOMAIN,
        "Content-Length": "999",
        "Transfer-Encoding": "chunked",
        "Connection": "keep-alive, Upgrade",
        "Upgrade": "websocket",
        "Expect": "100-continue",
    }
    doc = seen(await echo_adapter.handle(v2_event("POST", "/t", headers, body=b"hi")))
    assert base64.b64decode(doc["body"]) == b"hi"
    assert received_headers(doc, "Content-Length") == ["2"]
    assert received_headers(doc, "Transfer-Encoding") == []
    assert received_headers(doc, "Upgrade") == []


# Host and Date forwarded by CloudFront


def cloudfront_headers(secret: str | None) -> dict[str, str]:
    headers = {
        "Host": API_DOMAIN,
        "Date": "Mon, 01 Jan 2024 00:00:00 GMT",
        "Via": "2.0 0123456789abcdef.cloudfront.net (CloudFront)",
        "X-Mumble-Original-Host": "social.example",
        "X-Mumble-Original-Date": "Tue, 02 Jan 2024 03:04:05 GMT",
    }
    if secret is not None:
        headers["X-Mumble-Origin-Secret"] = secret
    return headers


async def test_forwarded_host_and_date_replace_the_originals_with_the_secret(
    echo_adapter: LambdaAdapter,
) -> None:
    event = v2_event("GET", "/t", cloudfront_headers(SECRET))
    doc = seen(await echo_adapter.handle(event))
    assert received_headers(doc, "Host") == ["social.example"]
    assert received_headers(doc, "Date") == ["Tue, 02 Jan 2024 03:04:05 GMT"]
    names = {k.lower() for k, _ in doc["headers"]}
    assert not names & {
        "x-mumble-original-host",
        "x-mumble-original-date",
        "x-mumble-origin-secret",
    }


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x"])
async def test_forwarded_headers_without_the_secret_are_dropped(
    echo_adapter: LambdaAdapter, secret: str | None
) -> None:
    event = v2_event("GET", "/t", cloudfront_headers(secret))
    doc = seen(await echo_adapter.handle(event))
    assert received_headers(doc, "Host") == [API_DOMAIN]
    assert received_headers(doc, "Date") == ["Mon, 01 Jan 2024 00:00:00 GMT"]
    assert not [k for k, _ in doc["headers"] if k.lower().startswith("x-mumble-")]


async def test_no_configured_secret_trusts_nothing() -> None:
    from aiohttp import web

    from tests.aws_adapter.conftest import echo

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with LambdaAdapter(app, max_body_bytes=1024) as adapter:
        headers = cloudfront_headers("")
        doc = seen(await adapter.handle(v2_event("GET", "/t", headers)))
    assert received_headers(doc, "Host") == [API_DOMAIN]


async def test_forwarded_headers_in_a_rest_event(echo_adapter: LambdaAdapter) -> None:
    headers = list(cloudfront_headers(SECRET).items())
    doc = seen(await echo_adapter.handle(v1_event("GET", "/t", headers)))
    assert received_headers(doc, "Host") == ["social.example"]
    assert received_headers(doc, "Date") == ["Tue, 02 Jan 2024 03:04:05 GMT"]


# malformed events


def malformed_events() -> list[tuple[str, Any]]:
    rest = recorded("apiGatewayProxyEvent")
    http = recorded("apiGatewayProxyV2Event")

    def changed(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {**event, **fields}

    def without(event: dict[str, Any], name: str) -> dict[str, Any]:
        return {k: v for k, v in event.items() if k != name}

    no_method = json.loads(json.dumps(http))
    del no_method["requestContext"]["http"]["method"]
    return [
        ("not an object", ["a", "list"]),
        ("no kind", {"foo": "bar"}),
        ("load balancer", recorded("albEvent")),
        ("no path", without(rest, "path")),
        ("path not a string", changed(rest, path=7)),
        ("relative path", changed(rest, path="my/path")),
        ("no method", no_method),
        ("method with space", changed(rest, httpMethod="GE T")),
        ("headers a list", changed(rest, multiValueHeaders=[["a", "b"]])),
        ("header values not lists", changed(rest, multiValueHeaders={"A": "b"})),
        ("v2 headers not strings", changed(http, headers={"a": 1})),
        ("header injection", changed(http, headers={"a": "b\r\nHost: evil"})),
        ("header name with space", changed(http, headers={"a b": "c"})),
        ("header name with newline", changed(http, headers={"a\n": "c"})),
        ("method with newline", changed(rest, httpMethod="GET\n")),
        ("cookies not a list", changed(http, cookies="a=b")),
        ("query not a string", changed(http, rawQueryString=["a"])),
        ("query values", changed(rest, multiValueQueryStringParameters={"a": [1]})),
        ("body not a string", changed(http, body=12)),
        ("flag not a boolean", changed(http, isBase64Encoded="yes")),
        ("bad base64", changed(http, body="not base64!", isBase64Encoded=True)),
        ("non-ASCII base64", changed(http, body="aGk\u00e9", isBase64Encoded=True)),
        (
            "non-ASCII base64, REST",
            changed(rest, body="\u00ff==", isBase64Encoded=True),
        ),
        ("lone surrogate", changed(http, body="\ud800", isBase64Encoded=False)),
        ("surrogate in path", changed(http, rawPath="/\udcff")),
        ("requestContext a string", changed(http, requestContext="x")),
    ]


@pytest.mark.parametrize(
    ("case", "event"), malformed_events(), ids=[c for c, _ in malformed_events()]
)
async def test_malformed_events_get_a_400(
    echo_adapter: LambdaAdapter, case: str, event: Any
) -> None:
    result = await echo_adapter.handle(event)
    assert result["statusCode"] == 400, (case, result)
    assert header(result, "Content-Type") == ["application/json"]
    assert json_of(result)["error"]


@pytest.mark.parametrize("encoded", [True, False])
async def test_a_body_over_the_limit_gets_a_413(
    echo_adapter: LambdaAdapter, encoded: bool
) -> None:
    payload = b"x" * (64 * 1024 + 1)
    event = v2_event("POST", "/t", {"Host": API_DOMAIN}, body=payload)
    if not encoded:
        event.update(body=payload.decode(), isBase64Encoded=False)
    result = await echo_adapter.handle(event)
    assert result["statusCode"] == 413
    assert "over" in json_of(result)["error"]


async def test_a_huge_body_is_refused_before_decoding(
    echo_adapter: LambdaAdapter,
) -> None:
    event = v2_event("POST", "/t", {"Host": API_DOMAIN})
    event.update(body="A" * (10 * 1024 * 1024), isBase64Encoded=True)
    assert (await echo_adapter.handle(event))["statusCode"] == 413


async def test_an_oversized_header_is_answered_by_aiohttp_with_a_400(
    echo_adapter: LambdaAdapter,
) -> None:
    event = v2_event("GET", "/t", {"Host": API_DOMAIN, "X-Big": "a" * 20000})
    result = await echo_adapter.handle(event)
    assert result["statusCode"] == 400


async def test_an_unstarted_adapter_answers_500_without_raising() -> None:
    from aiohttp import web

    adapter = LambdaAdapter(web.Application(), max_body_bytes=10)
    result = await adapter.handle(recorded("apiGatewayProxyV2Event_GET"))
    assert result["statusCode"] == 500
    assert json_of(result) == {"error": "internal error"}


ODD_VALUES: list[Any] = [None, 0, 1.5, True, "", "x", "\ud800", [], ["a"], {}, {"a": 1}]


def mutations() -> list[tuple[str, dict[str, Any]]]:
    """Every recorded field, and every field of its context, set to odd values."""
    out = []
    for name in ("apiGatewayProxyEvent", "apiGatewayProxyV2Event"):
        base = recorded(name)
        for key in base:
            for value in ODD_VALUES:
                out.append((f"{name}.{key}={value!r}", {**base, key: value}))
        for section in ("requestContext",):
            for key in base[section]:
                for value in ODD_VALUES:
                    event = recorded(name)
                    event[section][key] = value
                    out.append((f"{name}.{section}.{key}={value!r}", event))
        http = recorded(name).get("requestContext", {}).get("http")
        for key in http or {}:
            for value in ODD_VALUES:
                event = recorded(name)
                event["requestContext"]["http"][key] = value
                out.append((f"{name}.http.{key}={value!r}", event))
    return out


async def test_no_event_makes_the_handler_raise(echo_adapter: LambdaAdapter) -> None:
    cases = mutations()
    assert len(cases) > 300
    for case, event in cases:
        result = await echo_adapter.handle(event)
        assert isinstance(result["statusCode"], int), case
        assert result["statusCode"] in (200, 400, 413), (case, result["statusCode"])
        # The adapter answers in JSON; what only aiohttp's parser refuses (an
        # unknown method, say) gets aiohttp's own plain-text 400.
        assert isinstance(result["body"], str), case


async def test_a_secret_that_is_not_text_is_not_trusted(
    echo_adapter: LambdaAdapter,
) -> None:
    headers = cloudfront_headers(None) | {"X-Mumble-Origin-Secret": "\ud800"}
    doc = seen(await echo_adapter.handle(v2_event("GET", "/t", headers)))
    assert received_headers(doc, "Host") == [API_DOMAIN]


async def test_connections_do_not_outlive_their_event(
    echo_adapter: LambdaAdapter,
) -> None:
    for _ in range(20):
        await echo_adapter.handle(recorded("apiGatewayProxyV2Event_GET"))
    event = v2_event("GET", "/t", {"Host": API_DOMAIN, "X-Big": "a" * 20000})
    await echo_adapter.handle(event)
    import asyncio

    await asyncio.sleep(0)
    runner = echo_adapter._runner
    assert runner is not None and runner.server is not None
    assert runner.server.connections == []
    assert len(asyncio.all_tasks()) == 1
