"""Serve API Gateway proxy events with an aiohttp application, without a socket.

Each event (REST API payload 1.0, or HTTP API and function URL payload 2.0,
CloudFront in front or not) is turned into the bytes of one HTTP/1.1
request. Those bytes are fed to aiohttp's own server protocol, the
``RequestHandler`` a listening socket would be given, over an in-memory
transport; what the protocol writes back is the response. So the
application runs exactly as behind a socket: aiohttp parses the request
line and headers, enforces ``client_max_size``, runs middlewares and the
startup and cleanup hooks, and the raw target, header values and body bytes
reach handlers (and the signature verifier) unchanged. Only public aiohttp
interfaces are used: :class:`aiohttp.web.AppRunner`, its ``server``
protocol factory, and the :class:`asyncio.Transport` contract.

What AWS hands over is not always the raw request:

- Payload 2.0 carries ``rawPath`` and ``rawQueryString``; both are used as
  they are. HTTP APIs percent-decode ``rawPath``; characters that cannot
  stand in a request target then (space, ``?``, ``#``, non-ASCII, a bare
  ``%``) are escaped again, anything else is left byte for byte.
- Payload 1.0 has ``path`` but no raw query string, only the decoded
  ``multiValueQueryStringParameters``. The query is rebuilt from them,
  percent-encoding all but unreserved characters, so a signature over a
  query that was encoded otherwise, or whose repeated keys were interleaved,
  does not verify. (The verifier also tries the target without its query.)

CloudFront replaces ``Host``. The distribution forwards the viewer's Host
and Date as ``X-Mumble-Original-Host`` and ``X-Mumble-Original-Date``, and
sends ``X-Mumble-Origin-Secret`` as an origin custom header. Those values
replace Host and Date only when the secret header matches the configured
secret; without a configured secret they are never trusted. All three
headers are removed before the application sees the request, whatever
their values.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ...errors import BadRequest, MumbleError, PayloadTooLarge

log = logging.getLogger("mumble.aws.adapter")

ORIGINAL_HOST = "x-mumble-original-host"
ORIGINAL_DATE = "x-mumble-original-date"
ORIGIN_SECRET = "x-mumble-origin-secret"

V1 = "1.0"
V2 = "2.0"

# Framing is ours to decide: the body is already whole, and the connection
# ends with the one response.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "http2-settings",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TEXT_TYPES = frozenset(
    {
        "application/javascript",
        "application/json",
        "application/x-www-form-urlencoded",
        "application/xml",
    }
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Bytes that can never stand unescaped in a request target.
_UNSAFE = frozenset(range(0x21)) | frozenset(range(0x7F, 0x100)) | {ord("#")}


class MalformedEvent(BadRequest):
    """An event that is not a well-formed API Gateway proxy event."""


@dataclass(frozen=True)
class HttpRequest:
    """One request as the event describes it, ready to be put on the wire."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    source_ip: str | None = None

    def to_bytes(self) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body or self.method not in ("GET", "HEAD", "OPTIONS"):
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: close")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8") + self.body


@dataclass(frozen=True)
class HttpResponse:
    """What the application answered, headers in the order it wrote them."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class ForwardingRule:
    """When the Host and Date forwarded by the deployment's CloudFront are used."""

    origin_secret: str | None = None

    def trusts(self, presented: list[str]) -> bool:
        if not self.origin_secret or len(presented) != 1:
            return False
        return hmac.compare_digest(
            presented[0].encode("utf-8", "surrogatepass"),
            self.origin_secret.encode("utf-8", "surrogatepass"),
        )


# reading events


def payload_version(event: object) -> str:
    """The event's payload format; raise :class:`MalformedEvent` for anything else."""
    if not isinstance(event, dict):
        raise MalformedEvent("the event is not a JSON object")
    context = event.get("requestContext")
    if isinstance(context, dict) and "elb" in context:
        raise MalformedEvent("load balancer events are not supported")
    if event.get("version") == V2:
        return V2
    if "httpMethod" in event:
        return V1
    raise MalformedEvent("the event is not an API Gateway proxy event")


def parse_event(
    event: object, *, max_body_bytes: int, forwarding: ForwardingRule
) -> HttpRequest:
    """The request an API Gateway proxy event carries; raise a 4xx MumbleError."""
    version = payload_version(event)
    assert isinstance(event, dict)
    context = _mapping(event, "requestContext")
    if version == V2:
        method = _string(_mapping(context, "http"), "method")
        path = _string(event, "rawPath")
        query = _optional_string(event, "rawQueryString") or ""
        headers = _v2_headers(event)
        source_ip = _mapping(context, "http").get("sourceIp")
    else:
        method = _string(event, "httpMethod")
        path = _string(event, "path")
        query = _v1_query(event)
        headers = _v1_headers(event)
        source_ip = _mapping(context, "identity").get("sourceIp")
    if not _TOKEN.fullmatch(method):
        raise MalformedEvent("the method is not an HTTP token")
    if not path.startswith("/"):
        raise MalformedEvent("the path does not start with /")
    target = _escape(path, extra=b"?")
    if query:
        target += "?" + _escape(query)
    headers = _restore_forwarded(headers, forwarding)
    if not any(name.lower() == "host" for name, _ in headers):
        domain = context.get("domainName")
        if isinstance(domain, str) and domain:
            headers.append(("Host", domain))
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise MalformedEvent("a header name or value is not valid HTTP")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedEvent("a header value is not UTF-8") from exc
    return HttpRequest(
        method=method,
        target=target,
        headers=tuple(headers),
        body=_body(event, max_body_bytes),
        source_ip=source_ip.split("/", 1)[0] if isinstance(source_ip, str) else None,
    )


def _mapping(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedEvent(f"{name} is not an object")
    return value


def _string(parent: Mapping[str, Any], name: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{name} is missing or not a string")
    return value


def _optional_string(parent: Mapping[str, Any], name: str) -> str | None:
    value = parent.get(name)
    if value is not None and not isinstance(value, str):
        raise MalformedEvent(f"{name} is not a string")
    return value


def _string_map(event: Mapping[str, Any], name: str) -> dict[str, str]:
    value = _mapping(event, name)
    if not all(isinstance(v, str) for v in value.values()):
        raise MalformedEvent(f"{name} has a value that is not a string")
    return dict(value)


def _string_lists(event: Mapping[str, Any], name: str) -> dict[str, list[str]] | None:
    if event.get(name) is None:
        return None
    value = _mapping(event, name)
    for values in value.values():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise MalformedEvent(f"{name} has a value that is not a list of strings")
    return dict(value)


def _v1_headers(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    # multiValueHeaders holds every value; headers only the last of each.
    multi = _string_lists(event, "multiValueHeaders")
    if multi is None:
        return list(_string_map(event, "headers").items())
    headers = [
        (name, v)
        for name, values in multi.items()
        if name.lower() != "cookie"
        for v in values
    ]
    # HTTP/1.1 allows one Cookie line; aiohttp reads only the first of many.
    cookies = [
        v for name, values in multi.items() if name.lower() == "cookie" for v in values
    ]
    if cookies:
        headers.append(("Cookie", "; ".join(cookies)))
    return headers


def _v2_headers(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    headers = list(_string_map(event, "headers").items())
    cookies = event.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list) or not all(
            isinstance(c, str) for c in cookies
        ):
            raise MalformedEvent("cookies is not a list of strings")
        # HTTP APIs take Cookie out of the headers and split it on ";".
        headers = [(n, v) for n, v in headers if n.lower() != "cookie"]
        if cookies:
            headers.append(("Cookie", "; ".join(cookies)))
    return headers


def _v1_query(event: Mapping[str, Any]) -> str:
    multi = _string_lists(event, "multiValueQueryStringParameters")
    pairs = (
        [(k, v) for k, values in multi.items() for v in values]
        if multi is not None
        else list(_string_map(event, "queryStringParameters").items())
    )
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def _escape(text: str, extra: bytes = b"") -> str:
    """Escape what cannot stand in a request target; keep all else byte for byte."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedEvent("the path or query is not UTF-8") from exc
    out = bytearray()
    for i, byte in enumerate(raw):
        if byte == ord("%"):
            escaped = raw[i + 1 : i + 3]
            out += b"%" if len(escaped) == 2 and set(escaped) <= _HEX else b"%25"
        elif byte in _UNSAFE or byte in extra:
            out += b"%%%02X" % byte
        else:
            out.append(byte)
    return out.decode("ascii")


def _restore_forwarded(
    headers: list[tuple[str, str]], rule: ForwardingRule
) -> list[tuple[str, str]]:
    def values(name: str) -> list[str]:
        return [v for n, v in headers if n.lower() == name]

    host, date = values(ORIGINAL_HOST), values(ORIGINAL_DATE)
    trusted = rule.trusts(values(ORIGIN_SECRET))
    dropped = {ORIGINAL_HOST, ORIGINAL_DATE, ORIGIN_SECRET}
    if trusted:
        if len(host) > 1 or len(date) > 1:
            raise MalformedEvent("the forwarded Host or Date is repeated")
        dropped |= {"host"} if host else set()
        dropped |= {"date"} if date else set()
    elif host or date:
        log.info("ignored a forwarded Host or Date without the origin secret")
    out = [(n, v) for n, v in headers if n.lower() not in dropped | _HOP_BY_HOP]
    if trusted and host:
        out.append(("Host", host[0]))
    if trusted and date:
        out.append(("Date", date[0]))
    return out


def _body(event: Mapping[str, Any], limit: int) -> bytes:
    text = _optional_string(event, "body") or ""
    encoded = event.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise MalformedEvent("isBase64Encoded is not a boolean")
    # Measured before decoding too, so that a huge event costs no copy.
    longest = (limit // 3 + 1) * 4 if encoded else limit
    if len(text) > longest:
        raise PayloadTooLarge(f"the body is over {limit} bytes")
    try:
        body = (
            base64.b64decode(text, validate=True) if encoded else text.encode("utf-8")
        )
    except UnicodeEncodeError as exc:
        raise MalformedEvent("the body is not UTF-8") from exc
    except ValueError as exc:
        # binascii.Error, or a non-ASCII character in what should be base64.
        raise MalformedEvent("the body is not valid base64") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes")
    return body


# writing results


def format_response(version: str, response: HttpResponse) -> dict[str, Any]:
    """The Lambda result API Gateway turns back into ``response``."""
    grouped: dict[str, tuple[str, list[str]]] = {}
    for name, value in response.headers:
        if name.lower() in _HOP_BY_HOP:
            continue
        grouped.setdefault(name.lower(), (name, []))[1].append(value)
    is_text = _is_text(response)
    result: dict[str, Any] = {
        "statusCode": response.status,
        "body": (
            response.body.decode("utf-8")
            if is_text
            else base64.b64encode(response.body).decode("ascii")
        ),
        "isBase64Encoded": not is_text,
    }
    if version == V1:
        result["multiValueHeaders"] = dict(grouped.values())
        return result
    cookies = grouped.pop("set-cookie", ("", []))[1]
    result["headers"] = {name: ", ".join(vs) for name, vs in grouped.values()}
    if cookies:
        result["cookies"] = cookies
    return result


def error_response(version: str, status: int, message: str) -> dict[str, Any]:
    """A JSON error answered by the adapter itself, as the application would."""
    body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
    response = HttpResponse(status, (("Content-Type", "application/json"),), body)
    return format_response(version, response)


def _is_text(response: HttpResponse) -> bool:
    """Whether the body can go back as a string; binary goes back base64."""
    if not response.body:
        return True
    headers = {name.lower(): value for name, value in response.headers}
    if "content-encoding" in headers:
        return False
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    textual = (
        media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith(("+json", "+xml"))
    )
    if not textual:
        return False
    try:
        response.body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_response(raw: bytes) -> HttpResponse:
    """Read the HTTP/1.1 response aiohttp wrote, interim 1xx answers skipped."""
    while True:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("the response has no complete head")
        lines = head.decode("utf-8", "replace").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        )
        if not 100 <= status < 200:
            break
        raw = rest
    fields = {name.lower(): value for name, value in headers}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body = _dechunk(rest)
    elif "content-length" in fields:
        body = rest[: int(fields["content-length"])]
    else:
        body = rest
    return HttpResponse(status, headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


# running the application


class _MemoryTransport(asyncio.Transport):
    """The one connection a request arrives on, kept in memory."""

    def __init__(
        self,
        protocol: asyncio.BaseProtocol,
        loop: asyncio.AbstractEventLoop,
        peer: str | None,
    ) -> None:
        super().__init__()
        self._protocol = protocol
        self._loop = loop
        self._peer = (peer or "0.0.0.0", 0)
        self._written = bytearray()
        self._closing = False
        self.closed: asyncio.Future[None] = loop.create_future()

    @property
    def written(self) -> bytes:
        return bytes(self._written)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        if name == "sockname":
            return ("127.0.0.1", 0)
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._written += data

    def writelines(
        self, list_of_data: Iterable[bytes | bytearray | memoryview]
    ) -> None:
        for data in list_of_data:
            self._written += data

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self._protocol.connection_lost, None)
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self) -> None:
        self.close()

    # The whole request is delivered at once and nothing is ever buffered
    # for writing, so flow control has nothing to do.
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None
    ) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


class LambdaAdapter:
    """Answers proxy events with an aiohttp application, one request per event.

    ``start`` runs the application's startup hooks and ``close`` its cleanup;
    between them :meth:`handle` may be awaited any number of times.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        max_body_bytes: int,
        origin_secret: str | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.forwarding = ForwardingRule(origin_secret)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await runner.setup()
        self._runner = runner

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LambdaAdapter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def handle(self, event: object) -> dict[str, Any]:
        """The Lambda result for one event; a malformed event gets a 4xx."""
        try:
            version = payload_version(event)
            request = parse_event(
                event,
                max_body_bytes=self.max_body_bytes,
                forwarding=self.forwarding,
            )
        except MumbleError as exc:
            log.info("refused an event: %s", exc.message)
            version = _guess_version(event)
            return error_response(version, exc.status, exc.message)
        try:
            response = await self.dispatch(request)
        except Exception:
            log.exception("no answer to %s %s", request.method, request.target)
            return error_response(version, 500, "internal error")
        return format_response(version, response)

    async def dispatch(self, request: HttpRequest) -> HttpResponse:
        """Run one request through the application's HTTP protocol."""
        if self._runner is None or self._runner.server is None:
            raise RuntimeError("the adapter is not started")
        loop = asyncio.get_running_loop()
        protocol = self._runner.server()
        transport = _MemoryTransport(protocol, loop, request.source_ip)
        protocol.connection_made(transport)
        protocol.data_received(request.to_bytes())
        await transport.closed
        return parse_response(transport.written)


def _guess_version(event: object) -> str:
    if isinstance(event, dict) and event.get("version") == V2:
        return V2
    return V1
