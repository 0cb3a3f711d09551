"""HTTP Signatures (draft-cavage-http-signatures-12) as the fediverse uses them.

Verifying is split from deciding: :func:`verify_request` never raises for a
peer's bad input. It returns a frozen :class:`Verification` whose ``reason``
says what was wrong; the caller maps that to an HTTP answer.

The signing string is built from the headers the signature names, in that
order, from the request exactly as received: the raw path and query, header
values as sent, nothing decoded or re-encoded.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from multidict import MultiMapping

from .errors import FetchError, MumbleError

CLOCK_SKEW = 3600.0
MIN_RSA_BITS = 1024
MAX_RSA_BITS = 8192
DEFAULT_VALIDITY = 300.0
MAX_VALIDITY = 12 * 3600.0

PublicKeyType = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKeyType = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# A quoted value is matched as runs of plain characters between escapes,
# which is many times faster than one alternation per character.
_PARAM = re.compile(
    r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("[^"\\]*(?:\\.[^"\\]*)*"|[0-9]+)\s*(?:,|$)'
)
_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
#: Digests one request may list: each costs a pass over the body.
MAX_DIGESTS = 8


Headers = MultiMapping[str]
"""Request headers as received, every value of a repeated header kept."""


class SignatureError(MumbleError, ValueError):
    """A signature header that cannot be parsed or fails a structural rule."""

    status = 401


@dataclass(frozen=True)
class SignatureParams:
    key_id: str
    algorithm: str | None
    headers: tuple[str, ...]
    signature: bytes
    created: int | None = None
    expires: int | None = None


@dataclass(frozen=True)
class SignedRequest:
    """A request as received, reduced to what a signature can cover."""

    method: str
    raw_target: str
    headers: Headers
    body: bytes | None = None


@dataclass(frozen=True)
class PublicKey:
    id: str
    owner: str
    key: PublicKeyType


@dataclass(frozen=True)
class Verification:
    ok: bool
    reason: str
    key_id: str | None = None
    owner: str | None = None

    @classmethod
    def failed(cls, reason: str, key_id: str | None = None) -> Verification:
        return cls(False, reason, key_id)


KeyResolver = Callable[[str, bool], Awaitable[PublicKey]]
"""Looks a key up by id; the flag asks for a fresh copy rather than a cached one."""


def parse_signature(value: str) -> SignatureParams:
    """Parse a ``Signature`` header; raise :class:`SignatureError` when malformed."""
    params: dict[str, str] = {}
    pos = 0
    value = value.strip()
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if not match or match.end() == pos:
            raise SignatureError("malformed Signature header")
        name, raw = match.group(1).lower(), match.group(2)
        params[name] = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        pos = match.end()
    if "keyid" not in params or "signature" not in params:
        raise SignatureError("Signature header lacks keyId or signature")
    try:
        signature = base64.b64decode(params["signature"], validate=True)
    except ValueError as exc:
        raise SignatureError("signature is not valid base64") from exc
    names = tuple(params.get("headers", "date").lower().split())
    if not names:
        raise SignatureError("Signature header names no headers")
    return SignatureParams(
        key_id=params["keyid"],
        algorithm=params.get("algorithm", "").lower() or None,
        headers=names,
        signature=signature,
        created=_integer(params, "created"),
        expires=_integer(params, "expires"),
    )


def _integer(params: Mapping[str, str], name: str) -> int | None:
    """A Unix time parameter; anything but a plausible one is malformed."""
    if name not in params:
        return None
    value = params[name]
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise SignatureError(f"{name} is not a Unix time")
    return int(value)


def signing_string(
    params: SignatureParams, method: str, target: str, headers: Headers
) -> str:
    """The text a draft-cavage signature covers."""
    lines = []
    for name in params.headers:
        if name == "(request-target)":
            lines.append(f"{name}: {method.lower()} {target}")
        elif name in ("(created)", "(expires)"):
            number = params.created if name == "(created)" else params.expires
            if number is None:
                raise SignatureError(f"{name} is signed but has no value")
            lines.append(f"{name}: {number}")
        elif name.startswith("("):
            raise SignatureError(f"unknown pseudo-header {name}")
        else:
            values = headers.getall(name, [])
            if not values:
                raise SignatureError(f"signed header {name} is missing")
            lines.append(f"{name}: {', '.join(v.strip() for v in values)}")
    return "\n".join(lines)


def check_strength(params: SignatureParams, method: str, has_body: bool) -> None:
    """Refuse signatures that cover too little to be worth checking."""
    names = set(params.headers)
    if not names & {"date", "(created)"}:
        raise SignatureError("the signature must cover date or (created)")
    if not names & {"(request-target)", "digest"}:
        raise SignatureError("the signature must cover (request-target) or digest")
    if method.upper() == "GET" and "host" not in names:
        raise SignatureError("a signed GET must cover host")
    if (
        method.upper() == "POST"
        and has_body
        and not names & {"digest", "content-digest"}
    ):
        raise SignatureError("a signed POST must cover its digest")


def check_digest(headers: Headers, body: bytes) -> None:
    """Check ``Digest`` and ``Content-Digest`` against the body, where present."""
    items = [
        (algorithm, encoded)
        for value in headers.getall("digest", [])
        for algorithm, _, encoded in (
            i.strip().partition("=") for i in value.split(",")
        )
    ] + [
        (algorithm, encoded.strip().strip(":"))
        for value in headers.getall("content-digest", [])
        for algorithm, _, encoded in (
            i.strip().partition("=") for i in value.split(",")
        )
    ]
    if len(items) > MAX_DIGESTS:
        raise SignatureError(f"more than {MAX_DIGESTS} digests of one body")
    # Each algorithm passes over the body once, however often it is listed.
    computed: dict[str, bytes] = {}
    checked = False
    for algorithm, encoded in items:
        name = algorithm.strip().lower()
        if name not in _DIGESTS:
            continue
        try:
            expected = base64.b64decode(encoded.strip(), validate=True)
        except ValueError as exc:
            raise SignatureError("digest is not valid base64") from exc
        if name not in computed:
            computed[name] = _DIGESTS[name](body).digest()
        if computed[name] != expected:
            raise SignatureError("digest does not match the body")
        checked = True
    if not checked:
        raise SignatureError("no supported Digest or Content-Digest for the body")


def parse_http_date(value: str) -> float | None:
    """Parse a Date header leniently; None when it is not a date at all."""
    try:
        parsed = parsedate_to_datetime(value.strip())
        if parsed.tzinfo is None:
            return None
        return parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        # OverflowError: a year that no clock reaches.
        return None


def check_time(params: SignatureParams, headers: Headers, now: float) -> None:
    """Accept from an hour ahead to a little over an hour behind, as peers do."""
    if "(created)" in params.headers:
        created: float | None = params.created
    else:
        dates = headers.getall("date", [])
        created = parse_http_date(dates[0]) if dates else None
        if dates and created is None:
            raise SignatureError("Date header is not a date")
    if created is None:
        raise SignatureError("the request carries no signing time")
    # An expiry counts only when the signature covers it: anyone can add an
    # unsigned parameter to stretch a captured request's lifetime.
    expires: float | None = None
    if "(expires)" in params.headers and params.expires is not None:
        expires = float(params.expires)
        if expires < created:
            raise SignatureError("the signature expires before it was made")
    if expires is None:
        expires = created + DEFAULT_VALIDITY
    expires = min(expires, created + MAX_VALIDITY)
    if created > now + CLOCK_SKEW:
        raise SignatureError("the signature was made in the future")
    if now > expires + CLOCK_SKEW:
        raise SignatureError("the signature has expired")


def verify_signature(
    params: SignatureParams, key: PublicKeyType, message: bytes
) -> bool:
    """Check the raw signature with the key; the key's type decides for hs2019."""
    algorithm = params.algorithm or "hs2019"
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if algorithm not in ("rsa-sha256", "rsa-sha512", "hs2019"):
                return False
            hash_: hashes.HashAlgorithm = (
                hashes.SHA512() if algorithm == "rsa-sha512" else hashes.SHA256()
            )
            try:
                key.verify(params.signature, message, padding.PKCS1v15(), hash_)
                return True
            except InvalidSignature:
                if algorithm != "hs2019":
                    return False
            pss = padding.PSS(padding.MGF1(hashes.SHA512()), padding.PSS.AUTO)
            key.verify(params.signature, message, pss, hashes.SHA512())
            return True
        if algorithm not in ("ed25519", "hs2019"):
            return False
        key.verify(params.signature, message)
        return True
    except InvalidSignature:
        return False


def _messages(params: SignatureParams, request: SignedRequest) -> list[bytes]:
    """What the signature may cover: the raw target with its query, then without."""
    targets = [request.raw_target]
    if "?" in request.raw_target:
        targets.append(request.raw_target.split("?", 1)[0])
    # Header values as aiohttp decoded them, with bytes that are not UTF-8
    # kept as surrogate escapes: encoded back, they are the bytes received.
    try:
        return [
            signing_string(params, request.method, target, request.headers).encode(
                "utf-8", "surrogateescape"
            )
            for target in targets
        ]
    except UnicodeEncodeError as exc:
        raise SignatureError("a signed value is not text") from exc


async def verify_request(
    request: SignedRequest, resolve_key: KeyResolver, *, now: float | None = None
) -> Verification:
    """Verify a draft-cavage signed request; never raises for bad input."""
    if "signature-input" in request.headers:
        return Verification.failed("RFC 9421 signatures are not supported")
    values = request.headers.getall("signature", [])
    if not values:
        return Verification.failed("the request is not signed")
    if len(values) > 1:
        return Verification.failed("the request carries more than one signature")
    try:
        params = parse_signature(values[0])
        check_strength(params, request.method, bool(request.body))
        if request.body is not None and request.method.upper() == "POST":
            check_digest(request.headers, request.body)
        check_time(params, request.headers, time.time() if now is None else now)
        messages = _messages(params, request)
    except SignatureError as exc:
        return Verification.failed(exc.message)

    tried: PublicKeyType | None = None
    for refresh in (False, True):
        try:
            key = await resolve_key(params.key_id, refresh)
        except FetchError as exc:
            return Verification.failed(f"key {params.key_id} unavailable: {exc}")
        if tried is not None and _same_key(tried, key.key):
            break  # the refresh found the key already tried
        if any(verify_signature(params, key.key, m) for m in messages):
            return Verification(True, "verified", key.id, key.owner)
        tried = key.key
    return Verification.failed("signature does not verify", params.key_id)


def _same_key(a: PublicKeyType, b: PublicKeyType) -> bool:
    if a is b:
        return True
    if isinstance(a, rsa.RSAPublicKey) and isinstance(b, rsa.RSAPublicKey):
        return a.public_numbers() == b.public_numbers()
    return False


def digest_header(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def http_date(now: float | None = None) -> str:
    """An IMF-fixdate, as the Date header wants it."""
    return formatdate(time.time() if now is None else now, usegmt=True)


def sign_request(
    method: str,
    url: str,
    *,
    key_id: str,
    private_key: PrivateKeyType,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    digest: str | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """Return the headers that sign a request: Host, Date, Digest and Signature.

    POSTs cover ``(request-target) host date digest content-type``; GETs cover
    ``(request-target) host date``. ``digest`` may be passed precomputed when one
    body goes to many inboxes.
    """
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    out = dict(headers or {})
    out["Host"] = parts.netloc
    out["Date"] = http_date(now)
    names = ["(request-target)", "host", "date"]
    if body is not None:
        out["Digest"] = digest or digest_header(body)
        names.append("digest")
        if "Content-Type" in out:
            names.append("content-type")
    lookup = {k.lower(): v for k, v in out.items()}
    lines = [
        f"{n}: {method.lower()} {target}"
        if n == "(request-target)"
        else f"{n}: {lookup[n]}"
        for n in names
    ]
    message = "\n".join(lines).encode("utf-8")
    if isinstance(private_key, rsa.RSAPrivateKey):
        raw = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        algorithm = "rsa-sha256"
    else:
        raw = private_key.sign(message)
        algorithm = "hs2019"
    signature = base64.b64encode(raw).decode()
    out["Signature"] = (
        f'keyId="{key_id}",algorithm="{algorithm}",'
        f'headers="{" ".join(names)}",signature="{signature}"'
    )
    return out


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: PrivateKeyType) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(key: PrivateKeyType) -> str:
    return (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


def load_private_key(pem: str) -> PrivateKeyType:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("only RSA and Ed25519 private keys are supported")
    return key


def load_public_key(pem: str) -> PublicKeyType:
    """Load a PEM public key; raise ValueError when it is not RSA or Ed25519."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except UnsupportedAlgorithm as exc:
        raise ValueError("the key's algorithm is not supported") from exc
    if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ValueError("only RSA and Ed25519 public keys are supported")
    if isinstance(key, rsa.RSAPublicKey):
        # Each check with a key costs what its exponent and size make it
        # cost; a peer's key must not make ours expensive.
        numbers = key.public_numbers()
        if (
            not 3 <= numbers.e < 2**32
            or not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS
        ):
            raise ValueError("the RSA key's exponent or size is out of range")
    return key
