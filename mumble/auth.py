"""Who may act as a local user: the owner's credentials on the outbox.

An :class:`OwnerAuth` says whether a bearer token belongs to the owner of a
local account. The default checks the token issued when the user was
created; a deployment may verify tokens from an identity provider instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .users import Users


class OwnerAuth(Protocol):
    async def is_owner(self, username: str, token: str) -> bool:
        """True when ``token`` proves the bearer is ``username``'s owner."""
        ...


class OwnerToken:
    """The token ``mumble init`` printed, compared against its stored hash."""

    def __init__(self, users: Users) -> None:
        self.users = users

    async def is_owner(self, username: str, token: str) -> bool:
        return await self.users.check_token(username, token)
