"""The AWS deployment on one machine: moto, a gateway, the functions, the workflows.

What stands for what:

* **AWS services**: moto's server (``tests/aws/service.py``), with the
  bucket, the tables (streams on), the parameters and a Cognito user pool
  with its app client, as the CDK app creates them.
* **API Gateway** (HTTP API, payload 2.0): :class:`Gateway`, an aiohttp
  server on 127.0.0.1 that turns each request into the proxy event API
  Gateway builds, hands it to the API function and turns the function's
  result back into the response.
* **The API function's containers**: :class:`ApiContainers`. Each answers
  one event at a time on its own thread. The first is the real entry point,
  ``mumble.backends.aws.api.handler``, reading the process environment; when
  every container is busy another starts (an ``ApiFunction`` over the same
  environment), as Lambda scales out.
* **Step Functions, and the S3 to EventBridge routing that starts them**:
  :class:`Workflows`, the AWS backend's local driver (``run_tasks``), which
  sequences the same step functions the step handlers call, its tasks run
  by a handlers :class:`~mumble.backends.aws.handlers.Container` built from
  the same environment.
* **The DynamoDB stream event source**: the stream pump of ``tests/aws``,
  handing each batch to the real statistics handler,
  ``mumble.backends.aws.handlers.statistics``, on a thread of its own.

Nothing here changes how Mumble runs: the same code answers the same
events as in Lambda. Only the sequencing of steps and the event routing
are done in this process, because moto runs neither Lambda code nor
EventBridge to Step Functions routing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from multidict import CIMultiDict

from examples.single_user import create as create_example
from mumble import Settings
from mumble.backends.aws import api, handlers
from mumble.backends.aws.api import ApiFunction
from mumble.backends.aws.handlers import Container
from tests.aws.service import ACCOUNT, MotoService
from tests.aws.stream import StreamPump

log = logging.getLogger("tests.aws_e2e")

T = TypeVar("T")

#: The example application; the workflows run its activity handlers after
#: Mumble's own (``MUMBLE_APPLICATION``). Only its handlers are used there,
#: so the origin given here is never minted on.
example_application = create_example(Settings(origin="http://127.0.0.1", backend="aws"))
EXAMPLE_APPLICATION = f"{__name__}:example_application"

#: API Gateway's integration timeout for HTTP APIs.
INTEGRATION_TIMEOUT = 30.0
#: API Gateway's largest request body.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
PASSWORD = "Correct-horse-9"


# the account


@dataclass(frozen=True)
class Owners:
    """The owners' Cognito user pool and the app client they sign in with."""

    moto: MotoService
    pool_id: str
    client_id: str

    @classmethod
    def create(cls, moto: MotoService) -> Owners:
        idp = moto.client("cognito-idp")
        pool_id = idp.create_user_pool(PoolName="mumble-owners")["UserPool"]["Id"]
        client_id = idp.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName="web",
            ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"],
        )["UserPoolClient"]["ClientId"]
        return cls(moto, pool_id, client_id)

    def sign_up(self, username: str) -> str:
        """Create the owner's account and sign in; a real ID token of the pool."""
        idp = self.moto.client("cognito-idp")
        idp.admin_create_user(
            UserPoolId=self.pool_id,
            Username=username,
            TemporaryPassword="Temporary-1-pass",
            MessageAction="SUPPRESS",
        )
        idp.admin_set_user_password(
            UserPoolId=self.pool_id,
            Username=username,
            Password=PASSWORD,
            Permanent=True,
        )
        result = idp.admin_initiate_auth(
            UserPoolId=self.pool_id,
            ClientId=self.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
        )
        return str(result["AuthenticationResult"]["IdToken"])


def function_environment(
    moto: MotoService, owners: Owners, origin: str
) -> dict[str, str]:
    """What every function of the deployment reads, the same for all of them.

    The API function and the workflows' functions are given one origin:
    they must mint the same ids.
    """
    return moto.environ() | {
        "MUMBLE_ORIGIN": origin,
        "MUMBLE_COGNITO_USER_POOL_ID": owners.pool_id,
        "MUMBLE_COGNITO_CLIENT_ID": owners.client_id,
        "MUMBLE_ALLOW_PRIVATE_ADDRESSES": "1",
        "MUMBLE_APPLICATION": EXAMPLE_APPLICATION,
        "MUMBLE_POLL_SECONDS": "0.1",
        "MUMBLE_AWS_MAX_ATTEMPTS": "4",
    }


# threads with an event loop


class LoopThread:
    """An event loop running on a thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=name, daemon=True
        )
        self._thread.start()

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``work`` on the loop; wait for its result from another thread."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# the API function's containers


Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class _ApiContainer:
    """One Lambda container of the API function: one event at a time."""

    def __init__(self, number: int, invoke: Invoke, close: Callable[[], None]):
        self.number = number
        self.invoke = invoke
        self.close = close
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"api-{number}")
        self.events = 0


class ApiContainers:
    """The API function as Lambda runs it: containers started as load needs them.

    Used from the gateway's event loop only.
    """

    def __init__(self, environ: Mapping[str, str], *, most: int = 4) -> None:
        self.environ = dict(environ)
        self.most = most
        self.started: list[_ApiContainer] = []
        self._idle: asyncio.Queue[_ApiContainer] = asyncio.Queue()

    def _start_one(self) -> _ApiContainer:
        number = len(self.started)
        if number == 0:
            # The entry point Lambda calls, reading the process environment.
            api._function.cache_clear()

            def close_entry_point() -> None:
                api._function().close()
                api._function.cache_clear()

            container = _ApiContainer(
                0, lambda event: api.handler(event, None), close_entry_point
            )
        else:
            function = ApiFunction(self.environ)
            container = _ApiContainer(number, function, function.close)
        self.started.append(container)
        return container

    async def invoke(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Which container answered, and its result; TimeoutError after 30 s."""
        if self._idle.empty() and len(self.started) < self.most:
            held = self._start_one()
        else:
            held = await self._idle.get()
        held.events += 1
        loop = asyncio.get_running_loop()
        answer = loop.run_in_executor(held.thread, held.invoke, event)
        # Busy until the function returns, even after the gateway gave up.
        answer.add_done_callback(lambda _: self._idle.put_nowait(held))
        result = await asyncio.wait_for(asyncio.shield(answer), INTEGRATION_TIMEOUT)
        return held.number, result

    def close(self) -> None:
        for container in self.started:
            container.thread.submit(container.close).result(30)
            container.thread.shutdown()
        self.started.clear()


# API Gateway


def proxy_event(request: web.Request, body: bytes) -> dict[str, Any]:
    """The HTTP API (payload 2.0) event API Gateway makes of ``request``."""
    raw_path, _, raw_query = request.raw_path.partition("?")
    # HTTP APIs hand the path over percent-decoded, the query as it came.
    path = unquote(raw_path)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name_bytes, value_bytes in request.raw_headers:
        name = name_bytes.decode("latin-1").lower()
        value = value_bytes.decode("latin-1")
        if name == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    source_ip = request.remote or "127.0.0.1"
    host = headers.get("host", "")
    headers["x-forwarded-for"] = (
        f"{headers['x-forwarded-for']}, {source_ip}"
        if "x-forwarded-for" in headers
        else source_ip
    )
    headers["x-forwarded-port"] = host.rpartition(":")[2] if ":" in host else "80"
    headers["x-forwarded-proto"] = "http"
    headers["x-amzn-trace-id"] = (
        f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    )
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "e2egateway",
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": request.method,
                "path": path,
                "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": bool(body),
    }
    if cookies:
        event["cookies"] = cookies
    if raw_query:
        params: dict[str, list[str]] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            params.setdefault(key, []).append(value)
        event["queryStringParameters"] = {k: ",".join(v) for k, v in params.items()}
    if body:
        event["body"] = base64.b64encode(body).decode("ascii")
    return event


def http_response(result: dict[str, Any]) -> web.Response:
    """The response API Gateway makes of the function's result (payload 2.0)."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            headers.add(name, str(value))
    for cookie in result.get("cookies") or ():
        headers.add("Set-Cookie", cookie)
    text = result.get("body") or ""
    body = base64.b64decode(text) if result.get("isBase64Encoded") else text.encode()
    return web.Response(status=int(result["statusCode"]), headers=headers, body=body)


def gateway_error(status: int, message: str) -> web.Response:
    """An answer of API Gateway's own, as it words them."""
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
    )


@dataclass
class Exchange:
    """One request through the gateway, for the report of a failing test."""

    method: str
    target: str
    status: int
    container: int | None = None
    #: The body of an error answer.
    error: str = ""


@dataclass
class Gateway:
    """API Gateway (HTTP API, $default route, payload 2.0) on 127.0.0.1."""

    functions: ApiContainers | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    port: int = 0
    _thread: LoopThread | None = None
    _runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gateway:
        """Listen on a free port; requests wait for :attr:`functions` to be set."""
        self._thread = LoopThread("gateway")
        self._thread.call(self._start())
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def _handle(self, request: web.Request) -> web.Response:
        exchange = Exchange(request.method, request.raw_path, 0)
        self.exchanges.append(exchange)
        if self.functions is None:
            exchange.status = 503
            return gateway_error(503, "Service Unavailable")
        body = await request.read()
        try:
            exchange.container, result = await self.functions.invoke(
                proxy_event(request, body)
            )
            response = http_response(result)
        except TimeoutError:
            response = gateway_error(503, "Service Unavailable")
        except Exception:
            # A function error, or a result API Gateway cannot read.
            log.exception("the API function failed on %s", exchange.target)
            response = gateway_error(500, "Internal Server Error")
        exchange.status = response.status
        if response.status >= 400 and isinstance(response.body, bytes):
            exchange.error = response.body[:500].decode("utf-8", "replace")
        return response

    def close(self) -> None:
        if self._thread is None:
            return
        if self._runner is not None:
            self._thread.call(self._runner.cleanup())
        self._thread.stop()
        self._thread = None
        if self.functions is not None:
            self.functions.close()


# the workflows and the streams


class Workflows:
    """Staged work driven as the state machines drive it; counts from streams."""

    def __init__(self, environ: Mapping[str, str], *, concurrency: int = 16) -> None:
        self.environ = dict(environ)
        self.concurrency = concurrency
        self.container = Container(self.environ)
        self.pump: StreamPump | None = None
        self._thread: LoopThread | None = None
        self._statistics = ThreadPoolExecutor(1, thread_name_prefix="statistics")
        self._stop: asyncio.Event | None = None
        self._driver: asyncio.Task[None] | None = None

    def start(self) -> Workflows:
        self._thread = LoopThread("workflows")
        self._thread.call(self._start())
        return self

    async def _start(self) -> None:
        backend = await self.container.backend()
        self._stop = asyncio.Event()
        self._driver = asyncio.create_task(
            backend.run_tasks(
                self.container.run_task,
                stop=self._stop,
                concurrency=self.concurrency,
            )
        )
        self.pump = await StreamPump(backend.settings, self._count).start()

    async def _count(self, batch: dict[str, Any]) -> dict[str, Any]:
        """One invocation of the statistics function, on its container's thread."""
        loop = asyncio.get_running_loop()
        result: dict[str, Any] = await loop.run_in_executor(
            self._statistics, handlers.statistics, batch, None
        )
        return result

    async def quiet(self, seconds: float = 0.5, timeout: float = 20.0) -> None:
        """Wait until the streams have had nothing new to count for ``seconds``."""
        assert self.pump is not None
        deadline = time.monotonic() + timeout
        seen, since = len(self.pump.batches), time.monotonic()
        while time.monotonic() - since < seconds:
            if time.monotonic() > deadline:
                raise AssertionError("the streams never went quiet")
            await asyncio.sleep(0.05)
            if len(self.pump.batches) != seen:
                seen, since = len(self.pump.batches), time.monotonic()

    async def _close(self) -> None:
        if self.pump is not None:
            await self.pump.stop()
        if self._stop is not None and self._driver is not None:
            self._stop.set()
            await asyncio.wait_for(self._driver, 15)
        await self.container.aclose()

    def close(self) -> None:
        if self._thread is None:
            return
        self._thread.call(self._close())
        self._thread.stop()
        self._thread = None
        self._statistics.submit(handlers.close_container).result(30)
        self._statistics.shutdown()


# the whole deployment


@dataclass
class AwsDeployment:
    """Everything above, wired together; :meth:`run` starts and stops it."""

    moto: MotoService
    owners: Owners
    gateway: Gateway
    environ: dict[str, str]
    workflows: Workflows

    @property
    def origin(self) -> str:
        return self.gateway.origin

    @classmethod
    @contextlib.contextmanager
    def run(cls, moto: MotoService) -> Iterator[AwsDeployment]:
        """A fresh account, the gateway and the workflows, for as long as it lasts.

        The environment is the process's too: the real entry points (the API
        handler, the statistics handler) read it there, as in Lambda.
        """
        moto.create_resources()
        owners = Owners.create(moto)
        gateway = Gateway().start()
        environ = function_environment(moto, owners, gateway.origin)
        saved = {name: os.environ.get(name) for name in environ}
        os.environ.update(environ)
        workflows: Workflows | None = None
        try:
            gateway.functions = ApiContainers(environ)
            workflows = Workflows(environ).start()
            yield cls(moto, owners, gateway, environ, workflows)
        finally:
            gateway.close()
            if workflows is not None:
                workflows.close()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
