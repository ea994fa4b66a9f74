"""Bearer tokens: our Ed25519 signing keys, the JWTs we issue and check, and the 粤省事 ticket login.

Tokens are short-lived (at most two hours) and asymmetric, so anyone holding ``/.well-known/jwks.json`` can
check them and only this server can mint them. Every check uses a fixed algorithm list and a ``kid`` that
must be one of ours; the token's own header never chooses how it is verified.

粤省事 and the other provincial apps have no public protocol (shared/wechat-platform.md §3): ``ProviderVerifier``
(``YueshengshiVerifier`` is its old name) checks the JWTs of such an external identity provider against its
JWKS — the login tickets and the ID tokens of its face check (backend/channels.py, docs/decisions/0030).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeGuard, get_args

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backend.config import ConfigError, ProviderSettings, ensure_private_dir
from domain.channels import CHANNELS
from domain.errors import DomainError, Forbidden, InvalidValue
from domain.values import Actor, Role

__all__ = [
    "JWT_ALGORITHMS",
    "MAX_TOKEN_TTL",
    "PROVIDER_ALGORITHMS",
    "IdTokenRefused",
    "ProviderIdentity",
    "ProviderUnavailable",
    "ProviderVerifier",
    "RoleNotAllowed",
    "SeenTickets",
    "SharedSeenTickets",
    "TokenIssuer",
    "TokenKeys",
    "Unauthenticated",
    "YueshengshiVerifier",
    "authenticate",
    "bearer_token",
    "jwk_thumbprint",
    "jwks_response",
]

log = logging.getLogger(__name__)

JWT_ALGORITHMS: Final = ("EdDSA",)
PROVIDER_ALGORITHMS: Final = ("EdDSA", "ES256", "RS256")
MAX_TOKEN_TTL: Final = 2 * 60 * 60
MAX_TICKET_TTL: Final = 10 * 60
LEEWAY: Final = 30
CURRENT_KEY_FILE: Final = "current.pem"
PREVIOUS_KEY_FILE: Final = "previous.pem"
KEY_ENV: Final = "BIRTHCERT_JWT_KEY"
PREVIOUS_KEY_ENV: Final = "BIRTHCERT_JWT_PREVIOUS_KEY"
JWKS_CACHE_CONTROL: Final = "public, max-age=300"

_TOKEN_CLAIMS: Final = ("exp", "iat", "iss", "aud", "sub", "role")
_RESERVED_CLAIMS: Final = frozenset(
    {"iss", "aud", "sub", "role", "inst", "name", "scope", "iat", "nbf", "exp", "jti"}
)
# ``system`` is what the server records for its own work; no caller ever presents it.
_TOKEN_ROLES: Final[frozenset[str]] = frozenset(get_args(Role)) - {"system"}
_STAFF_ROLES: Final = _TOKEN_ROLES - {"parent"}
_INSTITUTION_ROLES: Final = frozenset({"hospital", "issuer"})
_MAX_TOKEN_CHARS: Final = 8192
_MAX_SUBJECT_CHARS: Final = 128


# --- errors --------------------------------------------------------------------------------------------


class Unauthenticated(DomainError):
    """No credentials, or credentials we do not accept (HTTP 401)."""

    code = "token_invalid"
    message = "登录状态无效，请重新登录"

    MESSAGES: Final[Mapping[str, str]] = {
        "token_missing": "请先登录",
        "token_invalid": "登录状态无效，请重新登录",
        "token_expired": "登录已过期，请重新登录",
        "account_disabled": "该账号已停用，请联系管理员",
        "ticket_invalid": "粤省事登录凭证无效，请从粤省事重新进入",
        "ticket_expired": "粤省事登录凭证已过期，请从粤省事重新进入",
        "provider_unavailable": "粤省事服务暂不可用，请稍后再试",
    }

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        code = code or type(self).code
        super().__init__(message or self.MESSAGES.get(code), code=code)

    @property
    def www_authenticate(self) -> str:
        """The RFC 6750 ``WWW-Authenticate`` value for a 401 carrying this error."""
        if self.code == "token_missing":
            return 'Bearer realm="birthcert"'
        return 'Bearer realm="birthcert", error="invalid_token"'


class ProviderUnavailable(Unauthenticated):
    """The identity provider could not be asked (its JWKS did not load): a 503, not the parent's fault."""

    code = "provider_unavailable"
    message = "粤省事服务暂不可用，请稍后再试"


class IdTokenRefused(Exception):
    """A provider's ID token that does not verify; ``code`` is the face check's failure code (decision 0030)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class RoleNotAllowed(Forbidden):
    """A valid token whose role may not call this endpoint (HTTP 403)."""

    code = "role_not_allowed"
    message = "您的账号没有权限进行此操作"


# --- our signing keys ----------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(key: Ed25519PublicKey) -> str:
    """The RFC 7638 thumbprint (base64url SHA-256) of an Ed25519 public key; our ``kid``."""
    # RFC 8037 §2: the required members of an OKP key are crv, kty and x, in that (lexicographic) order.
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(key))}, separators=(",", ":")
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _parse_pem(pem: bytes | str, source: str) -> Ed25519PrivateKey:
    if isinstance(pem, str):
        # Environments often carry a PEM on one line with literal \n escapes.
        pem = pem.strip().replace("\\n", "\n").encode("ascii", "replace")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # Never echo the text: it is (or was meant to be) a private key.
        raise ConfigError(f"{source} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{source} must be an Ed25519 private key")
    return key


def _read_key_file(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("key file %s was readable by others (mode %o); restricting it to 0600", path, mode)
        path.chmod(0o600)
    return _parse_pem(path.read_bytes(), str(path))


def _write_atomically(key_dir: Path, name: str, pem: bytes) -> None:
    # mkstemp creates the file 0600; the rename makes a reader see the old key or the new one, never half.
    fd, tmp = tempfile.mkstemp(dir=key_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, key_dir / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True, repr=False)
class _SigningKey:
    kid: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @classmethod
    def of(cls, private_key: Ed25519PrivateKey) -> _SigningKey:
        return cls(kid=jwk_thumbprint(private_key.public_key()), private_key=private_key)


class TokenKeys:
    """Our token-signing keys: the current one signs; during a rotation the previous one still verifies."""

    def __init__(self, current: Ed25519PrivateKey, previous: Ed25519PrivateKey | None = None) -> None:
        self._current = _SigningKey.of(current)
        self._previous = _SigningKey.of(previous) if previous is not None else None
        self._public = {self._current.kid: self._current.public_key}
        if self._previous is not None:
            self._public.setdefault(self._previous.kid, self._previous.public_key)

    @classmethod
    def generate(cls) -> TokenKeys:
        """A fresh in-memory key (tests, one-off tools); nothing is written."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, current: bytes | str, previous: bytes | str | None = None) -> TokenKeys:
        """Keys from PEM text (PKCS#8, unencrypted Ed25519)."""
        return cls(
            _parse_pem(current, "the current JWT key"),
            _parse_pem(previous, "the previous JWT key") if previous else None,
        )

    @classmethod
    def load_or_create(cls, key_dir: Path, environ: Mapping[str, str] | None = None) -> TokenKeys:
        """Keys from ``BIRTHCERT_JWT_KEY`` (and ``…_PREVIOUS_KEY``) when set, else the development files
        in ``key_dir``, creating ``current.pem`` there (dir 0700, file 0600) on first use."""
        environ = os.environ if environ is None else environ
        if environ.get(KEY_ENV):
            previous_pem = environ.get(PREVIOUS_KEY_ENV) or None
            return cls(
                _parse_pem(environ[KEY_ENV], KEY_ENV),
                _parse_pem(previous_pem, PREVIOUS_KEY_ENV) if previous_pem else None,
            )
        if environ.get(PREVIOUS_KEY_ENV):
            raise ConfigError(f"{PREVIOUS_KEY_ENV} is set but {KEY_ENV} is not")
        return cls._load_files(key_dir, create=True)

    @classmethod
    def rotate(cls, key_dir: Path) -> TokenKeys:
        """Make a new current key; the old one becomes ``previous.pem`` and keeps verifying until retired.

        Tokens signed by an older previous key stop verifying, so rotate at most once per token lifetime.
        Running servers pick the new keys up when they restart.
        """
        ensure_private_dir(key_dir)
        current_path = key_dir / CURRENT_KEY_FILE
        if current_path.exists():
            old = _read_key_file(current_path)
            if (key_dir / PREVIOUS_KEY_FILE).exists():
                log.warning("rotating again before the previous JWT key was retired: it stops verifying now")
            # Copy, then replace: current.pem exists at every instant, so a starting server never mints one.
            _write_atomically(key_dir, PREVIOUS_KEY_FILE, _pem(old))
        _write_atomically(key_dir, CURRENT_KEY_FILE, _pem(Ed25519PrivateKey.generate()))
        keys = cls._load_files(key_dir, create=False)
        log.info("rotated the JWT signing key in %s: new kid %s", key_dir, keys.current_kid)
        return keys

    @classmethod
    def retire_previous(cls, key_dir: Path) -> TokenKeys:
        """End a rotation's overlap: tokens signed by the previous key stop verifying."""
        (key_dir / PREVIOUS_KEY_FILE).unlink(missing_ok=True)
        return cls._load_files(key_dir, create=False)

    @classmethod
    def _load_files(cls, key_dir: Path, *, create: bool) -> TokenKeys:
        ensure_private_dir(key_dir)
        current_path = key_dir / CURRENT_KEY_FILE
        try:
            current = _read_key_file(current_path)
        except FileNotFoundError:
            if not create:
                raise ConfigError(f"no JWT key at {current_path}") from None
            current = cls._create_current(current_path)
        previous_path = key_dir / PREVIOUS_KEY_FILE
        previous = _read_key_file(previous_path) if previous_path.exists() else None
        return cls(current, previous)

    @staticmethod
    def _create_current(path: Path) -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        try:
            # O_EXCL: if another process won the race, use its key rather than overwrite it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_key_file(path)
        with os.fdopen(fd, "wb") as f:
            f.write(_pem(key))
        log.info("created development JWT key %s", path)
        return key

    @property
    def current_kid(self) -> str:
        """The ``kid`` of the key that signs new tokens."""
        return self._current.kid

    @property
    def kids(self) -> tuple[str, ...]:
        """Every ``kid`` that verifies, the current one first."""
        return tuple(self._public)

    def private_keys(self) -> list[Ed25519PrivateKey]:
        """The current private key, then the previous one during a rotation (the audit log signs with both)."""
        keys = [self._current.private_key]
        if self._previous is not None:
            keys.append(self._previous.private_key)
        return keys

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        """The current ``kid`` and private key."""
        return self._current.kid, self._current.private_key

    def public_key(self, kid: object) -> Ed25519PublicKey | None:
        """The public key for ``kid``, or None when it is not one of ours."""
        return self._public.get(kid) if isinstance(kid, str) else None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set of every key that verifies (public halves only)."""
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(_raw_public(public)),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                }
                for kid, public in self._public.items()
            ]
        }

    def __repr__(self) -> str:
        return f"TokenKeys(kids={list(self._public)!r})"


# --- our tokens ----------------------------------------------------------------------------------------


class TokenIssuer:
    """Issues and verifies this server's bearer tokens."""

    def __init__(self, keys: TokenKeys, issuer: str, audience: str, ttl_seconds: int = MAX_TOKEN_TTL) -> None:
        if not 0 < ttl_seconds <= MAX_TOKEN_TTL:
            raise ValueError(
                f"token lifetime must be between 1 and {MAX_TOKEN_TTL} seconds, not {ttl_seconds}"
            )
        if not issuer or not audience:
            raise ValueError("issuer and audience must not be empty")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        # token → (actor, until): a signature checked once serves the same token's next requests for up
        # to VERIFIED_FOR seconds (never past its exp), which a retired key's tokens may outlive by as much.
        self._verified: dict[str, tuple[Actor, float]] = {}
        self._verified_lock = threading.Lock()

    def issue(self, actor: Actor, *, extra: Mapping[str, Any] | None = None) -> tuple[str, int]:
        """A signed token for ``actor`` and its lifetime in seconds (the API's ``expires_in``)."""
        if actor.role not in _TOKEN_ROLES:
            raise ValueError(f"no token is issued for role {actor.role!r}")
        clash = _RESERVED_CLAIMS.intersection(extra or {})
        if clash:
            raise ValueError(f"extra claims may not replace {sorted(clash)}")
        now = int(time.time())
        claims: dict[str, Any] = dict(extra or {})
        claims.update(
            iss=self.issuer,
            aud=self.audience,
            sub=actor.id,
            role=actor.role,
            iat=now,
            nbf=now,
            exp=now + self.ttl_seconds,
            jti=secrets.token_urlsafe(16),
        )
        if actor.role in _STAFF_ROLES:
            if actor.institution:
                claims["inst"] = actor.institution
            if actor.name:
                claims["name"] = actor.name
            if actor.scope:
                claims["scope"] = actor.scope  # a manager's statistics scope (domain.statistics.Scope)
        kid, private_key = self.keys.signing_key()
        token = jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": kid})
        return token, self.ttl_seconds

    VERIFIED_FOR: Final = 60.0
    VERIFIED_KEPT: Final = 10_000

    def verify(self, token: str) -> Actor:
        """The actor a token speaks for; ``Unauthenticated`` when it is not one we issued and still valid."""
        now = time.time()
        known = self._verified.get(token) if isinstance(token, str) else None
        if known is not None and now < known[1]:
            return known[0]
        claims = self.verify_claims(token)
        role = claims["role"]
        name = claims.get("name")
        try:
            actor = Actor(
                id=claims["sub"],
                role=role,
                institution=claims.get("inst") if role in _STAFF_ROLES else None,
                name=name if isinstance(name, str) and role in _STAFF_ROLES else None,
                scope=claims.get("scope") if role == "manager" else None,
            )
        except InvalidValue:
            raise Unauthenticated(code="token_invalid") from None
        with self._verified_lock:
            if len(self._verified) >= self.VERIFIED_KEPT:
                self._verified = {t: v for t, v in self._verified.items() if v[1] > now}
                if len(self._verified) >= self.VERIFIED_KEPT:
                    self._verified.clear()
            self._verified[token] = (actor, min(float(claims["exp"]), now + self.VERIFIED_FOR))
        return actor

    def verify_claims(self, token: str) -> dict[str, Any]:
        """The verified claims of a token (``verify`` turns them into an ``Actor``)."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated(code="token_invalid")
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.public_key(header.get("kid"))
            if key is None:
                raise Unauthenticated(code="token_invalid")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(JWT_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": list(_TOKEN_CLAIMS), "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated(code="token_invalid") from None
        if not _lifetime_within(claims, MAX_TOKEN_TTL):
            raise Unauthenticated(code="token_invalid")
        role = claims["role"]
        if role not in _TOKEN_ROLES or not isinstance(claims["sub"], str) or not claims["sub"]:
            raise Unauthenticated(code="token_invalid")
        if role in _INSTITUTION_ROLES and not isinstance(claims.get("inst"), str):
            raise Unauthenticated(code="token_invalid")
        if role == "manager" and not isinstance(claims.get("scope"), str):
            raise Unauthenticated(code="token_invalid")
        return claims


def _lifetime_within(claims: Mapping[str, Any], limit: int) -> bool:
    exp, iat = claims.get("exp"), claims.get("iat")
    if not (_is_number(exp) and _is_number(iat)):
        return False
    return 0 < exp - iat <= limit


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- aiohttp edge --------------------------------------------------------------------------------------


def bearer_token(request: web.BaseRequest) -> str:
    """The token in ``Authorization: Bearer …``; ``Unauthenticated`` (token_missing) when there is none."""
    values = request.headers.getall("Authorization", [])
    if len(values) > 1:
        raise Unauthenticated(code="token_invalid")
    scheme, _, token = (values[0] if values else "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(code="token_missing")
    return token


def authenticate(request: web.BaseRequest, issuer: TokenIssuer, *roles: Role) -> Actor:
    """The caller's ``Actor``, checked against ``roles`` when any are given (``RoleNotAllowed`` if not)."""
    actor = issuer.verify(bearer_token(request))
    if roles and actor.role not in roles:
        raise RoleNotAllowed()
    return actor


def jwks_response(keys: TokenKeys) -> web.Response:
    """``GET /.well-known/jwks.json``: our public keys, cacheable for five minutes."""
    return web.Response(
        body=orjson.dumps(keys.jwks()),
        content_type="application/json",
        headers={"Cache-Control": JWKS_CACHE_CONTROL},
    )


# --- 粤省事 --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderIdentity:
    """Who the identity provider vouched for: its subject and the ticket's verified claims."""

    subject: str
    # The claims may carry a name or an ID number: keep them out of reprs and logs.
    claims: Mapping[str, Any] = field(repr=False, hash=False)
    channel: str = "yueshengshi"

    @property
    def actor_id(self) -> str:
        """The parent's actor id for a provincial app's login: ``yss:<sub>`` for 粤省事, ``bjt:<sub>`` …"""
        return CHANNELS[self.channel].actor_id(self.subject)

    def actor(self) -> Actor:
        """The parent this login speaks for."""
        return Actor(id=self.actor_id, role="parent")


class SeenTickets:
    """Tickets already used, each remembered until it would have expired anyway (thread-safe, in memory).

    The service uses ``SharedSeenTickets`` (Redis) so that every process refuses a replay; this one is the default for a lone verifier.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def first_use(self, key: str, until: float) -> bool:
        """Record ``key`` until ``until``; False when it was already recorded and has not expired."""
        now = self._clock()
        with self._lock:
            if len(self._until) > 1024:
                self._until = {k: t for k, t in self._until.items() if t > now}
            if self._until.get(key, 0.0) > now:
                return False
            self._until[key] = until
            return True

    def __len__(self) -> int:
        return len(self._until)


class SharedSeenTickets:
    """Tickets already used, shared by every process of the service through Redis: ``SET NX`` of a
    keyed hash of the ticket's id, expiring when the ticket would have (synchronous: the verifier runs
    in a worker thread)."""

    def __init__(self, redis: Any, secret: bytes, prefix: str = "bc:yss:used:") -> None:
        self._redis = redis
        self._secret = secret
        self._prefix = prefix

    def first_use(self, key: str, until: float) -> bool:
        """Record ``key`` until ``until``; False when some process recorded it already."""
        slot = self._prefix + hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()
        expires = max(int(until) + 1, int(time.time()) + 1)
        return bool(self._redis.set(slot, b"1", nx=True, exat=expires))


class SeenStore(Protocol):
    """Where used tickets are remembered."""

    def first_use(self, key: str, until: float) -> bool: ...


class ProviderVerifier:
    """Checks a provincial app's JWTs: its login tickets and its ID tokens, signed by a key in its JWKS.

    Synchronous (it may fetch the JWKS over HTTP): call ``verify_ticket`` in a thread. The key set is
    cached for ``JWKS_LIFESPAN`` seconds; an unknown ``kid`` refetches it at most once per
    ``REFRESH_INTERVAL``, so forged kids cannot make us hammer the provider. If a periodic refetch fails,
    the cached keys serve for up to ``STALE_GRACE`` more seconds.
    """

    JWKS_LIFESPAN: Final = 300.0
    REFRESH_INTERVAL: Final = 60.0
    STALE_GRACE: Final = 3600.0
    # After a failed fetch, answer "unavailable" at once for a while rather than queue every login behind
    # another timeout.
    RETRY_AFTER: Final = 5.0

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        http_timeout: float = 5,
        single_use: bool = True,
        seen: SeenStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.channel = CHANNELS[settings.channel]
        try:
            self._client = jwt.PyJWKClient(settings.jwks_url, cache_jwk_set=False, timeout=http_timeout)
        except jwt.PyJWKClientError as e:
            raise ConfigError(f"{self.channel.env}_JWKS_URL is not usable: {e}") from None
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = float("-inf")
        self._forced_at = float("-inf")
        self._failed_at = float("-inf")
        self._seen: SeenStore | None = (seen or SeenTickets(clock)) if single_use else None

    def verify_ticket(self, ticket: str) -> ProviderIdentity:
        """The identity a valid, unused ticket vouches for; ``Unauthenticated`` (ticket_invalid,
        ticket_expired) or ``ProviderUnavailable`` otherwise."""
        try:
            claims = self._decode(ticket, ["exp", "iat", "iss", "aud", "sub"])
        except jwt.ExpiredSignatureError:
            raise self._refused("ticket_expired") from None
        except jwt.PyJWTError:
            raise self._refused("ticket_invalid") from None
        subject = claims["sub"]
        if not _lifetime_within(claims, MAX_TICKET_TTL) or not _is_subject(subject):
            raise self._refused("ticket_invalid")
        if self._seen is not None:
            jti = claims.get("jti")
            # Without a jti the ticket itself is the thing that may be used once.
            seen_key = f"jti:{jti}" if isinstance(jti, str) and jti else f"sha256:{_sha256(ticket)}"
            if not self._seen.first_use(f"{self.channel.name}:{seen_key}", float(claims["exp"]) + LEEWAY):
                label = self.channel.label
                raise Unauthenticated(f"该{label}登录凭证已使用，请从{label}重新进入", code="ticket_invalid")
        return ProviderIdentity(subject=subject, claims=claims, channel=self.channel.name)

    def verify_id_token(self, token: str) -> dict[str, Any]:
        """The claims of an ID token from the provider's token endpoint, its signature (JWKS, ``kid``),
        ``iss``, ``aud`` (our client id), ``exp`` and subject checked; ``IdTokenRefused``
        (``face_token_invalid``) or ``ProviderUnavailable`` otherwise. What the claims must say about
        this face check (nonce, acr, auth_time, who) is the step-up's to check (backend/channels.py)."""
        try:
            claims = self._decode(token, ["exp", "iat", "iss", "aud", "sub"])
        except jwt.PyJWTError:
            raise IdTokenRefused("face_token_invalid") from None
        if not _lifetime_within(claims, MAX_TICKET_TTL) or not _is_subject(claims["sub"]):
            raise IdTokenRefused("face_token_invalid")
        return claims

    def _decode(self, token: str, required: list[str]) -> dict[str, Any]:
        """A JWT's claims, verified with the provider's key its ``kid`` names (``jwt.PyJWTError`` if not)."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise jwt.InvalidTokenError("not a token")
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        # Refuse a foreign alg or a missing kid before it can cost a JWKS fetch.
        if header.get("alg") not in PROVIDER_ALGORITHMS or not isinstance(kid, str) or not kid:
            raise jwt.InvalidTokenError("alg or kid")
        key = self._key(kid)
        if key is None:
            raise jwt.InvalidTokenError("unknown kid")
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(PROVIDER_ALGORITHMS),
            audience=self.settings.audience,
            issuer=self.settings.issuer,
            leeway=LEEWAY,
            options={"require": required, "enforce_minimum_key_length": True},
        )
        return claims

    def _refused(self, code: str) -> Unauthenticated:
        label = self.channel.label
        messages = {
            "ticket_invalid": f"{label}登录凭证无效，请从{label}重新进入",
            "ticket_expired": f"{label}登录凭证已过期，请从{label}重新进入",
        }
        return Unauthenticated(messages[code], code=code)

    def _key(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            key = self._keys_now().get(kid)
            now = self._clock()
            last = max(self._fetched_at, self._forced_at)
            if key is None and now - last >= self.REFRESH_INTERVAL:
                self._forced_at = now
                key = self._fetch().get(kid)
        return key

    def _keys_now(self) -> Mapping[str, jwt.PyJWK]:
        now = self._clock()
        if self._keys is not None and now - self._fetched_at < self.JWKS_LIFESPAN:
            return self._keys
        try:
            return self._fetch()
        except ProviderUnavailable:
            if self._keys is not None and now - self._fetched_at < self.JWKS_LIFESPAN + self.STALE_GRACE:
                log.warning(
                    "%s JWKS refresh failed; using the keys fetched %.0f s ago",
                    self.channel.name,
                    now - self._fetched_at,
                )
                return self._keys
            raise

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._clock() - self._failed_at < self.RETRY_AFTER:
            raise self.unavailable()
        try:
            data = self._client.fetch_data()
            jwk_set = jwt.PyJWKSet.from_dict(data)
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.InvalidKeyError, ValueError, TypeError) as e:
            log.warning("%s JWKS at %s did not load: %s", self.channel.name, self.settings.jwks_url, e)
            self._failed_at = self._clock()
            raise self.unavailable() from None
        keys = {
            k.key_id: k
            for k in _signing_keys(jwk_set.keys)
            if k.key_id and k.algorithm_name in PROVIDER_ALGORITHMS
        }
        if not keys:
            log.warning(
                "%s JWKS at %s holds no usable signing key", self.channel.name, self.settings.jwks_url
            )
            self._failed_at = self._clock()
            raise self.unavailable()
        self._keys, self._fetched_at = keys, self._clock()
        return keys

    def unavailable(self) -> ProviderUnavailable:
        """The 503 of this provider being out of reach."""
        return ProviderUnavailable(f"{self.channel.label}服务暂不可用，请稍后再试")


# The name the 粤省事 login was built under.
YueshengshiVerifier = ProviderVerifier


def _is_subject(subject: object) -> bool:
    return (
        isinstance(subject, str)
        and 0 < len(subject) <= _MAX_SUBJECT_CHARS
        and subject.isprintable()
        and subject == subject.strip()
    )


def _signing_keys(keys: Iterable[jwt.PyJWK]) -> Iterable[jwt.PyJWK]:
    return (k for k in keys if k.public_key_use in ("sig", None))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
