"""The owner's Cognito ID token as the credential for the outbox.

:class:`CognitoAuth` implements :class:`mumble.auth.OwnerAuth`: a bearer
token belongs to a local user's owner when it is an RS256 ID token of the
configured user pool and app client, unexpired, whose username claim is
that user's name. The pool's public keys (JWKS) are fetched on first use,
kept for a while, and fetched again once when a token names a key not seen
yet, which is how Cognito rotates keys.

The username claim must equal the Mumble username exactly; Mumble names are
lower case, so the pool should take usernames case-insensitively and hold
them in lower case.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from ...errors import FetchError, Unauthorized

if TYPE_CHECKING:
    import jwt

log = logging.getLogger("mumble.aws.cognito")

MAX_JWKS_BYTES = 256 * 1024


@dataclass(frozen=True, kw_only=True)
class CognitoConfig:
    """Where the pool's keys are, and what a valid owner token says.

    ``issuer`` is what tokens carry in ``iss``; ``jwks_url`` is where the
    keys are fetched from. They differ only when the pool is reached through
    another endpoint, as in tests against a local emulator.
    """

    issuer: str
    client_id: str
    jwks_url: str
    username_claim: str = "cognito:username"
    leeway_seconds: float = 30.0
    jwks_ttl_seconds: float = 3600.0
    #: The least time between two fetches caused by unknown key ids, so that
    #: made-up key ids cannot make every request fetch.
    refetch_interval_seconds: float = 30.0
    fetch_timeout_seconds: float = 5.0

    @classmethod
    def for_user_pool(
        cls,
        *,
        region: str,
        user_pool_id: str,
        client_id: str,
        endpoint_url: str | None = None,
        **options: Any,
    ) -> CognitoConfig:
        """The configuration of a pool, its keys fetched from ``endpoint_url``."""
        public = f"https://cognito-idp.{region}.amazonaws.com"
        base = (endpoint_url or public).rstrip("/")
        return cls(
            issuer=f"{public}/{user_pool_id}",
            client_id=client_id,
            jwks_url=f"{base}/{user_pool_id}/.well-known/jwks.json",
            **options,
        )


class CognitoAuth:
    """Verifies Cognito ID tokens; keys cached per instance."""

    def __init__(self, config: CognitoConfig) -> None:
        self.config = config
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock: asyncio.Lock | None = None

    async def is_owner(self, username: str, token: str) -> bool:
        try:
            claims = await self.verify(token)
        except Unauthorized as exc:
            log.info("refused an owner token for %s: %s", username, exc.message)
            return False
        if claims.get(self.config.username_claim) != username:
            log.info("refused an owner token for %s: another user's", username)
            return False
        return True

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raise Unauthorized when it is not a valid ID token."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("the token is not a JWT") from exc
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str):
            raise Unauthorized("the token is not signed with RS256 and a key id")
        key = await self._key(kid)
        config = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=config.client_id,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "token_use"]},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from exc
        if claims.get("token_use") != "id":
            raise Unauthorized("the token is not an ID token")
        return claims

    async def _key(self, kid: str) -> jwt.PyJWK:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = time.monotonic()
            age = None if self._fetched_at is None else now - self._fetched_at
            if age is None or age > self.config.jwks_ttl_seconds:
                await self._fetch()
            elif kid not in self._keys and age > self.config.refetch_interval_seconds:
                log.info("fetching the JWKS again for unknown key %s", kid)
                await self._fetch()
        try:
            return self._keys[kid]
        except KeyError:
            raise Unauthorized(f"unknown signing key {kid}") from None

    async def _fetch(self) -> None:
        import jwt

        url = self.config.jwks_url
        timeout = aiohttp.ClientTimeout(total=self.config.fetch_timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers={"Accept": "application/json"}) as resp,
            ):
                if resp.status != 200:
                    raise FetchError(f"the JWKS answered {resp.status}")
                body = await resp.content.read(MAX_JWKS_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(f"the JWKS could not be fetched: {exc}") from exc
        if len(body) > MAX_JWKS_BYTES:
            raise FetchError("the JWKS is too large")
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            keys = jwt.PyJWKSet.from_dict(doc).keys
        except (ValueError, jwt.PyJWTError) as exc:
            raise FetchError(f"the JWKS is not usable: {exc}") from exc
        # Unusable members were skipped by PyJWKSet; keep the signing keys.
        self._keys = {
            k.key_id: k
            for k in keys
            if k.key_id
            and k.algorithm_name == "RS256"
            and k.public_key_use in (None, "sig")
        }
        self._fetched_at = time.monotonic()
        log.info("fetched %d signing keys from the JWKS", len(self._keys))
