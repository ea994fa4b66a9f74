"""The WeChat adapter against the fake WeChat platform, over real HTTP, with a real Redis.

The adapter is synchronous (wechatpy runs on requests), so the fake platform and the little receiver of
payment notifications run on an event loop of their own in a background thread, and the tests call
the adapter directly, as a worker thread of the service would.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import redis
from aiohttp import web
from wechatpy.pay.utils import calculate_signature

from backend.config import WeChatSettings
from backend.errors import problem_for
from backend.wechat import (
    FACE_PASS,
    InvalidPaymentNotification,
    LoginCodeInvalid,
    PaymentRejected,
    PhoneCodeInvalid,
    RateLimited,
    SubscribeRefused,
    TemplateDataInvalid,
    VerifyIdInvalid,
    WeChat,
    WeChatUnavailable,
)
from miniprogram_stub.platform import FakeSettings, start_fake_platform
from tests.integration.following import Background, PlatformControl

T = TypeVar("T")

MOTHER = {"name": "张三", "id_number": "11010519491231002X"}
FATHER = {"name": "李四", "id_number": "440524188001010014"}
STABLE_TOKEN = "/cgi-bin/stable_token"
QUERY_VERIFY = "/cityservice/face/identify/queryverifyinfo"
SUBSCRIBE = "/cgi-bin/message/subscribe/send"
NOTIFY_PATH = "/api/v1/payments/wechat/notify"
_numbers = itertools.count(1)


# --- the fake platform and the notify receiver, on a loop in a background thread ----------------------


class Platform(PlatformControl):
    """The fake platform's base URL and its control API (`/_fake/...`)."""

    def calls(self, path: str) -> int:
        count: int = self.control("GET", f"/_fake/calls?path={path}")["count"]
        return count

    def inject(self, path: str, errcode: int | str, times: int = 1) -> None:
        self.control("POST", "/_fake/errors", {"path": path, "errcode": errcode, "times": times})

    def face(self, verify_id: str) -> Any:
        return self.control("POST", "/_fake/face/verify", {"verify_id": verify_id})


@dataclass
class Receiver:
    """Our notify_url: records what WeChat Pay posts and acknowledges it."""

    url: str
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture(scope="module")
def background() -> Iterator[Background]:
    bg = Background()
    yield bg
    bg.close()


@pytest.fixture(scope="module")
def platform(background: Background) -> Iterator[Platform]:
    runner, base_url = background.run(start_fake_platform("127.0.0.1", 0, FakeSettings()))
    fake = Platform(base_url)
    yield fake
    fake.http.close()
    background.run(runner.cleanup())


@pytest.fixture(scope="module")
def receiver(background: Background) -> Iterator[Receiver]:
    bodies: list[bytes] = []

    async def notified(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(body=WeChat.payment_ack(True), content_type="text/xml")

    async def start() -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_post(NOTIFY_PATH, notified)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner, runner.addresses[0][1]

    runner, port = background.run(start())
    yield Receiver(f"http://127.0.0.1:{port}{NOTIFY_PATH}", bodies)
    background.run(runner.cleanup())


@pytest.fixture
def fake(platform: Platform, receiver: Receiver) -> Platform:
    """The fake platform, its state reset for this test."""
    platform.control("POST", "/_fake/reset")
    receiver.bodies.clear()
    return platform


def settings_for(api_base: str, pay_base: str | None = None) -> WeChatSettings:
    defaults = FakeSettings()
    return WeChatSettings(
        appid=defaults.appid,
        secret=defaults.secret,
        api_base=api_base,
        pay_base=pay_base or api_base,
        mch_id=defaults.mch_id,
        pay_key=defaults.pay_api_key,
    )


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def new_wechat(fake: Platform, redis_client: redis.Redis, receiver: Receiver) -> Iterator[Any]:
    """Build adapters (workers) sharing the test's Redis; all closed afterwards."""
    built: list[WeChat] = []

    def build() -> WeChat:
        wechat = WeChat(settings_for(fake.base_url), redis_client, receiver.url)
        built.append(wechat)
        return wechat

    yield build
    for wechat in built:
        wechat.close()


@pytest.fixture
def wechat(new_wechat: Any) -> WeChat:
    built: WeChat = new_wechat()
    return built


def login_code(openid: str) -> str:
    return f"dev:{openid}:{next(_numbers)}"


def out_seq_no() -> str:
    return f"face-{time.time_ns()}-{next(_numbers)}"


def begin_face(wechat: WeChat, openid: str, person: dict[str, str]) -> tuple[str, str]:
    seq = out_seq_no()
    verify_id = wechat.get_verify_id(out_seq_no=seq, openid=openid, **person)
    return verify_id, seq


# --- login ---------------------------------------------------------------------------------------------


def test_login_answers_the_openid_and_unionid_and_keeps_the_session_key_out_of_repr(
    wechat: WeChat,
) -> None:
    session = wechat.code_to_session(login_code("o-mother"))
    assert session.openid == "o-mother"
    assert session.unionid and session.unionid != session.openid
    assert session.session_key
    assert session.session_key not in repr(session)


def test_a_reused_login_code_is_refused(wechat: WeChat) -> None:
    code = login_code("o-mother")
    wechat.code_to_session(code)
    with pytest.raises(LoginCodeInvalid) as caught:
        wechat.code_to_session(code)
    assert caught.value.errcode == 40029
    assert caught.value.code == "login_code_invalid"
    assert problem_for(caught.value).status == 401


def test_login_needs_no_access_token(fake: Platform, wechat: WeChat) -> None:
    wechat.code_to_session(login_code("o-mother"))
    assert fake.calls(STABLE_TOKEN) == 0
    assert fake.calls("/cgi-bin/token") == 0


def test_45011_on_login_is_rate_limited(fake: Platform, wechat: WeChat) -> None:
    fake.inject("/sns/jscode2session", 45011)
    with pytest.raises(RateLimited) as caught:
        wechat.code_to_session(login_code("o-mother"))
    assert caught.value.errcode == 45011
    assert problem_for(caught.value).status == 429


def test_a_system_error_is_unavailable(fake: Platform, wechat: WeChat) -> None:
    fake.inject("/sns/jscode2session", -1)
    with pytest.raises(WeChatUnavailable) as caught:
        wechat.code_to_session(login_code("o-mother"))
    assert caught.value.errcode == -1
    assert caught.value.code == "wechat_unavailable"
    assert problem_for(caught.value).status == 503


# --- the access token ----------------------------------------------------------------------------------


def test_the_token_is_fetched_once_and_shared_by_two_workers(fake: Platform, new_wechat: Any) -> None:
    first, second = new_wechat(), new_wechat()
    first.get_verify_id(out_seq_no=out_seq_no(), openid="o-mother", **MOTHER)
    second.get_verify_id(out_seq_no=out_seq_no(), openid="o-father", **FATHER)
    first.get_verify_id(out_seq_no=out_seq_no(), openid="o-mother", **MOTHER)
    assert fake.calls(STABLE_TOKEN) == 1
    assert fake.calls("/cgi-bin/token") == 0


def test_the_token_lives_in_redis_under_our_prefix(wechat: WeChat, redis_client: redis.Redis) -> None:
    wechat.get_verify_id(out_seq_no=out_seq_no(), openid="o-mother", **MOTHER)
    key = f"birthcert:wechatpy:{wechat.settings.appid}_access_token"
    assert redis_client.get(key)
    assert 0 < int(redis_client.ttl(key)) <= 7200  # type: ignore[arg-type]
    assert not redis_client.exists(f"{key}:lock")


def test_an_invalid_token_costs_one_forced_refresh_and_one_retry(
    fake: Platform, wechat: WeChat, redis_client: redis.Redis
) -> None:
    verify_id, seq = begin_face(wechat, "o-mother", MOTHER)
    fake.face(verify_id)
    key = f"birthcert:wechatpy:{wechat.settings.appid}_access_token"
    before = redis_client.get(key)
    fake.inject(QUERY_VERIFY, 40001)

    verify_ret = wechat.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-mother", **MOTHER)

    assert verify_ret == FACE_PASS
    assert fake.calls(STABLE_TOKEN) == 2
    assert fake.calls(QUERY_VERIFY) == 2
    assert redis_client.get(key) != before


def test_expired_tokens_cost_one_refresh(fake: Platform, wechat: WeChat) -> None:
    verify_id, seq = begin_face(wechat, "o-mother", MOTHER)
    fake.face(verify_id)
    fake.control("POST", "/_fake/tokens/expire")

    verify_ret = wechat.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-mother", **MOTHER)

    assert verify_ret == FACE_PASS
    assert fake.calls(STABLE_TOKEN) == 2
    assert fake.calls(QUERY_VERIFY) == 2


def test_a_token_error_that_persists_is_retried_only_once(fake: Platform, wechat: WeChat) -> None:
    verify_id, seq = begin_face(wechat, "o-mother", MOTHER)
    fake.inject(QUERY_VERIFY, 42001, times=5)
    with pytest.raises(WeChatUnavailable) as caught:
        wechat.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-mother", **MOTHER)
    assert caught.value.errcode == 42001
    assert fake.calls(QUERY_VERIFY) == 2
    assert fake.calls(STABLE_TOKEN) == 2


def test_ten_workers_meeting_an_expired_token_refresh_it_once(fake: Platform, new_wechat: Any) -> None:
    workers = [new_wechat() for _ in range(10)]
    verify_id, seq = begin_face(workers[0], "o-mother", MOTHER)
    fake.face(verify_id)
    fake.control("POST", "/_fake/tokens/expire")
    start = threading.Barrier(len(workers))

    def query(worker: WeChat) -> int:
        start.wait()
        return worker.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-mother", **MOTHER)

    with ThreadPoolExecutor(len(workers)) as pool:
        results = list(pool.map(query, workers))

    assert results == [FACE_PASS] * len(workers)
    assert fake.calls(STABLE_TOKEN) == 2  # the first fetch, then ONE forced refresh


def test_a_refresh_lock_left_by_a_dead_worker_is_waited_out(
    fake: Platform, wechat: WeChat, redis_client: redis.Redis
) -> None:
    lock_key = f"birthcert:wechatpy:{wechat.settings.appid}_access_token:lock"
    redis_client.set(lock_key, "a-worker-that-died", px=300)
    started = time.monotonic()
    wechat.get_verify_id(out_seq_no=out_seq_no(), openid="o-mother", **MOTHER)
    assert 0.25 < time.monotonic() - started < 3
    assert fake.calls(STABLE_TOKEN) == 1


def test_a_token_endpoint_error_is_unavailable(fake: Platform, wechat: WeChat) -> None:
    fake.inject(STABLE_TOKEN, -1)
    with pytest.raises(WeChatUnavailable) as caught:
        wechat.get_verify_id(out_seq_no=out_seq_no(), openid="o-mother", **MOTHER)
    assert caught.value.errcode == -1


def test_wrong_credentials_are_unavailable(
    fake: Platform, redis_client: redis.Redis, receiver: Receiver
) -> None:
    settings = settings_for(fake.base_url)
    wrong = WeChatSettings(
        appid=settings.appid,
        secret="not-the-secret",
        api_base=settings.api_base,
        pay_base=settings.pay_base,
        mch_id=settings.mch_id,
        pay_key=settings.pay_key,
    )
    wechat = WeChat(wrong, redis_client, receiver.url)
    with pytest.raises(WeChatUnavailable) as caught:
        wechat.get_verify_id(out_seq_no=out_seq_no(), openid="o-mother", **MOTHER)
    assert caught.value.errcode == 40125
    wechat.close()


# --- face verification ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scripted", [10000, 10003, 10004])
def test_face_verification_answers_the_verify_ret(fake: Platform, wechat: WeChat, scripted: int) -> None:
    fake.control("POST", "/_fake/faces", {"cert_no": MOTHER["id_number"], "verify_ret": scripted})
    verify_id, seq = begin_face(wechat, "o-mother", MOTHER)
    assert fake.face(verify_id)["errCode"] == 0

    verify_ret = wechat.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-mother", **MOTHER)

    assert verify_ret == scripted


def test_a_verification_not_finished_is_not_a_pass(wechat: WeChat) -> None:
    verify_id, seq = begin_face(wechat, "o-mother", MOTHER)
    verify_ret = wechat.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-mother", **MOTHER)
    assert verify_ret != FACE_PASS


def test_a_verify_id_of_another_user_does_not_pass(fake: Platform, wechat: WeChat) -> None:
    verify_id, seq = begin_face(wechat, "o-mother", MOTHER)
    fake.face(verify_id)
    verify_ret = wechat.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-father", **MOTHER)
    assert verify_ret == 10001


def test_a_verify_id_for_another_identity_does_not_pass(fake: Platform, wechat: WeChat) -> None:
    verify_id, seq = begin_face(wechat, "o-mother", MOTHER)
    fake.face(verify_id)
    verify_ret = wechat.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-mother", **FATHER)
    assert verify_ret == 10001


def test_an_unknown_verify_id_is_invalid(wechat: WeChat) -> None:
    with pytest.raises(VerifyIdInvalid):
        wechat.query_verify_ret(verify_id="no-such-id", out_seq_no=out_seq_no(), openid="o-mother", **MOTHER)


def test_logs_never_carry_personal_data_or_secrets(
    fake: Platform, wechat: WeChat, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session = wechat.code_to_session(login_code("o-mother"))
    fake.inject(QUERY_VERIFY, 40001)
    verify_id, seq = begin_face(wechat, "o-mother", MOTHER)
    wechat.query_verify_ret(verify_id=verify_id, out_seq_no=seq, openid="o-mother", **MOTHER)
    with pytest.raises(VerifyIdInvalid):
        wechat.query_verify_ret(verify_id="no-such-id", out_seq_no=seq, openid="o-mother", **MOTHER)
    pay(wechat, "BC20240501000099")
    token = redis_client.get(f"birthcert:wechatpy:{wechat.settings.appid}_access_token")
    assert isinstance(token, bytes)
    secrets = [MOTHER["name"], MOTHER["id_number"], session.session_key, token.decode().strip('"')]
    secrets += [session.openid, "dev:o-mother"]
    secrets += [wechat.settings.secret, wechat.settings.pay_key, verify_id]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "errcode=40001" in logged
    for secret in secrets:
        assert secret not in logged


# --- subscribe messages --------------------------------------------------------------------------------


def test_a_subscribe_message_goes_out_with_the_full_body(fake: Platform, wechat: WeChat) -> None:
    wechat.send_subscribe_message(
        touser="o-mother",
        template_id="tmpl-issued",
        data={"character_string1": "X320101001", "phrase2": "已签发", "date3": "2024年5月1日"},
        page="pages/application/index?id=1",
        state="trial",
    )
    [message] = fake.control("GET", "/_fake/messages?touser=o-mother")["messages"]
    assert message["template_id"] == "tmpl-issued"
    assert message["data"] == {
        "character_string1": {"value": "X320101001"},
        "phrase2": {"value": "已签发"},
        "date3": {"value": "2024年5月1日"},
    }
    assert message["page"] == "pages/application/index?id=1"
    assert message["miniprogram_state"] == "trial"
    assert message["lang"] == "zh_CN"


def test_template_data_that_does_not_fit_is_refused(fake: Platform, wechat: WeChat) -> None:
    with pytest.raises(TemplateDataInvalid) as caught:
        wechat.send_subscribe_message(
            touser="o-mother", template_id="tmpl-issued", data={"phrase1": "已签发123"}
        )
    assert caught.value.errcode == 47003
    assert fake.control("GET", "/_fake/messages?touser=o-mother")["messages"] == []


def test_a_user_who_refused_is_not_retried(fake: Platform, wechat: WeChat) -> None:
    fake.control("POST", "/_fake/subscriptions/refuse", {"touser": "o-mother"})
    with pytest.raises(SubscribeRefused) as caught:
        wechat.send_subscribe_message(
            touser="o-mother", template_id="tmpl-issued", data={"phrase1": "已签发"}
        )
    assert caught.value.errcode == 43101
    assert fake.calls(SUBSCRIBE) == 1


# --- content checks and phone numbers ------------------------------------------------------------------


def test_msg_sec_check_passes_plain_text_and_refuses_risky_text(wechat: WeChat) -> None:
    wechat.code_to_session(login_code("o-mother"))  # v2 wants a user seen in the last 2 hours
    assert wechat.check_text("王小明", "o-mother") is True
    assert wechat.check_text("出售枪支", "o-mother") is False


def test_msg_sec_check_for_a_user_not_seen_lately_is_unavailable(wechat: WeChat) -> None:
    with pytest.raises(WeChatUnavailable) as caught:
        wechat.check_text("王小明", "o-stranger")
    assert caught.value.errcode == 61010


def test_a_phone_code_gives_the_number_once(wechat: WeChat) -> None:
    assert wechat.get_phone_number("phone:13800138000") == "13800138000"
    with pytest.raises(PhoneCodeInvalid):
        wechat.get_phone_number("phone:13800138000")


# --- WeChat Pay ----------------------------------------------------------------------------------------


def pay(wechat: WeChat, out_trade_no: str, amount_fen: int = 2200) -> dict[str, str]:
    return wechat.create_jsapi_payment(
        out_trade_no=out_trade_no,
        amount_fen=amount_fen,
        openid="o-mother",
        description="出生医学证明邮寄费",
        client_ip="203.0.113.7",
    )


def test_jsapi_payment_params_are_signed(wechat: WeChat) -> None:
    params = pay(wechat, "BC20240501000001")
    unsigned = {k: v for k, v in params.items() if k != "paySign"}
    assert params["paySign"] == calculate_signature(unsigned, wechat.settings.pay_key)
    assert params["appId"] == wechat.settings.appid
    assert params["signType"] == "MD5"
    assert params["package"].startswith("prepay_id=wx")
    assert params["timeStamp"].isdigit() and params["nonceStr"]


def test_the_payment_notification_parses(fake: Platform, wechat: WeChat, receiver: Receiver) -> None:
    pay(wechat, "BC20240501000002")
    answer = fake.control("POST", "/_fake/pay/notify", {"out_trade_no": "BC20240501000002"})
    assert answer["status"] == 200
    assert "SUCCESS" in answer["body"]
    [body] = receiver.bodies

    notice = wechat.parse_payment_notification(body)

    assert notice.paid
    assert notice.out_trade_no == "BC20240501000002"
    assert notice.total_fee == 2200
    assert notice.openid == "o-mother"
    assert notice.transaction_id.startswith("42000")


def test_a_forged_payment_notification_is_refused(fake: Platform, wechat: WeChat, receiver: Receiver) -> None:
    pay(wechat, "BC20240501000003")
    fake.control("POST", "/_fake/pay/notify", {"out_trade_no": "BC20240501000003", "forge": True})
    [body] = receiver.bodies
    with pytest.raises(InvalidPaymentNotification) as caught:
        wechat.parse_payment_notification(body)
    assert problem_for(caught.value).status == 400


@pytest.mark.parametrize("body", [b"", b"not xml", b"<xml><return_code>SUCCESS</return_code></xml>"])
def test_a_notification_that_is_not_one_is_refused(wechat: WeChat, body: bytes) -> None:
    with pytest.raises(InvalidPaymentNotification):
        wechat.parse_payment_notification(body)


def test_a_failed_notification_is_not_paid(wechat: WeChat) -> None:
    body = b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg>sign</return_msg></xml>"
    notice = wechat.parse_payment_notification(body)
    assert not notice.paid
    assert notice.result_code == "FAIL"


def test_the_payment_ack_is_the_xml_wechat_expects() -> None:
    assert WeChat.payment_ack(True) == (
        b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
    )
    assert b"<![CDATA[FAIL]]>" in WeChat.payment_ack(False, "bad sign")


def test_paying_a_paid_order_again_is_rejected(fake: Platform, wechat: WeChat) -> None:
    pay(wechat, "BC20240501000004")
    fake.control("POST", "/_fake/pay/notify", {"out_trade_no": "BC20240501000004"})
    with pytest.raises(PaymentRejected) as caught:
        pay(wechat, "BC20240501000004")
    assert caught.value.errcode == "ORDERPAID"


@pytest.mark.parametrize("failure", [500, "SYSTEMERROR", "NOAUTH"])
def test_a_pay_outage_is_unavailable(fake: Platform, wechat: WeChat, failure: int | str) -> None:
    fake.inject("/pay/unifiedorder", failure)
    with pytest.raises(WeChatUnavailable):
        pay(wechat, "BC20240501000005")


# --- WeChat unreachable --------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_wechat_down_is_unavailable_at_once(redis_client: redis.Redis, receiver: Receiver) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    wechat = WeChat(settings_for(down), redis_client, receiver.url)
    started = time.monotonic()
    for call in (
        lambda: wechat.code_to_session(login_code("o-mother")),
        lambda: wechat.get_verify_id(out_seq_no=out_seq_no(), openid="o-mother", **MOTHER),
        lambda: pay(wechat, "BC20240501000006"),
    ):
        with pytest.raises(WeChatUnavailable):
            call()
    assert time.monotonic() - started < 5
    wechat.close()


def test_wechat_that_does_not_answer_is_unavailable_within_the_timeout(
    redis_client: redis.Redis, receiver: Receiver
) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        wechat = WeChat(settings_for(base), redis_client, receiver.url, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(WeChatUnavailable):
            wechat.code_to_session(login_code("o-mother"))
        with pytest.raises(WeChatUnavailable):
            pay(wechat, "BC20240501000007")
        assert time.monotonic() - started < 3
        wechat.close()
