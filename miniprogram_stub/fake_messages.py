"""Subscribe messages: `/cgi-bin/message/subscribe/send` with WeChat's per-type value rules, and refusals."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from miniprogram_stub.fake_core import (
    SETTINGS,
    FakeSettings,
    Json,
    add_resettable,
    control_reply,
    read_json,
    wechat_error,
    wechat_ok,
)
from miniprogram_stub.fake_tokens import requires_access_token

HAN = "\u4e00-\u9fff\u3400-\u4dbf"
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
_DAY = r"(?:\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2})"
_TIME_POINT = rf"(?:{_DAY}\s?)?{_CLOCK}"
_DATE_POINT = rf"{_DAY}(?:\s?{_CLOCK})?"
# time and date accept a period "A~B" (sendMessage doc).
TIME = re.compile(rf"^{_TIME_POINT}(?:\s?~\s?{_TIME_POINT})?$")
DATE = re.compile(rf"^{_DATE_POINT}(?:\s?~\s?{_DATE_POINT})?$")
NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
LETTER = re.compile(r"^[A-Za-z]{1,32}$")
SYMBOL = re.compile(r"^[^\w\s]{1,5}$")
CHARACTER_STRING = re.compile(r"^[\x21-\x7e]{1,32}$")
# "1 currency sign + up to 10 digits, decimals allowed, may end with 元"; the sign is optional here
# because values like "22.00元" are common in the wild.
AMOUNT = re.compile(r"^[¥￥$€£]?\d{1,10}(?:\.\d{1,2})?元?$")
PHONE_NUMBER = re.compile(r"^[\d+\-() ]{1,17}$")
CAR_NUMBER = re.compile(rf"^[{HAN}A-Za-z0-9][A-Za-z0-9]{{0,6}}[{HAN}]?$")
PHRASE = re.compile(rf"^[{HAN}]{{1,5}}$")
NAME_LATIN = re.compile(r"^[A-Za-z .·'\-]{1,20}$")
NAME_CHINESE = re.compile(rf"^[{HAN}A-Za-z·]{{1,10}}$")
KEY = re.compile(r"^(?P<type>[a-z_]+?)(?P<index>\d+)$")


def _thing(v: str) -> bool:
    return len(v) <= 20


def _car_number(v: str) -> bool:
    return len(v) <= 8 and CAR_NUMBER.match(v) is not None


def _name(v: str) -> bool:
    # ≤10 Chinese characters, or ≤20 letters; a mix counts as a Chinese name.
    return NAME_LATIN.match(v) is not None or NAME_CHINESE.match(v) is not None


def _number(v: str) -> bool:
    return len(v) <= 32 and NUMBER.match(v) is not None


def _pattern(p: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda v: p.match(v) is not None


VALUE_RULES: dict[str, Callable[[str], bool]] = {
    "thing": _thing,
    "number": _number,
    "letter": _pattern(LETTER),
    "symbol": _pattern(SYMBOL),
    "character_string": _pattern(CHARACTER_STRING),
    "time": _pattern(TIME),
    "date": _pattern(DATE),
    "amount": _pattern(AMOUNT),
    "phone_number": _pattern(PHONE_NUMBER),
    "car_number": _car_number,
    "name": _name,
    "phrase": _pattern(PHRASE),
}

MINIPROGRAM_STATES = ("developer", "trial", "formal")
LANGS = ("zh_CN", "en_US", "zh_HK", "zh_TW")
OPENID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
TEMPLATE_ID = re.compile(r"^[0-9A-Za-z_-]{1,128}$")


def value_is_valid(key: str, value: object) -> bool:
    """Whether `value` is allowed for a data key such as `thing1` or `character_string3`."""
    match = KEY.match(key)
    rule = VALUE_RULES.get(match["type"]) if match else None
    if rule is None or not isinstance(value, str) or not value:
        return False
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        return False
    return rule(value)


def data_error(data: object) -> str | None:
    """The errmsg for the first invalid entry of `data`, or None when all are valid."""
    if not isinstance(data, dict) or not data:
        return "argument invalid! data invalid"
    for key, entry in data.items():
        if not isinstance(entry, dict) or not value_is_valid(key, entry.get("value")):
            return f"argument invalid! data.{key}.value invalid"
    return None


@dataclass
class Subscriptions:
    """Messages accepted, and users who refused (all templates, or some)."""

    settings: FakeSettings
    messages: list[Json] = field(default_factory=list)
    refused_all: set[str] = field(default_factory=set)
    refused: set[tuple[str, str]] = field(default_factory=set)

    def reset(self) -> None:
        self.messages.clear()
        self.refused_all.clear()
        self.refused.clear()

    def refuses(self, touser: str, template_id: str) -> bool:
        return touser in self.refused_all or (touser, template_id) in self.refused


SUBSCRIPTIONS = web.AppKey("fake_subscriptions", Subscriptions)


@requires_access_token
async def send_subscribe_message(request: web.Request) -> web.StreamResponse:
    """`POST /cgi-bin/message/subscribe/send`."""
    body = await read_json(request)
    touser, template_id = body.get("touser"), body.get("template_id")
    if not isinstance(touser, str) or not OPENID.match(touser):
        return wechat_error(40003, "invalid openid")
    if not isinstance(template_id, str) or not TEMPLATE_ID.match(template_id):
        return wechat_error(40037, "invalid template_id")
    page = body.get("page")
    if page is not None and (not isinstance(page, str) or any(c.isspace() for c in page)):
        return wechat_error(41030, "invalid page")
    state = body.get("miniprogram_state", "formal")
    if state not in MINIPROGRAM_STATES:
        return wechat_error(47003, "argument invalid! miniprogram_state invalid")
    lang = body.get("lang", "zh_CN")
    if lang not in LANGS:
        return wechat_error(47003, "argument invalid! lang invalid")
    errmsg = data_error(body.get("data"))
    if errmsg:
        return wechat_error(47003, errmsg)
    subscriptions = request.app[SUBSCRIPTIONS]
    if subscriptions.refuses(touser, template_id):
        return wechat_error(43101, "user refuse to accept the msg")
    subscriptions.messages.append(
        {
            "touser": touser,
            "template_id": template_id,
            "page": page,
            "data": body["data"],
            "miniprogram_state": state,
            "lang": lang,
            "received_at": int(request.app[SETTINGS].clock()),
        }
    )
    return wechat_ok()


async def refuse_subscription(request: web.Request) -> web.Response:
    """`POST /_fake/subscriptions/refuse {touser, template_id?}`: sends to that user now answer 43101."""
    body = await read_json(request)
    touser, template_id = body.get("touser"), body.get("template_id")
    if not isinstance(touser, str) or not touser:
        return control_reply({"error": "touser required"}, 400)
    subscriptions = request.app[SUBSCRIPTIONS]
    if isinstance(template_id, str) and template_id:
        subscriptions.refused.add((touser, template_id))
    else:
        subscriptions.refused_all.add(touser)
    return control_reply({"refused": True})


async def accept_subscription(request: web.Request) -> web.Response:
    """`POST /_fake/subscriptions/accept {touser}`: undo every refusal of that user."""
    body = await read_json(request)
    touser = body.get("touser")
    if not isinstance(touser, str) or not touser:
        return control_reply({"error": "touser required"}, 400)
    subscriptions = request.app[SUBSCRIPTIONS]
    subscriptions.refused_all.discard(touser)
    subscriptions.refused = {r for r in subscriptions.refused if r[0] != touser}
    return control_reply({"refused": False})


async def list_messages(request: web.Request) -> web.Response:
    """`GET /_fake/messages?touser=`: the subscribe messages accepted, oldest first."""
    touser = request.query.get("touser")
    messages = request.app[SUBSCRIPTIONS].messages
    return control_reply({"messages": [m for m in messages if touser is None or m["touser"] == touser]})


def setup_messages(app: web.Application, settings: FakeSettings) -> None:
    subscriptions = Subscriptions(settings)
    app[SUBSCRIPTIONS] = subscriptions
    add_resettable(app, subscriptions)
    app.router.add_post("/cgi-bin/message/subscribe/send", send_subscribe_message)
    app.router.add_post("/_fake/subscriptions/refuse", refuse_subscription)
    app.router.add_post("/_fake/subscriptions/accept", accept_subscription)
    app.router.add_get("/_fake/messages", list_messages)
