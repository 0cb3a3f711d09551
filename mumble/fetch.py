"""Outbound HTTP: signed fetches of remote documents and delivery POSTs.

Every request goes through :class:`Fetcher`, which enforces what a server
talking to strangers needs: one deadline for a request and its redirects, at
most a few redirects (each one checked again), a cap on body size, a few
fetches at a time per host and in all (more wait briefly, then fail, so that
silent servers cannot hold every connection), and no connections to
loopback, private or otherwise special addresses unless the operator allows
them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from .errors import BadRequest, FetchError, Gone, NotFound
from .ids import http_url
from .jsonld import parse_json
from .settings import Settings
from .signatures import PrivateKeyType, sign_request

log = logging.getLogger("mumble.fetch")

ACCEPT = 'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
JSON_TYPES = (
    "application/activity+json",
    "application/ld+json",
    "application/json",
    "application/jrd+json",
)

_PRIVATE_HINT = " (the operator can allow private addresses)"
#: Fetches (GETs) in flight to one host at once; a silent host holds no more
#: of our connections and waiting work than this. More wait their turn, for
#: at most FETCH_QUEUE_SECONDS, then fail.
FETCHES_PER_HOST = 8
FETCH_QUEUE_SECONDS = 5.0
#: Fetches in flight to all hosts at once: many hosts that do not answer
#: hold at most these of the pooled connections, never the deliveries'.
FETCHES_AT_ONCE = 64

Signer = Callable[[], Awaitable[tuple[str, PrivateKeyType] | None]]
"""Gives the key id and private key to sign fetches with, or None to fetch unsigned."""


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _PublicOnlyResolver(AbstractResolver):
    """Resolves names, and refuses any that lead to a non-public address."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if is_public_address(r["host"])]
        if not allowed:
            raise OSError(f"{host} resolves to no public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class _HostSlots:
    """The fetches that hold or await a slot of one host."""

    def __init__(self) -> None:
        self.free = asyncio.Semaphore(FETCHES_PER_HOST)
        self.users = 0


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    #: Where the answer came from, after any redirects.
    url: str = ""


class Fetcher:
    def __init__(self, settings: Settings, signer: Signer | None = None) -> None:
        self.settings = settings
        self.signer = signer
        self._session: aiohttp.ClientSession | None = None
        self._hosts: dict[str, _HostSlots] = {}
        self._fetches = asyncio.Semaphore(FETCHES_AT_ONCE)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            settings = self.settings
            resolver = (
                None if settings.allow_private_addresses else _PublicOnlyResolver()
            )
            connector = aiohttp.TCPConnector(
                limit=max(100, settings.delivery_concurrency * 2),
                limit_per_host=max(8, settings.delivery_concurrency),
                resolver=resolver,
                ttl_dns_cache=300,
            )
            timeout = aiohttp.ClientTimeout(
                total=settings.fetch_timeout,
                # Waiting for a pooled connection counts here too.
                connect=settings.connect_timeout * 2,
                sock_connect=settings.connect_timeout,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                headers={
                    "User-Agent": f"{settings.software_name} (+{settings.origin})"
                },
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_url(self, url: str) -> None:
        """Refuse URLs that are not http(s), or that name a non-public address."""
        if http_url(url) is None:
            raise FetchError(f"not an http(s) URL: {url[:200]}")
        if self.settings.allow_private_addresses:
            return
        # The host as the connection will use it: IDNA turns digits of other
        # scripts (fullwidth, circled) into an address the resolver never sees.
        try:
            host = (yarl.URL(url).raw_host or "").rstrip(".").lower()
        except ValueError as exc:
            # UnicodeError too: a host name IDNA cannot encode.
            raise FetchError(f"not a usable URL: {url[:200]}") from exc
        if host == "localhost" or host.endswith(".localhost"):
            raise FetchError(f"{host} is not a public address{_PRIVATE_HINT}")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        if not is_public_address(host):
            raise FetchError(f"{host} is not a public address{_PRIVATE_HINT}")

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        signed_headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Make one request, following up to ``max_redirects`` redirects for GET.

        ``signed_headers``, when given, are used as they are (the caller signed).
        The request and its redirects share one deadline: ``timeout``, or the
        settings' ``fetch_timeout``.
        """
        deadline = timeout or self.settings.fetch_timeout
        try:
            async with asyncio.timeout(deadline):
                return await self._follow(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    sign=sign,
                    signed_headers=signed_headers,
                )
        except TimeoutError as exc:
            raise FetchError(f"{method} {url}: no answer in {deadline:g} s") from exc

    async def _follow(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None,
        headers: dict[str, str] | None,
        sign: bool,
        signed_headers: dict[str, str] | None,
    ) -> Response:
        for _hop in range(self.settings.max_redirects + 1):
            self.check_url(url)
            send = dict(headers or {})
            if signed_headers is not None:
                send.update(signed_headers)
            elif sign and self.signer is not None:
                signer = await self.signer()
                if signer is not None:
                    key_id, key = signer
                    send = sign_request(
                        method,
                        url,
                        key_id=key_id,
                        private_key=key,
                        body=body,
                        headers=send,
                    )
            host = await self._enter(url) if method == "GET" else None
            try:
                async with self.session.request(
                    method, url, data=body, headers=send, allow_redirects=False
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and method == "GET":
                        location = resp.headers.get("Location")
                        if not location:
                            raise FetchError(f"redirect without Location from {url}")
                        try:
                            url = urljoin(url, location)
                        except ValueError as exc:
                            raise FetchError(f"bad redirect from {url}") from exc
                        continue
                    data = await self._read_capped(resp)
                    return Response(resp.status, dict(resp.headers), data, url)
            except TimeoutError as exc:
                # aiohttp's deadlines: the whole request, or the connection.
                raise FetchError(
                    f"{method} {url}: timed out ({exc.__class__.__name__})"
                ) from exc
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                # ValueError: a URL that yarl or IDNA refuses to send.
                raise FetchError(
                    f"{method} {url}: {exc.__class__.__name__}: {exc}"
                ) from exc
            finally:
                if host is not None:
                    self._leave(host)
        raise FetchError(f"too many redirects from {url}")

    async def _enter(self, url: str) -> str:
        """Take one of the host's fetch slots; FetchError when none frees up."""
        host = (urlsplit(url).hostname or "").lower()
        slots = self._hosts.setdefault(host, _HostSlots())
        slots.users += 1
        taken = False
        try:
            async with asyncio.timeout(FETCH_QUEUE_SECONDS):
                await slots.free.acquire()
                taken = True
                await self._fetches.acquire()
        except TimeoutError:
            self._undo_enter(host, slots, taken)
            if taken:
                why = f"{FETCHES_AT_ONCE} fetches in flight to all hosts"
            else:
                why = f"{host} is busy: {FETCHES_PER_HOST} fetches in flight"
            raise FetchError(why) from None
        except BaseException:
            self._undo_enter(host, slots, taken)
            raise
        return host

    def _undo_enter(self, host: str, slots: _HostSlots, taken: bool) -> None:
        if taken:
            slots.free.release()
        self._forget(host, slots)

    def _leave(self, host: str) -> None:
        self._fetches.release()
        slots = self._hosts[host]
        slots.free.release()
        self._forget(host, slots)

    def _forget(self, host: str, slots: _HostSlots) -> None:
        slots.users -= 1
        if not slots.users:
            del self._hosts[host]

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_body_bytes
        length = resp.content_length
        if length is not None and length > limit:
            raise FetchError(f"body of {length} bytes is over the limit")
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise FetchError("body is over the size limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def get_json(
        self,
        url: str,
        *,
        accept: str = ACCEPT,
        sign: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Fetch a JSON document; 404 and 410 raise NotFound and Gone."""
        doc, _ = await self.get_json_from(
            url, accept=accept, sign=sign, timeout=timeout
        )
        return doc

    async def get_json_from(
        self,
        url: str,
        *,
        accept: str = ACCEPT,
        sign: bool = True,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], str]:
        """:meth:`get_json`, and the URL the document came from after redirects."""
        resp = await self.request(
            "GET", url, headers={"Accept": accept}, sign=sign, timeout=timeout
        )
        if resp.status == 410:
            raise Gone(f"{url} is gone")
        if resp.status == 404:
            raise NotFound(f"{url} was not found")
        if resp.status != 200:
            raise FetchError(f"GET {url} answered {resp.status}")
        ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype not in JSON_TYPES:
            raise FetchError(
                f"GET {url} answered {ctype or 'no content type'}, not JSON"
            )
        try:
            doc = parse_json(resp.body)
        except BadRequest as exc:
            raise FetchError(f"GET {url} answered {exc.message}") from exc
        if not isinstance(doc, dict):
            raise FetchError(f"GET {url} answered JSON that is not an object")
        return doc, resp.url
