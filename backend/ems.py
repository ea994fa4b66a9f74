"""EMS (中国邮政速递物流) as the backend meets it: the port, its HTTP implementation, the webhook check.

The protocol is the small JSON one of ``miniprogram_stub/README.md`` (section "EMS"): book a pickup
(揽件) per order with ``POST {base}/v1/pickups`` (header ``X-Api-Key``) and get a waybill number back;
EMS later POSTs the parcel's fate (delivered or lost) to the callback URL given with the booking,
signed ``X-Ems-Signature: hex(HMAC-SHA256(webhook secret, raw body))``.

One pickup is booked per issue of a certificate, so the order id is the application id AND the
version of its ``Issued``/``Reissued`` event (``order_id_for``): booking the same order again gives the
same waybill (a retry or a restart), while a reissue after a loss is a new order with a new waybill.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from uuid import UUID

import aiohttp
import orjson

from backend.config import DEV_EMS_API_KEY, DEV_EMS_WEBHOOK_SECRET
from domain.errors import DomainError
from domain.values import Actor

log = logging.getLogger(__name__)

ITEM: Final = "出生医学证明"
SIGNATURE_HEADER: Final = "X-Ems-Signature"
API_KEY_HEADER: Final = "X-Api-Key"
WEBHOOK_PATH: Final = "/api/v1/ems/events"
# Who records what EMS reports (Delivered, LossReported): the courier, not a person of ours.
EMS_ACTOR: Final = Actor(id="ems", role="ems", name="中国邮政速递")
# Development values: the fake EMS of miniprogram_stub (mounted on the fake platform, port 8765). Public,
# so only ever used in development (``Config.production_problems`` refuses them in production).
DEV_API_BASE: Final = "http://127.0.0.1:8765/ems"
DEV_API_KEY: Final = DEV_EMS_API_KEY
DEV_WEBHOOK_SECRET: Final = DEV_EMS_WEBHOOK_SECRET
_WAYBILL_RE: Final = re.compile(r"^[A-Z0-9]{10,32}$")
_ORDER_RE: Final = re.compile(
    r"^(?P<app>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:-v(?P<version>[1-9][0-9]{0,8}))?$"
)


class EmsUnavailable(DomainError):
    """EMS did not answer usefully (down, timed out, 5xx, 429): try again later."""

    code = "ems_unavailable"
    message = "邮政速递服务暂时不可用，请稍后再试"
    http_status = 503


class EmsRejected(DomainError):
    """EMS refused the booking itself (4xx other than 401/403/429): retrying the same request will not help."""

    code = "ems_rejected"
    message = "邮政速递拒绝了揽件预约"
    http_status = 502


class UnconfiguredEms:
    """No EMS account configured (``EMS_API_BASE`` unset): every booking is refused, the issuer dispatches by hand.

    Safer than a default address: nothing is ever sent to whatever happens to listen there.
    """

    async def book_pickup(self, *, order_id: str, sender: Any, recipient: Any, callback_url: str) -> str:
        """Refuse: there is no EMS to book with."""
        raise EmsRejected(
            "未配置邮政速递接口（EMS_API_BASE），请在签发后手工登记邮件号", code="ems_not_configured"
        )


class InvalidSignature(DomainError):
    """A webhook whose signature does not check out (forged, or signed with another secret)."""

    code = "invalid_signature"
    message = "签名无效"
    http_status = 401


class InvalidWebhook(DomainError):
    """A correctly signed webhook whose body is not what the protocol says."""

    code = "invalid_webhook"
    message = "推送内容格式不正确"
    http_status = 400


@dataclass(frozen=True)
class Sender:
    """The issuing institution that hands the certificate over (寄件方)."""

    institution_code: str
    institution_name: str

    def to_dict(self) -> dict[str, str]:
        return {"institution_code": self.institution_code, "institution_name": self.institution_name}


@dataclass(frozen=True, repr=False)
class PickupRecipient:
    """Who receives the parcel (收件人). Personal data: never in ``repr`` or logs."""

    name: str
    phone: str
    address: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "phone": self.phone, "address": self.address}

    def __repr__(self) -> str:
        return "PickupRecipient(…)"


class EmsPort(Protocol):
    """What the service needs from EMS."""

    async def book_pickup(
        self, *, order_id: str, sender: Sender, recipient: PickupRecipient, callback_url: str
    ) -> str:
        """Book the pickup of one parcel; returns its waybill number (邮件号). Idempotent per ``order_id``.

        Raises ``EmsUnavailable`` when it is worth trying again later, ``EmsRejected`` when not.
        """
        ...


def order_id_for(app_id: UUID | str, issue_version: int) -> str:
    """Our order id for one issue of a certificate: ``<application uuid>-v<version of Issued/Reissued>``."""
    return f"{UUID(str(app_id))}-v{int(issue_version)}"


def application_of(order_id: object) -> UUID | None:
    """The application an order id belongs to (a bare application id is accepted too), or None."""
    if not isinstance(order_id, str):
        return None
    match = _ORDER_RE.fullmatch(order_id.strip().lower())
    return UUID(match["app"]) if match else None


@dataclass(frozen=True, repr=False)
class EmsSettings:
    """Where EMS is and the two secrets shared with it (read once at start; secrets never in ``repr``)."""

    api_base: str = DEV_API_BASE
    api_key: str = field(default=DEV_API_KEY, repr=False)
    webhook_secret: bytes = field(default=DEV_WEBHOOK_SECRET.encode(), repr=False)
    # Where EMS should POST parcel events; None means ``<public URL>/api/v1/ems/events``.
    callback_url: str | None = None
    timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, development: bool = True) -> EmsSettings:
        """``EMS_API_BASE``, ``EMS_API_KEY``, ``EMS_WEBHOOK_SECRET``, ``EMS_CALLBACK_URL``, ``EMS_TIMEOUT_SECONDS``.

        In development unset (or empty) values fall back to the fake EMS's values. Otherwise nothing falls
        back: an unset base or key stays empty (no EMS: ``ems_ctx`` books nothing), and so does an unset
        webhook secret, with which ``verify_webhook`` refuses every event.
        """
        base = (environ.get("EMS_API_BASE") or (DEV_API_BASE if development else "")).strip().rstrip("/")
        if base and not base.startswith(("http://", "https://")):
            raise ValueError("EMS_API_BASE must be an http(s) URL")
        timeout = float(environ.get("EMS_TIMEOUT_SECONDS") or "10")
        if timeout <= 0:
            raise ValueError("EMS_TIMEOUT_SECONDS must be positive")
        return cls(
            api_base=base,
            api_key=environ.get("EMS_API_KEY") or (DEV_API_KEY if development else ""),
            webhook_secret=(
                environ.get("EMS_WEBHOOK_SECRET") or (DEV_WEBHOOK_SECRET if development else "")
            ).encode(),
            callback_url=(environ.get("EMS_CALLBACK_URL") or "").strip() or None,
            timeout_seconds=timeout,
        )

    def __repr__(self) -> str:
        return f"EmsSettings(api_base={self.api_base!r}, callback_url={self.callback_url!r})"


class HttpEms:
    """``EmsPort`` over EMS's HTTP API (the fake speaks the same protocol)."""

    def __init__(
        self, base_url: str, api_key: str, session: aiohttp.ClientSession, *, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"HttpEms({self.base_url!r})"

    async def book_pickup(
        self, *, order_id: str, sender: Sender, recipient: PickupRecipient, callback_url: str
    ) -> str:
        """``POST {base}/v1/pickups`` → the waybill number."""
        body = {
            "order_id": order_id,
            "sender": sender.to_dict(),
            "recipient": recipient.to_dict(),
            "item": ITEM,
            "callback_url": callback_url,
        }
        status, answer = await self._call("POST", "/v1/pickups", body)
        if 200 <= status < 300:
            waybill = answer.get("waybill_no") if isinstance(answer, dict) else None
            if not isinstance(waybill, str) or not _WAYBILL_RE.fullmatch(waybill):
                raise EmsUnavailable("邮政速递返回的邮件号无效", code="ems_bad_answer")
            return waybill
        raise _failure(status, answer)

    async def waybill(self, waybill_no: str) -> dict[str, Any]:
        """``GET {base}/v1/waybills/<no>``: the parcel's status and events."""
        status, answer = await self._call("GET", f"/v1/waybills/{waybill_no}", None)
        if status == 200 and isinstance(answer, dict):
            return answer
        raise _failure(status, answer)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        headers = {API_KEY_HEADER: self._api_key, "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        try:
            async with self._session.request(
                method, self.base_url + path, data=data, headers=headers, timeout=self._timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            # The class name only: a message may quote the URL or the request.
            log.warning("EMS %s %s failed: %s", method, path.split("/")[2], type(error).__name__)
            raise EmsUnavailable() from None
        try:
            answer = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            answer = None
        return status, answer


def _failure(status: int, answer: Any) -> DomainError:
    code = answer.get("code") if isinstance(answer, dict) else None
    log.warning("EMS answered HTTP %s (%s)", status, code if isinstance(code, str) else "-")
    # 401/403 is our configuration (a key being rotated), 408/429/5xx theirs: both pass with time.
    if status in (401, 403, 408, 429) or status >= 500:
        return EmsUnavailable()
    return EmsRejected(f"邮政速递拒绝了揽件预约（HTTP {status}）", code="ems_rejected")


def sign_webhook(body: bytes, secret: bytes) -> str:
    """The signature EMS puts in ``X-Ems-Signature``: lower-case hex of HMAC-SHA256(secret, body)."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_webhook(body: bytes, signature: str | None, secret: bytes) -> dict[str, Any]:
    """The webhook's JSON object, once its signature checks out (constant-time); else ``InvalidSignature``.

    Without a secret nothing checks out: anyone can compute an HMAC under the empty key.
    """
    if not secret:
        raise InvalidSignature()
    expected = sign_webhook(body, secret)
    given = (signature or "").strip().lower()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise InvalidSignature()
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidWebhook() from None
    if not isinstance(event, dict):
        raise InvalidWebhook()
    return event


__all__ = [
    "EMS_ACTOR",
    "ITEM",
    "SIGNATURE_HEADER",
    "EmsPort",
    "EmsRejected",
    "EmsSettings",
    "EmsUnavailable",
    "HttpEms",
    "InvalidSignature",
    "PickupRecipient",
    "Sender",
    "application_of",
    "order_id_for",
    "sign_webhook",
    "verify_webhook",
]
