"""Actors: the documents of local users, and a cache of remote ones.

Remote actors are fetched with signed GETs and checked: a document must name
itself (its id is the URL it came from; when it names another URL of its
origin, that URL is fetched and must name itself), it must have an inbox,
and its text is sanitised. They are kept in the backend and in a bounded
in-memory cache. Keys are found through their owner's document, and fetched
again when a signature fails, at most once a minute per actor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any

from .backends import Backend
from .errors import BadRequest, FetchError, Gone, NotFound
from .fetch import Fetcher
from .ids import Ids, http_url, same_origin
from .jsonld import CONTEXT, as_list, id_of, types_of
from .sanitize import clean_object
from .signatures import PublicKey, load_public_key
from .users import LocalUser

log = logging.getLogger("mumble.actors")

ACTOR_TYPES = frozenset({"Person", "Service", "Application", "Group", "Organization"})
#: Seconds between two fetches of an actor to look for a rotated key: a
#: stream of forged signatures must not become a stream of our requests.
KEY_REFRESH_SECONDS = 60.0


class NotAnActor(FetchError):
    """A document was fetched, and it is not an actor."""


def local_actor(ids: Ids, user: LocalUser) -> dict[str, Any]:
    """The ActivityPub document of a local user."""
    actor_id = ids.actor(user.username)
    return {
        "@context": CONTEXT,
        "id": actor_id,
        "type": "Person",
        "preferredUsername": user.username,
        "name": user.name or user.username,
        "summary": user.summary,
        "url": ids.profile(user.username),
        "inbox": ids.inbox(user.username),
        "outbox": ids.outbox(user.username),
        "followers": ids.followers(user.username),
        "following": ids.following(user.username),
        "endpoints": {"sharedInbox": ids.shared_inbox},
        "manuallyApprovesFollowers": False,
        "discoverable": True,
        "indexable": True,
        "published": _iso(user.created),
        "publicKey": {
            "id": ids.key(user.username),
            "owner": actor_id,
            "publicKeyPem": user.public_key_pem,
        },
    }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True)
class RemoteActor:
    id: str
    inbox: str
    shared_inbox: str | None
    username: str
    doc: dict[str, Any]

    @property
    def delivery_inbox(self) -> str:
        return self.shared_inbox or self.inbox

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RemoteActor:
        actor_id, inbox = http_url(doc.get("id")), http_url(doc.get("inbox"))
        if actor_id is None or inbox is None:
            raise BadRequest("an actor needs an id and an inbox")
        if not same_origin(actor_id, inbox):
            raise BadRequest("the actor's inbox is on another origin")
        endpoints = doc.get("endpoints")
        shared = endpoints.get("sharedInbox") if isinstance(endpoints, dict) else None
        # Our deliveries go only where the actor's own server is.
        if not same_origin(shared, actor_id):
            shared = None
        username = doc.get("preferredUsername")
        return cls(
            id=actor_id,
            inbox=inbox,
            shared_inbox=shared if isinstance(shared, str) else None,
            username=username if isinstance(username, str) else "",
            doc=doc,
        )


def is_actor(doc: Any) -> bool:
    return bool(ACTOR_TYPES & set(types_of(doc)))


def keys_of(doc: dict[str, Any]) -> dict[str, str]:
    """The PEM keys an actor document publishes, by key id."""
    keys: dict[str, str] = {}
    for key in as_list(doc.get("publicKey")):
        if isinstance(key, dict) and isinstance(key.get("publicKeyPem"), str):
            owner = key.get("owner", doc.get("id"))
            if owner == doc.get("id") and isinstance(key.get("id"), str):
                keys[key["id"]] = key["publicKeyPem"]
    return keys


class RemoteActors:
    def __init__(
        self,
        backend: Backend,
        fetcher: Fetcher,
        *,
        max_age: float,
        memory_size: int = 10_000,
        fetch_timeout: float | None = None,
    ) -> None:
        self.backend = backend
        self.fetcher = fetcher
        self.max_age = max_age
        self.fetch_timeout = fetch_timeout
        self.memory_size = memory_size
        # actor id -> (fetched at, actor, whether the backend has it too)
        self._memory: OrderedDict[str, tuple[float, RemoteActor, bool]] = OrderedDict()
        self._keys: OrderedDict[str, PublicKey] = OrderedDict()
        self._refreshed: dict[str, float] = {}
        self._fetching: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def _remember(self, actor: RemoteActor, fetched: float, persisted: bool) -> None:
        self._memory[actor.id] = (fetched, actor, persisted)
        self._memory.move_to_end(actor.id)
        while len(self._memory) > self.memory_size:
            self._memory.popitem(last=False)
        for key_id in [k for k, v in self._keys.items() if v.owner == actor.id]:
            del self._keys[key_id]

    async def cached(self, actor_id: str) -> RemoteActor | None:
        """The cached copy, however old, or None; never fetches."""
        if actor_id in self._memory:
            return self._memory[actor_id][1]
        record = await self.backend.get("actors", actor_id)
        if record is None:
            return None
        actor = RemoteActor.from_doc(record["doc"])
        self._remember(actor, record["fetched"], True)
        return actor

    async def get(
        self, actor_id: str, *, refresh: bool = False, persist: bool = True
    ) -> RemoteActor:
        """The actor, from the cache while fresh, else fetched.

        Without ``persist`` a fetched copy is kept in memory only: signature
        checks use that, so a rejected request leaves nothing stored.
        """
        if not refresh:
            entry = self._memory.get(actor_id)
            if entry is None and await self.cached(actor_id) is not None:
                entry = self._memory.get(actor_id)
            if entry is not None and time.time() - entry[0] < self.max_age:
                fetched, actor, persisted = entry
                if persist and not persisted:
                    await self.backend.put(
                        "actors", actor.id, {"doc": actor.doc, "fetched": fetched}
                    )
                    self._remember(actor, fetched, True)
                return actor
        # Callers that want the same actor at once share one fetch.
        fetching = self._fetching.get(actor_id)
        if fetching is None:
            fetching = asyncio.ensure_future(self._fetch(actor_id))
            self._fetching[actor_id] = fetching
            fetching.add_done_callback(partial(self._fetched, actor_id))
        doc = await asyncio.shield(fetching)
        return await self.store(doc, expected_origin=actor_id, persist=persist)

    def _fetched(self, actor_id: str, fetching: asyncio.Future[Any]) -> None:
        self._fetching.pop(actor_id, None)
        if not fetching.cancelled():
            fetching.exception()  # retrieved, if every waiter has gone

    async def _fetch(self, actor_id: str) -> dict[str, Any]:
        # A copy fetched now is as fresh as a refresh would make it.
        self._refreshed[actor_id] = time.monotonic()
        doc, found_at = await self.fetcher.get_json_from(
            actor_id, timeout=self.fetch_timeout
        )
        claimed = doc.get("id")
        if claimed != found_at:
            # Fetched by another of its URLs, through a redirect, or lying:
            # only the document at the URL it names may speak for that id.
            # The origin that counts is where the document came from, not
            # where a redirect was asked for.
            if not isinstance(claimed, str) or not same_origin(claimed, found_at):
                raise FetchError(f"{found_at} claims to be {str(claimed)[:200]}")
            doc, found_at = await self.fetcher.get_json_from(
                claimed, timeout=self.fetch_timeout
            )
            if doc.get("id") != claimed or found_at != claimed:
                raise FetchError(f"{claimed} does not name itself")
        return doc

    async def store(
        self, doc: dict[str, Any], *, expected_origin: str, persist: bool = True
    ) -> RemoteActor:
        """Keep an actor document that came from ``expected_origin``."""
        if not is_actor(doc):
            raise NotAnActor(f"{expected_origin} is not an actor")
        try:
            doc = await clean_object(doc)
            actor = RemoteActor.from_doc(doc)
        except BadRequest as exc:
            raise FetchError(f"{expected_origin}: {exc.message}") from exc
        if not same_origin(actor.id, expected_origin):
            raise FetchError(f"{expected_origin} claims to be {actor.id}")
        now = time.time()
        if persist:
            await self.backend.put("actors", actor.id, {"doc": doc, "fetched": now})
        self._remember(actor, now, persist)
        return actor

    async def forget(self, actor_id: str) -> bool:
        self._memory.pop(actor_id, None)
        for key_id in [k for k, v in self._keys.items() if v.owner == actor_id]:
            del self._keys[key_id]
        return await self.backend.delete("actors", actor_id) is not None

    async def key(self, key_id: str, refresh: bool = False) -> PublicKey:
        """The public key ``key_id`` names, found in its owner's document.

        Raises FetchError for every way the key cannot be had, gone and not
        found included: to the caller, that is a signature that cannot be
        checked.
        """
        try:
            return await self._key(key_id, refresh)
        except (NotFound, Gone) as exc:
            raise FetchError(f"key {key_id}: {exc.message}") from exc

    async def _key(self, key_id: str, refresh: bool) -> PublicKey:
        if not refresh and key_id in self._keys:
            self._keys.move_to_end(key_id)
            return self._keys[key_id]
        owner_url = key_id.split("#", 1)[0]
        if http_url(owner_url) is None:
            raise FetchError(f"key id {key_id[:200]!r} is not an http(s) URL")
        if refresh and not self._may_refresh(owner_url):
            refresh = False
            if key_id in self._keys:
                return self._keys[key_id]
        try:
            actor = await self.get(owner_url, refresh=refresh, persist=False)
        except NotAnActor:
            actor = await self._owner_of_key_document(key_id)
        pem = keys_of(actor.doc).get(key_id)
        if pem is None and self._may_refresh(actor.id):
            actor = await self.get(actor.id, refresh=True, persist=False)
            pem = keys_of(actor.doc).get(key_id)
        if pem is None:
            raise FetchError(f"{actor.id} does not publish key {key_id}")
        try:
            public = PublicKey(key_id, actor.id, load_public_key(pem))
        except ValueError as exc:
            raise FetchError(f"key {key_id} is not a usable public key") from exc
        self._keys[key_id] = public
        while len(self._keys) > self.memory_size:
            self._keys.popitem(last=False)
        return public

    def _may_refresh(self, actor_id: str) -> bool:
        """Whether the actor may be fetched again now; if so, note that it is."""
        now = time.monotonic()
        if now - self._refreshed.get(actor_id, -KEY_REFRESH_SECONDS) < (
            KEY_REFRESH_SECONDS
        ):
            return False
        self._refreshed[actor_id] = now
        if len(self._refreshed) > self.memory_size:
            self._refreshed = {
                a: t
                for a, t in self._refreshed.items()
                if now - t < KEY_REFRESH_SECONDS
            }
        return True

    async def _owner_of_key_document(self, key_id: str) -> RemoteActor:
        """Some servers give keys their own documents, naming the owner."""
        doc = await self.fetcher.get_json(
            key_id.split("#", 1)[0], timeout=self.fetch_timeout
        )
        owner = id_of(doc.get("owner"))
        if not owner or not same_origin(owner, key_id):
            raise FetchError(f"key {key_id} has no owner on its origin")
        return await self.get(owner, refresh=True, persist=False)
