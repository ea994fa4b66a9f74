"""The e-licence's credential: an SD-JWT signed ES256, its signers and their key ring (decision 0038).

- **SD-JWT** (IETF draft-ietf-oauth-selective-disclosure-jwt / RFC 9901): a JWS whose payload carries the plain
  claims and, under ``_sd``, the SHA-256 digests of the selectively disclosable ones; each disclosure is
  ``base64url(JSON [salt, name, value])``; the compact form is ``<jws>~<disclosure>~…~`` (no key binding).
  ``issue_sd_jwt`` makes one, ``verify_sd_jwt`` checks one against a JWKS and returns the claims it discloses.
  The ``_sd`` array is padded with decoy digests to a fixed length, so that it tells nobody how many items a
  family has (whether a father is named).
- **Signers** (``Signer``): ES256 (P-256, ``Es256Signer``) is the one we issue with; the interface takes an
  SM2/SM3 suite where a maintained library exists (decision 0038: none is adopted yet).
- **The key ring** (``KeyRing``): keys in ``elicense_keys`` beside the events, the private key sealed under
  HKDF(at-rest key, ``birthcert elicense key v1``) bound to its kid; one current key, the others retired but
  never deleted, all in the JWKS (``jwks``) so that a credential of 2027 still verifies in 2040.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from backend.storage import derive_aead
from projections.sql import Database

JSON = dict[str, Any]

TYP: Final = "dc+sd-jwt"
SD_ALG: Final = "sha-256"
# Digests in every credential's ``_sd`` (real ones plus decoys): above the 17 items a family can have.
SD_DIGESTS: Final = 20
KEY_HKDF_INFO: Final = b"birthcert elicense key v1"
NONCE_BYTES: Final = 12


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of a base64url string without padding; ``ValueError`` when it is not one."""
    if not isinstance(text, str) or any(c in text for c in "=+/ \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


# ---------------------------------------------------------------- signers


class Signer(Protocol):
    """Signs a credential: its JOSE ``alg``, its ``kid`` and the public JWK the JWKS serves."""

    @property
    def alg(self) -> str: ...

    @property
    def kid(self) -> str: ...

    def public_jwk(self) -> JSON: ...

    def sign(self, data: bytes) -> bytes:
        """The JWS signature of ``data`` (for ES256: R ‖ S, 64 bytes)."""
        ...


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of an EC public JWK: the key's ``kid``, as for tokens (0005)."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    return b64url(
        hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    )


def ec_public_jwk(key: ec.EllipticCurvePublicKey) -> JSON:
    """The public JWK of a P-256 key."""
    numbers = key.public_numbers()
    jwk: JSON = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": "ES256", "use": "sig"}


class Es256Signer:
    """ECDSA P-256 with SHA-256 (ES256): the default suite."""

    alg = "ES256"

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("ES256 needs a P-256 key")
        self._key = key
        self._jwk = ec_public_jwk(key.public_key())

    def __repr__(self) -> str:
        return f"Es256Signer(kid={self.kid!r})"

    @classmethod
    def generate(cls) -> Es256Signer:
        """A new random key."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def kid(self) -> str:
        return str(self._jwk["kid"])

    def public_jwk(self) -> JSON:
        return dict(self._jwk)

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def private_der(self) -> bytes:
        """The private key as PKCS#8 DER (to be sealed, never stored as it is)."""
        return self._key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_der(cls, der: bytes) -> Es256Signer:
        key = serialization.load_der_private_key(der, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("not an EC private key")
        return cls(key)


def verify_es256(jwk: Mapping[str, Any], data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (R ‖ S) is an ES256 signature of ``data`` by the public ``jwk``."""
    if len(signature) != 64 or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        return False
    try:
        x = int.from_bytes(b64url_decode(str(jwk["x"])), "big")
        y = int.from_bytes(b64url_decode(str(jwk["y"])), "big")
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


# ---------------------------------------------------------------- SD-JWT


def disclosure(salt: str, name: str, value: Any) -> str:
    """One disclosure: base64url of the JSON array ``[salt, name, value]`` (UTF-8, as the draft's examples)."""
    return b64url(json.dumps([salt, name, value], ensure_ascii=False).encode())


def disclosure_digest(encoded: str) -> str:
    """The digest the payload's ``_sd`` carries for a disclosure: base64url(SHA-256(its ASCII))."""
    return b64url(hashlib.sha256(encoded.encode("ascii")).digest())


def issue_sd_jwt(signer: Signer, plain: Mapping[str, Any], disclosable: Mapping[str, Any]) -> str:
    """The compact SD-JWT ``<jws>~<disclosure>~…~``: ``plain`` claims in clear, each of ``disclosable`` as a
    salted disclosure (128-bit salts) whose digest is in ``_sd``, padded with decoys to ``SD_DIGESTS``."""
    disclosures = [disclosure(b64url(secrets.token_bytes(16)), k, v) for k, v in disclosable.items()]
    digests = [disclosure_digest(d) for d in disclosures]
    while len(digests) < SD_DIGESTS:
        digests.append(b64url(hashlib.sha256(secrets.token_bytes(32)).digest()))
    jws = sign_jwt(signer, TYP, {**plain, "_sd_alg": SD_ALG, "_sd": sorted(digests)})
    return "~".join([jws, *disclosures]) + "~"


def sign_jwt(signer: Signer, typ: str, payload: Mapping[str, Any]) -> str:
    """A compact JWS of ``payload`` (JSON, keys sorted) with header ``{alg, kid, typ}``."""
    header = {"alg": signer.alg, "kid": signer.kid, "typ": typ}
    signing_input = f"{b64url(_json_bytes(header))}.{b64url(_json_bytes(payload))}"
    return f"{signing_input}.{b64url(signer.sign(signing_input.encode('ascii')))}"


def credential_claims(credential: str) -> JSON:
    """The issuer-signed payload of a credential WE stored (no check: for our own sealed copies only)."""
    payload = json.loads(b64url_decode(credential.split("~", 1)[0].split(".")[1]))
    if not isinstance(payload, dict):
        raise CredentialError("malformed", "the payload is a JSON object")
    return payload


def read_jwt(token: str, jwks: Mapping[str, Any], typ: str) -> tuple[JSON, JSON]:
    """The header and payload of a compact ES256 JWS of type ``typ`` signed by a key of ``jwks``;
    ``CredentialError`` (malformed, unknown_key, bad_signature) otherwise."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise CredentialError("malformed", "not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except ValueError:
        raise CredentialError("malformed", "undecodable part") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise CredentialError("malformed", "header and payload are JSON objects")
    if header.get("alg") != "ES256" or header.get("typ") != typ:
        raise CredentialError("malformed", "unsupported algorithm or type")
    key = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if key is None:
        raise CredentialError("unknown_key", "no key with this kid")
    if not verify_es256(key, f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
        raise CredentialError("bad_signature", "the signature does not verify")
    return header, payload


def _disclosures(credential: str) -> tuple[str, list[tuple[str, str]]]:
    jws, *rest = credential.split("~")
    return jws, [(encoded, str(json.loads(b64url_decode(encoded))[1])) for encoded in rest if encoded]


def disclosed_names(credential: str) -> set[str]:
    """The names of the claims a credential WE stored can disclose (no check: our own sealed copies only)."""
    return {name for _, name in _disclosures(credential)[1]}


def present(credential: str, withhold: Sequence[str]) -> str:
    """The credential with the disclosures of the claims named in ``withhold`` removed (the holder's choice:
    the signature still holds, those claims are simply not shown)."""
    jws, disclosures = _disclosures(credential)
    kept = [encoded for encoded, name in disclosures if name not in withhold]
    return "~".join([jws, *kept]) + "~"


class CredentialError(ValueError):
    """A credential that does not verify; ``code``: ``malformed``, ``unknown_key`` or ``bad_signature``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class Verified:
    """A verified credential: its header, its plain claims and the claims its disclosures showed."""

    header: JSON
    claims: JSON
    disclosed: JSON


def verify_sd_jwt(credential: str, jwks: Mapping[str, Any]) -> Verified:
    """Check a compact SD-JWT against a JWKS (current and retired keys alike: a retired key still verifies what
    it signed); every disclosure must match a digest of ``_sd``. ``CredentialError`` otherwise."""
    if not isinstance(credential, str) or "~" not in credential:
        raise CredentialError("malformed", "not an SD-JWT")
    jws, *disclosures = credential.split("~")
    if disclosures and disclosures[-1] == "":
        disclosures = disclosures[:-1]
    header, payload = read_jwt(jws, jwks, TYP)
    if payload.get("_sd_alg") != SD_ALG:
        raise CredentialError("malformed", "unsupported algorithm or type")
    digests = set(payload.get("_sd") or [])
    disclosed: JSON = {}
    for encoded in disclosures:
        # Not ASCII: no base64url, so no disclosure the issuer signed (and no digest to compute).
        if not encoded.isascii() or disclosure_digest(encoded) not in digests:
            raise CredentialError("bad_signature", "a disclosure the issuer did not sign")
        try:
            salt, name, value = json.loads(b64url_decode(encoded))
        except ValueError:
            raise CredentialError("malformed", "undecodable disclosure") from None
        if not isinstance(salt, str) or not isinstance(name, str) or name in payload or name in disclosed:
            raise CredentialError("malformed", "a disclosure's name is taken")
        disclosed[name] = value
    claims = {k: v for k, v in payload.items() if k not in ("_sd", "_sd_alg")}
    return Verified(header=header, claims=claims, disclosed=disclosed)


# ---------------------------------------------------------------- the key ring


@dataclass(frozen=True)
class KeyRecord:
    """A key of the ring as stored (the private key sealed)."""

    kid: str
    alg: str
    public_jwk: JSON
    created_at: str
    retired_at: str | None


class KeyRing:
    """The e-licence's signing keys in ``elicense_keys`` (blocking: call on an executor)."""

    def __init__(self, db: Database, key: bytes) -> None:
        """``key``: the service's at-rest key; the ring derives its own."""
        self.db = db
        self._aead = derive_aead(key, KEY_HKDF_INFO)

    def __repr__(self) -> str:
        return "KeyRing()"

    def records(self) -> list[KeyRecord]:
        """Every key ever used, oldest first."""
        rows = self.db.fetchall(
            "SELECT kid, alg, public_jwk, created_at, retired_at FROM elicense_keys ORDER BY created_at, kid"
        )
        return [
            KeyRecord(str(r[0]), str(r[1]), json.loads(r[2]), str(r[3]), None if r[4] is None else str(r[4]))
            for r in rows
        ]

    def jwks(self) -> JSON:
        """The public JWKS with the history: the current key and every retired one, each marked."""
        keys = []
        for record in self.records():
            jwk = {**record.public_jwk, "status": "retired" if record.retired_at else "current"}
            jwk["created_at"] = record.created_at
            if record.retired_at:
                jwk["retired_at"] = record.retired_at
            keys.append(jwk)
        return {"keys": keys}

    def current(self) -> Es256Signer:
        """The signer of the current key, made on first use."""
        row = self.db.fetchone(
            "SELECT kid, sealed_private FROM elicense_keys WHERE retired_at IS NULL "
            "ORDER BY created_at DESC LIMIT 1"
        )
        if row is None:
            return self.rotate()
        return self._open(str(row[0]), bytes(row[1]))

    def signer(self, kid: str) -> Es256Signer | None:
        """The signer of any key of the ring, current or retired (None: no such key)."""
        row = self.db.fetchone("SELECT kid, sealed_private FROM elicense_keys WHERE kid = ?", (kid,))
        return None if row is None else self._open(str(row[0]), bytes(row[1]))

    def rotate(self) -> Es256Signer:
        """A new current key; the one before is retired (kept in the JWKS, never deleted)."""
        signer = Es256Signer.generate()
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, signer.private_der(), signer.kid.encode())
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self.db.transaction():
            self.db.execute("UPDATE elicense_keys SET retired_at = ? WHERE retired_at IS NULL", (now,))
            self.db.execute(
                "INSERT INTO elicense_keys (kid, alg, public_jwk, sealed_private, created_at, retired_at) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                (signer.kid, signer.alg, json.dumps(signer.public_jwk(), sort_keys=True), sealed, now),
            )
        return signer

    def _open(self, kid: str, sealed: bytes) -> Es256Signer:
        try:
            der = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise RuntimeError(f"the e-licence key {kid} does not decrypt with this service's key") from None
        signer = Es256Signer.from_der(der)
        if signer.kid != kid:
            raise RuntimeError(f"the e-licence key stored as {kid} is another key")
        return signer


__all__ = [
    "SD_DIGESTS",
    "TYP",
    "CredentialError",
    "Es256Signer",
    "KeyRecord",
    "KeyRing",
    "Signer",
    "Verified",
    "b64url",
    "disclosed_names",
    "disclosure",
    "disclosure_digest",
    "issue_sd_jwt",
    "jwk_thumbprint",
    "present",
    "read_jwt",
    "sign_jwt",
    "verify_sd_jwt",
]
