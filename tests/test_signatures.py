"""HTTP Signatures: parsing, the signing string, the rules peers rely on."""

from __future__ import annotations

import base64
import hashlib
import time
from email.utils import formatdate
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from multidict import CIMultiDict

from mumble import signatures
from mumble.errors import FetchError
from mumble.signatures import (
    PublicKey,
    SignatureError,
    SignedRequest,
    digest_header,
    generate_private_key,
    load_public_key,
    parse_signature,
    public_key_pem,
    sign_request,
    verify_request,
)

KEY_ID = "https://remote.example/users/bob#main-key"
OWNER = "https://remote.example/users/bob"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return generate_private_key()


class Keys:
    """A key resolver that counts its calls and can serve a stale key first."""

    def __init__(self, *keys: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> None:
        self.keys = list(keys)
        self.calls: list[bool] = []

    async def __call__(self, key_id: str, refresh: bool) -> PublicKey:
        self.calls.append(refresh)
        if not self.keys:
            raise FetchError("no such key")
        key = self.keys[-1] if refresh else self.keys[0]
        return PublicKey(key_id, OWNER, key.public_key())


def request(
    headers: dict[str, str], body: bytes | None = b"{}", target: str = "/inbox"
) -> SignedRequest:
    return SignedRequest("POST", target, CIMultiDict(headers), body)


def signed(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
    body: bytes = b"{}",
    url: str = "https://local.example/inbox",
    now: float = NOW,
) -> dict[str, str]:
    return sign_request(
        "POST",
        url,
        key_id=KEY_ID,
        private_key=key,
        body=body,
        headers={"Content-Type": "application/activity+json"},
        now=now,
    )


def manual(key: rsa.RSAPrivateKey, lines: list[tuple[str, str]], **params: str) -> str:
    """Sign a hand-built signing string, for shapes our signer does not produce."""
    text = "\n".join(f"{n}: {v}" for n, v in lines).encode()
    sig = base64.b64encode(key.sign(text, padding.PKCS1v15(), hashes.SHA256())).decode()
    names = " ".join(n for n, _ in lines)
    extra = "".join(f",{k}={v}" for k, v in params.items())
    return f'keyId="{KEY_ID}",headers="{names}",signature="{sig}"{extra}'


async def test_a_signed_post_verifies(rsa_key: rsa.RSAPrivateKey) -> None:
    result = await verify_request(request(signed(rsa_key)), Keys(rsa_key), now=NOW)
    assert result.ok and result.owner == OWNER and result.key_id == KEY_ID


async def test_the_signature_covers_request_target_host_date_digest_and_type(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    params = parse_signature(signed(rsa_key)["Signature"])
    assert params.headers == (
        "(request-target)",
        "host",
        "date",
        "digest",
        "content-type",
    )
    assert params.algorithm == "rsa-sha256"


async def test_hs2019_and_a_missing_algorithm_let_the_key_decide(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    date = formatdate(NOW, usegmt=True)
    body = b"{}"
    lines = [
        ("(request-target)", "post /inbox"),
        ("host", "local.example"),
        ("date", date),
        ("digest", digest_header(body)),
    ]
    headers = {"Host": "local.example", "Date": date, "Digest": digest_header(body)}
    for extra in ({"algorithm": '"hs2019"'}, {}):
        result = await verify_request(
            request(headers | {"Signature": manual(rsa_key, lines, **extra)}),
            Keys(rsa_key),
            now=NOW,
        )
        assert result.ok, result.reason


async def test_ed25519_keys_verify_with_hs2019() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    result = await verify_request(request(signed(key)), Keys(key), now=NOW)
    assert result.ok, result.reason


async def test_rsa_sha256_with_an_ed25519_key_fails() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    headers = signed(key)
    headers["Signature"] = headers["Signature"].replace(
        'algorithm="hs2019"', 'algorithm="rsa-sha256"'
    )
    result = await verify_request(request(headers), Keys(key), now=NOW)
    assert not result.ok


async def test_created_and_expires_can_replace_date(rsa_key: rsa.RSAPrivateKey) -> None:
    body = b"{}"
    created, expires = int(NOW) - 10, int(NOW) + 300
    lines = [
        ("(request-target)", "post /inbox"),
        ("(created)", str(created)),
        ("(expires)", str(expires)),
        ("digest", digest_header(body)),
    ]
    sig = manual(
        rsa_key, lines, created=str(created), expires=str(expires), algorithm='"hs2019"'
    )
    result = await verify_request(
        request({"Digest": digest_header(body), "Signature": sig}),
        Keys(rsa_key),
        now=NOW,
    )
    assert result.ok, result.reason
    late = await verify_request(
        request({"Digest": digest_header(body), "Signature": sig}),
        Keys(rsa_key),
        now=expires + 3700,
    )
    assert not late.ok and "expired" in late.reason


async def test_headers_are_used_in_the_order_the_signature_names(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    date = formatdate(NOW, usegmt=True)
    body = b"{}"
    lines = [
        ("digest", digest_header(body)),
        ("date", date),
        ("(request-target)", "post /inbox"),
        ("x-custom", "a, b"),
    ]
    headers = CIMultiDict({"Date": date, "Digest": digest_header(body)})
    headers.add("X-Custom", "a")
    headers.add("X-Custom", "b")
    headers["Signature"] = manual(rsa_key, lines)
    result = await verify_request(
        SignedRequest("POST", "/inbox", headers, body), Keys(rsa_key), now=NOW
    )
    assert result.ok, result.reason


async def test_the_raw_path_is_used_with_its_query_then_without(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    raw = "/users/b%C3%B6b/inbox?x=%2F"
    with_query = signed(rsa_key, url=f"https://local.example{raw}")
    assert (
        await verify_request(request(with_query, target=raw), Keys(rsa_key), now=NOW)
    ).ok
    without_query = signed(rsa_key, url="https://local.example/users/b%C3%B6b/inbox")
    assert (
        await verify_request(request(without_query, target=raw), Keys(rsa_key), now=NOW)
    ).ok
    decoded = await verify_request(
        request(with_query, target="/users/böb/inbox?x=/"), Keys(rsa_key), now=NOW
    )
    assert not decoded.ok


@pytest.mark.parametrize(
    "value", ["SHA-256={}", "sha-256={}", "SHA-512=AAAA, sha-256={}"]
)
async def test_the_digest_algorithm_is_case_insensitive_and_may_be_one_of_several(
    rsa_key: rsa.RSAPrivateKey, value: str
) -> None:
    body = b'{"a": 1}'
    encoded = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if value.startswith("SHA-512"):
        value = (
            "SHA-512="
            + base64.b64encode(hashlib.sha512(body).digest()).decode()
            + ", sha-256={}"
        )
    date = formatdate(NOW, usegmt=True)
    digest = value.format(encoded)
    lines = [("(request-target)", "post /inbox"), ("date", date), ("digest", digest)]
    headers = {"Date": date, "Digest": digest, "Signature": manual(rsa_key, lines)}
    result = await verify_request(request(headers, body=body), Keys(rsa_key), now=NOW)
    assert result.ok, result.reason


async def test_a_wrong_digest_fails(rsa_key: rsa.RSAPrivateKey) -> None:
    headers = signed(rsa_key, body=b"{}")
    result = await verify_request(request(headers, body=b"{ }"), Keys(rsa_key), now=NOW)
    assert not result.ok and "digest" in result.reason


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(-3600 - 290, True), (-3600 - 400, False), (3590, True), (3700, False)],
)
async def test_the_time_window_is_an_hour_ahead_and_a_little_over_an_hour_behind(
    rsa_key: rsa.RSAPrivateKey, offset: float, ok: bool
) -> None:
    headers = signed(rsa_key, now=NOW + offset)
    result = await verify_request(request(headers), Keys(rsa_key), now=NOW)
    assert result.ok is ok, result.reason


async def test_a_lenient_date_is_parsed_but_the_raw_value_is_signed(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(NOW))
    lines = [
        ("(request-target)", "post /inbox"),
        ("date", date),
        ("digest", digest_header(b"{}")),
    ]
    headers = {
        "Date": date,
        "Digest": digest_header(b"{}"),
        "Signature": manual(rsa_key, lines),
    }
    assert (await verify_request(request(headers), Keys(rsa_key), now=NOW)).ok


async def test_a_post_must_sign_its_digest(rsa_key: rsa.RSAPrivateKey) -> None:
    date = formatdate(NOW, usegmt=True)
    lines = [("(request-target)", "post /inbox"), ("date", date)]
    headers = {
        "Date": date,
        "Digest": digest_header(b"{}"),
        "Signature": manual(rsa_key, lines),
    }
    result = await verify_request(request(headers), Keys(rsa_key), now=NOW)
    assert not result.ok and "digest" in result.reason


async def test_a_rotated_key_is_refetched_once(rsa_key: rsa.RSAPrivateKey) -> None:
    new_key = generate_private_key()
    keys = Keys(rsa_key, new_key)
    result = await verify_request(request(signed(new_key)), keys, now=NOW)
    assert result.ok and keys.calls == [False, True]
    forged = Keys(rsa_key, rsa_key)
    result = await verify_request(request(signed(new_key)), forged, now=NOW)
    assert not result.ok and forged.calls == [False, True]


async def test_an_unreachable_key_is_a_failure_not_an_exception(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    result = await verify_request(request(signed(rsa_key)), Keys(), now=NOW)
    assert not result.ok and "unavailable" in result.reason


async def test_rfc9421_requests_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    headers = signed(rsa_key) | {"Signature-Input": 'sig1=("@method");keyid="k"'}
    result = await verify_request(request(headers), Keys(rsa_key), now=NOW)
    assert not result.ok and "RFC 9421" in result.reason


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        'keyId="k"',
        'signature="AAAA"',
        'keyId="k",signature="not base64!"',
        'keyId="k",signature="AAAA",created="soon"',
        'keyId="k",,signature="AAAA"',
    ],
)
def test_malformed_signature_headers_raise_signature_error(header: str) -> None:
    with pytest.raises(SignatureError):
        parse_signature(header)


def test_unquoted_integers_and_quoted_strings_parse() -> None:
    params = parse_signature(
        'keyId="a,b=\\"c",algorithm="hs2019",created=1700000000,expires=1700000300,'
        'headers="(created) digest",signature="AAAA"'
    )
    assert (
        params.key_id == 'a,b="c'
        and params.created == 1700000000
        and params.expires == 1700000300
    )
    assert params.headers == ("(created)", "digest")


async def test_a_refresh_that_finds_the_same_key_checks_nothing_twice(
    rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bytes] = []
    real = signatures.verify_signature

    def counted(params: Any, key: Any, message: bytes) -> bool:
        checks.append(message)
        return real(params, key, message)

    monkeypatch.setattr(signatures, "verify_signature", counted)
    forged = Keys(rsa_key, rsa_key)
    target = "/inbox?page=1"
    headers = signed(generate_private_key(), url=f"https://local.example{target}")
    result = await verify_request(request(headers, target=target), forged, now=NOW)
    assert not result.ok and forged.calls == [False, True]
    # With and without the query, against the one key: two checks, not four.
    assert len(checks) == 2


@pytest.mark.parametrize(
    ("exponent", "bits"),
    [(2**2000 + 1, 2048), (65537, 512)],
    ids=["a huge exponent", "a tiny modulus"],
)
def test_keys_too_costly_to_check_or_too_weak_to_trust_are_refused(
    exponent: int, bits: int
) -> None:
    from cryptography.hazmat.primitives import serialization

    modulus = rsa.generate_private_key(65537, max(bits, 1024)).public_key()
    n = modulus.public_numbers().n if bits >= 1024 else (2**bits - 1) | 1
    key = rsa.RSAPublicNumbers(exponent, n).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with pytest.raises(ValueError, match="out of range"):
        load_public_key(pem)


def test_ordinary_keys_load(rsa_key: rsa.RSAPrivateKey) -> None:
    assert load_public_key(public_key_pem(rsa_key)).key_size == 2048
