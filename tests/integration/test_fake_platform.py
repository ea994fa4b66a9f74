"""The fake WeChat platform over real HTTP, driven by wechatpy itself wherever wechatpy has the call.

wechatpy is synchronous, so its calls run in a thread (`asyncio.to_thread`) while the fake serves on
the test's event loop. The fake's clock is a `Clock` the tests move forward to expire things.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from wechatpy import WeChatClient
from wechatpy.client.api import WeChatWxa
from wechatpy.exceptions import (
    InvalidSignatureException,
    WeChatClientException,
    WeChatPayException,
)
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from miniprogram_stub.fake_messages import value_is_valid
from miniprogram_stub.fake_pay import HMAC_SHA256, pay_sign, to_xml
from miniprogram_stub.platform import FakeSettings, register_stub, start_fake_platform

APPID, SECRET = "wxb1r7hce27dev0001", "dev-app-secret"
MCH_ID, PAY_KEY = "1900000109", "192006250b4c09247ec02edce69f6a2d"
TEMPLATE = "bDmywsp2oEHjwAadTGKkUHpC0RgBVPvfAw1kB9mGyQA"
ID_NUMBER, MOTHER = "11010519491231002X", "张三"
SUCCESS_XML = (
    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
)
FAIL_XML = "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[SIGN]]></return_msg></xml>"


class Clock:
    """The fake's clock: starts at the real time, moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Fake:
    base: str
    http: aiohttp.ClientSession
    clock: Clock

    async def control(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async with self.http.post(self.base + path, json=body or {}) as r:
            return r.status, await r.json()

    async def get(self, route: str, **params: str) -> Any:
        async with self.http.get(self.base + route, params=params) as r:
            return await r.json()

    async def post(self, path: str, body: dict[str, Any], **params: str) -> Any:
        async with self.http.post(self.base + path, json=body, params=params) as r:
            assert r.status == 200
            return await r.json()

    async def token(self) -> str:
        body = await self.get("/cgi-bin/token", grant_type="client_credential", appid=APPID, secret=SECRET)
        return str(body["access_token"])

    async def calls(self, path: str) -> int:
        return int((await self.get("/_fake/calls", path=path))["count"])

    async def login(self, openid: str, nonce: str = "n1") -> dict[str, Any]:
        params = {"appid": APPID, "secret": SECRET, "js_code": f"dev:{openid}:{nonce}"}
        result: dict[str, Any] = await self.get(
            "/sns/jscode2session", grant_type="authorization_code", **params
        )
        return result


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    clock = Clock()
    runner, base = await start_fake_platform("127.0.0.1", 0, FakeSettings(clock=clock))
    async with aiohttp.ClientSession() as http:
        yield Fake(base, http, clock)
    await runner.cleanup()


def wechat_client(base: str) -> WeChatClient:
    """wechatpy's client pointed at the fake (shared doc §2, base-URL override recipe)."""

    class FakeWxa(WeChatWxa):
        API_BASE_URL = base + "/"

    class FakeClient(WeChatClient):
        API_BASE_URL = base + "/cgi-bin/"
        wxa = FakeWxa()

        def fetch_access_token(self) -> Any:
            return self._fetch_access_token(
                url=base + "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            )

    return FakeClient(APPID, SECRET)


def wechat_pay(base: str) -> WeChatPay:
    pay_class = type("FakePay", (WeChatPay,), {"API_BASE_URL": base + "/"})
    pay: WeChatPay = pay_class(appid=APPID, api_key=PAY_KEY, mch_id=MCH_ID)
    return pay


async def in_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(call, *args, **kwargs)


# --- access tokens ----------------------------------------------------------------------------------


async def test_token_endpoint_checks_appid_and_secret(fake: Fake) -> None:
    wrong_appid = await fake.get("/cgi-bin/token", grant_type="client_credential", appid="wx0", secret=SECRET)
    wrong_secret = await fake.get("/cgi-bin/token", grant_type="client_credential", appid=APPID, secret="x")
    assert wrong_appid["errcode"] == 40013
    assert wrong_secret["errcode"] == 40125
    assert ", rid: " in wrong_secret["errmsg"]


async def test_wechatpy_fetches_a_token_that_lasts_7200_seconds(fake: Fake) -> None:
    result = await in_thread(wechat_client(fake.base).fetch_access_token)
    assert result["expires_in"] == 7200
    assert "errcode" not in result


async def test_protected_api_without_or_with_an_unknown_token(fake: Fake) -> None:
    body = {"content": "你好"}
    assert (await fake.post("/wxa/msg_sec_check", body))["errcode"] == 41001
    assert (await fake.post("/wxa/msg_sec_check", body, access_token="nope"))["errcode"] == 40001


async def test_expired_token_answers_42001_and_wechatpy_refreshes_it(fake: Fake) -> None:
    token = await fake.token()
    fake.clock.advance(7200)
    assert (await fake.post("/wxa/msg_sec_check", {"content": "hi"}, access_token=token))["errcode"] == 42001

    client = wechat_client(fake.base)
    await in_thread(client.wxa.check_text_security, "hi")
    status, _ = await fake.control("/_fake/tokens/expire")
    assert status == 200
    await in_thread(client.wxa.check_text_security, "hi")  # 42001, re-fetch, retry
    assert await fake.calls("/cgi-bin/token") == 3
    assert await fake.calls("/wxa/msg_sec_check") == 4


async def test_a_new_plain_token_leaves_the_old_one_valid_for_five_minutes(fake: Fake) -> None:
    old = await fake.token()
    await fake.token()
    assert (await fake.post("/wxa/msg_sec_check", {"content": "hi"}, access_token=old))["errcode"] == 0
    fake.clock.advance(301)
    assert (await fake.post("/wxa/msg_sec_check", {"content": "hi"}, access_token=old))["errcode"] == 40001


async def test_stable_token_is_the_same_until_force_refresh_replaces_it(fake: Fake) -> None:
    request = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    first = await fake.post("/cgi-bin/stable_token", request)
    fake.clock.advance(100)
    again = await fake.post("/cgi-bin/stable_token", {**request, "force_refresh": False})
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 7100
    forced = await fake.post("/cgi-bin/stable_token", {**request, "force_refresh": True})
    assert forced["access_token"] != first["access_token"]
    assert forced["expires_in"] == 7200
    stale = await fake.post("/wxa/msg_sec_check", {"content": "hi"}, access_token=first["access_token"])
    assert stale["errcode"] == 40001
    fresh = await fake.post("/wxa/msg_sec_check", {"content": "hi"}, access_token=forced["access_token"])
    assert fresh["errcode"] == 0


async def test_stable_token_checks_credentials_and_method(fake: Fake) -> None:
    bad = await fake.post(
        "/cgi-bin/stable_token", {"grant_type": "client_credential", "appid": APPID, "secret": "x"}
    )
    assert bad["errcode"] == 40125
    assert (await fake.get("/cgi-bin/stable_token"))["errcode"] == 43002


# --- login ------------------------------------------------------------------------------------------


async def test_code_to_session_through_wechatpy_fetches_a_token_first(fake: Fake) -> None:
    client = wechat_client(fake.base)
    session = await in_thread(client.wxa.code_to_session, "dev:o-mother-1:abc")
    assert session["openid"] == "o-mother-1"
    assert "errcode" not in session
    assert len(base64.b64decode(session["session_key"])) == 16
    assert session["unionid"] != session["openid"]
    # The quirk: wechatpy sends an access_token to jscode2session, so it fetched one.
    assert await fake.calls("/cgi-bin/token") == 1
    assert await fake.calls("/sns/jscode2session") == 1


async def test_a_code_logs_in_once(fake: Fake) -> None:
    client = wechat_client(fake.base)
    await in_thread(client.wxa.code_to_session, "dev:o-mother-1:abc")
    with pytest.raises(WeChatClientException) as reused:
        await in_thread(client.wxa.code_to_session, "dev:o-mother-1:abc")
    assert reused.value.errcode == 40029
    with pytest.raises(WeChatClientException) as malformed:
        await in_thread(client.wxa.code_to_session, "081aBcDe0aBcDe")
    assert malformed.value.errcode == 40029


async def test_unionid_is_stable_per_user(fake: Fake) -> None:
    first, second, other = (
        await fake.login("o-a", "1"),
        await fake.login("o-a", "2"),
        await fake.login("o-b", "1"),
    )
    assert first["unionid"] == second["unionid"] != other["unionid"]
    assert first["session_key"] != second["session_key"]


# --- injected errors --------------------------------------------------------------------------------


async def test_wechatpy_refreshes_the_token_once_after_an_injected_40001(fake: Fake) -> None:
    client = wechat_client(fake.base)
    await in_thread(client.fetch_access_token)
    status, _ = await fake.control(
        "/_fake/errors", {"path": "/cgi-bin/message/subscribe/send", "errcode": 40001, "times": 1}
    )
    assert status == 200
    await in_thread(
        client.wxa.send_subscribe_message, "o-mother-1", TEMPLATE, {"phrase1": {"value": "已受理"}}
    )
    assert await fake.calls("/cgi-bin/token") == 2
    assert await fake.calls("/cgi-bin/message/subscribe/send") == 2
    assert len((await fake.get("/_fake/messages", touser="o-mother-1"))["messages"]) == 1


async def test_injected_errors_last_the_given_number_of_calls(fake: Fake) -> None:
    client = wechat_client(fake.base)
    await fake.control("/_fake/errors", {"path": "/sns/jscode2session", "errcode": 45011, "times": 2})
    for nonce in ("1", "2"):
        with pytest.raises(WeChatClientException) as limited:
            await in_thread(client.wxa.code_to_session, f"dev:o-a:{nonce}")
        assert limited.value.errcode == 45011
    assert (await in_thread(client.wxa.code_to_session, "dev:o-a:3"))["openid"] == "o-a"
    await fake.control("/_fake/errors", {"path": "/sns/jscode2session", "errcode": -1})
    with pytest.raises(WeChatClientException) as system:
        await in_thread(client.wxa.code_to_session, "dev:o-a:4")
    assert system.value.errcode == -1


async def test_control_api_rejects_bad_error_requests(fake: Fake) -> None:
    status, _ = await fake.control("/_fake/errors", {"path": "cgi-bin/token", "errcode": 40001})
    assert status == 400
    status, _ = await fake.control("/_fake/errors", {"path": "/cgi-bin/token", "errcode": 40001, "times": 0})
    assert status == 400


# --- subscribe messages ------------------------------------------------------------------------------


async def test_subscribe_message_through_wechatpy_is_stored(fake: Fake) -> None:
    client = wechat_client(fake.base)
    data = {
        "phrase1": {"value": "已签发"},
        "character_string2": {"value": "X320101001"},
        "date3": {"value": "2024年5月1日"},
        "thing4": {"value": "请到医院领取出生医学证明"},
    }
    result = await in_thread(client.wxa.send_subscribe_message, "o-mother-1", TEMPLATE, data, "pages/status")
    assert result["errcode"] == 0
    [message] = (await fake.get("/_fake/messages", touser="o-mother-1"))["messages"]
    assert message["data"] == data
    assert message["page"] == "pages/status"
    assert (message["miniprogram_state"], message["lang"]) == ("formal", "zh_CN")
    assert (await fake.get("/_fake/messages", touser="someone-else"))["messages"] == []


async def test_subscribe_message_with_state_and_lang(fake: Fake) -> None:
    client = wechat_client(fake.base)
    body = {
        "touser": "o-mother-1",
        "template_id": TEMPLATE,
        "data": {"phrase1": {"value": "已寄出"}, "character_string2": {"value": "EA123456789CN"}},
        "miniprogram_state": "trial",
        "lang": "en_US",
    }
    await in_thread(client.wxa._post, "cgi-bin/message/subscribe/send", data=body)
    [message] = (await fake.get("/_fake/messages"))["messages"]
    assert (message["miniprogram_state"], message["lang"], message["page"]) == ("trial", "en_US", None)


async def test_an_invalid_value_is_refused_with_47003_naming_the_field(fake: Fake) -> None:
    client = wechat_client(fake.base)
    data = {
        "phrase1": {"value": "已受理"},
        "thing1": {"value": "这是一段超过二十个字的很长很长很长的说明文字啊"},
    }
    with pytest.raises(WeChatClientException) as refused:
        await in_thread(client.wxa.send_subscribe_message, "o-mother-1", TEMPLATE, data)
    assert refused.value.errcode == 47003
    assert refused.value.errmsg.startswith("argument invalid! data.thing1.value invalid")
    assert (await fake.get("/_fake/messages"))["messages"] == []


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("thing1", "出生医学证明已签发", True),
        ("thing1", "x" * 21, False),
        ("thing1", "第一行\n第二行", False),
        ("phrase2", "审核通过", True),
        ("phrase2", "审核未通过啊", False),
        ("phrase2", "OK", False),
        ("character_string3", "X320101001", True),
        ("character_string3", "EA-1234_5678/CN", True),
        ("character_string3", "1" * 33, False),
        ("character_string3", "编号1", False),
        ("number4", "3.50", True),
        ("number4", "3.5元", False),
        ("letter5", "abc", True),
        ("letter5", "ab1", False),
        ("symbol6", "%", True),
        ("time7", "15:01", True),
        ("time7", "2019年10月1日 15:01", True),
        ("time7", "15点", False),
        ("date8", "2019年10月1日", True),
        ("date8", "2018-01-01", True),
        ("date8", "2019年10月1日 15:01~2019年10月2日 15:01", True),
        ("date8", "明天", False),
        ("amount9", "¥22.00", True),
        ("amount9", "22.00元", True),
        ("amount9", "二十元", False),
        ("phone_number10", "+86-0766-66888866", True),
        ("phone_number10", "1380013800a", False),
        ("car_number11", "粤A8Z8Z8", True),
        ("car_number11", "粤A8Z8Z8Z88", False),
        ("name12", "欧阳娜娜", True),
        ("name12", "Jane Doe", True),
        ("name12", "一二三四五六七八九十一", False),
        ("unknown13", "x", False),
        ("thing", "x", False),
        ("thing14", "", False),
    ],
)
def test_subscribe_value_rules(key: str, value: str, valid: bool) -> None:
    assert value_is_valid(key, value) is valid


async def test_a_user_who_refused_gets_43101(fake: Fake) -> None:
    client = wechat_client(fake.base)
    data = {"phrase1": {"value": "已受理"}}
    status, _ = await fake.control("/_fake/subscriptions/refuse", {"touser": "o-father-1"})
    assert status == 200
    with pytest.raises(WeChatClientException) as refused:
        await in_thread(client.wxa.send_subscribe_message, "o-father-1", TEMPLATE, data)
    assert refused.value.errcode == 43101
    await in_thread(client.wxa.send_subscribe_message, "o-mother-1", TEMPLATE, data)
    await fake.control("/_fake/subscriptions/accept", {"touser": "o-father-1"})
    await in_thread(client.wxa.send_subscribe_message, "o-father-1", TEMPLATE, data)
    assert len((await fake.get("/_fake/messages"))["messages"]) == 2


async def test_subscribe_send_checks_touser_and_template(fake: Fake) -> None:
    token = await fake.token()
    data = {"phrase1": {"value": "已受理"}}
    path = "/cgi-bin/message/subscribe/send"
    no_user = await fake.post(path, {"template_id": TEMPLATE, "data": data}, access_token=token)
    no_template = await fake.post(path, {"touser": "o-a", "data": data}, access_token=token)
    bad_state = await fake.post(
        path,
        {"touser": "o-a", "template_id": TEMPLATE, "data": data, "miniprogram_state": "x"},
        access_token=token,
    )
    assert (no_user["errcode"], no_template["errcode"], bad_state["errcode"]) == (40003, 40037, 47003)


# --- phone number, text check ------------------------------------------------------------------------


async def test_phone_number_code_is_single_use(fake: Fake) -> None:
    client = wechat_client(fake.base)
    result = await in_thread(
        client.wxa._post, "wxa/business/getuserphonenumber", data={"code": "phone:13800138000"}
    )
    info = result["phone_info"]
    assert (info["phoneNumber"], info["purePhoneNumber"], info["countryCode"]) == (
        "13800138000",
        "13800138000",
        86,
    )
    assert info["watermark"]["appid"] == APPID
    for code in ("phone:13800138000", "phone:123", "abc"):
        with pytest.raises(WeChatClientException) as invalid:
            await in_thread(client.wxa._post, "wxa/business/getuserphonenumber", data={"code": code})
        assert invalid.value.errcode == 40029


async def test_msg_sec_check_v2_passes_or_flags_a_blocked_word(fake: Fake) -> None:
    client = wechat_client(fake.base)
    await fake.login("o-mother-1")
    request = {"version": 2, "scene": 1, "openid": "o-mother-1"}
    ok = await in_thread(client.wxa._post, "wxa/msg_sec_check", data={**request, "content": "小明"})
    assert ok["result"] == {"suggest": "pass", "label": 100}
    assert ok["trace_id"]
    risky = await in_thread(client.wxa._post, "wxa/msg_sec_check", data={**request, "content": "出售毒品"})
    assert risky["errcode"] == 0
    assert risky["result"] == {"suggest": "risky", "label": 20006}
    assert any(d.get("keyword") == "毒品" for d in risky["detail"])
    with pytest.raises(WeChatClientException) as stranger:
        await in_thread(
            client.wxa._post, "wxa/msg_sec_check", data={**request, "openid": "o-x", "content": "hi"}
        )
    assert stranger.value.errcode == 61010


async def test_msg_sec_check_v1_body_from_wechatpy(fake: Fake) -> None:
    client = wechat_client(fake.base)
    assert (await in_thread(client.wxa.check_text_security, "你好"))["errcode"] == 0
    with pytest.raises(WeChatClientException) as risky:
        await in_thread(client.wxa.check_text_security, "网上赌博")
    assert risky.value.errcode == 87014


# --- face verification -------------------------------------------------------------------------------


def cert_hash(name: str, cert_no: str) -> str:
    """§6.4, written out independently of the fake."""

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    text = f"cert_type={b64('IDENTITY_CARD')}&cert_name={b64(name)}&cert_no={b64(cert_no)}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FaceFlow:
    client: WeChatClient
    openid: str = "o-mother-1"
    out_seq_no: str = "face_0001"
    cert_no: str = ID_NUMBER
    verify_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    async def start(self) -> dict[str, Any]:
        body = {
            "out_seq_no": self.out_seq_no,
            "cert_info": {"cert_type": "IDENTITY_CARD", "cert_name": MOTHER, "cert_no": self.cert_no},
            "openid": self.openid,
        }
        result: dict[str, Any] = await in_thread(
            self.client.wxa._post, "cityservice/face/identify/getverifyid", data=body
        )
        self.verify_id = result["verify_id"]
        return result

    async def query(self, **override: str) -> int:
        body = {
            "verify_id": self.verify_id,
            "out_seq_no": self.out_seq_no,
            "cert_hash": cert_hash(MOTHER, self.cert_no),
            "openid": self.openid,
            **override,
        }
        result = await in_thread(
            self.client.wxa._post, "cityservice/face/identify/queryverifyinfo", data=body
        )
        return int(result["verify_ret"])


async def test_face_verification_passes_after_the_user_plays_it(fake: Fake) -> None:
    flow = FaceFlow(wechat_client(fake.base))
    started = await flow.start()
    assert started["expires_in"] == 3600
    assert await flow.query() == 10300  # not finished yet
    status, played = await fake.control(
        "/_fake/face/verify", {"verify_id": flow.verify_id, "openid": flow.openid}
    )
    assert (status, played["errCode"]) == (200, 0)
    assert await flow.query() == 10000


async def test_a_scripted_face_mismatch(fake: Fake) -> None:
    status, _ = await fake.control("/_fake/faces", {"cert_no": ID_NUMBER.lower(), "verify_ret": 10004})
    assert status == 200
    flow = FaceFlow(wechat_client(fake.base))
    await flow.start()
    await fake.control("/_fake/face/verify", {"verify_id": flow.verify_id})
    assert await flow.query() == 10004


async def test_face_verification_refuses_replay_and_another_user(fake: Fake) -> None:
    flow = FaceFlow(wechat_client(fake.base))
    await flow.start()
    status, refused = await fake.control(
        "/_fake/face/verify", {"verify_id": flow.verify_id, "openid": "o-father-1"}
    )
    assert status == 403
    assert refused["errCode"] != 0
    assert await flow.query() == 10300
    await fake.control("/_fake/face/verify", {"verify_id": flow.verify_id})
    status, _ = await fake.control("/_fake/face/verify", {"verify_id": flow.verify_id})
    assert status == 409
    assert await flow.query(openid="o-father-1") == 10001
    assert await flow.query(out_seq_no="face_9999") == 10001
    assert await flow.query(cert_hash=cert_hash("李四", ID_NUMBER)) == 10001
    assert await flow.query() == 10000


async def test_getverifyid_checks_out_seq_no(fake: Fake) -> None:
    flow = FaceFlow(wechat_client(fake.base))
    await flow.start()
    with pytest.raises(WeChatClientException) as reused:
        await flow.start()
    assert reused.value.errcode == 10001
    flow.out_seq_no = "a b"
    with pytest.raises(WeChatClientException) as malformed:
        await flow.start()
    assert malformed.value.errcode == 10001


async def test_an_expired_verify_id_is_an_error(fake: Fake) -> None:
    flow = FaceFlow(wechat_client(fake.base))
    await flow.start()
    fake.clock.advance(3600)
    status, _ = await fake.control("/_fake/face/verify", {"verify_id": flow.verify_id})
    assert status == 410
    token = await fake.token()  # the wechatpy client's token has expired with the clock too
    body = {
        "verify_id": flow.verify_id,
        "out_seq_no": flow.out_seq_no,
        "cert_hash": "x",
        "openid": flow.openid,
    }
    expired = await fake.post("/cityservice/face/identify/queryverifyinfo", body, access_token=token)
    assert expired["errcode"] == 84001


# --- WeChat Pay v2 -----------------------------------------------------------------------------------


def test_signature_vectors_from_wechatpy() -> None:
    params = {"test1": "test1", "test2": "test2"}
    assert pay_sign(params, PAY_KEY) == "1E3A8D73B5A4AEE787C0F68B5DAB8520"
    assert pay_sign(params, PAY_KEY, HMAC_SHA256) == (
        "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659"
    )
    with_empty = {**params, "empty": "", "sign": "ignored"}
    assert pay_sign(with_empty, PAY_KEY) == calculate_signature(params, PAY_KEY)
    assert pay_sign(params, PAY_KEY, HMAC_SHA256) == calculate_signature_hmac(params, PAY_KEY)


@dataclass
class Receiver:
    """Our side of the payment notification: a tiny aiohttp app verifying with wechatpy."""

    pay: WeChatPay
    url: str = ""
    received: list[dict[str, Any] | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            self.received.append(self.pay.parse_payment_result(await request.text()))
        except InvalidSignatureException:
            self.received.append(None)
            return web.Response(text=FAIL_XML, content_type="text/xml")
        return web.Response(text=SUCCESS_XML, content_type="text/xml")


@pytest.fixture
async def receiver(fake: Fake) -> AsyncIterator[Receiver]:
    receiver = Receiver(wechat_pay(fake.base))
    app = web.Application()
    app.router.add_post("/pay/notify", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/pay/notify"
    yield receiver
    await runner.cleanup()


async def create_order(pay: WeChatPay, notify_url: str, **overrides: Any) -> Any:
    """`pay.order.create` for a JSAPI order of 22.00 yuan, with any argument overridden."""
    arguments = {
        "trade_type": "JSAPI",
        "body": "出生医学证明邮寄费",
        "total_fee": 2200,
        "notify_url": notify_url,
        "client_ip": "127.0.0.1",
        "user_id": "o-mother-1",
        "out_trade_no": "BC202405010001",
        "attach": "application-42",
        **overrides,
    }
    return await in_thread(pay.order.create, **arguments)


async def test_unified_order_returns_a_signed_prepay_id(fake: Fake, receiver: Receiver) -> None:
    pay = receiver.pay
    order = await create_order(pay, receiver.url)
    assert order["prepay_id"].startswith("wx")
    assert pay.check_signature(order)
    params = await in_thread(pay.jsapi.get_jsapi_params, order["prepay_id"])
    assert params["package"] == f"prepay_id={order['prepay_id']}"
    query = await in_thread(pay.order.query, out_trade_no="BC202405010001")
    assert (query["trade_state"], query["total_fee"]) == ("NOTPAY", "2200")


async def test_the_payment_notification_verifies_with_wechatpy(fake: Fake, receiver: Receiver) -> None:
    await create_order(receiver.pay, receiver.url)
    status, answer = await fake.control("/_fake/pay/notify", {"out_trade_no": "BC202405010001"})
    assert status == 200
    assert answer["status"] == 200
    assert "SUCCESS" in answer["body"]
    [paid] = receiver.received
    assert paid is not None
    assert (paid["out_trade_no"], paid["total_fee"], paid["cash_fee"]) == ("BC202405010001", 2200, 2200)
    assert (paid["result_code"], paid["attach"], paid["openid"]) == (
        "SUCCESS",
        "application-42",
        "o-mother-1",
    )
    assert len(paid["transaction_id"]) == 28
    assert len(paid["time_end"]) == 14
    query = await in_thread(receiver.pay.order.query, out_trade_no="BC202405010001")
    assert (query["trade_state"], query["transaction_id"]) == ("SUCCESS", paid["transaction_id"])
    # A retry carries the same transaction.
    await fake.control("/_fake/pay/notify", {"out_trade_no": "BC202405010001"})
    assert receiver.received[1] is not None
    assert receiver.received[1]["transaction_id"] == paid["transaction_id"]


async def test_a_forged_notification_fails_verification(fake: Fake, receiver: Receiver) -> None:
    await create_order(receiver.pay, receiver.url)
    status, answer = await fake.control(
        "/_fake/pay/notify", {"out_trade_no": "BC202405010001", "forge": True}
    )
    assert status == 200
    assert "FAIL" in answer["body"]
    assert receiver.received == [None]
    query = await in_thread(receiver.pay.order.query, out_trade_no="BC202405010001")
    assert query["trade_state"] == "NOTPAY"


async def test_a_notification_with_another_amount_is_signed_correctly(fake: Fake, receiver: Receiver) -> None:
    await create_order(receiver.pay, receiver.url)
    await fake.control("/_fake/pay/notify", {"out_trade_no": "BC202405010001", "total_fee": 1})
    [paid] = receiver.received
    assert paid is not None
    assert paid["total_fee"] == 1  # the signature holds: only an amount check catches this


async def test_out_trade_no_reused_with_other_content(fake: Fake, receiver: Receiver) -> None:
    first = await create_order(receiver.pay, receiver.url)
    same = await create_order(receiver.pay, receiver.url)
    assert same["prepay_id"] == first["prepay_id"]
    with pytest.raises(WeChatPayException) as used:
        await create_order(receiver.pay, receiver.url, total_fee=1)
    assert used.value.errcode == "OUT_TRADE_NO_USED"


async def test_hmac_sha256_orders_are_accepted(fake: Fake, receiver: Receiver) -> None:
    order = await create_order(receiver.pay, receiver.url, sign_type=HMAC_SHA256)
    expected = pay_sign({k: v for k, v in order.items() if k != "sign"}, PAY_KEY, HMAC_SHA256)
    assert order["sign"] == expected
    # The notification is HMAC-signed too, which wechatpy's parse_payment_result (MD5 only) rejects.
    await fake.control("/_fake/pay/notify", {"out_trade_no": "BC202405010001"})
    assert receiver.received == [None]


async def test_a_wrongly_signed_or_incomplete_order_is_refused(fake: Fake, receiver: Receiver) -> None:
    fields = {"appid": APPID, "mch_id": MCH_ID, "nonce_str": "abc", "body": "x", "out_trade_no": "BC0000001"}
    xml = to_xml({**fields, "sign": "0" * 32})
    async with fake.http.post(fake.base + "/pay/unifiedorder", data=xml.encode()) as r:
        text = await r.text()
    assert "<return_code><![CDATA[FAIL]]></return_code>" in text
    assert "签名错误" in text
    with pytest.raises(WeChatPayException) as lacking:
        await create_order(receiver.pay, receiver.url, user_id=None)
    assert lacking.value.errcode == "LACK_PARAMS"


async def test_a_closed_order_cannot_be_paid(fake: Fake, receiver: Receiver) -> None:
    await create_order(receiver.pay, receiver.url)
    await in_thread(receiver.pay.order.close, "BC202405010001")
    query = await in_thread(receiver.pay.order.query, out_trade_no="BC202405010001")
    assert query["trade_state"] == "CLOSED"
    with pytest.raises(WeChatPayException) as closed:
        await in_thread(receiver.pay.order.close, "BC202405010001")
    assert closed.value.errcode == "ORDERCLOSED"
    status, _ = await fake.control("/_fake/pay/notify", {"out_trade_no": "BC202405010001"})
    assert status == 409
    with pytest.raises(WeChatPayException) as unknown:
        await in_thread(receiver.pay.order.query, out_trade_no="BC404")
    assert unknown.value.errcode == "ORDERNOTEXIST"


async def test_injected_pay_error(fake: Fake, receiver: Receiver) -> None:
    await fake.control("/_fake/errors", {"path": "/pay/unifiedorder", "errcode": "SYSTEMERROR"})
    with pytest.raises(WeChatPayException) as failed:
        await create_order(receiver.pay, receiver.url)
    assert failed.value.errcode == "SYSTEMERROR"
    assert (await create_order(receiver.pay, receiver.url))["prepay_id"]


# --- 粤省事 -----------------------------------------------------------------------------------------


async def decode_ticket(fake: Fake, ticket: str) -> dict[str, Any]:
    def verify() -> dict[str, Any]:
        jwks = jwt.PyJWKClient(fake.base + "/yueshengshi/.well-known/jwks.json")
        key = jwks.get_signing_key_from_jwt(ticket)
        claims: dict[str, Any] = jwt.decode(
            ticket,
            key.key,
            algorithms=["ES256"],
            audience="birthcert",
            issuer="https://yss.gd.gov.cn",
            options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
        )
        return claims

    result: dict[str, Any] = await in_thread(verify)
    return result


async def test_a_yueshengshi_ticket_verifies_against_the_jwks(fake: Fake) -> None:
    status, body = await fake.control(
        "/_fake/yueshengshi/tickets", {"openid": "o-mother-1", "name": MOTHER, "id_number": ID_NUMBER}
    )
    assert status == 200
    claims = await decode_ticket(fake, body["ticket"])
    assert (claims["sub"], claims["name"], claims["id_number"]) == ("o-mother-1", MOTHER, ID_NUMBER)
    assert claims["exp"] - claims["iat"] == 300
    _, other = await fake.control("/_fake/yueshengshi/tickets", {"openid": "o-mother-1"})
    assert (await decode_ticket(fake, other["ticket"]))["jti"] != claims["jti"]


async def test_a_forged_or_expired_ticket_does_not_verify(fake: Fake) -> None:
    _, forged = await fake.control("/_fake/yueshengshi/tickets", {"openid": "o-mother-1", "forge": True})
    with pytest.raises(jwt.InvalidSignatureError):
        await decode_ticket(fake, forged["ticket"])
    _, expired = await fake.control("/_fake/yueshengshi/tickets", {"openid": "o-mother-1", "ttl": -60})
    with pytest.raises(jwt.ExpiredSignatureError):
        await decode_ticket(fake, expired["ticket"])


# --- population registry -----------------------------------------------------------------------------


async def test_registry_lookup_needs_the_api_key(fake: Fake) -> None:
    person = {"id_number": ID_NUMBER, "name": MOTHER, "ethnicity": "01", "address": "北京市西城区某街1号"}
    status, _ = await fake.control("/_fake/registry/persons", person)
    assert status == 201
    url, query = fake.base + "/registry/v1/persons/lookup", {"id_number": ID_NUMBER, "name": MOTHER}
    async with fake.http.post(url, json=query, headers={"X-Api-Key": "dev-registry-key"}) as r:
        assert (r.status, await r.json()) == (200, {"ethnicity": "01", "address": "北京市西城区某街1号"})
    async with fake.http.post(url, json=query) as r:
        assert (r.status, await r.json()) == (401, {"code": "unauthorized"})
    async with fake.http.post(url, json=query, headers={"X-Api-Key": "wrong"}) as r:
        assert r.status == 401
    for other in ({**query, "name": "李四"}, {**query, "id_number": "440524188001010014"}):
        async with fake.http.post(url, json=other, headers={"X-Api-Key": "dev-registry-key"}) as r:
            assert (r.status, await r.json()) == (404, {"code": "not_found"})


# --- control API, logging, command line ---------------------------------------------------------------


async def test_reset_forgets_state_and_counts(fake: Fake) -> None:
    client = wechat_client(fake.base)
    await in_thread(
        client.wxa.send_subscribe_message, "o-mother-1", TEMPLATE, {"phrase1": {"value": "已受理"}}
    )
    assert (await fake.get("/_fake/calls"))["calls"]["/cgi-bin/token"] == 1
    status, _ = await fake.control("/_fake/reset")
    assert status == 200
    assert (await fake.get("/_fake/messages"))["messages"] == []
    assert await fake.calls("/cgi-bin/token") == 0
    # The token handed out before the reset is gone; wechatpy recovers by fetching a new one.
    await in_thread(
        client.wxa.send_subscribe_message, "o-mother-1", TEMPLATE, {"phrase1": {"value": "已受理"}}
    )
    assert await fake.calls("/cgi-bin/token") == 1


async def test_the_log_holds_no_personal_data(fake: Fake, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    flow = FaceFlow(wechat_client(fake.base))
    await flow.start()
    await fake.control("/_fake/face/verify", {"verify_id": flow.verify_id})
    await flow.query()
    await fake.control(
        "/_fake/registry/persons",
        {"id_number": ID_NUMBER, "name": MOTHER, "ethnicity": "01", "address": "某地"},
    )
    platform_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("miniprogram_stub"))
    assert "POST /cityservice/face/identify/getverifyid -> 200 errcode=0" in platform_log
    for secret in (ID_NUMBER, MOTHER, "某地", flow.verify_id, "o-mother-1", "access_token"):
        assert secret not in platform_log


def test_stub_subcommand_defaults() -> None:
    parser = argparse.ArgumentParser()
    register_stub(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stub"])
    assert (args.host, args.port) == ("127.0.0.1", 8765)
    assert callable(args.handler)
