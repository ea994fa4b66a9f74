"""EMS (中国邮政速递物流): pickup booking, waybill lookup, and the signed parcel-event webhook.

No public protocol of EMS's enterprise API was at hand, so this fake defines a small JSON one
(miniprogram_stub/README.md, section "EMS"). ``setup_ems(app)`` adds the routes to the fake platform
(or to any aiohttp app): ``/ems/v1/...`` is EMS, ``/_fake/ems/...`` plays the courier's side.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web

from miniprogram_stub.fake_core import (
    RESETTABLES,
    BadJson,
    Handler,
    Json,
    add_resettable,
    control_reply,
    read_json,
)

log = logging.getLogger(__name__)

PICKUPS_PATH = "/ems/v1/pickups"
WAYBILL_PATH = "/ems/v1/waybills/{waybill_no}"
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST in China: a fixed offset is exact
MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
ORDER_ID = re.compile(r"^[0-9A-Za-z_\-.:]{1,64}$")
INSTITUTION_CODE = re.compile(r"^[0-9A-Za-z]{2,32}$")


@dataclass(frozen=True)
class FakeEmsSettings:
    """The credentials the fake EMS accepts and signs with (the backend's development defaults)."""

    api_key: str = field(default="dev-ems-key", repr=False)
    webhook_secret: bytes = field(default=b"dev-ems-webhook-secret", repr=False)
    notify_timeout: float = 5.0


@dataclass
class Booking:
    """One booked pickup and what became of the parcel."""

    waybill_no: str
    order_id: str
    sender: Json
    recipient: Json
    item: str
    callback_url: str
    booked_at: str
    status: str = "booked"  # booked → delivered | lost
    reason: str | None = None
    occurred_at: str | None = None

    def public(self) -> Json:
        """The waybill as `GET /ems/v1/waybills/<no>` shows it (the recipient masked, as EMS tracking does)."""
        events = [{"status": "booked", "occurred_at": self.booked_at}]
        if self.occurred_at is not None:
            events.append({"status": self.status, "occurred_at": self.occurred_at})
        name = str(self.recipient.get("name", ""))
        phone = str(self.recipient.get("phone", ""))
        out: Json = {
            "waybill_no": self.waybill_no,
            "order_id": self.order_id,
            "status": self.status,
            "item": self.item,
            "recipient": {
                "name": name[:1] + "*" * max(len(name) - 1, 0),
                "phone": phone[:3] + "****" + phone[-4:],
            },
            "booked_at": self.booked_at,
            "events": events,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    def control(self) -> Json:
        """Everything, for `GET /_fake/ems/pickups`."""
        return {
            "waybill_no": self.waybill_no,
            "order_id": self.order_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "item": self.item,
            "callback_url": self.callback_url,
            "booked_at": self.booked_at,
            "status": self.status,
            "reason": self.reason,
            "occurred_at": self.occurred_at,
        }


@dataclass
class EmsBook:
    """The fake's state: bookings by waybill and by order, failures queued, requests counted."""

    bookings: dict[str, Booking] = field(default_factory=dict)
    by_order: dict[str, str] = field(default_factory=dict)
    fail_next: int = 0
    requests: int = 0

    def reset(self) -> None:
        self.bookings.clear()
        self.by_order.clear()
        self.fail_next = 0
        self.requests = 0

    def new_waybill(self) -> str:
        """A domestic EMS number: 13 digits starting 11, unique in this fake."""
        while True:
            number = f"11{secrets.randbelow(10**11):011d}"
            if number not in self.bookings:
                return number


EMS_SETTINGS = web.AppKey("fake_ems_settings", FakeEmsSettings)
EMS_BOOK = web.AppKey("fake_ems_book", EmsBook)
EMS_HTTP = web.AppKey("fake_ems_http", aiohttp.ClientSession)


def _now() -> str:
    return datetime.now(CHINA).isoformat(timespec="seconds")


def _authorized(request: web.Request) -> bool:
    key = request.headers.get("X-Api-Key", "")
    return hmac.compare_digest(key.encode(), request.app[EMS_SETTINGS].api_key.encode())


def _bad(field_name: str) -> web.Response:
    return control_reply({"code": "bad_request", "field": field_name}, 400)


def _text(value: object, low: int = 1, high: int = 200) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = value.strip()
    return cleaned if low <= len(cleaned) <= high else None


def _parse_pickup(body: Json) -> tuple[Json, str | None]:
    """The booking's fields, or the name of the first bad one."""
    order_id = body.get("order_id")
    if not isinstance(order_id, str) or not ORDER_ID.fullmatch(order_id):
        return {}, "order_id"
    sender, recipient = body.get("sender"), body.get("recipient")
    if not isinstance(sender, dict):
        return {}, "sender"
    code = sender.get("institution_code")
    if not isinstance(code, str) or not INSTITUTION_CODE.fullmatch(code):
        return {}, "sender.institution_code"
    institution_name = _text(sender.get("institution_name"), 2, 100)
    if institution_name is None:
        return {}, "sender.institution_name"
    if not isinstance(recipient, dict):
        return {}, "recipient"
    name = _text(recipient.get("name"), 1, 50)
    if name is None:
        return {}, "recipient.name"
    phone = recipient.get("phone")
    if not isinstance(phone, str) or not MOBILE.fullmatch(phone):
        return {}, "recipient.phone"
    address = _text(recipient.get("address"), 5, 200)
    if address is None:
        return {}, "recipient.address"
    item = _text(body.get("item"), 1, 50)
    if item is None:
        return {}, "item"
    callback = body.get("callback_url")
    parts = urlsplit(callback) if isinstance(callback, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return {}, "callback_url"
    return {
        "order_id": order_id,
        "sender": {"institution_code": code, "institution_name": institution_name},
        "recipient": {"name": name, "phone": phone, "address": address},
        "item": item,
        "callback_url": callback,
    }, None


async def book_pickup(request: web.Request) -> web.Response:
    """`POST /ems/v1/pickups` (header `X-Api-Key`): book a pickup; the same order_id → the same waybill."""
    book = request.app[EMS_BOOK]
    book.requests += 1
    if book.fail_next > 0:
        book.fail_next -= 1
        return control_reply({"code": "unavailable", "message": "系统繁忙，请稍后重试"}, 503)
    if not _authorized(request):
        return control_reply({"code": "unauthorized"}, 401)
    try:
        body = await read_json(request)
    except BadJson:
        return _bad("body")
    fields, bad = _parse_pickup(body)
    if bad is not None:
        return _bad(bad)
    existing = book.by_order.get(fields["order_id"])
    if existing is not None:
        booking = book.bookings[existing]
        if booking.sender != fields["sender"] or booking.recipient != fields["recipient"]:
            return control_reply({"code": "order_conflict", "waybill_no": existing}, 409)
        return control_reply(_booked(booking, created=False))
    booking = Booking(waybill_no=book.new_waybill(), booked_at=_now(), **fields)
    book.bookings[booking.waybill_no] = booking
    book.by_order[booking.order_id] = booking.waybill_no
    return control_reply(_booked(booking, created=True), 201)


def _booked(booking: Booking, *, created: bool) -> Json:
    return {
        "waybill_no": booking.waybill_no,
        "order_id": booking.order_id,
        "status": booking.status,
        "booked_at": booking.booked_at,
        "created": created,
    }


async def get_waybill(request: web.Request) -> web.Response:
    """`GET /ems/v1/waybills/<no>` (header `X-Api-Key`)."""
    if not _authorized(request):
        return control_reply({"code": "unauthorized"}, 401)
    booking = request.app[EMS_BOOK].bookings.get(request.match_info["waybill_no"].upper())
    if booking is None:
        return control_reply({"code": "not_found"}, 404)
    return control_reply(booking.public())


# ---------------------------------------------------------------- control API: the courier's side


async def list_pickups(request: web.Request) -> web.Response:
    """`GET /_fake/ems/pickups[?order_id=]`: every booking (full), and how many booking requests came."""
    book = request.app[EMS_BOOK]
    order_id = request.query.get("order_id")
    pickups = [b.control() for b in book.bookings.values() if order_id is None or b.order_id == order_id]
    return control_reply({"pickups": pickups, "requests": book.requests})


async def queue_errors(request: web.Request) -> web.Response:
    """`POST /_fake/ems/errors {times}`: the next `times` pickup bookings answer 503."""
    times = (await read_json(request)).get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or times < 0:
        return control_reply({"error": "times must be a non-negative integer"}, 400)
    book = request.app[EMS_BOOK]
    book.fail_next += times
    return control_reply({"queued": book.fail_next})


async def deliver(request: web.Request) -> web.Response:
    """`POST /_fake/ems/deliver {waybill_no, forge?}`: the parcel was signed for; post the webhook."""
    return await _fate(request, "delivered")


async def lose(request: web.Request) -> web.Response:
    """`POST /_fake/ems/lose {waybill_no, reason, forge?}`: the parcel was lost or damaged; post the webhook."""
    return await _fate(request, "lost")


async def _fate(request: web.Request, status: str) -> web.Response:
    body = await read_json(request)
    booking = request.app[EMS_BOOK].bookings.get(str(body.get("waybill_no", "")).upper())
    if booking is None:
        return control_reply({"error": "unknown waybill_no"}, 404)
    reason: str | None = None
    if status == "lost":
        reason = _text(body.get("reason"), 2, 200)
        if reason is None:
            return control_reply({"error": "reason (2-200 characters) required"}, 400)
    if booking.status not in ("booked", status):
        return control_reply({"error": f"the parcel is already {booking.status}"}, 409)
    if booking.status == "booked":
        booking.status, booking.reason, booking.occurred_at = status, reason, _now()
    # Called again: the same event again (a platform retry), byte for byte.
    payload: Json = {
        "waybill_no": booking.waybill_no,
        "order_id": booking.order_id,
        "status": booking.status,
        "occurred_at": booking.occurred_at,
    }
    if booking.reason is not None:
        payload["reason"] = booking.reason
    data = orjson.dumps(payload)
    secret = request.app[EMS_SETTINGS].webhook_secret
    if body.get("forge") is True:
        secret = secrets.token_bytes(32)
    signature = hmac.new(secret, data, hashlib.sha256).hexdigest()
    return await _post_webhook(request, booking.callback_url, data, signature)


async def _post_webhook(request: web.Request, url: str, data: bytes, signature: str) -> web.Response:
    settings = request.app[EMS_SETTINGS]
    headers = {"Content-Type": "application/json", "X-Ems-Signature": signature}
    try:
        async with request.app[EMS_HTTP].post(
            url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=settings.notify_timeout)
        ) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as e:
        return control_reply({"status": None, "error": type(e).__name__}, 502)
    answer: Any
    try:
        answer = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        answer = text
    return control_reply({"status": status, "body": answer})


async def _ems_http(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[EMS_HTTP] = session
        yield


def setup_ems(app: web.Application, settings: FakeEmsSettings | None = None) -> None:
    """Add the fake EMS to ``app``: `/ems/v1/...` and its control API under `/_fake/ems/`."""
    book = EmsBook()
    app[EMS_SETTINGS] = settings or FakeEmsSettings()
    app[EMS_BOOK] = book
    if RESETTABLES in app:
        add_resettable(app, book)
    app.cleanup_ctx.append(_ems_http)
    app.router.add_post(PICKUPS_PATH, book_pickup)
    app.router.add_get(WAYBILL_PATH, get_waybill)
    app.router.add_get("/_fake/ems/pickups", list_pickups)
    app.router.add_post("/_fake/ems/errors", queue_errors)
    app.router.add_post("/_fake/ems/deliver", deliver)
    app.router.add_post("/_fake/ems/lose", lose)


@web.middleware
async def _bad_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadJson:
        return control_reply({"error": "the body must be a JSON object"}, 400)


def create_fake_ems(settings: FakeEmsSettings | None = None) -> web.Application:
    """The fake EMS alone (tests that need no WeChat); on the platform, `platform_edge` does this middleware's job."""
    app = web.Application(middlewares=[_bad_json])
    setup_ems(app, settings)
    return app


__all__ = ["EMS_BOOK", "Booking", "EmsBook", "FakeEmsSettings", "create_fake_ems", "setup_ems"]
