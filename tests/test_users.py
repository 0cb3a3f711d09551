"""Local users: creation, keys and owner tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mumble.backends.embedded import EmbeddedBackend
from mumble.errors import BadRequest
from mumble.users import Users


class KeylessBackend(EmbeddedBackend):
    """Stores everything but private keys."""

    async def put(
        self, ns: str, key: str, value: dict[str, Any], *, only_new: bool = False
    ) -> bool:
        if ns == "private-keys":
            raise ConnectionError("the key store is down")
        return await super().put(ns, key, value, only_new=only_new)


@pytest.fixture
def backend(embedded_backend: EmbeddedBackend) -> EmbeddedBackend:
    return embedded_backend


async def test_a_user_gets_a_key_that_matches_its_public_key(
    backend: EmbeddedBackend,
) -> None:
    from mumble.signatures import public_key_pem

    users = Users(backend)
    user, token = await users.create("Dora")
    assert user.username == "dora"
    assert public_key_pem(await users.private_key("dora")) == user.public_key_pem
    assert await users.check_token("dora", token)
    assert not await users.check_token("dora", token + "x")


async def test_a_name_is_created_once(backend: EmbeddedBackend) -> None:
    users = Users(backend)
    first, _ = await users.create("dora")
    with pytest.raises(BadRequest, match="exists already"):
        await users.create("dora")
    assert (await backend.get("users", "dora") or {})["public_key_pem"] == (
        first.public_key_pem
    )


async def test_a_user_whose_key_cannot_be_stored_is_not_left_behind(
    tmp_path: Path,
) -> None:
    backend = KeylessBackend(tmp_path / "data")
    await backend.open()
    try:
        with pytest.raises(ConnectionError):
            await Users(backend).create("dora")
        assert await backend.get("users", "dora") is None
    finally:
        await backend.close()
