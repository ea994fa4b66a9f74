"""Mini-program login (`jscode2session`), phone numbers by code, and the text security check."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field

from aiohttp import web

from miniprogram_stub.fake_core import (
    SETTINGS,
    FakeSettings,
    Json,
    add_resettable,
    control_reply,
    read_json,
    rid,
    wechat_error,
    wechat_ok,
)
from miniprogram_stub.fake_tokens import credentials_error, requires_access_token

# A js_code the fake accepts: `dev:<openid>:<nonce>`, one use each.
JS_CODE = re.compile(r"^dev:(?P<openid>[0-9A-Za-z_-]{1,64}):(?P<nonce>[^:\s]{1,64})$")
PHONE_CODE = re.compile(r"^phone:(?P<phone>\d{11})$")


def unionid_for(openid: str) -> str:
    """The unionid of a user: stable, 28 characters like a real one, and not the openid."""
    digest = hashlib.sha256(b"fake-unionid:" + openid.encode()).digest()
    return "oU" + base64.urlsafe_b64encode(digest).decode()[:26]


@dataclass
class Logins:
    """Codes already used and who logged in when (msg_sec_check v2 wants a recent login)."""

    settings: FakeSettings
    used_codes: set[str] = field(default_factory=set)
    last_login: dict[str, float] = field(default_factory=dict)
    session_keys: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        self.used_codes.clear()
        self.last_login.clear()
        self.session_keys.clear()

    def logged_in_recently(self, openid: str) -> bool:
        window = self.settings.sec_check_login_window
        if not window:
            return True
        at = self.last_login.get(openid)
        return at is not None and self.settings.clock() - at <= window


LOGINS = web.AppKey("fake_logins", Logins)


async def jscode2session(request: web.Request) -> web.Response:
    """`GET /sns/jscode2session`; wechatpy's extra `access_token` parameter is ignored."""
    q = request.query
    error = credentials_error(request.app[SETTINGS], q.get("appid"), q.get("secret"))
    if error:
        return error
    if q.get("grant_type") != "authorization_code":
        return wechat_error(40002, "invalid grant_type")
    js_code = q.get("js_code", "")
    if not js_code:
        return wechat_error(41008, "missing code")
    logins = request.app[LOGINS]
    match = JS_CODE.match(js_code)
    if match is None or js_code in logins.used_codes:
        return wechat_error(40029, "invalid code")
    logins.used_codes.add(js_code)
    openid = match["openid"]
    logins.last_login[openid] = request.app[SETTINGS].clock()
    session_key = base64.b64encode(secrets.token_bytes(16)).decode()
    logins.session_keys[openid] = session_key
    # No errcode on success: real replies stopped carrying it (shared doc §1 row 1).
    return control_reply({"session_key": session_key, "openid": openid, "unionid": unionid_for(openid)})


@dataclass
class PhoneCodes:
    used: set[str] = field(default_factory=set)

    def reset(self) -> None:
        self.used.clear()


PHONE_CODES = web.AppKey("fake_phone_codes", PhoneCodes)


@requires_access_token
async def get_user_phone_number(request: web.Request) -> web.StreamResponse:
    """`POST /wxa/business/getuserphonenumber`: code `phone:<11 digits>`, single use."""
    body = await read_json(request)
    code = body.get("code")
    used = request.app[PHONE_CODES].used
    match = PHONE_CODE.match(code) if isinstance(code, str) else None
    if match is None or code in used:
        return wechat_error(40029, "invalid code")
    used.add(match.string)
    settings = request.app[SETTINGS]
    phone = match["phone"]
    return wechat_ok(
        {
            "phone_info": {
                "phoneNumber": phone,
                "purePhoneNumber": phone,
                # The doc's sample has the number 86 (its field table says string); the sample wins.
                "countryCode": 86,
                "watermark": {"timestamp": int(settings.clock()), "appid": settings.appid},
            }
        }
    )


SEC_CHECK_FIELDS = ("content", "title", "nickname", "signature")
RISKY_LABEL = 20006  # 违法犯罪


def _blocked_word(settings: FakeSettings, texts: list[str]) -> str | None:
    for word in settings.sec_check_blocklist:
        if any(word in text for text in texts):
            return word
    return None


@requires_access_token
async def msg_sec_check(request: web.Request) -> web.StreamResponse:
    """`POST /wxa/msg_sec_check`: v2 (`version: 2`, scene, openid) or the old v1 body (`content` only)."""
    body = await read_json(request)
    settings = request.app[SETTINGS]
    content = body.get("content")
    if not isinstance(content, str) or not content:
        return wechat_error(44002, "empty post data")
    if len(content) > 2500:
        return wechat_error(47001, "data format error")
    if body.get("version") != 2:
        # v1: 87014 for risky content, plain ok otherwise.
        if _blocked_word(settings, [content]):
            return wechat_error(87014, "risky content")
        return wechat_ok()
    scene = body.get("scene")
    if scene not in (1, 2, 3, 4):
        return wechat_error(40129, "invalid scene")
    openid = body.get("openid")
    if not isinstance(openid, str) or not openid:
        return wechat_error(40003, "invalid openid")
    if not request.app[LOGINS].logged_in_recently(openid):
        return wechat_error(61010, "user access expired")
    texts = [v for k in SEC_CHECK_FIELDS if isinstance(v := body.get(k), str)]
    word = _blocked_word(settings, texts)
    model: Json = {"strategy": "content_model", "errcode": 0, "suggest": "pass", "label": 100, "prob": 90}
    if word is None:
        keyword: Json = {"strategy": "keyword", "errcode": 0, "suggest": "pass", "label": 100}
        result: Json = {"suggest": "pass", "label": 100}
    else:
        keyword = {
            "strategy": "keyword",
            "errcode": 0,
            "suggest": "risky",
            "label": RISKY_LABEL,
            "level": 20,
            "keyword": word,
        }
        result = {"suggest": "risky", "label": RISKY_LABEL}
    return wechat_ok({"trace_id": rid(), "result": result, "detail": [model, keyword]})


def setup_wechat(app: web.Application, settings: FakeSettings) -> None:
    logins, phone_codes = Logins(settings), PhoneCodes()
    app[LOGINS] = logins
    app[PHONE_CODES] = phone_codes
    add_resettable(app, logins)
    add_resettable(app, phone_codes)
    app.router.add_get("/sns/jscode2session", jscode2session)
    app.router.add_post("/wxa/business/getuserphonenumber", get_user_phone_number)
    app.router.add_post("/wxa/msg_sec_check", msg_sec_check)
