"""出生一件事's departments (疾控's 预防接种证, the police's 户口登记, the medical insurance's 参保登记, 人社's
社会保障卡申领): each takes signed hand-offs.

The protocol is birthcert's (backend/departments.py, docs/decisions/0046): ``POST /departments/<code>/v1/handoffs``
with the header ``X-Birthcert-Signature: t=<unix>,kid=<key id>,v1=<hex HMAC-SHA256(key, "<t>." + body)>``; the
same ``message_id`` again is answered as a duplicate and taken once. A test plays the department's side with the
control API under ``/_fake/departments/<code>/``: list what came (with the receipts per message id), make the
next hand-offs fail (503) or hang (a crash of ours between the send and its acknowledgement), and answer a
message (accepted, refused with a reason, done with a result), which posts the signed callback to the
message's ``callback_url``; fetch the materials a message lists (the police's 出生落户预审 on the 户口簿 pages and
the 结婚证, decision 0047) with a signed GET of each ``url`` and check each against the message's sha256.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson
import yarl
from aiohttp import web

from miniprogram_stub.fake_core import Json, add_resettable, control_reply, read_json

# The development keys: public, so ``Config.production_problems`` refuses them in production.
DEV_KEY_ID: Final = "dev1"
DEV_SECRETS: Final = {
    "disease_control": "dev-vaccination-handoff-secret",
    "police": "dev-police-handoff-secret",
    "medical_insurance": "dev-insurance-handoff-secret",
    "social_security": "dev-card-handoff-secret",
}
_SIGNATURE_RE: Final = re.compile(r"^t=(?P<t>[0-9]{1,12}),kid=(?P<kid>[^,]{1,64}),v1=(?P<mac>[0-9a-f]{64})$")
STALL_SECONDS: Final = 30.0


def department_environ(platform: str) -> dict[str, str]:
    """The backend's configuration for every fake department on the platform at ``platform``."""
    out: dict[str, str] = {}
    for code, secret in DEV_SECRETS.items():
        prefix = f"DEPARTMENT_{code.upper()}_"
        out[prefix + "URL"] = f"{platform}/departments/{code}"
        out[prefix + "KEY_ID"] = DEV_KEY_ID
        out[prefix + "SECRET"] = secret
    return out


def _sign(body: bytes, secret: bytes, at: int | None = None) -> str:
    stamp = int(time.time()) if at is None else at
    mac = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},kid={DEV_KEY_ID},v1={mac}"


@dataclass
class Desk:
    """One department's desk: the messages taken (by id, in arrival order), receipts per id, scripted trouble."""

    code: str
    secret: bytes
    messages: dict[str, Json] = field(default_factory=dict)
    receipts: dict[str, int] = field(default_factory=dict)
    fail_next: int = 0
    refuse_next: int = 0
    stall_next: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    answers: int = 0
    lookups: int = 0
    turned_away: int = 0
    fetched: list[Json] = field(default_factory=list)

    def reset(self) -> None:
        self.messages.clear()
        self.receipts.clear()
        self.fetched.clear()
        self.fail_next = self.stall_next = self.refuse_next = self.answers = self.lookups = (
            self.turned_away
        ) = 0
        self.released.set()


@dataclass
class Departments:
    desks: dict[str, Desk]

    def reset(self) -> None:
        for desk in self.desks.values():
            desk.reset()


DEPARTMENTS = web.AppKey("fake_departments", Departments)
DEPARTMENTS_HTTP = web.AppKey("fake_departments_http", aiohttp.ClientSession)


def _desk(request: web.Request) -> Desk | None:
    return request.app[DEPARTMENTS].desks.get(request.match_info["department"])


def _signed(request: web.Request, desk: Desk, body: bytes) -> bool:
    match = _SIGNATURE_RE.fullmatch(request.headers.get("X-Birthcert-Signature", "").strip())
    if match is None or match["kid"] != DEV_KEY_ID:
        return False
    expected = hmac.new(desk.secret, f"{match['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, match["mac"]) and abs(time.time() - int(match["t"])) <= 300


async def has_handoff(request: web.Request) -> web.Response:
    """`GET /departments/<code>/v1/handoffs/<message id>` (signed over ``"GET " + path``: one look-up's signature
    asks about no other message): 200 taken, 404 not."""
    desk = _desk(request)
    if desk is None:
        return control_reply({"code": "not_found"}, 404)
    if not _signed(request, desk, f"GET {request.url.raw_path}".encode()):
        return control_reply({"code": "bad_signature"}, 401)
    desk.lookups += 1
    if request.match_info["message_id"] not in desk.messages:
        return control_reply({"code": "not_found"}, 404)
    return control_reply({"received": True})


async def take_handoff(request: web.Request) -> web.Response:
    """`POST /departments/<code>/v1/handoffs`: check the signature, take the message once per id."""
    desk = _desk(request)
    if desk is None:
        return control_reply({"code": "not_found"}, 404)
    body = await request.read()
    if not _signed(request, desk, body):
        return control_reply({"code": "bad_signature"}, 401)
    if desk.fail_next > 0:
        desk.fail_next -= 1
        desk.turned_away += 1
        return control_reply({"code": "unavailable", "message": "系统繁忙"}, 503)
    if desk.refuse_next > 0:  # the department's system refuses the message itself (its schema changed, say)
        desk.refuse_next -= 1
        return control_reply({"code": "schema_mismatch", "message": "报文不符合接口规范"}, 422)
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return control_reply({"code": "bad_request"}, 400)
    message_id = message.get("message_id") if isinstance(message, dict) else None
    if not isinstance(message_id, str) or not message_id or message.get("department") != desk.code:
        return control_reply({"code": "bad_request"}, 400)
    desk.receipts[message_id] = desk.receipts.get(message_id, 0) + 1
    duplicate = message_id in desk.messages
    if duplicate and desk.messages[message_id] != message:
        return control_reply({"code": "message_conflict"}, 409)
    desk.messages[message_id] = message
    if desk.stall_next > 0:  # taken, but the answer never reaches the sender in time
        desk.stall_next -= 1
        desk.released.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(desk.released.wait(), STALL_SECONDS)
    return control_reply({"received": True, "duplicate": duplicate}, 200 if duplicate else 201)


# ---------------------------------------------------------------- control API: the department's side


async def list_handoffs(request: web.Request) -> web.Response:
    """`GET /_fake/departments/<code>/handoffs`: every message taken (full), with its receipts."""
    desk = _desk(request)
    if desk is None:
        return control_reply({"error": "unknown department"}, 404)
    items = [{"message": m, "receipts": desk.receipts[i]} for i, m in desk.messages.items()]
    return control_reply({"handoffs": items, "lookups": desk.lookups, "turned_away": desk.turned_away})


async def script(request: web.Request) -> web.Response:
    """`POST /_fake/departments/<code>/script {fail?, stall?, refuse?, release?, up?}`: the next hand-offs answer
    503 (``fail``), hang after being taken (``stall``) or are refused outright with a 422 (``refuse``); ``release`` lets a hanging one answer; ``up`` ends the
    503s still scripted (the department's system is back)."""
    desk = _desk(request)
    if desk is None:
        return control_reply({"error": "unknown department"}, 404)
    body = await read_json(request)
    for key in ("fail", "stall", "refuse"):
        value = body.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return control_reply({"error": f"{key} must be a non-negative integer"}, 400)
    desk.fail_next += int(body.get("fail", 0))
    desk.stall_next += int(body.get("stall", 0))
    desk.refuse_next += int(body.get("refuse", 0))
    if body.get("release") is True:
        desk.released.set()
    if body.get("up") is True:
        desk.fail_next = 0
    return control_reply({"fail": desk.fail_next, "stall": desk.stall_next, "refuse": desk.refuse_next})


async def answer(request: web.Request) -> web.Response:
    """`POST /_fake/departments/<code>/answer {message_id, state, reason?, result?, result_id?, forge?}`: the
    department's answer, posted signed to the message's callback (``forge``: signed with a wrong key)."""
    desk = _desk(request)
    if desk is None:
        return control_reply({"error": "unknown department"}, 404)
    body = await read_json(request)
    message = desk.messages.get(str(body.get("message_id", "")))
    if message is None:
        return control_reply({"error": "unknown message_id"}, 404)
    desk.answers += 1
    payload: Json = {
        "message_id": message["message_id"],
        "result_id": body.get("result_id") or f"{desk.code}-r{desk.answers}-{secrets.token_hex(4)}",
        "state": body.get("state"),
    }
    for key in ("reason", "result"):
        if body.get(key) is not None:
            payload[key] = body[key]
    data = orjson.dumps(payload)
    secret = secrets.token_bytes(32) if body.get("forge") is True else desk.secret
    headers = {"Content-Type": "application/json", "X-Birthcert-Signature": _sign(data, secret)}
    try:
        async with request.app[DEPARTMENTS_HTTP].post(
            message["callback_url"], data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as e:
        return control_reply({"status": None, "error": type(e).__name__}, 502)
    reply: Any
    try:
        reply = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        reply = text
    return control_reply({"status": status, "body": reply, "sent": payload})


async def fetch_materials(request: web.Request) -> web.Response:
    """`POST /_fake/departments/<code>/fetch-materials {message_id, as?, url?}`: fetch each material the message
    lists, signed ``"<t>." + "GET " + path`` with this desk's key (``as``: another desk's; ``url``: that URL
    instead of the listed ones, e.g. another department's message), and check its sha256. Answers each
    fetch's status and whether the bytes match (the bytes themselves are personal data: never answered)."""
    desk = _desk(request)
    if desk is None:
        return control_reply({"error": "unknown department"}, 404)
    body = await read_json(request)
    message = desk.messages.get(str(body.get("message_id", "")))
    if message is None:
        return control_reply({"error": "unknown message_id"}, 404)
    signer = request.app[DEPARTMENTS].desks.get(str(body.get("as") or desk.code))
    if signer is None:
        return control_reply({"error": "unknown department in as"}, 400)
    listed = message.get("materials") or []
    targets: list[Json] = (
        [{"kind": None, "sha256": None, "url": str(body["url"])}] if body.get("url") else listed
    )
    fetched = []
    for item in targets:
        url = yarl.URL(str(item["url"]))
        headers = {"X-Birthcert-Signature": _sign(f"GET {url.raw_path}".encode(), signer.secret)}
        try:
            async with request.app[DEPARTMENTS_HTTP].get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                data, status = await response.read(), response.status
                content_type = response.content_type
        except (aiohttp.ClientError, TimeoutError) as e:
            fetched.append({"kind": item["kind"], "status": None, "error": type(e).__name__})
            continue
        digest = hashlib.sha256(data).hexdigest() if status == 200 else None
        fetched.append(
            {
                "kind": item["kind"],
                "status": status,
                "content_type": content_type,
                "sha256": digest,
                "matches": digest is not None and digest == item["sha256"],
            }
        )
    desk.fetched.extend(f for f in fetched if f.get("status") == 200)
    return control_reply({"materials": fetched})


async def _http(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[DEPARTMENTS_HTTP] = session
        yield
    for desk in app[DEPARTMENTS].desks.values():
        desk.released.set()


def setup_departments(app: web.Application) -> None:
    """Add the fake departments to ``app``: `/departments/<code>/v1/handoffs` and `/_fake/departments/<code>/…`."""
    state = Departments({code: Desk(code, secret.encode()) for code, secret in DEV_SECRETS.items()})
    app[DEPARTMENTS] = state
    add_resettable(app, state)
    app.cleanup_ctx.append(_http)
    app.router.add_post("/departments/{department}/v1/handoffs", take_handoff)
    app.router.add_get("/departments/{department}/v1/handoffs/{message_id}", has_handoff)
    app.router.add_get("/_fake/departments/{department}/handoffs", list_handoffs)
    app.router.add_post("/_fake/departments/{department}/script", script)
    app.router.add_post("/_fake/departments/{department}/answer", answer)
    app.router.add_post("/_fake/departments/{department}/fetch-materials", fetch_materials)


__all__ = ["DEPARTMENTS", "DEV_KEY_ID", "DEV_SECRETS", "department_environ", "setup_departments"]
