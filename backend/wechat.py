"""Our only way to talk to WeChat: login, face verification, subscribe messages, content checks, WeChat Pay v2.

Synchronous (wechatpy runs on ``requests``): handlers call it through an executor, never on the loop.
The base URLs come from ``WeChatSettings`` so tests and ``make run`` point it at the fake platform in
``miniprogram_stub`` (shared/wechat-platform.md §2 has the recipe and wechatpy 1.8.18's quirks).

The access token comes from ``/cgi-bin/stable_token`` and lives in Redis, so every worker shares one.
Refreshing takes a Redis lock, so that N workers meeting an expired token fetch it once: a forced
refresh revokes the previous stable token at once, and N of them would revoke each other's.

Nothing personal is logged: log lines name the method, the path and the errcode, never bodies, names,
ID numbers, openids, session keys or tokens (``requests`` errors print URLs with the token in them, so
they are never logged either, and never chained to the errors we raise).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import redis
import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import InvalidSignatureException, WeChatClientException, WeChatPayException
from wechatpy.pay import WeChatPay
from wechatpy.session.redisstorage import RedisStorage

from backend.config import WeChatSettings
from domain.errors import DomainError

log = logging.getLogger("birthcert.wechat")


class _RedactQuery(logging.Filter):
    """Blank credentials in urllib3's debug lines: WeChat puts the token (and, for login, the secret) in URLs."""

    SECRET_PARAM = re.compile(r"\b(access_token|secret|js_code|code)=[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.SECRET_PARAM.sub(r"\1=***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


# wechatpy's debug lines print request bodies and, in calculate_signature, the pay key itself.
if logging.getLogger("wechatpy").level < logging.INFO:
    logging.getLogger("wechatpy").setLevel(logging.INFO)
_urllib3_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactQuery) for f in _urllib3_log.filters):
    _urllib3_log.addFilter(_RedactQuery())

TIMEOUT = 5.0
SESSION_PREFIX = "birthcert:wechatpy"
# Errcodes that mean "this access token is no good": 40001 invalid or not latest, 40014 invalid, 42001 expired.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# Forget the token in Redis this long before WeChat does, so no request goes out with a dying one.
TOKEN_MARGIN = 60
LOCK_POLL = 0.05
# Compare-and-delete: release the lock only if we still own it (it may have expired and been re-taken).
RELEASE_LOCK = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""
FACE_PASS = 10000
# Pay err_codes about the order itself (the rest are outages or our configuration).
ORDER_REFUSALS = frozenset({"ORDERPAID", "ORDERCLOSED", "OUT_TRADE_NO_USED"})
Json = dict[str, Any]
MiniprogramState = Literal["developer", "trial", "formal"]


# --- errors -----------------------------------------------------------------------------------------


class WeChatError(DomainError):
    """WeChat refused or failed a call; ``errcode`` is WeChat's (an int, or a Pay ``err_code`` string)."""

    code = "wechat_error"
    message = "微信服务暂时不可用，请稍后再试"
    http_status = 503

    def __init__(self, errcode: int | str | None = None, message: str | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode


class WeChatUnavailable(WeChatError):
    """WeChat did not answer, answered -1, or answered something we did not expect."""

    code = "wechat_unavailable"
    message = "微信服务暂时不可用，请稍后再试"
    http_status = 503


class LoginCodeInvalid(WeChatError):
    """The wx.login code is invalid, expired or already used (40029, 40163)."""

    code = "login_code_invalid"
    message = "登录已失效，请重新进入小程序"
    http_status = 401


class PhoneCodeInvalid(WeChatError):
    """The getPhoneNumber code is invalid, expired or already used (40029)."""

    code = "phone_code_invalid"
    message = "手机号授权已失效，请重新授权"
    http_status = 400


class RateLimited(WeChatError):
    """WeChat's rate limit for this user or this app was hit (45011, 45009)."""

    code = "rate_limited"
    message = "操作过于频繁，请稍后再试"
    http_status = 429


class SubscribeRefused(WeChatError):
    """The user refused or has used up this subscribe message (43101): record it, do not retry."""

    code = "subscribe_refused"
    message = "用户未订阅该消息"
    http_status = 409


class TemplateDataInvalid(WeChatError):
    """A subscribe message's data does not fit its template (47003): our bug, not the user's."""

    code = "template_data_invalid"
    message = "消息内容不符合模板要求"
    http_status = 502


class VerifyIdInvalid(WeChatError):
    """The face verification's verify_id is unknown or expired: start a new verification."""

    code = "verify_id_invalid"
    message = "人脸核身已失效，请重新核验"
    http_status = 409


class PaymentRejected(WeChatError):
    """WeChat Pay refused the order (``errcode`` is its err_code: ORDERPAID, ORDERCLOSED, OUT_TRADE_NO_USED …)."""

    code = "payment_rejected"
    message = "支付订单无法创建，请稍后再试"
    http_status = 409


class InvalidPaymentNotification(WeChatError):
    """A payment notification that is not XML or whose sign is not ours."""

    code = "invalid_payment_notification"
    message = "支付通知无效"
    http_status = 400


# --- values -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WxSession:
    """Who logged in. ``session_key`` stays on the server: never logged, never sent to a client."""

    openid: str
    unionid: str | None
    session_key: str = field(repr=False)


@dataclass(frozen=True)
class PaymentNotice:
    """A verified WeChat Pay notification; act on it only when ``paid`` (and total_fee is the order's)."""

    out_trade_no: str
    total_fee: int
    transaction_id: str
    openid: str
    result_code: str

    @property
    def paid(self) -> bool:
        """Whether the notification says the payment succeeded."""
        return self.result_code == "SUCCESS"


def cert_hash(*, cert_name: str, cert_no: str, cert_type: str = "IDENTITY_CARD") -> str:
    """queryverifyinfo's cert_hash: sha256 hex of ``cert_type=b64&cert_name=b64&cert_no=b64`` (§6.4)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    text = f"cert_type={b64(cert_type)}&cert_name={b64(cert_name)}&cert_no={b64(cert_no)}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --- wechatpy, pointed at our base URLs -------------------------------------------------------------


class _Client(WeChatClient):
    """wechatpy's client with the base URL from settings and the token from stable_token, shared in Redis.

    ``auto_retry`` is off: wechatpy retries by recursion, without bound, and ``WeChat._call`` does the one
    forced refresh and one retry itself. ``fetch_access_token`` (wechatpy's hook, also used by its
    auto_retry) is the forced, locked refresh.
    """

    def __init__(self, settings: WeChatSettings, redis_client: redis.Redis, timeout: float) -> None:
        super().__init__(
            settings.appid,
            settings.secret,
            session=RedisStorage(redis_client, prefix=SESSION_PREFIX),
            timeout=timeout,
            auto_retry=False,
        )
        # Instance attributes, since the base is a setting: WeChatClient.API_BASE_URL serves
        # `client.get/post` with relative paths, WeChatWxa has its own (wxa._get/_post).
        self.API_BASE_URL = f"{settings.api_base}/cgi-bin/"
        self.wxa.API_BASE_URL = f"{settings.api_base}/"
        self.stable_token_url = f"{settings.api_base}/cgi-bin/stable_token"
        self.redis = redis_client
        self.lock_key = f"{SESSION_PREFIX}:{settings.appid}_access_token:lock"
        self.release_lock = redis_client.register_script(RELEASE_LOCK)
        # The lock outlives the longest refresh (one stable_token call); waiters give up a little later.
        self.lock_ttl_ms = int(max(timeout, 1.0) * 2000)
        self.used = threading.local()  # the token this thread last sent

    @property
    def access_token(self) -> str:
        """The shared token; fetched (not forced) when Redis has none. Redis' TTL is the expiry."""
        token = self.session.get(self.access_token_key) or self.refresh_token(force=False, stale=None)
        self.used.token = token
        return str(token)

    def fetch_access_token(self) -> Json:
        """A forced refresh, unless another worker already replaced the token this thread sent."""
        token = self.refresh_token(force=True, stale=getattr(self.used, "token", None))
        return {"access_token": token}

    def refresh_token(self, *, force: bool, stale: str | None) -> str:
        """A token newer than ``stale`` (or any token, unforced), fetching it under the refresh lock."""
        owner = secrets.token_hex(16)
        deadline = time.monotonic() + self.lock_ttl_ms / 1000 + self.timeout
        while True:
            if self.redis.set(self.lock_key, owner, nx=True, px=self.lock_ttl_ms):
                try:
                    return self._stored_token(force, stale) or self._fetch_stable_token(force)
                finally:
                    self.release_lock(keys=[self.lock_key], args=[owner])
            # Another worker is refreshing: use what it stores, or take the lock once it lets go.
            token = self._stored_token(force, stale)
            if token is not None:
                return token
            if time.monotonic() > deadline:
                log.warning("wechat POST /cgi-bin/stable_token: refresh lock not released in time")
                raise WeChatUnavailable()
            time.sleep(LOCK_POLL)

    def _stored_token(self, force: bool, stale: str | None) -> str | None:
        token = self.session.get(self.access_token_key)
        if not token or (force and (stale is None or token == stale)):
            return None
        return str(token)

    def _fetch_stable_token(self, force: bool) -> str:
        path = "/cgi-bin/stable_token"
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret,
            "force_refresh": force,
        }
        try:
            reply = self._http.post(self.stable_token_url, json=body, timeout=self.timeout)
            reply.raise_for_status()
            result = reply.json()
        except (requests.RequestException, ValueError) as e:
            log.warning("wechat POST %s failed: %s", path, type(e).__name__)
            raise WeChatUnavailable() from None
        errcode = result.get("errcode", 0) if isinstance(result, dict) else None
        token = result.get("access_token") if isinstance(result, dict) else None
        if errcode != 0 or not isinstance(token, str) or not token:
            log.warning("wechat POST %s errcode=%s", path, errcode)
            raise WeChatUnavailable(errcode if isinstance(errcode, int) else None)
        expires_in = int(result.get("expires_in") or 7200)
        ttl = expires_in - TOKEN_MARGIN if expires_in > 2 * TOKEN_MARGIN else max(1, expires_in // 2)
        self.session.set(self.access_token_key, token, ttl)
        self.expires_at = int(time.time()) + ttl
        log.info("wechat POST %s: new access token (force_refresh=%s)", path, force)
        return token


class _Pay(WeChatPay):
    """wechatpy's Pay v2 client with the base URL from settings (it builds ``{API_BASE_URL}pay/…``)."""

    def __init__(self, settings: WeChatSettings, timeout: float) -> None:
        super().__init__(settings.appid, settings.pay_key, settings.mch_id, timeout=timeout)
        self.API_BASE_URL = f"{settings.pay_base}/"


# --- the adapter --------------------------------------------------------------------------------------


class WeChat:
    """The WeChat mini-program and WeChat Pay APIs the service uses. Synchronous: call it off the loop."""

    # Errcodes every API may answer.
    COMMON_ERRORS: ClassVar[Mapping[int, type[WeChatError]]] = {45009: RateLimited, 45011: RateLimited}

    def __init__(
        self,
        settings: WeChatSettings,
        redis_client: redis.Redis,
        notify_url: str,
        *,
        timeout: float = TIMEOUT,
    ) -> None:
        self.settings = settings
        self.notify_url = notify_url
        self.client = _Client(settings, redis_client, timeout)
        self.pay = _Pay(settings, timeout)

    def close(self) -> None:
        """Close the HTTP connection pools."""
        self.client._http.close()
        self.pay._http.close()

    # --- login and user data ---

    def code_to_session(self, js_code: str) -> WxSession:
        """Exchange a wx.login code for the user's openid (jscode2session); a code works once."""
        # Params as a list of pairs: wechatpy then adds no access_token (jscode2session needs none, and
        # fetching one first would make every login depend on the token endpoint).
        params = [
            ("appid", self.settings.appid),
            ("secret", self.settings.secret),
            ("js_code", js_code),
            ("grant_type", "authorization_code"),
        ]
        result = self._call(
            "GET",
            "sns/jscode2session",
            lambda: self.client.wxa._get("sns/jscode2session", params=params),
            errors={40029: LoginCodeInvalid, 40163: LoginCodeInvalid},
            token_retry=False,
        )
        openid, session_key = result.get("openid"), result.get("session_key")
        if not isinstance(openid, str) or not openid or not isinstance(session_key, str):
            raise self._unexpected("GET", "sns/jscode2session")
        unionid = result.get("unionid")
        return WxSession(
            openid=openid, unionid=unionid if isinstance(unionid, str) else None, session_key=session_key
        )

    def get_phone_number(self, code: str) -> str:
        """The phone number a getPhoneNumber button's code stands for (without +86 for mainland numbers)."""
        path = "wxa/business/getuserphonenumber"
        result = self._post(path, {"code": code}, errors={40029: PhoneCodeInvalid})
        info = result.get("phone_info")
        if not isinstance(info, dict):
            raise self._unexpected("POST", path)
        key = "purePhoneNumber" if str(info.get("countryCode", "86")) == "86" else "phoneNumber"
        phone = info.get(key)
        if not isinstance(phone, str) or not phone:
            raise self._unexpected("POST", path)
        return phone

    def check_text(self, content: str, openid: str) -> bool:
        """Whether msg_sec_check (v2, scene 1 资料) lets ``content`` through; only ``suggest: pass`` does."""
        path = "wxa/msg_sec_check"
        body = {"content": content, "version": 2, "scene": 1, "openid": openid}
        try:
            result = self._post(path, body)
        except WeChatUnavailable as e:
            if e.errcode == 87014:  # v1's "risky content", still seen from v2 now and then
                return False
            raise
        verdict = result.get("result")
        if not isinstance(verdict, dict) or not isinstance(verdict.get("suggest"), str):
            raise self._unexpected("POST", path)
        return verdict["suggest"] == "pass"

    # --- face verification (wx.requestFacialVerify) ---

    def get_verify_id(self, *, out_seq_no: str, name: str, id_number: str, openid: str) -> str:
        """A verify_id binding this identity to this user, for the front end's wx.requestFacialVerify."""
        path = "cityservice/face/identify/getverifyid"
        body = {
            "out_seq_no": out_seq_no,
            "cert_info": {"cert_type": "IDENTITY_CARD", "cert_name": name, "cert_no": id_number},
            "openid": openid,
        }
        verify_id = self._post(path, body).get("verify_id")
        if not isinstance(verify_id, str) or not verify_id:
            raise self._unexpected("POST", path)
        return verify_id

    def query_verify_ret(
        self, *, verify_id: str, out_seq_no: str, name: str, id_number: str, openid: str
    ) -> int:
        """The verify_ret of a finished verification: only 10000 is a pass (``FACE_PASS``); the caller decides."""
        path = "cityservice/face/identify/queryverifyinfo"
        body = {
            "verify_id": verify_id,
            "out_seq_no": out_seq_no,
            "cert_hash": cert_hash(cert_name=name, cert_no=id_number),
            "openid": openid,
        }
        verify_ret = self._post(path, body, errors={84001: VerifyIdInvalid}).get("verify_ret")
        if not isinstance(verify_ret, int) or isinstance(verify_ret, bool):
            raise self._unexpected("POST", path)
        return verify_ret

    # --- subscribe messages ---

    def send_subscribe_message(
        self,
        *,
        touser: str,
        template_id: str,
        data: Mapping[str, str],
        page: str | None = None,
        state: MiniprogramState = "formal",
        lang: str = "zh_CN",
    ) -> None:
        """Send one subscribe message; SubscribeRefused (43101) means the user said no: record, do not retry."""
        body: Json = {
            "touser": touser,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
            "miniprogram_state": state,
            "lang": lang,
        }
        if page is not None:
            body["page"] = page
        self._post(
            "cgi-bin/message/subscribe/send",
            body,
            errors={43101: SubscribeRefused, 47003: TemplateDataInvalid},
        )

    # --- WeChat Pay v2 ---

    def create_jsapi_payment(
        self, *, out_trade_no: str, amount_fen: int, openid: str, description: str, client_ip: str
    ) -> dict[str, str]:
        """Place a JSAPI unified order; answer the signed parameters for ``wx.requestPayment``."""
        path = "pay/unifiedorder"
        try:
            # client_ip always: without it wechatpy resolves api.mch.weixin.qq.com to guess one.
            reply = self.pay.order.create(
                trade_type="JSAPI",
                body=description,
                total_fee=amount_fen,
                notify_url=self.notify_url,
                client_ip=client_ip,
                user_id=openid,
                out_trade_no=out_trade_no,
            )
        except WeChatPayException as e:
            log.warning("wechat POST %s return_code=%s err_code=%s", path, e.return_code, e.errcode)
            if e.errcode in ORDER_REFUSALS:
                raise PaymentRejected(e.errcode) from None
            raise WeChatUnavailable(e.errcode) from None
        except (requests.RequestException, KeyError) as e:
            log.warning("wechat POST %s failed: %s", path, type(e).__name__)
            raise WeChatUnavailable() from None
        # wechatpy does not check the reply's sign; a prepay_id we cannot trust is no prepay_id.
        if not isinstance(reply, dict) or not self.pay.check_signature(dict(reply)):
            raise self._unexpected("POST", path)
        prepay_id = reply.get("prepay_id")
        if not prepay_id:
            raise self._unexpected("POST", path)
        params: dict[str, str] = self.pay.jsapi.get_jsapi_params(prepay_id)
        return params

    def parse_payment_notification(self, body: bytes) -> PaymentNotice:
        """The notification WeChat Pay posted to our notify_url, its sign checked; InvalidPaymentNotification if forged."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            raise InvalidPaymentNotification() from None
        return_code = root.findtext("return_code")
        if root.tag != "xml" or not return_code:
            raise InvalidPaymentNotification()
        if return_code != "SUCCESS":
            # A communication failure carries only return_code/return_msg, and no sign: nothing to act on.
            return PaymentNotice("", 0, "", "", return_code)
        try:
            data = self.pay.parse_payment_result(body)
        except (InvalidSignatureException, ValueError):
            log.warning("wechat payment notification with a bad sign")
            raise InvalidPaymentNotification() from None
        if data.get("appid") != self.settings.appid or data.get("mch_id") != self.settings.mch_id:
            log.warning("wechat payment notification for another appid or merchant")
            raise InvalidPaymentNotification()
        return PaymentNotice(
            out_trade_no=str(data.get("out_trade_no") or ""),
            total_fee=int(data.get("total_fee") or 0),
            transaction_id=str(data.get("transaction_id") or ""),
            openid=str(data.get("openid") or ""),
            result_code=str(data.get("result_code") or "FAIL"),
        )

    @staticmethod
    def payment_ack(ok: bool, msg: str = "OK") -> bytes:
        """The XML answer to a payment notification: SUCCESS stops WeChat's retries, FAIL asks for one."""
        code = "SUCCESS" if ok else "FAIL"
        text = msg.replace("]]>", "]]]]><![CDATA[>")
        return (
            f"<xml><return_code><![CDATA[{code}]]></return_code>"
            f"<return_msg><![CDATA[{text}]]></return_msg></xml>"
        ).encode()

    # --- plumbing ---

    def _post(self, path: str, body: Json, *, errors: Mapping[int, type[WeChatError]] | None = None) -> Json:
        """POST JSON to an API that takes ``?access_token=``."""
        return self._call("POST", path, lambda: self.client.wxa._post(path, data=body), errors=errors)

    def _call(
        self,
        method: str,
        path: str,
        request: Callable[[], Any],
        *,
        errors: Mapping[int, type[WeChatError]] | None = None,
        token_retry: bool = True,
    ) -> Json:
        """Make one call; on 40001/42001 one forced token refresh and one retry; errcodes become our errors."""
        try:
            try:
                result = request()
            except WeChatClientException as e:
                if not token_retry or e.errcode not in TOKEN_ERRCODES:
                    raise
                log.info("wechat %s /%s errcode=%s: refreshing the access token", method, path, e.errcode)
                self.client.fetch_access_token()
                result = request()
        except WeChatClientException as e:
            raise self._error(method, path, e.errcode, errors or {}) from None
        except requests.RequestException as e:
            log.warning("wechat %s /%s failed: %s", method, path, type(e).__name__)
            raise WeChatUnavailable() from None
        if not isinstance(result, dict):
            raise self._unexpected(method, path)
        return result

    def _error(
        self, method: str, path: str, errcode: int | None, errors: Mapping[int, type[WeChatError]]
    ) -> WeChatError:
        log.warning("wechat %s /%s errcode=%s", method, path, errcode)
        if errcode is None:
            return WeChatUnavailable()
        error = errors.get(errcode) or self.COMMON_ERRORS.get(errcode) or WeChatUnavailable
        return error(errcode)

    @staticmethod
    def _unexpected(method: str, path: str) -> WeChatUnavailable:
        log.warning("wechat %s /%s: unexpected reply", method, path)
        return WeChatUnavailable()
