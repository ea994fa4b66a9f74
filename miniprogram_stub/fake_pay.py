"""WeChat Pay v2 (XML): unified order, order query, close order, and the signed payment notification."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
import string
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import aiohttp
from aiohttp import web

from miniprogram_stub.fake_core import (
    ERRCODE,
    SETTINGS,
    FakeSettings,
    Handler,
    add_resettable,
    control_reply,
    read_json,
)

MD5 = "MD5"
HMAC_SHA256 = "HMAC-SHA256"
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST in China, so a fixed offset is exact
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
ALPHANUM = string.ascii_letters + string.digits
UNIFIED_ORDER_REQUIRED = (
    "body",
    "out_trade_no",
    "total_fee",
    "spbill_create_ip",
    "notify_url",
    "trade_type",
)
# Fields that make two unified orders "the same order": wechatpy stamps time_start/time_expire and a
# nonce on every call, so a retry differs only in those and gets the same prepay_id back.
VOLATILE_FIELDS = {"nonce_str", "sign", "sign_type", "time_start", "time_expire", "spbill_create_ip"}
TRADE_STATE_DESC = {"NOTPAY": "订单未支付", "SUCCESS": "支付成功", "CLOSED": "订单已关闭"}


def pay_sign(params: Mapping[str, object], api_key: str, sign_type: str = MD5) -> str:
    """The v2 sign: upper hex of MD5 / HMAC-SHA256 over `k=v&…&key=API_KEY` (sorted, empty and `sign` left out)."""
    pairs = [f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v is not None and str(v) != ""]
    text = "&".join([*pairs, f"key={api_key}"]).encode()
    if sign_type == HMAC_SHA256:
        return hmac.new(api_key.encode(), text, hashlib.sha256).hexdigest().upper()
    return hashlib.md5(text).hexdigest().upper()


def to_xml(fields: Mapping[str, object]) -> str:
    """`<xml>` with each string in CDATA and integers bare, like the platform's own replies."""
    parts = ["<xml>"]
    for k, v in fields.items():
        if isinstance(v, int):
            parts.append(f"<{k}>{v}</{k}>")
        else:
            text = str(v).replace("]]>", "]]]]><![CDATA[>")
            parts.append(f"<{k}><![CDATA[{text}]]></{k}>")
    parts.append("</xml>")
    return "".join(parts)


def parse_xml(body: bytes) -> dict[str, str] | None:
    """The flat `<xml>` document as a dict, or None if it is not one."""
    try:
        root = ET.fromstring(body.decode("utf-8"))
    except (ET.ParseError, UnicodeDecodeError):
        return None
    if root.tag != "xml":
        return None
    return {child.tag: (child.text or "").strip() for child in root}


def nonce() -> str:
    return "".join(secrets.choice(ALPHANUM) for _ in range(32))


class PayFailure(Exception):
    """A request refused at the communication level (`return_code=FAIL`)."""

    def __init__(self, return_msg: str) -> None:
        super().__init__(return_msg)
        self.return_msg = return_msg


class BusinessFailure(Exception):
    """A request refused at the business level (`result_code=FAIL` + `err_code`)."""

    def __init__(self, err_code: str, err_code_des: str) -> None:
        super().__init__(err_code)
        self.err_code = err_code
        self.err_code_des = err_code_des


@dataclass
class Order:
    out_trade_no: str
    fingerprint: dict[str, str]
    prepay_id: str
    sign_type: str
    total_fee: int
    openid: str
    notify_url: str
    attach: str
    state: str = "NOTPAY"
    transaction_id: str | None = None
    time_end: str | None = None


@dataclass
class Orders:
    settings: FakeSettings
    by_out_trade_no: dict[str, Order] = field(default_factory=dict)

    def reset(self) -> None:
        self.by_out_trade_no.clear()

    def find(self, fields: Mapping[str, str]) -> Order:
        if transaction_id := fields.get("transaction_id"):
            for order in self.by_out_trade_no.values():
                if order.transaction_id == transaction_id:
                    return order
        elif out_trade_no := fields.get("out_trade_no"):
            if found := self.by_out_trade_no.get(out_trade_no):
                return found
        else:
            raise BusinessFailure("LACK_PARAMS", "缺少参数: out_trade_no 或 transaction_id")
        raise BusinessFailure("ORDERNOTEXIST", "订单不存在")

    def pay(self, order: Order) -> None:
        if order.transaction_id is None:
            order.transaction_id, order.time_end = new_transaction(self.settings)
        order.state = "SUCCESS"


def new_transaction(settings: FakeSettings) -> tuple[str, str]:
    """A transaction_id (28 digits, like `4200001234202401011234567890`) and its time_end."""
    now = datetime.fromtimestamp(settings.clock(), CHINA)
    digits = "".join(secrets.choice(string.digits) for _ in range(15))
    return "42000" + now.strftime("%Y%m%d") + digits, now.strftime("%Y%m%d%H%M%S")


ORDERS = web.AppKey("fake_orders", Orders)
NOTIFY_HTTP = web.AppKey("fake_notify_http", aiohttp.ClientSession)


def _signed_reply(settings: FakeSettings, fields: dict[str, object], sign_type: str) -> web.Response:
    base: dict[str, object] = {
        "return_code": "SUCCESS",
        "return_msg": "OK",
        "appid": settings.appid,
        "mch_id": settings.mch_id,
        "nonce_str": nonce(),
        **fields,
    }
    base["sign"] = pay_sign(base, settings.pay_api_key, sign_type)
    return web.Response(text=to_xml(base), content_type="text/xml", charset="utf-8")


def return_failure(return_msg: str) -> web.Response:
    """`return_code=FAIL`: unsigned, as the platform sends it."""
    fields = {"return_code": "FAIL", "return_msg": return_msg}
    response = web.Response(text=to_xml(fields), content_type="text/xml", charset="utf-8")
    response[ERRCODE] = "FAIL"
    return response


def business_failure(
    settings: FakeSettings, err_code: str, err_code_des: str, sign_type: str = MD5
) -> web.Response:
    fields: dict[str, object] = {"result_code": "FAIL", "err_code": err_code, "err_code_des": err_code_des}
    response = _signed_reply(settings, fields, sign_type)
    response[ERRCODE] = err_code
    return response


def injected_failure(settings: FakeSettings, errcode: int | str) -> web.Response:
    """The reply for an error injected with `/_fake/errors`: a string is an err_code, a number a return_msg."""
    if isinstance(errcode, str):
        return business_failure(settings, errcode, f"injected {errcode}")
    return return_failure(f"SYSTEMERROR injected {errcode}")


def pay_api(handler: Handler) -> Handler:
    """Turn PayFailure/BusinessFailure into the platform's XML replies."""

    @functools.wraps(handler)
    async def replying(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PayFailure as e:
            return return_failure(e.return_msg)
        except BusinessFailure as e:
            return business_failure(request.app[SETTINGS], e.err_code, e.err_code_des)

    return replying


async def _signed_request(request: web.Request) -> tuple[dict[str, str], str]:
    """The request's fields and sign_type, once the XML, merchant, appid and sign check out."""
    settings = request.app[SETTINGS]
    body = await request.read()
    if not body.strip():
        raise PayFailure("POST_DATA_EMPTY")
    fields = parse_xml(body)
    if fields is None:
        raise PayFailure("XML格式错误")
    for name in ("appid", "mch_id", "nonce_str", "sign"):
        if not fields.get(name):
            raise PayFailure(f"缺少参数{name}")
    sign_type = fields.get("sign_type") or MD5
    if sign_type not in (MD5, HMAC_SHA256):
        raise PayFailure("签名类型错误")
    if fields["mch_id"] != settings.mch_id:
        raise BusinessFailure("MCHID_NOT_EXIST", "mch_id不存在")
    if fields["appid"] != settings.appid:
        raise BusinessFailure("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
    expected = pay_sign(fields, settings.pay_api_key, sign_type)
    if not hmac.compare_digest(fields["sign"].encode(), expected.encode()):
        raise PayFailure("签名错误")
    return fields, sign_type


def _check_unified_order(fields: Mapping[str, str]) -> int:
    """The total_fee of a well-formed JSAPI order; BusinessFailure otherwise."""
    missing = [name for name in UNIFIED_ORDER_REQUIRED if not fields.get(name)]
    if fields.get("trade_type") == "JSAPI" and not fields.get("openid"):
        missing.append("openid")
    if missing:
        raise BusinessFailure("LACK_PARAMS", f"缺少参数: {', '.join(missing)}")
    if fields["trade_type"] != "JSAPI":
        raise BusinessFailure("INVALID_REQUEST", "trade_type 只支持 JSAPI")
    if not OUT_TRADE_NO.match(fields["out_trade_no"]):
        raise BusinessFailure("INVALID_REQUEST", "out_trade_no 格式错误")
    if len(fields["body"].encode()) > 128:
        raise BusinessFailure("INVALID_REQUEST", "body 超长")
    if not fields["total_fee"].isdigit() or int(fields["total_fee"]) <= 0:
        raise BusinessFailure("INVALID_REQUEST", "total_fee 格式错误")
    if fields.get("fee_type", "CNY") != "CNY":
        raise BusinessFailure("INVALID_REQUEST", "fee_type 只支持 CNY")
    try:
        ipaddress.ip_address(fields["spbill_create_ip"])
    except ValueError:
        raise BusinessFailure("INVALID_REQUEST", "spbill_create_ip 格式错误") from None
    if not fields["notify_url"].startswith(("http://", "https://")) or "?" in fields["notify_url"]:
        raise BusinessFailure("INVALID_REQUEST", "notify_url 格式错误")
    return int(fields["total_fee"])


@pay_api
async def unified_order(request: web.Request) -> web.StreamResponse:
    """`POST /pay/unifiedorder`."""
    settings, orders = request.app[SETTINGS], request.app[ORDERS]
    fields, sign_type = await _signed_request(request)
    total_fee = _check_unified_order(fields)
    fingerprint = {k: v for k, v in fields.items() if k not in VOLATILE_FIELDS}
    order = orders.by_out_trade_no.get(fields["out_trade_no"])
    if order is not None:
        if order.state == "SUCCESS":
            raise BusinessFailure("ORDERPAID", "该订单已支付")
        if order.state == "CLOSED":
            raise BusinessFailure("ORDERCLOSED", "该订单已关闭")
        if order.fingerprint != fingerprint:
            raise BusinessFailure("OUT_TRADE_NO_USED", "商户订单号重复")
    else:
        now = datetime.fromtimestamp(settings.clock(), CHINA)
        order = Order(
            out_trade_no=fields["out_trade_no"],
            fingerprint=fingerprint,
            prepay_id="wx" + now.strftime("%Y%m%d%H%M%S") + secrets.token_hex(10),  # 36 chars like the doc's
            sign_type=sign_type,
            total_fee=total_fee,
            openid=fields["openid"],
            notify_url=fields["notify_url"],
            attach=fields.get("attach", ""),
        )
        orders.by_out_trade_no[order.out_trade_no] = order
    reply = {"result_code": "SUCCESS", "trade_type": "JSAPI", "prepay_id": order.prepay_id}
    return _signed_reply(settings, dict(reply), sign_type)


def _paid_fields(order: Order) -> dict[str, object]:
    return {
        "openid": order.openid,
        "is_subscribe": "N",
        "trade_type": "JSAPI",
        "bank_type": "OTHERS",
        "cash_fee": order.total_fee,
        "transaction_id": order.transaction_id or "",
        "time_end": order.time_end or "",
    }


@pay_api
async def order_query(request: web.Request) -> web.StreamResponse:
    """`POST /pay/orderquery` by transaction_id or out_trade_no."""
    fields, sign_type = await _signed_request(request)
    order = request.app[ORDERS].find(fields)
    reply: dict[str, object] = {
        "result_code": "SUCCESS",
        "out_trade_no": order.out_trade_no,
        "trade_state": order.state,
        "trade_state_desc": TRADE_STATE_DESC[order.state],
        "total_fee": order.total_fee,
        "fee_type": "CNY",
    }
    if order.attach:
        reply["attach"] = order.attach
    if order.state == "SUCCESS":
        reply.update(_paid_fields(order))
    return _signed_reply(request.app[SETTINGS], reply, sign_type)


@pay_api
async def close_order(request: web.Request) -> web.StreamResponse:
    """`POST /pay/closeorder`."""
    fields, sign_type = await _signed_request(request)
    if not fields.get("out_trade_no"):
        raise BusinessFailure("LACK_PARAMS", "缺少参数: out_trade_no")
    order = request.app[ORDERS].find({"out_trade_no": fields["out_trade_no"]})
    if order.state == "SUCCESS":
        raise BusinessFailure("ORDERPAID", "订单已支付，不能发起关单")
    if order.state == "CLOSED":
        raise BusinessFailure("ORDERCLOSED", "订单已关闭，无法重复关闭")
    order.state = "CLOSED"
    return _signed_reply(request.app[SETTINGS], {"result_code": "SUCCESS"}, sign_type)


def notification(settings: FakeSettings, order: Order, total_fee: int | None, forge: bool) -> str:
    """The XML the platform posts to notify_url once the user has paid."""
    fields: dict[str, object] = {
        "appid": settings.appid,
        "mch_id": settings.mch_id,
        "nonce_str": nonce(),
        "result_code": "SUCCESS",
        "return_code": "SUCCESS",
        "out_trade_no": order.out_trade_no,
        "fee_type": "CNY",
        "total_fee": order.total_fee if total_fee is None else total_fee,
        **_paid_fields(order),
    }
    if total_fee is not None:
        fields["cash_fee"] = total_fee
    if order.attach:
        fields["attach"] = order.attach
    if order.sign_type == HMAC_SHA256:
        fields["sign_type"] = HMAC_SHA256
    key = settings.pay_api_key if not forge else "forged-" + secrets.token_hex(8)
    fields["sign"] = pay_sign(fields, key, order.sign_type)
    return to_xml(dict(sorted(fields.items())))


async def notify_payment(request: web.Request) -> web.Response:
    """`POST /_fake/pay/notify {out_trade_no, total_fee?, forge?}`: the user paid; post the notification."""
    body = await read_json(request)
    settings, orders = request.app[SETTINGS], request.app[ORDERS]
    order = orders.by_out_trade_no.get(str(body.get("out_trade_no")))
    if order is None:
        return control_reply({"error": "unknown out_trade_no"}, 404)
    if order.state == "CLOSED":
        return control_reply({"error": "order closed"}, 409)
    total_fee, forge = body.get("total_fee"), bool(body.get("forge", False))
    if total_fee is not None and (not isinstance(total_fee, int) or isinstance(total_fee, bool)):
        return control_reply({"error": "total_fee must be an integer (fen)"}, 400)
    if not forge:
        orders.pay(order)
    elif order.transaction_id is None:
        # A forger invents a transaction; the platform's own order stays unpaid.
        transaction_id, time_end = new_transaction(settings)
        order = dataclasses.replace(order, transaction_id=transaction_id, time_end=time_end)
    xml = notification(settings, order, total_fee, forge)
    try:
        async with request.app[NOTIFY_HTTP].post(
            order.notify_url,
            data=xml.encode(),
            headers={"Content-Type": "text/xml"},
            timeout=aiohttp.ClientTimeout(total=settings.notify_timeout),
        ) as answer:
            return control_reply({"status": answer.status, "body": await answer.text()})
    except (aiohttp.ClientError, TimeoutError) as e:
        return control_reply({"status": None, "error": f"notify_url unreachable: {type(e).__name__}"}, 502)


async def _notify_http(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[NOTIFY_HTTP] = session
        yield


def setup_pay(app: web.Application, settings: FakeSettings) -> None:
    orders = Orders(settings)
    app[ORDERS] = orders
    add_resettable(app, orders)
    app.cleanup_ctx.append(_notify_http)
    app.router.add_post("/pay/unifiedorder", unified_order)
    app.router.add_post("/pay/orderquery", order_query)
    app.router.add_post("/pay/closeorder", close_order)
    app.router.add_post("/_fake/pay/notify", notify_payment)
