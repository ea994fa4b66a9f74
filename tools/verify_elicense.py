#!/usr/bin/env python3
"""verify_elicense — check a birthcert e-licence (出生医学证明电子证照) offline, with nothing but this file.

Usage::

    python3 verify_elicense.py CREDENTIAL --jwks jwks.json [--status-list status-list-1.jwt]
    python3 verify_elicense.py CREDENTIAL --dir SAVED_DIR
    python3 verify_elicense.py CREDENTIAL --fetch https://birthcert.example --save SAVED_DIR

``CREDENTIAL`` is the credential itself, a file holding it, or ``-`` (or nothing) for standard input: an
SD-JWT ``<JWS>~<disclosure>~…~`` with all, some or none of its disclosures. Prefer a file or standard input: a
credential on the command line stays in the shell's history and in the process list.

What is checked, in this order, the same way as ``POST /api/v1/verifications`` checks it (decisions 0038 and
0039): the JWS structure; ``typ`` is ``dc+sd-jwt``; ``alg`` is ES256 and nothing else (``none`` is refused);
the ``kid`` is a key of the saved JWKS (current or retired: a retired key still verifies what it signed); the
ES256 signature (JOSE's R ‖ S turned into DER for ``cryptography``); each disclosure's SHA-256 is among the
digests the issuer signed (``_sd``). Then, when a saved status list is given: the status list token's own
signature (same JWKS, ``typ`` ``statuslist+jwt``), that its ``sub`` is the credential's
``status.status_list.uri``, the bit at the credential's ``idx`` (draft-ietf-oauth-status-list: bit ``idx % 8``,
least significant first, of byte ``idx // 8`` of the ZLIB-inflated ``lst``), and how old the list is (``iat``,
``exp``, ``ttl``, and when it was fetched if ``--fetch`` saved it).

Results carry the server's names: ``valid``, ``revoked``, ``bad_signature``, ``unknown_key``, ``malformed``.
The status list has one bit a credential, so offline a credential revoked after a loss and one superseded by a
replacement (the server's ``superseded``) look the same: both are ``revoked`` here. The server's ``not_found``
(signed by the issuer's key, yet never issued) needs the server's records: offline such a credential is valid.

Exit status: 0 valid; 1 revoked (invalid); 2 the credential (or the status list) is malformed, its signature
does not verify or its key is unknown; 3 a usage error, an unreadable file, a status list of another credential,
or a download that failed. Personal data (the disclosed items) is printed only with ``--show-claims``.

Why this file duplicates code. A department must be able to check an e-licence without installing or trusting
birthcert, so this is ONE file that needs only the Python standard library (3.11 or later) and ``cryptography``
(ECDSA P-256). It re-implements from the specifications, instead of importing ``backend.credentials`` and
``backend.status_list``, the few things it needs: compact JWS with ES256 (RFC 7515, RFC 7518 §3.4), SD-JWT
disclosures (RFC 9901) and the Token Status List (draft-ietf-oauth-status-list). birthcert's tests run it
against the service and assert that both answer alike on the same inputs, which also catches a bug in either.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

EXIT_VALID, EXIT_INVALID, EXIT_BAD, EXIT_USAGE = 0, 1, 2, 3

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
except ImportError:  # pragma: no cover - depends on the department's machine
    sys.stderr.write(
        "verify_elicense 需要 cryptography 包 / needs the 'cryptography' package: "
        "python3 -m pip install cryptography\n"
    )
    raise SystemExit(EXIT_USAGE) from None

CREDENTIAL_TYP = "dc+sd-jwt"
STATUS_LIST_TYP = "statuslist+jwt"
SD_ALG = "sha-256"
JWKS_PATH = "/api/v1/elicense/jwks.json"
STATUS_LISTS_PATH = "/api/v1/status-lists/"
JWKS_FILE = "jwks.json"
MANIFEST_FILE = "fetched.json"
MANIFEST_FORMAT = "birthcert-elicense-offline/1"
LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BEIJING = timezone(timedelta(hours=8))
FUTURE_SLACK = 300  # seconds a status list may be dated after this machine's clock before we say so
USER_AGENT = "birthcert-verify-elicense/1"
MAX_DOWNLOAD = 10_000_000  # bytes: a status list of 2^17 entries is 16 KiB before compression

# The server's result names and labels (backend/routes/verification.py), with the exit status of each.
RESULTS: dict[str, tuple[str, str, int]] = {
    "valid": ("有效", "valid", EXIT_VALID),
    "revoked": ("已作废", "revoked (invalid)", EXIT_INVALID),
    "bad_signature": (
        "签名无效（内容被改动或非本系统签发）",
        "bad signature (altered, or not signed by the issuer)",
        EXIT_BAD,
    ),
    "unknown_key": ("签发密钥未知", "unknown signing key", EXIT_BAD),
    "malformed": ("格式不正确", "malformed", EXIT_BAD),
}
ITEM_LABELS = {
    "certificate_number": "出生医学证明编号",
    "issuer_name": "签发机构",
    "issuer_code": "签发机构代码",
    "issue_date": "签发日期",
    "licence_id": "证照标识",
    "newborn_name": "新生儿姓名",
    "newborn_sex": "性别",
    "born_at": "出生时间",
    "birthplace": "出生地点",
    "gestational_weeks": "出生孕周",
    "weight_g": "出生体重（克）",
    "length_cm": "出生身长（厘米）",
    "mother_name": "母亲姓名",
    "mother_nationality": "母亲国籍",
    "mother_ethnicity": "母亲民族",
    "mother_id_type": "母亲有效身份证件类别",
    "mother_id_number": "母亲有效身份证件号码",
    "father_name": "父亲姓名",
    "father_nationality": "父亲国籍",
    "father_ethnicity": "父亲民族",
    "father_id_type": "父亲有效身份证件类别",
    "father_id_number": "父亲有效身份证件号码",
}
ONE_BIT = (
    "状态列表每份证照只有一位：离线无法区分遗失补发后作废的与因错证、损坏换发而被取代的，二者均显示为已作废；"
    "在线核验（POST /api/v1/verifications）会区分 revoked 与 superseded。",
    "The status list holds one bit per credential: offline, one revoked after a loss and one superseded by a "
    "replacement look the same, and both read as revoked; online verification tells revoked from superseded.",
)


class Rejected(Exception):
    """A token that does not verify; ``code`` is the server's result name."""

    def __init__(self, code: str, en: str, zh: str) -> None:
        super().__init__(en)
        self.code, self.en, self.zh = code, en, zh


class UsageError(Exception):
    """The check cannot be run as asked (exit status 3)."""

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en, self.zh = en, zh


# ---------------------------------------------------------------------- JWS with ES256 (RFC 7515, RFC 7518)


def b64url_decode(text: object) -> bytes:
    """base64url without padding (RFC 7515 §2); ``ValueError`` when it is not."""
    if not isinstance(text, str) or any(c in text for c in "=+/ \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_es256(jwk: Mapping[str, Any], data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (JOSE's R ‖ S, 64 bytes) is an ECDSA P-256 SHA-256 signature of ``data`` by ``jwk``."""
    if len(signature) != 64 or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        return False
    try:
        x = int.from_bytes(b64url_decode(str(jwk["x"])), "big")
        y = int.from_bytes(b64url_decode(str(jwk["y"])), "big")
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        # cryptography takes a DER-encoded ECDSA-Sig-Value, JOSE sends R and S as two 32-byte big-endian numbers.
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


def read_jws(token: str, jwks: Mapping[str, Any], typ: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and payload of a compact JWS of type ``typ``, ES256, signed by a key of ``jwks``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Rejected("malformed", "not a compact JWS (three base64url parts)", "不是紧凑格式的 JWS（三段）")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except ValueError:
        raise Rejected("malformed", "a part is not base64url JSON", "某一段无法解码") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise Rejected("malformed", "the header or payload is not a JSON object", "头部或载荷不是 JSON 对象")
    if header.get("alg") != "ES256":
        raise Rejected(
            "malformed",
            f"the algorithm {header.get('alg')!r} is refused: ES256 only",
            f"签名算法 {header.get('alg')!r} 不被接受：只接受 ES256",
        )
    if header.get("typ") != typ:
        raise Rejected(
            "malformed",
            f"the type {header.get('typ')!r} is not {typ}",
            f"类型 {header.get('typ')!r} 不是 {typ}",
        )
    key = next((k for k in jwks["keys"] if k.get("kid") == header.get("kid")), None)
    if key is None:
        raise Rejected(
            "unknown_key",
            f"no key of the JWKS has the kid {header.get('kid')!r}",
            f"密钥集中没有 kid 为 {header.get('kid')!r} 的密钥",
        )
    if not verify_es256(key, f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
        raise Rejected("bad_signature", "the signature does not verify", "签名验证不通过")
    return header, payload


# ---------------------------------------------------------------------- SD-JWT (RFC 9901)


@dataclass(frozen=True)
class Credential:
    """A verified credential: its header, its signed claims, the items its disclosures showed."""

    header: dict[str, Any]
    claims: dict[str, Any]
    disclosed: dict[str, Any]


def disclosure_digest(encoded: str) -> str:
    """base64url(SHA-256(the disclosure's ASCII)): what the issuer put in ``_sd`` (RFC 9901 §4.2.3)."""
    return base64.urlsafe_b64encode(hashlib.sha256(encoded.encode("ascii")).digest()).rstrip(b"=").decode()


def check_credential(text: str, jwks: Mapping[str, Any]) -> Credential:
    """Check an SD-JWT ``<JWS>~<disclosure>~…~`` as the server does; ``Rejected`` otherwise.

    The final ``~`` ends an SD-JWT without key binding (RFC 9901 §4); an element after it would be a Key Binding
    JWT, which e-licences never carry (no ``cnf``). The server reads a presentation whose final ``~`` was lost
    as if it were there, so its last element as a disclosure; so does this tool, and a key binding JWT, which
    is no disclosure the issuer signed, is ``bad_signature`` for both.
    """
    if "~" not in text:
        raise Rejected(
            "malformed",
            "not an SD-JWT: no '~' (a credential without disclosures is '<JWS>~')",
            "不是 SD-JWT：没有“~”（不含披露项的证照写作“<JWS>~”）",
        )
    jws, *disclosures = text.split("~")
    if disclosures and disclosures[-1] == "":
        disclosures = disclosures[:-1]
    header, payload = read_jws(jws, jwks, CREDENTIAL_TYP)
    if payload.get("_sd_alg") != SD_ALG:
        raise Rejected("malformed", "_sd_alg is not sha-256", "_sd_alg 不是 sha-256")
    signed = payload.get("_sd") or []
    if not isinstance(signed, list) or not all(isinstance(d, str) for d in signed):
        raise Rejected("malformed", "_sd is not a list of digests", "_sd 不是摘要列表")
    digests = set(signed)
    disclosed: dict[str, Any] = {}
    for number, encoded in enumerate(disclosures, 1):
        if not encoded.isascii() or disclosure_digest(encoded) not in digests:
            raise Rejected(
                "bad_signature",
                f"disclosure {number} is not one the issuer signed (its digest is not in _sd)",
                f"第 {number} 个披露项不是签发方签署的（其摘要不在 _sd 中）",
            )
        try:
            salt, name, value = json.loads(b64url_decode(encoded))
        except (ValueError, TypeError):
            raise Rejected(
                "malformed",
                f"disclosure {number} is not [salt, name, value]",
                f"第 {number} 个披露项无法解码",
            ) from None
        if not isinstance(salt, str) or not isinstance(name, str) or name in payload or name in disclosed:
            raise Rejected(
                "malformed",
                f"disclosure {number} names a claim already there",
                f"第 {number} 个披露项名称重复",
            )
        disclosed[name] = value
    claims = {k: v for k, v in payload.items() if k not in ("_sd", "_sd_alg")}
    return Credential(header=header, claims=claims, disclosed=disclosed)


# ---------------------------------------------------------------------- Token Status List


@dataclass(frozen=True)
class StatusList:
    """A verified status list token: its header, claims and inflated byte array."""

    header: dict[str, Any]
    claims: dict[str, Any]
    raw: bytes

    def status(self, idx: int) -> int:
        """The one-bit status at ``idx``: bit ``idx % 8`` (least significant first) of byte ``idx // 8``."""
        if idx < 0 or idx // 8 >= len(self.raw):
            raise Rejected(
                "malformed",
                f"the index {idx} is outside the status list ({len(self.raw) * 8} entries)",
                f"位置 {idx} 超出状态列表（共 {len(self.raw) * 8} 项）",
            )
        return (self.raw[idx // 8] >> (idx % 8)) & 1


def read_status_list(token: str, jwks: Mapping[str, Any]) -> StatusList:
    """Check a status list token (``typ: statuslist+jwt``, ES256, a key of ``jwks``, one-bit ``lst``)."""
    header, claims = read_jws(token, jwks, STATUS_LIST_TYP)
    listed = claims.get("status_list")
    if not isinstance(listed, dict) or listed.get("bits") != 1 or not isinstance(listed.get("lst"), str):
        raise Rejected("malformed", "no one-bit status_list in the token", "令牌中没有每项一位的 status_list")
    try:
        raw = zlib.decompress(b64url_decode(listed["lst"]))
    except (ValueError, zlib.error):
        raise Rejected(
            "malformed", "lst is not base64url ZLIB data", "lst 不是 base64url 编码的 ZLIB 数据"
        ) from None
    return StatusList(header=header, claims=claims, raw=raw)


# ---------------------------------------------------------------------- files and downloads


def read_text(path: Path, what_en: str, what_zh: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {what_en} {path}: {e}", f"无法读取{what_zh} {path}：{e}") from None


def parse_jwks(text: str, where: str) -> dict[str, Any]:
    """A JWKS (``{"keys": [JWK, …]}``), or ``UsageError``."""
    try:
        jwks = json.loads(text)
    except ValueError:
        jwks = None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise UsageError(f"{where} is not a JWKS", f"{where} 不是密钥集（JWKS）")
    if not all(isinstance(k, dict) for k in jwks["keys"]):
        raise UsageError(f"{where}: a key of the JWKS is not a JSON object", f"{where}：密钥集中有非对象的项")
    return jwks


def is_file(argument: str) -> bool:
    try:
        return Path(argument).is_file()
    except (OSError, ValueError):  # a credential is longer than a file name may be
        return False


def read_credential(argument: str | None) -> str:
    """The credential from the argument itself, the file it names, or standard input (``-`` or nothing)."""
    if argument is None or argument == "-":
        raw = sys.stdin.buffer.read()
    elif is_file(argument):
        try:
            raw = Path(argument).read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read {argument}: {e}", f"无法读取 {argument}：{e}") from None
    else:
        raw = argument.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        raise UsageError("no credential given", "没有提供电子证照")
    return text


def status_reference(claims: Mapping[str, Any]) -> tuple[str, int] | None:
    """The credential's ``status.status_list`` ``(uri, idx)``, or None when it names none."""
    status = claims.get("status")
    listed = status.get("status_list") if isinstance(status, dict) else None
    if not isinstance(listed, dict):
        return None
    uri, idx = listed.get("uri"), listed.get("idx")
    if not isinstance(uri, str) or isinstance(idx, bool) or not isinstance(idx, int):
        return None
    return uri, idx


def list_file_name(uri: str) -> str | None:
    """Where ``--save`` keeps the list at ``uri``: ``status-list-<its id>.jwt``."""
    list_id = urllib.parse.urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1]
    return f"status-list-{list_id}.jwt" if LIST_ID.match(list_id) else None


def unverified_claims(text: str) -> dict[str, Any]:
    """The payload of a credential read WITHOUT any check: only to learn which status list to download."""
    try:
        payload = json.loads(b64url_decode(text.split("~", 1)[0].split(".")[1]))
    except (ValueError, IndexError):
        return {}
    return payload if isinstance(payload, dict) else {}


def fetched_at(path: Path) -> datetime | None:
    """When ``--save`` downloaded the file at ``path`` (its folder's ``fetched.json``), if it did."""
    try:
        manifest = json.loads((path.parent / MANIFEST_FILE).read_text(encoding="utf-8"))
        moment = datetime.fromisoformat(manifest["files"][path.name]["fetched_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return moment if moment.tzinfo is not None else None


def download(url: str, accept: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(response.read(MAX_DOWNLOAD).decode("utf-8"))
    except (urllib.error.URLError, OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"cannot download {url}: {e}", f"无法下载 {url}：{e}") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (a run that fails half-way leaves the older file whole)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise UsageError(f"cannot write in {path.parent}: {e}", f"无法写入 {path.parent}：{e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # public documents: mkstemp's 0600 would keep colleagues from reading them
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {e}", f"无法写入 {path}：{e}") from None


def fetch(base_url: str, directory: Path, credential: str) -> list[str]:
    """Download the JWKS and the status list the credential names from ``base_url`` into ``directory``.

    Only ``base_url`` is contacted: the list's path is taken from the credential's ``uri`` and appended to it.
    Nothing downloaded is trusted: the offline check verifies the list's signature and its ``sub``.
    """
    base = base_url.rstrip("/")
    now = datetime.now(UTC)  # when it was fetched, whatever --now says about the check
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise UsageError(
            f"--fetch needs an http(s) URL, not {base_url!r}", f"--fetch 需要 http(s) 地址：{base_url!r}"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {directory}: {e}", f"无法创建 {directory}：{e}") from None
    jwks_text = download(base + JWKS_PATH, "application/json")
    parse_jwks(jwks_text, base + JWKS_PATH)
    saved = {JWKS_FILE: {"url": base + JWKS_PATH, "fetched_at": now.isoformat()}}
    write_atomically(directory / JWKS_FILE, jwks_text)
    reference = status_reference(unverified_claims(credential))
    if reference is not None:
        uri = reference[0]
        path = urllib.parse.urlsplit(uri).path
        name = list_file_name(uri)
        if STATUS_LISTS_PATH not in path or name is None:
            raise UsageError(
                f"the credential's status list {uri} is not a birthcert status list URL",
                f"证照所载状态列表地址 {uri} 不是本系统的状态列表地址",
            )
        url = base + path[path.index(STATUS_LISTS_PATH) :]
        write_atomically(directory / name, download(url, "application/statuslist+jwt"))
        saved[name] = {"url": url, "fetched_at": now.isoformat()}
    manifest_path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"] if isinstance(manifest.get("files"), dict) else {}
    except (OSError, ValueError, AttributeError):
        files = {}
    files.update(saved)
    write_atomically(
        manifest_path,
        json.dumps({"format": MANIFEST_FORMAT, "files": files}, ensure_ascii=False, indent=2) + "\n",
    )
    return sorted(saved)


# ---------------------------------------------------------------------- the check


@dataclass
class Report:
    """What the check found; printed for people or as JSON."""

    result: str
    failed: str | None = None  # "credential" or "status_list" when a token did not verify
    reason: tuple[str, str] | None = None  # (zh, en) why it failed
    sha256: str = ""
    credential: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=lambda: {"checked": False})
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # (code, zh, en)
    claims: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return RESULTS[self.result][2]

    def note(self, code: str, zh: str, en: str) -> None:
        self.notes.append((code, zh, en))


def beijing_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S") + "（北京时间 / Beijing time）"


def ago(seconds: float) -> tuple[str, str]:
    """How long ago, in Chinese and English ("3 分钟前", "3 minutes ago")."""
    if seconds < 0:
        zh, en = ago(-seconds)
        return zh.replace("前", "后"), en.replace(" ago", " from now")
    s = int(seconds)
    if s >= 2 * 86400:
        return f"{s // 86400} 天前", f"{s // 86400} days ago"
    if s >= 3600:
        return f"{s // 3600} 小时前", f"{s // 3600} hours ago"
    if s >= 60:
        return f"{s // 60} 分钟前", f"{s // 60} minutes ago"
    return f"{s} 秒前", f"{s} seconds ago"


def epoch(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def check_status(
    report: Report,
    reference: tuple[str, int],
    token: str,
    jwks: Mapping[str, Any],
    path: Path | None,
    now: datetime,
) -> None:
    """The credential's bit in a saved status list, and how old that list is."""
    uri, idx = reference
    try:
        listed = read_status_list(token.strip(), jwks)
    except Rejected as e:
        report.result, report.failed, report.reason = e.code, "status_list", (e.zh, e.en)
        return
    if listed.claims.get("sub") != uri:
        raise UsageError(
            f"this status list is {listed.claims.get('sub')!r}, the credential names {uri!r}: fetch that one",
            f"此状态列表是 {listed.claims.get('sub')!r}，证照所载的是 {uri!r}：请获取后者",
        )
    try:
        bit = listed.status(idx)
    except Rejected as e:
        report.result, report.failed, report.reason = e.code, "status_list", (e.zh, e.en)
        return
    signed, expires = epoch(listed.claims.get("iat")), epoch(listed.claims.get("exp"))
    got = fetched_at(path) if path is not None else None
    report.status = {
        "checked": True,
        "uri": uri,
        "idx": idx,
        "status": bit,
        "kid": listed.header.get("kid"),
        "iat": listed.claims.get("iat"),
        "exp": listed.claims.get("exp"),
        "ttl": listed.claims.get("ttl"),
        "signed_at": signed.isoformat() if signed else None,
        "signed_age_seconds": int((now - signed).total_seconds()) if signed else None,
        "fetched_at": got.isoformat() if got else None,
        "fetched_age_seconds": int((now - got).total_seconds()) if got else None,
        "expired": bool(expires and now >= expires),
    }
    if bit:
        report.result = "revoked"
        report.note("one_bit_status", *ONE_BIT)
    if signed and (signed - now).total_seconds() > FUTURE_SLACK:
        report.note(
            "status_list_from_the_future",
            "状态列表的签发时间晚于本机时钟：请检查本机时间",
            "the status list is dated after this machine's clock: check the clock",
        )
    if expires and now >= expires:
        if bit:
            report.note(
                "status_list_expired",
                f"状态列表已于 {beijing_time(expires)} 过期；作废不会撤销（状态位一经设置永不清除），结论仍为已作废",
                f"the status list expired at {beijing_time(expires)}; a revocation is never undone (a bit once set "
                "stays set), so the credential is still revoked",
            )
        else:
            report.note(
                "status_list_expired",
                f"警告：状态列表已于 {beijing_time(expires)} 过期，此后的作废不在其中：请重新获取（--fetch）后再核验",
                f"WARNING: the status list expired at {beijing_time(expires)}; revocations since are not in it: "
                "fetch a new one (--fetch) and check again",
            )
    elif not bit:
        ttl = listed.claims.get("ttl")
        report.note(
            "status_as_of_list",
            "未作废的结论截至状态列表获取之时；此后的作废不在其中"
            + (f"（服务端列表每 {ttl} 秒可更新）" if isinstance(ttl, int) else ""),
            "not revoked as of when the list was fetched; later revocations are not in it"
            + (f" (the service's list may change every {ttl} s)" if isinstance(ttl, int) else ""),
        )


def verify(
    text: str,
    jwks: Mapping[str, Any],
    status_token: str | None,
    status_path: Path | None,
    now: datetime,
    *,
    show_claims: bool = False,
) -> Report:
    """Every offline check of one credential."""
    report = Report(
        result="valid", sha256=hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    )
    try:
        credential = check_credential(text, jwks)
    except Rejected as e:
        report.result, report.failed, report.reason = e.code, "credential", (e.zh, e.en)
        return report
    kid = credential.header.get("kid")
    key: dict[str, Any] = next((k for k in jwks["keys"] if k.get("kid") == kid), {})
    report.credential = {
        "kid": kid,
        "key_status": key.get("status"),
        **{
            k: credential.claims.get(k)
            for k in ("licence_id", "certificate_number", "issuer_name", "issuer_code", "issue_date")
        },
        "disclosures": len(credential.disclosed),
    }
    if show_claims:
        report.claims = dict(credential.disclosed)
    reference = status_reference(credential.claims)
    if reference is None:
        report.note(
            "no_status_list", "证照未载明状态列表：无法检查是否作废", "the credential names no status list"
        )
    elif status_token is None:
        report.status = {"checked": False, "uri": reference[0], "idx": reference[1]}
        report.note(
            "status_not_checked",
            "未提供状态列表：未检查是否作废（签名有效不等于未作废）",
            "no status list given: whether it was revoked was NOT checked (a valid signature is not a valid "
            "certificate)",
        )
    else:
        check_status(report, reference, status_token, jwks, status_path, now)
    return report


# ---------------------------------------------------------------------- output


def as_json(report: Report) -> dict[str, Any]:
    zh, en, code = RESULTS[report.result]
    document: dict[str, Any] = {
        "result": report.result,
        "result_label": zh,
        "result_label_en": en,
        "exit_code": code,
        "failed": report.failed,
        "reason": report.reason[1] if report.reason else None,
        "reason_label": report.reason[0] if report.reason else None,
        "checked": {"kind": "credential", "sha256": report.sha256},
        "credential": report.credential or None,
        "status": report.status,
        "notes": [{"code": c, "zh": z, "en": e} for c, z, e in report.notes],
    }
    if report.claims is not None:
        document["claims"] = report.claims
    return document


def print_human(report: Report, out: Any) -> None:
    zh, en, _ = RESULTS[report.result]

    def line(text: str = "") -> None:
        print(text, file=out)

    line("出生医学证明电子证照 离线核验 / birthcert e-licence, checked offline")
    unchecked = report.result == "valid" and not report.status.get("checked")
    line(
        f"结果 / result: {zh} — {en}"
        + ("（仅签名有效，未检查是否作废 / signature only: revocation NOT checked）" if unchecked else "")
    )
    if report.failed:
        what = (
            ("证照", "the credential") if report.failed == "credential" else ("状态列表", "the status list")
        )
        assert report.reason is not None
        line(f"  {what[0]}未通过核验：{report.reason[0]}")
        line(f"  {what[1]} did not verify: {report.reason[1]}")
    c = report.credential
    if c:
        status = {"current": "当前密钥 / current key", "retired": "已停用的旧密钥 / retired key"}.get(
            str(c.get("key_status")), "?"
        )
        line(f"  签名 / signature: 有效 / verified（kid {c['kid']}，{status}）")
        line(f"  证照标识 / licence id: {c.get('licence_id')}")
        line(f"  出生医学证明编号 / certificate number: {c.get('certificate_number')}")
        line(
            f"  签发机构 / issuer: {c.get('issuer_name')}（{c.get('issuer_code')}），签发日期 / issued {c.get('issue_date')}"
        )
        shown = (
            "见下 / below"
            if report.claims is not None
            else "未显示，--show-claims 显示 / not shown: --show-claims"
        )
        line(
            f"  披露项 / disclosures: {c['disclosures']} 项均为签发方所签 / all signed by the issuer（{shown}）"
        )
    s = report.status
    if s.get("checked"):
        state = ("已作废 / REVOKED", "未作废 / not revoked")[s["status"] == 0]
        line(
            f"  作废状态 / revocation: {state}（状态列表 / status list {s['uri']}，第 {s['idx']} 位 / index {s['idx']}）"
        )
        if s.get("fetched_at"):
            zh_ago, en_ago = ago(s["fetched_age_seconds"])
            line(
                f"  状态列表获取于 {zh_ago} / status list fetched {en_ago}: {beijing_time(datetime.fromisoformat(s['fetched_at']))}"
            )
        if s.get("signed_at"):
            zh_ago, en_ago = ago(s["signed_age_seconds"])
            line(
                f"  状态列表签发于 {zh_ago} / status list signed {en_ago}: {beijing_time(datetime.fromisoformat(s['signed_at']))}"
            )
        if s.get("exp") is not None:
            expires = epoch(s["exp"])
            assert expires is not None
            line(
                f"  状态列表有效期至 / status list expires: {beijing_time(expires)}"
                + ("（已过期 / EXPIRED）" if s["expired"] else "")
            )
    for _, note_zh, note_en in report.notes:
        line(f"  注意：{note_zh}")
        line(f"  note: {note_en}")
    if report.claims is not None:
        line("  披露的项目 / disclosed items:")
        for name, value in report.claims.items():
            shown_value = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            line(f"    {ITEM_LABELS.get(name, name)} / {name}: {shown_value}")


# ---------------------------------------------------------------------- command line


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with 3 (2 means a bad credential here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: 用法错误 / usage error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def parse_now(text: str) -> datetime:
    try:
        moment = (
            datetime.fromtimestamp(float(text), UTC)
            if re.fullmatch(r"\d+(\.\d+)?", text)
            else datetime.fromisoformat(text)
        )
    except (ValueError, OverflowError, OSError):
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give the time with its offset, e.g. 2026-12-03T10:00:00+08:00")
    return moment


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = Parser(
        prog="verify_elicense.py",
        description="离线核验出生医学证明电子证照 / Verify a birthcert e-licence offline.",
        epilog="exit status: 0 valid, 1 revoked, 2 malformed / bad signature / unknown key, 3 usage error",
    )
    parser.add_argument(
        "credential", nargs="?", help="the credential, a file holding it, or - for standard input"
    )
    parser.add_argument(
        "--jwks", type=Path, metavar="FILE", help="the saved JWKS (/api/v1/elicense/jwks.json)"
    )
    parser.add_argument("--status-list", type=Path, metavar="FILE", help="the saved status list token")
    parser.add_argument(
        "--dir", type=Path, metavar="DIR", help="a folder --save filled: its JWKS and status lists"
    )
    parser.add_argument(
        "--fetch", metavar="BASE_URL", help="download the JWKS and the status list from the service"
    )
    parser.add_argument(
        "--save", type=Path, metavar="DIR", help="with --fetch: where to keep them for offline use"
    )
    parser.add_argument(
        "--show-claims", action="store_true", help="print the disclosed items (personal data)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--now", type=parse_now, metavar="TIME", help="check as of this time (ISO 8601 or epoch)"
    )
    args = parser.parse_args(argv)
    if bool(args.fetch) != bool(args.save):
        parser.error("--fetch and --save go together")
    if args.fetch and (args.jwks or args.dir or args.status_list):
        parser.error("--fetch --save downloads the files: give no --jwks, --dir or --status-list with it")
    if not args.fetch and bool(args.jwks) == bool(args.dir):
        parser.error(
            "give the saved JWKS: --jwks FILE or --dir DIR (or download it with --fetch URL --save DIR)"
        )
    now = args.now or datetime.now(UTC)
    try:
        text = read_credential(args.credential)
        if args.fetch:
            saved = fetch(args.fetch, args.save, text)
            print(f"已保存 / saved in {args.save}: {', '.join(saved)}", file=sys.stderr)
            args.dir = args.save
        jwks_path = args.jwks or args.dir / JWKS_FILE
        jwks = parse_jwks(read_text(jwks_path, "the JWKS", "密钥集"), str(jwks_path))
        list_path = args.status_list
        if list_path is None and args.dir is not None:
            reference = status_reference(unverified_claims(text))
            name = list_file_name(reference[0]) if reference else None
            if name and (args.dir / name).is_file():
                list_path = args.dir / name
            elif name:
                print(
                    f"{args.dir} 中没有 / holds no {name}: --fetch 可获取 / --fetch gets it", file=sys.stderr
                )
        token = read_text(list_path, "the status list", "状态列表") if list_path else None
        report = verify(text, jwks, token, list_path, now, show_claims=args.show_claims)
    except UsageError as e:
        if args.json:
            print(
                json.dumps(
                    {"result": None, "exit_code": EXIT_USAGE, "error": e.en, "error_label": e.zh},
                    ensure_ascii=False,
                )
            )
        print(f"无法核验 / cannot check: {e.zh}\n{e.en}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(as_json(report), ensure_ascii=False, indent=2))
    else:
        print_human(report, sys.stdout)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
