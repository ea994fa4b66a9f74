"""Our bearer tokens: the signing keys on disk and in the environment, rotation, and the classic attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backend.auth import (
    ProviderIdentity,
    RoleNotAllowed,
    SeenTickets,
    TokenIssuer,
    TokenKeys,
    Unauthenticated,
    authenticate,
    bearer_token,
    jwk_thumbprint,
    jwks_response,
)
from backend.config import ConfigError
from domain.errors import DomainError, Forbidden
from domain.values import Actor
from tests.relative_time import Now, resolved

ISS = "birthcert"
AUD = "birthcert-api"
PARENT = Actor(id="wx:o6_bmjrPTlm6_2sgVt7hMZOPfL2M", role="parent")
ISSUER_STAFF = Actor(id="staff:lihua", role="issuer", institution="440106001", name="李华")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """The signing input of a hand-made token."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "wx:abc", "role": "parent", "iat": now, "nbf": now}
    claims["exp"] = now + 600
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def signed(keys: TokenKeys, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with our current key (the attacks below change one thing each)."""
    kid, private_key = keys.signing_key()
    return jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": kid, **header})


def code_of(issuer: TokenIssuer, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        issuer.verify(token)
    return caught.value.code


@pytest.fixture
def keys() -> TokenKeys:
    return TokenKeys.generate()


@pytest.fixture
def issuer(keys: TokenKeys) -> TokenIssuer:
    return TokenIssuer(keys, ISS, AUD, 7200)


# --- keys ----------------------------------------------------------------------------------------------


def test_development_key_is_created_private_and_reused(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys" / "jwt"
    first = TokenKeys.load_or_create(key_dir, environ={})
    assert key_dir.stat().st_mode & 0o777 == 0o700
    assert (key_dir / "current.pem").stat().st_mode & 0o777 == 0o600
    assert not (key_dir / "previous.pem").exists()
    assert TokenKeys.load_or_create(key_dir, environ={}).current_kid == first.current_kid


def test_a_key_file_open_to_others_is_restricted(tmp_path: Path) -> None:
    TokenKeys.load_or_create(tmp_path, environ={})
    (tmp_path / "current.pem").chmod(0o644)
    TokenKeys.load_or_create(tmp_path, environ={})
    assert (tmp_path / "current.pem").stat().st_mode & 0o777 == 0o600


def test_environment_keys_win_over_files(tmp_path: Path) -> None:
    pems = [
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for _ in range(2)
    ]
    environ = {
        "BIRTHCERT_JWT_KEY": pems[0].decode().replace("\n", "\\n"),  # one-line form, as env files carry it
        "BIRTHCERT_JWT_PREVIOUS_KEY": pems[1].decode(),
    }
    keys = TokenKeys.load_or_create(tmp_path / "unused", environ=environ)
    assert keys.current_kid == TokenKeys.from_pem(pems[0]).current_kid
    assert keys.kids[1] == TokenKeys.from_pem(pems[1]).current_kid
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize(
    "environ",
    [
        {"BIRTHCERT_JWT_KEY": "not a pem"},
        {"BIRTHCERT_JWT_PREVIOUS_KEY": "set without a current key"},
    ],
)
def test_bad_environment_keys_are_a_config_error_that_does_not_echo_them(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        TokenKeys.load_or_create(tmp_path, environ=environ)
    assert "not a pem" not in str(caught.value)


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    raw = base64.urlsafe_b64decode(x + "=")
    public = Ed25519PublicKey.from_public_bytes(raw)
    assert jwk_thumbprint(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_jwks_has_every_valid_public_key_and_nothing_private(tmp_path: Path) -> None:
    TokenKeys.load_or_create(tmp_path, environ={})
    keys = TokenKeys.rotate(tmp_path)
    jwks = keys.jwks()
    assert [k["kid"] for k in jwks["keys"]] == list(keys.kids)
    assert len(jwks["keys"]) == 2
    for jwk in jwks["keys"]:
        assert set(jwk) == {"kid", "kty", "crv", "x", "use", "alg"}
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
        assert jwt.PyJWK(jwk).key_id == jwk["kid"]  # a standard client can read it


def test_jwks_response_is_cacheable_json(keys: TokenKeys) -> None:
    response = jwks_response(keys)
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert isinstance(response.body, bytes)
    assert json.loads(response.body) == keys.jwks()


# --- issuing and verifying -----------------------------------------------------------------------------


def test_a_parent_token_round_trips_without_staff_claims(issuer: TokenIssuer, keys: TokenKeys) -> None:
    token, expires_in = issuer.issue(PARENT)
    assert expires_in == 7200
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": keys.current_kid, "typ": "JWT"}
    claims = issuer.verify_claims(token)
    assert {"iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti"} == set(claims)
    assert claims["exp"] - claims["iat"] == 7200
    assert issuer.verify(token) == PARENT


def test_a_staff_token_carries_institution_and_name(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue(ISSUER_STAFF, extra={"amr": ["pwd"]})
    claims = issuer.verify_claims(token)
    assert (claims["inst"], claims["name"], claims["amr"]) == ("440106001", "李华", ["pwd"])
    assert issuer.verify(token) == ISSUER_STAFF


def test_every_token_has_its_own_jti(issuer: TokenIssuer) -> None:
    first, second = issuer.issue(PARENT)[0], issuer.issue(PARENT)[0]
    assert issuer.verify_claims(first)["jti"] != issuer.verify_claims(second)["jti"]


@pytest.mark.parametrize("ttl", [0, 7201, 86400])
def test_a_lifetime_over_two_hours_is_refused(keys: TokenKeys, ttl: int) -> None:
    with pytest.raises(ValueError):
        TokenIssuer(keys, ISS, AUD, ttl)


def test_extra_claims_cannot_replace_ours(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError):
        issuer.issue(PARENT, extra={"role": "admin"})


def test_no_token_for_the_system_actor(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError):
        issuer.issue(Actor(id="projector", role="system"))


def test_errors_are_domain_errors_with_chinese_messages(issuer: TokenIssuer, keys: TokenKeys) -> None:
    expired = signed(keys, good_claims(iat=int(time.time()) - 7000, exp=int(time.time()) - 60))
    with pytest.raises(Unauthenticated) as caught:
        issuer.verify(expired)
    error = caught.value
    assert isinstance(error, DomainError)
    assert (error.code, error.message) == ("token_expired", "登录已过期，请重新登录")
    assert error.www_authenticate == 'Bearer realm="birthcert", error="invalid_token"'
    assert issubclass(RoleNotAllowed, Forbidden)
    assert RoleNotAllowed().code == "role_not_allowed"


# --- the classic attacks -------------------------------------------------------------------------------


def test_alg_none_is_refused(issuer: TokenIssuer, keys: TokenKeys) -> None:
    token = unsigned({"alg": "none", "typ": "JWT", "kid": keys.current_kid}, good_claims()) + "."
    assert code_of(issuer, token) == "token_invalid"


def test_hs256_signed_with_our_public_key_is_refused(issuer: TokenIssuer, keys: TokenKeys) -> None:
    # Algorithm confusion: an HMAC "signed" with the public key that anyone can read from the JWKS.
    public = keys.public_key(keys.current_kid)
    assert public is not None
    secrets = [
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        keys.jwks()["keys"][0]["x"].encode(),
    ]
    for secret in secrets:
        head = unsigned({"alg": "HS256", "typ": "JWT", "kid": keys.current_kid}, good_claims())
        token = f"{head}.{b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())}"
        assert code_of(issuer, token) == "token_invalid"


def test_a_token_from_a_key_that_is_not_ours_is_refused(issuer: TokenIssuer, keys: TokenKeys) -> None:
    stranger = TokenKeys.generate()
    assert code_of(issuer, signed(stranger, good_claims())) == "token_invalid"
    # Nor does claiming our kid help: the signature is checked against our key.
    _, private_key = stranger.signing_key()
    token = jwt.encode(good_claims(), private_key, algorithm="EdDSA", headers={"kid": keys.current_kid})
    assert code_of(issuer, token) == "token_invalid"


@pytest.mark.parametrize(
    "header",
    [{}, {"kid": "unknown"}, {"kid": 7}],
    ids=["no-kid", "unknown-kid", "non-string-kid"],
)
def test_a_missing_or_unknown_kid_is_refused(issuer: TokenIssuer, keys: TokenKeys, header: Any) -> None:
    # Made by hand: PyJWT itself will not encode a non-string kid.
    kid, private_key = keys.signing_key()

    def hand_signed(header: dict[str, Any]) -> str:
        head = unsigned({"alg": "EdDSA", "typ": "JWT", **header}, good_claims())
        return f"{head}.{b64(private_key.sign(head.encode()))}"

    assert issuer.verify(hand_signed({"kid": kid})).id == "wx:abc"  # the hand-made token is otherwise good
    assert code_of(issuer, hand_signed(header)) == "token_invalid"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"iss": "someone-else"}, "token_invalid"),
        ({"aud": "another-api"}, "token_invalid"),
        ({"aud": ["another-api", AUD]}, "token_invalid"),
        ({"exp": None}, "token_invalid"),
        ({"iat": None}, "token_invalid"),
        ({"sub": None}, "token_invalid"),
        ({"role": None}, "token_invalid"),
        ({"role": "system"}, "token_invalid"),
        ({"role": "superuser"}, "token_invalid"),
        ({"role": "issuer"}, "token_invalid"),  # an issuer without an institution
        ({"sub": ""}, "token_invalid"),
        ({"iat": Now(-60), "exp": Now(-60 + 7201)}, "token_invalid"),
        ({"nbf": Now(600)}, "token_invalid"),
        ({"iat": Now(-7200), "exp": Now(-31)}, "token_expired"),
    ],
    ids=[
        "wrong-iss",
        "wrong-aud",
        "aud-list",
        "no-exp",
        "no-iat",
        "no-sub",
        "no-role",
        "system-role",
        "unknown-role",
        "issuer-without-inst",
        "empty-sub",
        "exp-over-2h-after-iat",
        "not-yet-valid",
        "expired",
    ],
)
def test_bad_claims_are_refused(
    issuer: TokenIssuer, keys: TokenKeys, changes: dict[str, Any], code: str
) -> None:
    assert code_of(issuer, signed(keys, good_claims(**resolved(changes)))) == code


def test_leeway_is_thirty_seconds(issuer: TokenIssuer, keys: TokenKeys) -> None:
    now = int(time.time())
    assert issuer.verify(signed(keys, good_claims(iat=now - 600, exp=now - 20))) == Actor("wx:abc", "parent")


def test_a_tampered_payload_is_refused(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue(PARENT)
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = f"{head}.{b64(json.dumps(claims).encode())}.{signature}"
    assert code_of(issuer, forged) == "token_invalid"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 9000, "Bearer x.y.z"])
def test_garbage_is_refused(issuer: TokenIssuer, token: str) -> None:
    assert code_of(issuer, token) == "token_invalid"


# --- rotation ------------------------------------------------------------------------------------------


def test_rotation_overlap_then_retirement(tmp_path: Path) -> None:
    old_keys = TokenKeys.load_or_create(tmp_path, environ={})
    old_token, _ = TokenIssuer(old_keys, ISS, AUD).issue(PARENT)

    rotated = TokenKeys.rotate(tmp_path)
    assert rotated.current_kid != old_keys.current_kid
    assert rotated.kids == (rotated.current_kid, old_keys.current_kid)
    assert (tmp_path / "previous.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "current.pem").stat().st_mode & 0o777 == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    during = TokenIssuer(TokenKeys.load_or_create(tmp_path, environ={}), ISS, AUD)
    assert during.verify(old_token) == PARENT  # signed by the previous key: still good until its exp
    new_token, _ = during.issue(PARENT)
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.current_kid

    retired = TokenKeys.retire_previous(tmp_path)
    assert retired.kids == (rotated.current_kid,)
    after = TokenIssuer(TokenKeys.load_or_create(tmp_path, environ={}), ISS, AUD)
    assert code_of(after, old_token) == "token_invalid"
    assert after.verify(new_token) == PARENT


def test_rotating_an_empty_directory_just_creates_a_key(tmp_path: Path) -> None:
    keys = TokenKeys.rotate(tmp_path / "fresh")
    assert keys.kids == (keys.current_kid,)


# --- aiohttp edge --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "token_missing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "token_missing"),
        ({"Authorization": "Bearer "}, "token_missing"),
        ({"Authorization": "Bearer not.a.token"}, "token_invalid"),
    ],
)
def test_authenticate_without_a_good_bearer_token(
    issuer: TokenIssuer, headers: dict[str, str], code: str
) -> None:
    request = make_mocked_request("GET", "/api/v1/applications", headers=headers)
    with pytest.raises(Unauthenticated) as caught:
        authenticate(request, issuer, "parent")
    assert caught.value.code == code


def test_authenticate_checks_the_role(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue(ISSUER_STAFF)
    request = make_mocked_request("GET", "/", headers={"Authorization": f"bearer  {token}"})
    assert bearer_token(request) == token
    assert authenticate(request, issuer) == ISSUER_STAFF
    assert authenticate(request, issuer, "hospital", "issuer") == ISSUER_STAFF
    with pytest.raises(RoleNotAllowed):
        authenticate(request, issuer, "parent")


# --- 粤省事 pieces that need no server -----------------------------------------------------------------


def test_provider_identity_is_a_parent_and_keeps_claims_out_of_repr() -> None:
    identity = ProviderIdentity(subject="u-123", claims={"name": "王芳", "sub": "u-123"})
    assert identity.actor() == Actor(id="yss:u-123", role="parent")
    assert "王芳" not in repr(identity)


def test_seen_tickets_are_single_use_until_they_expire() -> None:
    now = [1000.0]
    seen = SeenTickets(clock=lambda: now[0])
    assert seen.first_use("jti:a", until=1100.0)
    assert not seen.first_use("jti:a", until=1100.0)
    assert seen.first_use("jti:b", until=1100.0)
    now[0] = 1101.0
    assert seen.first_use("jti:a", until=1200.0)


def test_a_verified_token_is_remembered_briefly_and_never_past_its_expiry(
    issuer: TokenIssuer, keys: TokenKeys
) -> None:
    now = int(time.time())
    soon = signed(keys, good_claims(iat=now, exp=now + 20))
    assert issuer.verify(soon) == issuer.verify(soon)
    assert issuer._verified[soon][1] == now + 20  # its exp, not the cache's 60 s
    later = signed(keys, good_claims(iat=now, exp=now + 3600))
    issuer.verify(later)
    assert now + 59 <= issuer._verified[later][1] <= time.time() + TokenIssuer.VERIFIED_FOR
    # A token that differs in any byte is verified afresh: the cache never vouches for it.
    tampered = later[:-2] + ("A" if later[-2] != "A" else "B") + later[-1]
    with pytest.raises(Unauthenticated):
        issuer.verify(tampered)
