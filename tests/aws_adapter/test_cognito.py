"""Owner tokens from Cognito: verified against the pool's published keys.

The first tests serve a JWKS of their own, to count fetches. The others run
against moto's Cognito in server mode: a user pool, app clients and a user,
real tokens from admin_initiate_auth, the keys from moto's JWKS endpoint.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from mumble import FetchError, Mumble, Settings
from mumble.backends.aws.adapter import LambdaAdapter
from mumble.backends.aws.cognito import CognitoAuth, CognitoConfig
from mumble.web_base import FEDERATION
from tests.aws_adapter.conftest import (
    API_DOMAIN,
    MOTO_CREDENTIALS,
    json_of,
    needs_aws,
    v2_event,
)

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_pool"
CLIENT = "client-id"


# a JWKS of our own


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(
        jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())
    )
    return jwk | {"kid": kid, "alg": "RS256", "use": "sig"}


def id_token(key: rsa.RSAPrivateKey, kid: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": CLIENT,
        "token_use": "id",
        "cognito:username": "alice",
        "iat": now,
        "exp": now + 3600,
    } | claims
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


@dataclass
class KeyServer:
    keys: list[dict[str, Any]]
    fetches: int = 0
    url: str = ""


@pytest.fixture
async def key_server() -> AsyncIterator[KeyServer]:
    state = KeyServer(keys=[])

    async def jwks(_request: web.Request) -> web.Response:
        state.fetches += 1
        return web.json_response({"keys": state.keys})

    app = web.Application()
    app.router.add_get("/pool/.well-known/jwks.json", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/pool/.well-known/jwks.json"))
    yield state
    await server.close()


def auth_for(server: KeyServer, **options: Any) -> CognitoAuth:
    return CognitoAuth(
        CognitoConfig(issuer=ISSUER, client_id=CLIENT, jwks_url=server.url, **options)
    )


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


async def test_keys_are_fetched_once_and_cached(
    key_server: KeyServer, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    key_server.keys = [public_jwk(keys[0], "k1")]
    auth = auth_for(key_server)
    for _ in range(3):
        assert await auth.is_owner("alice", id_token(keys[0], "k1"))
    assert key_server.fetches == 1


async def test_keys_are_fetched_again_after_their_ttl(
    key_server: KeyServer, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    key_server.keys = [public_jwk(keys[0], "k1")]
    auth = auth_for(key_server, jwks_ttl_seconds=0.0)
    assert await auth.is_owner("alice", id_token(keys[0], "k1"))
    assert await auth.is_owner("alice", id_token(keys[0], "k1"))
    assert key_server.fetches == 2


async def test_an_unknown_key_id_is_fetched_once_then_rotated_keys_work(
    key_server: KeyServer, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    key_server.keys = [public_jwk(keys[0], "k1")]
    auth = auth_for(key_server, refetch_interval_seconds=0.0)
    assert await auth.is_owner("alice", id_token(keys[0], "k1"))

    key_server.keys = [public_jwk(keys[0], "k1"), public_jwk(keys[1], "k2")]
    assert await auth.is_owner("alice", id_token(keys[1], "k2"))
    assert key_server.fetches == 2
    assert await auth.is_owner("alice", id_token(keys[1], "k2"))
    assert key_server.fetches == 2

    assert not await auth.is_owner("alice", id_token(keys[1], "k3"))
    assert key_server.fetches == 3


async def test_unknown_key_ids_do_not_fetch_within_the_interval(
    key_server: KeyServer, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    key_server.keys = [public_jwk(keys[0], "k1")]
    auth = auth_for(key_server, refetch_interval_seconds=60.0)
    assert await auth.is_owner("alice", id_token(keys[0], "k1"))
    for n in range(5):
        assert not await auth.is_owner("alice", id_token(keys[1], f"made-up-{n}"))
    assert key_server.fetches == 1


async def test_a_key_of_another_signer_under_a_known_id_is_refused(
    key_server: KeyServer, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    key_server.keys = [public_jwk(keys[0], "k1")]
    assert not await auth_for(key_server).is_owner("alice", id_token(keys[1], "k1"))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        "a.b.c",
        jwt.encode({"x": 1}, "s" * 32, algorithm="HS256", headers={"kid": "k1"}),
        jwt.encode({"x": 1}, None, algorithm="none"),
    ],
)
async def test_what_is_not_an_rs256_jwt_is_refused(
    key_server: KeyServer,
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    token: str,
) -> None:
    key_server.keys = [public_jwk(keys[0], "k1")]
    assert not await auth_for(key_server).is_owner("alice", token)


async def test_claims_are_checked(
    key_server: KeyServer, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    key_server.keys = [public_jwk(keys[0], "k1")]
    auth = auth_for(key_server, leeway_seconds=30.0)
    key = keys[0]
    now = int(time.time())
    assert await auth.is_owner("alice", id_token(key, "k1", exp=now - 10))
    refused = [
        id_token(key, "k1", exp=now - 60),
        id_token(key, "k1", iat=now + 600),
        id_token(key, "k1", iss=ISSUER + "x"),
        id_token(key, "k1", aud="another-client"),
        id_token(key, "k1", token_use="access"),
        id_token(key, "k1", **{"cognito:username": "bob"}),
    ]
    for token in refused:
        assert not await auth.is_owner("alice", token)
    claims = id_token(key, "k1")
    without_use = jwt.encode(
        {
            k: v
            for k, v in jwt.decode(claims, options={"verify_signature": False}).items()
            if k != "token_use"
        },
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    assert not await auth.is_owner("alice", without_use)


async def test_an_unreachable_jwks_is_a_fetch_error(
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    from aiohttp.test_utils import unused_port

    auth = CognitoAuth(
        CognitoConfig(
            issuer=ISSUER,
            client_id=CLIENT,
            jwks_url=f"http://127.0.0.1:{unused_port()}/jwks.json",
            fetch_timeout_seconds=2.0,
        )
    )
    with pytest.raises(FetchError):
        await auth.is_owner("alice", id_token(keys[0], "k1"))


def test_pool_configuration_separates_issuer_and_key_endpoint() -> None:
    public = CognitoConfig.for_user_pool(
        region="eu-west-1", user_pool_id="eu-west-1_abc", client_id="c"
    )
    assert public.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc"
    assert public.jwks_url == public.issuer + "/.well-known/jwks.json"
    local = CognitoConfig.for_user_pool(
        region="eu-west-1",
        user_pool_id="eu-west-1_abc",
        client_id="c",
        endpoint_url="http://127.0.0.1:5000/",
    )
    assert local.issuer == public.issuer
    assert local.jwks_url == "http://127.0.0.1:5000/eu-west-1_abc/.well-known/jwks.json"


# against moto's Cognito


@dataclass(frozen=True)
class Pool:
    endpoint: str
    pool_id: str
    client_id: str
    other_client_id: str
    id_token: str
    access_token: str
    other_client_token: str
    foreign_pool_token: str

    def config(self) -> CognitoConfig:
        return CognitoConfig.for_user_pool(
            region="us-east-1",
            user_pool_id=self.pool_id,
            client_id=self.client_id,
            endpoint_url=self.endpoint,
        )


def _pool_with_alice(idp: Any, name: str) -> tuple[str, str, str]:
    pool_id = idp.create_user_pool(PoolName=name)["UserPool"]["Id"]
    clients = [
        idp.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=client,
            ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"],
        )["UserPoolClient"]["ClientId"]
        for client in ("web", "other")
    ]
    idp.admin_create_user(
        UserPoolId=pool_id,
        Username="alice",
        TemporaryPassword="Temporary-1-pass",
        MessageAction="SUPPRESS",
    )
    idp.admin_set_user_password(
        UserPoolId=pool_id, Username="alice", Password="Correct-horse-9", Permanent=True
    )
    return pool_id, clients[0], clients[1]


def _login(idp: Any, pool_id: str, client_id: str) -> dict[str, Any]:
    result: dict[str, Any] = idp.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "alice", "PASSWORD": "Correct-horse-9"},
    )["AuthenticationResult"]
    return result


@pytest.fixture(scope="module")
def pool(moto_endpoint: str) -> Iterator[Pool]:
    import boto3

    idp = boto3.client("cognito-idp", endpoint_url=moto_endpoint, **MOTO_CREDENTIALS)
    suffix = uuid.uuid4().hex[:8]
    pool_id, client_id, other_id = _pool_with_alice(idp, f"mumble-{suffix}")
    foreign_id, foreign_client, _ = _pool_with_alice(idp, f"foreign-{suffix}")
    tokens = _login(idp, pool_id, client_id)
    yield Pool(
        endpoint=moto_endpoint,
        pool_id=pool_id,
        client_id=client_id,
        other_client_id=other_id,
        id_token=tokens["IdToken"],
        access_token=tokens["AccessToken"],
        other_client_token=_login(idp, pool_id, other_id)["IdToken"],
        foreign_pool_token=_login(idp, foreign_id, foreign_client)["IdToken"],
    )


def resign(pool_token: str, **claims: Any) -> str:
    """The token with some claims changed, signed again with the pool's key.

    moto signs every token with the private key it ships; signing with it
    again makes a token the pool could have issued (an expired one, say).
    """
    from moto.utilities.utils import load_resource

    private = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"))
    header = jwt.get_unverified_header(pool_token)
    payload = jwt.decode(pool_token, options={"verify_signature": False}) | claims
    return jwt.encode(
        payload, private.key, algorithm="RS256", headers={"kid": header["kid"]}
    )


@needs_aws
async def test_a_real_id_token_is_the_owners(pool: Pool) -> None:
    auth = CognitoAuth(pool.config())
    claims = await auth.verify(pool.id_token)
    assert claims["iss"].endswith("/" + pool.pool_id)
    assert claims["aud"] == pool.client_id
    assert await auth.is_owner("alice", pool.id_token)
    assert not await auth.is_owner("bob", pool.id_token)


@needs_aws
async def test_tokens_that_are_not_the_owners_are_refused(pool: Pool) -> None:
    auth = CognitoAuth(pool.config())
    header, payload, signature = pool.id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_payload = (
        base64.urlsafe_b64encode(
            json.dumps(claims | {"cognito:username": "mallory"}).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    refused = {
        "expired": resign(pool.id_token, exp=int(time.time()) - 120),
        "foreign issuer": pool.foreign_pool_token,
        "wrong audience": pool.other_client_token,
        "access token": pool.access_token,
        "tampered claims": f"{header}.{forged_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{flipped}",
    }
    for case, token in refused.items():
        assert not await auth.is_owner("alice", token), case
    assert not await auth.is_owner("mallory", refused["tampered claims"])


@needs_aws
async def test_the_outbox_answers_401_to_refused_tokens(
    pool: Pool, tmp_path: Path
) -> None:
    settings = Settings(origin="https://social.example", data_dir=tmp_path / "data")
    config = pool.config()
    app = Mumble(settings, auth=lambda _fed: CognitoAuth(config)).web_app(worker=False)
    note = json.dumps({"type": "Note", "content": "hi"}).encode()

    async def post(token: str) -> int:
        headers = {
            "Host": API_DOMAIN,
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/activity+json",
        }
        event = v2_event("POST", "/users/alice/outbox", headers, body=note)
        result = await adapter.handle(event)
        if result["statusCode"] == 401:
            assert json_of(result) == {"error": "the token is not the owner's"}
        status: int = result["statusCode"]
        return status

    adapter = LambdaAdapter(app, max_body_bytes=settings.max_body_bytes)
    async with adapter:
        await app[FEDERATION].users.create("alice")
        assert await post(resign(pool.id_token, exp=int(time.time()) - 120)) == 401
        assert await post(pool.foreign_pool_token) == 401
        assert await post(pool.access_token) == 401
        assert await post(pool.id_token) == 201
