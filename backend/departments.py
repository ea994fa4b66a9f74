"""出生一件事's departments as the backend meets them: one small port, its HTTP adapter, the signature both ways.

Each department that takes over a service of the bundle (疾控's 预防接种证, the police's 户口登记, the medical
insurance's 参保登记, 人社's 社会保障卡申领; docs/decisions/0046) is reached the same way:
``POST {base}/v1/handoffs`` with one JSON message per application and service, whose ``message_id`` the
department de-duplicates on; it later POSTs its answer (accepted, refused with a reason, done with a result)
to ``/api/v1/departments/{department}/results``. Both directions are signed
with the department's own key (HMAC-SHA256, the key shared with that department only):

    X-Birthcert-Signature: t=<unix seconds>,kid=<key id>,v1=<hex HMAC-SHA256(key, "<t>." + exact body)>

A signature older or newer than ``TOLERANCE_SECONDS`` is refused, and the answer's ``result_id`` (with the
message id) makes a replayed answer record nothing.

A message whose department needs materials of 表1 (the police: the 户口簿's pages, the 结婚证; decision 0047)
lists them by reference; the department fetches each with ``GET /api/v1/departments/{department}/materials/
{message_id}/{document}``, signed with its key over the request itself (a GET has no body):

    X-Birthcert-Signature: t=<unix seconds>,kid=<key id>,v1=<hex HMAC-SHA256(key, "<t>." + "GET " + path)>

so a signature taken from one fetch cannot fetch another document.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiohttp
import orjson
from yarl import URL

from backend.ems import InvalidSignature, InvalidWebhook
from domain.bundle import handoffs
from domain.errors import DomainError
from domain.values import Actor

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Birthcert-Signature"
TOLERANCE_SECONDS: Final = 300
HANDOFF_PATH: Final = "/v1/handoffs"
RESULTS_PATH: Final = "/api/v1/departments/{department}/results"
MATERIALS_PATH: Final = "/api/v1/departments/{department}/materials/{message_id}/{document}"
_SIGNATURE_RE: Final = re.compile(
    r"^t=(?P<t>[0-9]{1,12}),kid=(?P<kid>[A-Za-z0-9_.:-]{1,64}),v1=(?P<mac>[0-9a-f]{64})$"
)


def department_actor(department: str, name: str) -> Actor:
    """Who records a department's part (its hand-off delivered, its answers): a system actor per department."""
    return Actor(id=f"department:{department}", role="system", name=name)


class DepartmentUnavailable(DomainError):
    """The department did not take the message (down, timed out, 5xx, 429, our key refused): try again later."""

    code = "department_unavailable"
    message = "办理部门接口暂时不可用，请稍后再试"
    http_status = 503


class DepartmentRejected(DomainError):
    """The department refused the message itself (4xx): sending the same bytes again will not help."""

    code = "department_rejected"
    message = "办理部门拒收了推送"
    http_status = 502


@dataclass(frozen=True, repr=False)
class DepartmentKey:
    """One department's endpoint and the key shared with it (never in ``repr``)."""

    department: str
    base_url: str
    key_id: str
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"DepartmentKey({self.department!r}, {self.base_url!r}, kid={self.key_id!r})"


def department_keys(environ: Mapping[str, str]) -> dict[str, DepartmentKey]:
    """``DEPARTMENT_<CODE>_URL``, ``…_KEY_ID``, ``…_SECRET`` for each department of ``bundle_departments.json``
    (``<CODE>`` its code upper-cased: DISEASE_CONTROL, POLICE, MEDICAL_INSURANCE, SOCIAL_SECURITY). A
    department with no URL is not configured: its hand-offs wait. No default address, no default secret: a callback without a key is refused."""
    out: dict[str, DepartmentKey] = {}
    for handoff in handoffs().values():
        prefix = f"DEPARTMENT_{handoff.department.upper()}_"
        base = (environ.get(prefix + "URL") or "").strip().rstrip("/")
        secret = environ.get(prefix + "SECRET") or ""
        if base and not base.startswith(("http://", "https://")):
            raise ValueError(f"{prefix}URL must be an http(s) URL")
        if base and len(secret) < 16:
            raise ValueError(f"{prefix}SECRET must be set (16 characters or more) with {prefix}URL")
        if base or secret:
            out[handoff.department] = DepartmentKey(
                department=handoff.department,
                base_url=base,
                key_id=(environ.get(prefix + "KEY_ID") or "k1").strip(),
                secret=secret.encode(),
            )
    return out


def signature(body: bytes, secret: bytes, key_id: str, at: int | None = None) -> str:
    """The ``X-Birthcert-Signature`` value for ``body`` at ``at`` (now by default)."""
    stamp = int(time.time()) if at is None else at
    mac = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},kid={key_id},v1={mac}"


def signed_request(method: str, path: str) -> bytes:
    """What a body-less request is signed over in place of its body: ``"<METHOD> <path>"``."""
    return f"{method.upper()} {path}".encode()


def check_signature(
    signed: bytes, header: str | None, key: DepartmentKey | None, *, now: float | None = None
) -> None:
    """``InvalidSignature`` unless ``header`` signs ``signed`` with ``key`` (constant time) and is fresh. A
    department with no key has no valid signature."""
    match = _SIGNATURE_RE.fullmatch((header or "").strip())
    if key is None or not key.secret or match is None or match["kid"] != key.key_id:
        raise InvalidSignature()
    expected = hmac.new(key.secret, f"{match['t']}.".encode() + signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), match["mac"].encode()):
        raise InvalidSignature()
    if abs((time.time() if now is None else now) - int(match["t"])) > TOLERANCE_SECONDS:
        raise InvalidSignature("签名已过期", code="signature_expired")


def verify(
    body: bytes, header: str | None, key: DepartmentKey | None, *, now: float | None = None
) -> dict[str, Any]:
    """The JSON object of a department's signed request, once its signature checks out (constant time) and is
    fresh; else ``InvalidSignature``. A department with no key has no valid signature."""
    check_signature(body, header, key, now=now)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidWebhook() from None
    if not isinstance(data, dict):
        raise InvalidWebhook()
    return data


class DepartmentPort(Protocol):
    """What the hand-off process needs from a department."""

    async def send(self, message_id: str, body: bytes) -> bool:
        """Deliver one message (``body``: its exact JSON bytes); True when the department took it now, False
        when it had it already (the same ``message_id``). Raises ``DepartmentUnavailable`` when it is worth
        trying again later, ``DepartmentRejected`` when not."""
        ...

    async def received(self, message_id: str) -> bool:
        """Whether the department has message ``message_id`` already (asked before sending again after an
        attempt whose answer never came). Raises ``DepartmentUnavailable`` when it cannot tell now."""
        ...


class HttpDepartment:
    """``DepartmentPort`` over the department's HTTP API (the fakes speak the same)."""

    def __init__(self, key: DepartmentKey, session: aiohttp.ClientSession, *, timeout: float = 10.0) -> None:
        self.key = key
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"HttpDepartment({self.key.department!r})"

    async def send(self, message_id: str, body: bytes) -> bool:
        """``POST {base}/v1/handoffs``, signed."""
        status, answer = await self._call("POST", HANDOFF_PATH, body, message_id)
        if 200 <= status < 300:
            return not (isinstance(answer, dict) and answer.get("duplicate") is True)
        code = answer.get("code") if isinstance(answer, dict) else None
        log.warning("department %s answered HTTP %s (%s)", self.key.department, status, code or "-")
        if status in (401, 403, 408, 429) or status >= 500:
            raise DepartmentUnavailable()
        raise DepartmentRejected(
            f"办理部门拒收了推送（HTTP {status}{'，' + str(code)[:40] if code else ''}）"
        )

    async def received(self, message_id: str) -> bool:
        """``GET {base}/v1/handoffs/<message id>``, signed over ``"GET " + path`` (the path as the department
        receives it, so that a signature is good for this look-up only): 200 has it, 404 has not."""
        path = f"{HANDOFF_PATH}/{message_id}"
        signed = signed_request("GET", URL(self.key.base_url + path).raw_path)
        status, _ = await self._call("GET", path, b"", message_id, signed=signed)
        if status in (200, 404):
            return status == 200
        raise DepartmentUnavailable()

    async def _call(
        self, method: str, path: str, body: bytes, message_id: str, *, signed: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(body if signed is None else signed, self.key.secret, self.key.key_id),
            "Idempotency-Key": message_id,
        }
        try:
            async with self._session.request(
                method, self.key.base_url + path, data=body or None, headers=headers, timeout=self._timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            log.warning("department %s unreachable: %s", self.key.department, type(error).__name__)
            raise DepartmentUnavailable() from None
        try:
            answer = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            answer = None
        return status, answer


__all__ = [
    "HANDOFF_PATH",
    "MATERIALS_PATH",
    "RESULTS_PATH",
    "SIGNATURE_HEADER",
    "DepartmentKey",
    "DepartmentPort",
    "DepartmentRejected",
    "DepartmentUnavailable",
    "HttpDepartment",
    "check_signature",
    "department_actor",
    "department_keys",
    "signature",
    "signed_request",
    "verify",
]
