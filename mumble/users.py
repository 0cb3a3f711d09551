"""Local users: their records, keys and owner tokens."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from .backends import Backend
from .errors import BadRequest
from .ids import USERNAME
from .signatures import (
    PrivateKeyType,
    generate_private_key,
    load_private_key,
    private_key_pem,
    public_key_pem,
)


@dataclass(frozen=True)
class LocalUser:
    username: str
    public_key_pem: str
    token_sha256: str
    created: float
    name: str = ""
    summary: str = ""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LocalUser:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in record.items() if k in fields})


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    """Local accounts. Private keys live in their own namespace, read lazily."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._users: dict[str, LocalUser] = {}
        self._keys: dict[str, PrivateKeyType] = {}
        self._key_lock = asyncio.Lock()

    async def get(self, username: str) -> LocalUser | None:
        username = username.lower()
        if username in self._users:
            return self._users[username]
        record = await self.backend.get("users", username)
        if record is None:
            return None
        user = LocalUser.from_record(record)
        self._users[username] = user
        return user

    async def all(self) -> list[LocalUser]:
        records = await self.backend.query("users", limit=1000)
        return [LocalUser.from_record(r.value) for r in records]

    async def create(
        self, username: str, *, name: str = "", summary: str = ""
    ) -> tuple[LocalUser, str]:
        """Create a user with a fresh RSA key; return it and its owner token."""
        username = username.lower()
        if not USERNAME.match(username):
            raise BadRequest("a username is 1 to 64 of a-z, 0-9, '_', '.', '-'")
        key = generate_private_key()
        token = secrets.token_urlsafe(32)
        user = LocalUser(
            username=username,
            public_key_pem=public_key_pem(key),
            token_sha256=_token_hash(token),
            created=time.time(),
            name=name or username,
            summary=summary,
        )
        # The user record decides who wins a race to create the name; only
        # the winner writes the key, and a user left without one is undone.
        if not await self.backend.put("users", username, asdict(user), only_new=True):
            raise BadRequest(f"user {username} exists already")
        try:
            await self.backend.put(
                "private-keys", username, {"pem": private_key_pem(key)}
            )
        except BaseException:
            await self.backend.delete("users", username)
            raise
        return user, token

    async def reset_token(self, username: str) -> str:
        user = await self.get(username)
        if user is None:
            raise BadRequest(f"no user {username}")
        token = secrets.token_urlsafe(32)
        record = asdict(user) | {"token_sha256": _token_hash(token)}
        await self.backend.put("users", user.username, record)
        self._users.pop(user.username, None)
        return token

    async def private_key(self, username: str) -> PrivateKeyType:
        """The user's private key, loaded once however many callers ask at once."""
        if username not in self._keys:
            async with self._key_lock:
                if username not in self._keys:
                    record = await self.backend.get("private-keys", username)
                    if record is None:
                        raise LookupError(f"no private key for {username}")
                    # Loading checks the key, which takes tens of milliseconds.
                    self._keys[username] = await asyncio.to_thread(
                        load_private_key, record["pem"]
                    )
        return self._keys[username]

    async def note_activity(self, username: str, at: float | None = None) -> None:
        """Record that the user did something, for NodeInfo's active users."""
        await self.backend.put(
            "last-activity", username, {"at": time.time() if at is None else at}
        )

    async def active_since(self, since: float) -> int:
        """How many users did something after ``since``."""
        records = await self.backend.query("last-activity", limit=1000)
        return sum(1 for r in records if float(r.value.get("at", 0)) > since)

    async def check_token(self, username: str, token: str) -> bool:
        user = await self.get(username)
        if user is None or not token:
            return False
        return hmac.compare_digest(user.token_sha256, _token_hash(token))
