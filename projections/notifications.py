"""WeChat subscribe messages to the parent at every step: a process that follows the event log.

``NotificationProcess`` is a ``View`` for ``projections.runner.LogFollower`` whose ``apply`` has a side
effect: for each ``Rejected``, ``Issued``, ``Reissued``, ``CertificateReplaced`` (the institution's own
misprint or damage: "已换发新证" with the new number), ``Dispatched`` and ``Delivered`` event it sends
one subscribe message to the applicant's WeChat openid, through an outbox in Redis. Two more kinds tell
the parent that her part is to do again or elsewhere:

- ``corrected`` (``DeliveryRecordRefreshed``): the hospital corrected the delivery record and the parent
  must act, i.e. the application was under review and went back to her (已退回), or the correction voided
  a signature she had given (待重新签名), or it answers her dispute of the record (待确认). A correction
  before she has signed or disputed anything sends nothing: the mini-program puts the corrected record in
  front of her at the confirmation step she has still to take (see ``correction_step``).
- ``upheld`` (``DeliveryRecordUpheld``): the hospital answered her dispute that the record stands, with its
  reason (待确认); ``record_entered`` (``AwaitedDeliveryRecorded``): the record she reported missing is entered,
  hers to look at (已录入). Both on the ``corrected`` template: the same keys, the same kind of news.
- ``revoked`` (``CertificateRevoked``): the issuing institution declared the certificate void (已作废, decision
  0040), on the ``referred`` template: the ground in words, and to go to the counter; never the issuer's note.
- ``referred`` (``ReferredToCounter``): she can no longer go on online (转现场办理). The ``Rejected`` that
  triggers a referral (the same command, so the next event of the application) is recorded ``skipped``
  with the note ``referred`` instead of being sent: "已退回" would ask her to fix and resubmit, which she
  cannot do.

**Exactly once per event, as far as WeChat allows.**
1. *Record.* For a page, one Lua script writes a record for every message to send
   (``bc:notify:msg:<position>``, a hash, state ``pending``), queues it (``bc:notify:due``), indexes it
   per application (``bc:notify:app:<uuid>``) and moves ``bc:notify:position``, refusing a position that
   does not increase. A crash before the script forgets nothing (the page is read again); after it,
   every intent is recorded once (a page applied twice, or by two followers, records nothing new).
2. *Deliver,* in position order, on the I/O executor (the adapter is synchronous). A message is first
   *claimed*: a script moves it ``pending → sending`` with a lease and an owner token, so two deliverers
   (the follower's ``apply`` and ``run()``, or two processes) never send the same message. Then:
   ``ok`` → ``sent`` (+ ``sent_at``); 43101 → ``refused``, never retried; 47003 → ``failed`` (our bug:
   the errcode is logged, never the data); an unreachable or rate-limited WeChat → back to ``pending``
   with ``attempts`` + 1 and ``next_attempt_at`` (exponential backoff, 1 s … 10 min), ``failed`` once
   the message is older than ``give_up_after`` (24 h). ``run()`` delivers the retries when they fall due.
   A later message of an application waits while an earlier one is pending (a parent never reads
   "已预约揽收" before "已签发").
3. *The one window left.* WeChat offers no idempotency key. If the process dies after WeChat answered
   ``ok`` and before the ``sent`` mark, the claim's lease (``lease`` seconds) runs out and the message
   is sent **once more**. The window is that one HTTP call: the ``sending`` mark is written before it.
4. *One process at a time* (decision 0024): the process runs on the elected leader only, and with a
   ``fence`` the page's script and every claim refuse a term older than the newest leader's (``Fenced``).
   The outcome of a send already made is still recorded (``FINISH_LUA`` checks the owner token only): it
   is a fact, and refusing it would send the message again.

Provincial-app logins (``applicant_id`` ``yss:…``, ``bjt:…``: docs/decisions/0030) have no WeChat openid:
their messages go through that app's message push (``pushes``, by channel), recorded and delivered the
same way (``touser`` is then the actor id, ``template`` the message kind); they are recorded ``skipped``
(``no_channel``) where the app is not configured. WeChat messages of kinds ``templates`` has no template
for are recorded ``skipped`` too. Finished records (sent, refused, failed, skipped)
keep 30 days for the console, without the openid or the message data; while pending, a record holds the
openid (WeChat must get it) and the message data sealed (AES-256-GCM under HKDF(the at-rest key,
``birthcert outbox v1``), bound to the record's key; decision 0042): the certificate or tracking number, the
labels of a rejection's reason codes (domain/rejection.py: never the issuer's own words, which may name a
person; docs/decisions/0045) or the hospital's reason for a correction, with anything that looks like an ID or
phone number masked, an institution name. No names.

The outbox is not a rebuildable view (decision 0007's other keys are): losing Redis loses the
pending messages. A process whose position is missing (first start, Redis lost, ``reset()``) starts
at the **end** of the log by default, so it never re-sends history; ``start="beginning"`` is for tests.
Keys are computed outside Lua (Redis Cluster would still need a hash tag on the prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag

from backend.storage import derive_aead
from backend.wechat import (
    MiniprogramState,
    SubscribeRefused,
    TemplateDataInvalid,
    WeChat,
    WeChatError,
)
from domain.application import SUBMITTED, BirthCertificateApplication
from domain.channels import channel_of
from domain.referral import label_of as referral_label
from domain.rejection import labels_in_a_thing as rejection_labels
from domain.revocation import label_of as revocation_label
from domain.service import Applications
from projections.leader import FENCE_LUA, fenced_args, refused
from projections.redis_view import delete_prefix
from projections.runner import Fence, Fenced, Page

log = logging.getLogger(__name__)

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
JSON = dict[str, Any]
DAY: Final = 24 * 3600
RETENTION_SECONDS: Final = 30 * DAY
OUTBOX_KEY_INFO: Final = b"birthcert outbox v1"
NONCE_BYTES: Final = 12
# Errcodes that will not get better by retrying (the adapter reports them as WeChatUnavailable):
# 40003 invalid openid, 40037 invalid template_id, 41030 invalid page, 47001 malformed body.
PERMANENT_ERRCODES: Final = frozenset({40003, 40037, 41030, 47001})

# Kinds of message, the template each uses, and the event class behind it.
REJECTED, ISSUED, REISSUED, DISPATCHED, DELIVERED, CORRECTED, REFERRED, REPLACED = (
    "rejected",
    "issued",
    "reissued",
    "dispatched",
    "delivered",
    "corrected",
    "referred",
    "replaced",
)
UPHELD, RECORD_ENTERED, REVOKED = "upheld", "record_entered", "revoked"
# 出生一件事: a department finished one service (decision 0046): one message per service done, and one per
# service refused (she must take it up with that department: the reason is in her status view).
BUNDLE_DONE: Final = "bundle_done"
BUNDLE_REFUSED: Final = "bundle_refused"
TEMPLATE_KIND: Final = {
    REJECTED: REJECTED,
    ISSUED: ISSUED,
    REISSUED: ISSUED,
    REPLACED: ISSUED,
    DISPATCHED: DISPATCHED,
    DELIVERED: DELIVERED,
    CORRECTED: CORRECTED,
    UPHELD: CORRECTED,
    RECORD_ENTERED: CORRECTED,
    REFERRED: REFERRED,
    REVOKED: REFERRED,
    BUNDLE_DONE: CORRECTED,
    BUNDLE_REFUSED: CORRECTED,
}
KIND_OF_EVENT: Final[Mapping[type[Any], str]] = {
    BirthCertificateApplication.Rejected: REJECTED,
    BirthCertificateApplication.Issued: ISSUED,
    BirthCertificateApplication.Reissued: REISSUED,
    BirthCertificateApplication.CertificateReplaced: REPLACED,
    BirthCertificateApplication.Dispatched: DISPATCHED,
    BirthCertificateApplication.Delivered: DELIVERED,
    BirthCertificateApplication.DeliveryRecordRefreshed: CORRECTED,
    BirthCertificateApplication.ReferredToCounter: REFERRED,
    BirthCertificateApplication.DeliveryRecordUpheld: UPHELD,
    BirthCertificateApplication.AwaitedDeliveryRecorded: RECORD_ENTERED,
    BirthCertificateApplication.CertificateRevoked: REVOKED,
    BirthCertificateApplication.BundleServiceUpdated: BUNDLE_DONE,
}
SUBJECT: Final = "出生医学证明申领"

# What a correction of the delivery record asks of the parent (``correction_step``): the status word
# (phrase, at most 5 characters) and what to do (thing, at most 20).
RETURNED_RESIGN, RETURNED_CONFIRM, RESIGN, CONFIRM = (
    "returned_resign",
    "returned_confirm",
    "resign",
    "confirm",
)
CORRECTION_WORDING: Final[Mapping[str, tuple[str, str]]] = {
    RETURNED_RESIGN: ("已退回", "请核对分娩信息，重新签名后提交"),
    RETURNED_CONFIRM: ("已退回", "请核对分娩信息，确认后重新提交"),
    RESIGN: ("待重新签名", "请核对分娩信息，重新签名后提交"),
    CONFIRM: ("待确认", "请核对更正后的分娩信息并确认"),
}
# Why an application went to the counter (``ReferredToCounter.reason``) is told by domain.referral.label_of;
# the status view names the counter and what to bring.
COUNTER_ADVICE: Final = "请携带相关材料到签发机构现场办理"
# An issuer's revocation (decision 0040): the old paper and e-licence are void; the counter says what next.
REVOKED_ADVICE: Final = "原证件停止使用，详询签发机构"
BUNDLE_SUBJECT: Final = "新生儿出生一件事"
BUNDLE_ADVICE: Final = "请在小程序查看办理结果"
BUNDLE_REFUSED_ADVICE: Final = "请在小程序查看原因并联系办理部门"

# Record states.
PENDING, SENDING, SENT, REFUSED, FAILED, SKIPPED = (
    "pending",
    "sending",
    "sent",
    "refused",
    "failed",
    "skipped",
)
FINISHED: Final = frozenset({SENT, REFUSED, FAILED, SKIPPED})

# --------------------------------------------------------------------------------- fitting values

HAN: Final = "\u4e00-\u9fff\u3400-\u4dbf"
_HAN_CHAR: Final = re.compile(f"[{HAN}]")
_CLOCK: Final = r"(?:[01]?\d|2[0-3]):[0-5]\d"
_DAY: Final = r"\d{4}年\d{1,2}月\d{1,2}日"
TIME_VALUE: Final = re.compile(rf"^(?:{_DAY} )?{_CLOCK}$")
DATE_VALUE: Final = re.compile(rf"^{_DAY}$")
THING_MAX: Final = 20
PHRASE_MAX: Final = 5
CHARACTER_STRING_MAX: Final = 32
ELLIPSIS: Final = "…"
FALLBACKS: Final = {"thing": "—", "phrase": "有更新", "character_string": "-"}
# Line breaks and other separators become spaces; every other control, format, private-use,
# surrogate or unassigned character is dropped.
_SPACES: Final = frozenset("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85")
# What looks like a resident ID number (18 or 15 digits) or a mainland mobile number.
_PERSONAL_NUMBER: Final = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15}|1[3-9]\d{9})(?![0-9A-Za-z])")


def _clean(value: str) -> str:
    out = []
    for char in value:
        category = unicodedata.category(char)
        if char in _SPACES or category in ("Zs", "Zl", "Zp"):
            out.append(" ")
        elif not category.startswith("C"):
            out.append(char)
    return " ".join("".join(out).split())


def _moment(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(SHANGHAI)


def _day(moment: datetime) -> str:
    return f"{moment.year:04d}年{moment.month}月{moment.day}日"


def fit(kind: str, value: str | datetime) -> str:
    """``value`` made to fit a subscribe-message key of type ``kind`` (``thing``, ``thing3``, ``time4`` …).

    - ``thing``: at most 20 characters, cut with an ellipsis;
    - ``phrase``: Chinese characters only, at most 5;
    - ``character_string``: printable ASCII without spaces (full-width forms folded), at most 32;
    - ``time`` / ``date``: a datetime (naive = UTC) shown in Beijing time as ``2026年11月22日 10:30`` /
      ``2026年11月22日``; a string is kept if it already has that form, else read as ISO 8601
      (``ValueError`` if it is not a time at all).

    Line breaks become spaces, runs of spaces one space, control and invisible characters go. A value
    that would come out empty becomes a neutral placeholder, so any string yields a value WeChat takes.
    ``fit`` is idempotent. ``ValueError`` for a type it does not know.
    """
    prefix = kind.rstrip("0123456789")
    if prefix in ("time", "date"):
        return _fit_moment(prefix, value)
    if isinstance(value, datetime):
        raise ValueError(f"a datetime does not fit a {prefix} key")
    if prefix == "thing":
        text = _clean(value)
        if len(text) > THING_MAX:
            text = text[: THING_MAX - 1].rstrip() + ELLIPSIS
    elif prefix == "phrase":
        text = "".join(_HAN_CHAR.findall(unicodedata.normalize("NFKC", value)))[:PHRASE_MAX]
    elif prefix == "character_string":
        folded = unicodedata.normalize("NFKC", value)
        text = "".join(c for c in folded if "\x21" <= c <= "\x7e")[:CHARACTER_STRING_MAX]
    else:
        raise ValueError(f"no rule for subscribe-message keys of type {prefix!r}")
    return text or FALLBACKS[prefix]


def _fit_moment(prefix: str, value: str | datetime) -> str:
    if isinstance(value, str):
        text = _clean(value)
        if (TIME_VALUE if prefix == "time" else DATE_VALUE).match(text):
            return text
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not a {prefix}") from None
    try:
        moment = _moment(value)
    except OverflowError:
        raise ValueError(f"{prefix} out of range") from None
    return _day(moment) if prefix == "date" else f"{_day(moment)} {moment:%H:%M}"


def mask_personal_numbers(text: str) -> str:
    """Replace what looks like an ID or mobile number (issuers quote them in reasons) with ``***``."""
    return _PERSONAL_NUMBER.sub("***", text)


def correction_step(before: BirthCertificateApplication, after: BirthCertificateApplication) -> str | None:
    """What a correction of the delivery record asks of the parent, or None when it needs no message.

    ``before`` and ``after`` are the application just before and just after ``DeliveryRecordRefreshed``.
    Under review, the application goes back to her (``returned_*``). Else she is told only when the
    correction undoes something she did and believes finished: a signature it voids (``resign``), or a
    dispute it answers (``confirm``). Before she has signed or disputed, the corrected record waits at the
    confirmation step in front of her, and a message would spend a one-time subscription for nothing.
    """
    voided = before.signature_valid and not after.signature_valid
    if before.state == SUBMITTED:
        return RETURNED_RESIGN if voided else RETURNED_CONFIRM
    if voided:
        return RESIGN
    if before.delivery_confirmed is False:
        return CONFIRM
    return None


def _progress(status: str, what: str, advice: str, when: str) -> dict[str, str]:
    """The data of the progress template (corrected, upheld, record_entered, referred): the subject, a status
    phrase, what happened, what to do, when."""
    return {"thing1": SUBJECT, "phrase2": status, "thing3": what, "thing4": advice, "time5": when}


def _reason_or(reason: str, otherwise: str) -> str:
    """The hospital's reason fitted to a thing (personal numbers masked), or ``otherwise`` when it is blank."""
    why = fit("thing", mask_personal_numbers(reason))
    return otherwise if why == FALLBACKS["thing"] else why


def message_data(
    kind: str,
    at: datetime,
    *,
    reason: str = "",
    number: str = "",
    institution: str = "",
    carrier: str = "EMS",
    step: str = RETURNED_RESIGN,
) -> dict[str, str]:
    """The data of one subscribe message (keys as the templates in WeChatSettings.templates have them).

    ``reason``: the labels of a rejection's codes (``domain.rejection.labels_in_a_thing``), the hospital's
    reason for a correction, the code of a referral to the counter or of a revocation's ground; ``number``: the
    certificate number (issued, reissued) or the tracking number (dispatched); ``institution``: the issuing
    institution's name; ``step``: what a correction asks of the parent (``correction_step``); ``at``: the
    event's time.
    """
    when = fit("time", at)
    if kind == CORRECTED:
        status, advice = CORRECTION_WORDING[step]
        return _progress(status, _reason_or(reason, "医院更正了分娩信息"), advice, when)
    if kind == UPHELD:
        return _progress(
            "待确认", _reason_or(reason, "医院答复分娩信息无误"), "医院已答复异议，请核对后确认", when
        )
    if kind == RECORD_ENTERED:
        return _progress(
            "已录入", fit("thing", f"{institution or '医院'}已录入分娩信息"), "请查看并确认分娩信息", when
        )
    if kind == REFERRED:
        return _progress("转现场办理", fit("thing", referral_label(reason)), COUNTER_ADVICE, when)
    if kind == REVOKED:
        return _progress("已作废", fit("thing", revocation_label(reason)), REVOKED_ADVICE, when)
    if kind in (BUNDLE_DONE, BUNDLE_REFUSED):  # ``reason``: the service's name (户口登记): never its result
        done = kind == BUNDLE_DONE
        outcome = "已办结" if done else "未予办理"
        return {
            "thing1": BUNDLE_SUBJECT,
            "phrase2": outcome,
            "thing3": fit("thing", f"{reason}{outcome}"),
            "thing4": BUNDLE_ADVICE if done else BUNDLE_REFUSED_ADVICE,
            "time5": when,
        }
    if kind == REJECTED:
        return {
            "thing1": SUBJECT,
            "phrase2": "已退回",
            "thing3": fit("thing", mask_personal_numbers(reason)),
            "time4": when,
        }
    if kind in (ISSUED, REISSUED, REPLACED):
        return {
            "character_string1": fit("character_string", number),
            "phrase2": {ISSUED: "已签发", REISSUED: "已补发", REPLACED: "已换发新证"}[kind],
            "thing3": fit("thing", institution or "签发机构"),
            "time4": when,
        }
    if kind == DISPATCHED:
        return {
            "character_string1": fit("character_string", number),
            "phrase2": "已预约揽收",
            "thing3": "邮政速递" if carrier.upper() == "EMS" else fit("thing", carrier),
            "time4": when,
        }
    if kind == DELIVERED:
        return {"phrase1": "已签收", "thing2": "出生医学证明已送达，请查收", "time3": when}
    raise ValueError(f"unknown message kind {kind!r}")


# --------------------------------------------------------------------------------- Redis scripts

# KEYS: position, due, then per message its record and its application's index.
# ARGV: new position, n, retention, then per message: position, state, due score, fields (JSON array); last,
# the position the page was read from (compare-and-set: the page applies only on top of it). Last, the
# fence key and the leader's term (FENCE_LUA).
RECORD_PAGE_LUA: Final = (
    FENCE_LUA
    + """
local n = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[4 + 4 * n]) then
  return 0
end
for i = 1, n do
  local record, index = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local position, state, due = ARGV[4 * i], ARGV[4 * i + 1], ARGV[4 * i + 2]
  if redis.call('EXISTS', record) == 0 then
    redis.call('HSET', record, unpack(cjson.decode(ARGV[4 * i + 3])))
    redis.call('ZADD', index, position, position)
    redis.call('EXPIRE', index, ARGV[3])
    if state == 'pending' then
      redis.call('ZADD', KEYS[2], due, position)
    else
      redis.call('EXPIRE', record, ARGV[3])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
)

# KEYS: record, due, the fence key. ARGV: position, now, lease until, owner token, the leader's term.
# Returns {attempts, touser, template, data, created_at, kind}, or an empty table when not claimable.
CLAIM_LUA: Final = (
    FENCE_LUA
    + """
local r = redis.call('HMGET', KEYS[1], 'state', 'next_attempt_at', 'lease_until')
local state, now = r[1], tonumber(ARGV[2])
if not state then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {}
end
if state == 'pending' then
  if tonumber(r[2] or '0') > now then return {} end
elseif state == 'sending' then
  if tonumber(r[3] or '0') > now then return {} end
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'sending', 'lease_until', ARGV[3], 'owner', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local m = redis.call('HMGET', KEYS[1], 'touser', 'template', 'data', 'created_at', 'kind')
return {attempts, m[1], m[2], m[3], m[4], m[5]}
"""
)

# KEYS: record, due, the application's index. ARGV: position, owner token, new state, now,
# next attempt (pending) , errcode ('' for none), retention.
FINISH_LUA: Final = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then
  return 0
end
local state = ARGV[3]
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'errcode', ARGV[6])
end
if state == 'pending' then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'next_attempt_at', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], 'state', state, 'finished_at', ARGV[4])
if state == 'sent' then
  redis.call('HSET', KEYS[1], 'sent_at', ARGV[4])
end
redis.call('HDEL', KEYS[1], 'touser', 'next_attempt_at', 'data')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[7])
return 1
"""


@dataclass(frozen=True)
class _Intent:
    """One message to record: ``state`` pending, or skipped with a ``note`` (no_channel, no_template, referred)."""

    position: int
    app_id: str
    kind: str
    state: str
    at: float
    touser: str = ""
    template: str = ""
    data: Mapping[str, str] | None = None
    note: str = ""


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _iso(epoch: str) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(float(epoch), SHANGHAI).isoformat(timespec="seconds")


class Push(Protocol):
    """A provincial app's message push (``backend.channels.ProvincialApp``): raises ``SubscribeRefused``,
    ``TemplateDataInvalid`` or ``WeChatUnavailable`` kinds of error as WeChat's send does."""

    def push(self, *, subject: str, kind: str, data: Mapping[str, str], page: str) -> None:
        """Send one message to the app's user ``subject``."""
        ...


class PositionFloor(Protocol):
    """A copy of a process's position kept beside the events (``projections.sql.DurablePosition``)."""

    async def get(self) -> int | None:
        """The last position recorded, or None before any."""
        ...

    async def set(self, position: int) -> None:
        """Record the position reached (it never goes back)."""
        ...


class NotificationProcess:
    """Subscribe messages for the steps of an application: a ``View`` for ``LogFollower``, plus ``run()``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        applications: Applications,
        store_executor: Executor,
        io_executor: Executor,
        wechat: WeChat,
        templates: Mapping[str, str],
        *,
        seal_key: bytes,
        page: str = "pages/application/status",
        clock: Callable[[], float] = time.time,
        key_prefix: str = "bc:",
        start: Literal["end", "beginning"] = "end",
        miniprogram_state: MiniprogramState = "formal",
        backoff: tuple[float, float] = (1.0, 600.0),
        give_up_after: float = DAY,
        lease: float = 120.0,
        retention: int = RETENTION_SECONDS,
        idle_interval: float = 5.0,
        floor: PositionFloor | None = None,
        fence: Fence | None = None,
        pushes: Mapping[str, Push] | None = None,
    ) -> None:
        if backoff[0] <= 0 or backoff[1] < backoff[0]:
            raise ValueError("backoff must be (first > 0, most >= first)")
        self.redis = redis
        self.applications = applications
        self.store_executor = store_executor
        self.io_executor = io_executor
        self.wechat = wechat
        self.templates = dict(templates)
        self._aead = derive_aead(seal_key, OUTBOX_KEY_INFO)  # seal_key: the service's at-rest key
        # The provincial apps' message pushes, by channel name (docs/decisions/0030).
        self.pushes = dict(pushes or {})
        self.page = page
        self.clock = clock
        self.start = start
        self.miniprogram_state: MiniprogramState = miniprogram_state
        self.backoff = backoff
        self.give_up_after = give_up_after
        self.lease = lease
        self.retention = retention
        self.idle_interval = idle_interval
        self.floor = floor
        # The leader's term (projections.leader): outbox writes and claims are refused under an older one.
        self.fence = fence
        self.key_prefix = key_prefix
        self.prefix = f"{key_prefix}notify:"
        self.position_key = f"{self.prefix}position"
        self.due_key = f"{self.prefix}due"
        self._record_page = redis.register_script(RECORD_PAGE_LUA)
        self._claim = redis.register_script(CLAIM_LUA)
        self._finish = redis.register_script(FINISH_LUA)
        self._wake = asyncio.Event()
        self._stopping = False

    # ------------------------------------------------------------------ keys

    def message_key(self, position: int) -> str:
        """The record of the message for the event at ``position``."""
        return f"{self.prefix}msg:{position}"

    def app_key(self, app_id: UUID | str) -> str:
        """The index of one application's messages (a sorted set of positions)."""
        return f"{self.prefix}app:{UUID(str(app_id))}"

    # ------------------------------------------------------------------ View

    async def stored_position(self) -> int:
        """The last notification id recorded (0 when missing), nothing written (``runner.Peekable``)."""
        return int(await self.redis.get(self.position_key) or 0)

    async def position(self) -> int:
        """The last notification id recorded; set to the log's end (or 0) when missing."""
        raw = await self.redis.get(self.position_key)
        if raw is not None:
            return int(raw)
        start = 0
        durable = None if self.floor is None else await self.floor.get()
        if durable is not None:
            # Redis lost the outbox (flushed, replaced): go on from the last page recorded beside the events,
            # not from the log's end, so no step's message is skipped (at most that page's are sent again).
            start = durable
            log.warning(
                "notifications: position lost in Redis; going on from %d (recorded beside the events)", start
            )
        elif self.start == "end":
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(
                self.store_executor, self.applications.recorder.max_notification_id
            )
            start = found or 0
            if start:
                log.warning("notifications: no position recorded; starting at the log's end (%d)", start)
        await self.redis.set(self.position_key, start, nx=True)
        position = int(await self.redis.get(self.position_key) or 0)
        if self.floor is not None:
            await self.floor.set(position)
        return position

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Record the page's messages and its end (one script, only on top of ``start``), then deliver
        what is due."""
        if end is None:
            end = page[-1][0] if page else start
        recorded = await self._record(page, start, end)
        await self.deliver_due()
        self.wake()  # run() times the retries of what this page left pending
        return recorded

    async def reset(self) -> None:
        """Forget the outbox and its log; the position then restarts at the log's end (see ``start``)."""
        await delete_prefix(self.redis, self.prefix, position_key=self.position_key)

    # ------------------------------------------------------------------ recording

    async def _record(self, page: Page, start: int, new_position: int) -> bool:
        wanted = [
            (position, event, KIND_OF_EVENT[type(event)])
            for position, event in page
            if type(event) in KIND_OF_EVENT
        ]
        intents: list[_Intent] = []
        if wanted:
            loop = asyncio.get_running_loop()
            intents = await loop.run_in_executor(self.store_executor, self._intents, wanted)
        now = self.clock()
        keys = [self.position_key, self.due_key]
        args: list[str | int | float] = [new_position, len(intents), self.retention]
        for intent in intents:
            keys += [self.message_key(intent.position), self.app_key(intent.app_id)]
            fields: list[str] = [
                "state", intent.state, "kind", intent.kind, "app_id", intent.app_id,
                "attempts", "0", "created_at", repr(now), "event_at", repr(intent.at),
            ]  # fmt: skip
            if intent.state == PENDING:
                data = self._sealed(self.message_key(intent.position), intent.data or {})
                fields += ["touser", intent.touser, "template", intent.template, "data", data]
                fields += ["next_attempt_at", repr(now)]
            else:
                fields += ["note", intent.note, "finished_at", repr(now)]
            args += [intent.position, intent.state, now, orjson.dumps(fields).decode()]
        args.append(start)
        key, term = fenced_args(self.fence, self.key_prefix)
        answer = await self._record_page(keys=[*keys, key], args=[*args, term])
        if refused(answer):
            raise Fenced("the outbox refused a page written under an old term")
        recorded = bool(answer)
        if recorded and intents and self.floor is not None:
            # Only pages that carry messages move the floor: a page without any sends nothing when it is
            # read again, so the SQL write is spared on most pages.
            await self.floor.set(new_position)
        if recorded:
            for intent in intents:
                log.info(
                    "notification %d (%s) recorded %s%s",
                    intent.position,
                    intent.kind,
                    intent.state,
                    f" ({intent.note})" if intent.note else "",
                )
        return recorded

    def _intents(self, wanted: Sequence[tuple[int, Any, str]]) -> list[_Intent]:
        """On the store executor: each event's message, from the application at that event's version."""
        intents = []
        for position, event, kind in wanted:
            originator, version = UUID(str(event.originator_id)), event.originator_version
            app: object = self.applications.get_as_stored(originator, version)  # cached: decision 0027
            if not isinstance(app, BirthCertificateApplication):
                continue
            app_id, at = str(app.id), _moment(event.timestamp).timestamp()
            told = str(getattr(event, "reason", "") or "")
            if kind == BUNDLE_DONE:
                if event.state not in ("done", "refused"):
                    continue  # sent, accepted: in her status view, no message
                kind = BUNDLE_DONE if event.state == "done" else BUNDLE_REFUSED
                offered = app.bundle_offer.service(event.service) if app.bundle_offer else None
                told = offered.name if offered else ""
            step = RETURNED_RESIGN
            if kind == CORRECTED:
                before: object = self.applications.repository.get(originator, version=version - 1)
                if not isinstance(before, BirthCertificateApplication):
                    continue
                found = correction_step(before, app)
                if found is None:
                    continue  # nothing for the parent to do that she does not see in front of her
                step = found
            if kind == REJECTED and self._referred_next(originator, version):
                intents.append(_Intent(position, app_id, kind, SKIPPED, at, note="referred"))
                continue
            template = self.templates.get(kind) or self.templates.get(TEMPLATE_KIND[kind], "")
            channel = channel_of(app.applicant_id)
            if channel is not None:
                # The app's push names the kind, not a WeChat template.
                if channel.name not in self.pushes:
                    intents.append(_Intent(position, app_id, kind, SKIPPED, at, note="no_channel"))
                    continue
                template = TEMPLATE_KIND[kind]
            if not template:
                intents.append(_Intent(position, app_id, kind, SKIPPED, at, note="no_template"))
                continue
            # A rejection is told by its codes' labels, never by the issuer's words (they may name a person).
            codes = event.reason_codes if isinstance(event, BirthCertificateApplication.Rejected) else None
            data = message_data(
                kind,
                event.timestamp,
                reason=rejection_labels(codes) if codes is not None else told,
                number=getattr(event, "certificate_number", "") or getattr(event, "tracking_number", ""),
                institution=str(
                    (app.record or {}).get("institution_name")
                    or (app.awaited_record_entered or {}).get("institution_name")
                    or ""
                ),
                carrier=getattr(event, "carrier", "EMS") or "EMS",
                step=step,
            )
            intents.append(_Intent(position, app_id, kind, PENDING, at, app.applicant_id, template, data))
        return intents

    def _referred_next(self, originator: UUID, version: int) -> bool:
        """Whether the application's next event refers it to the counter (``reject`` past the limit).

        ``reject`` saves both events in one transaction, so the referral is in the store as soon as the
        rejection is, whichever page of the log it falls on.
        """
        following = self.applications.repository.event_store.get(originator, gt=version, limit=1)
        return any(isinstance(e, BirthCertificateApplication.ReferredToCounter) for e in following)

    # ------------------------------------------------------------------ delivering

    async def deliver_due(self, limit: int = 100) -> int:
        """Send the messages that are due, in position order; returns how many sends were tried."""
        now = self.clock()
        members = await self.redis.zrangebyscore(self.due_key, "-inf", now, start=0, num=limit)
        tried = 0
        held: set[str] = set()  # applications with an earlier message still pending in this pass
        for position in sorted(int(m) for m in members):
            app_id = _text(await self.redis.hget(self.message_key(position), "app_id"))  # type: ignore[misc]
            if not app_id:
                await self.redis.zrem(self.due_key, position)
                continue
            if app_id in held or await self._held_back(position, app_id, now):
                held.add(app_id)
                continue
            outcome = await self._deliver(position, app_id, now)
            if outcome is not None:
                tried += 1
            if outcome is None or outcome == PENDING:  # not ours now, or to be retried: later ones wait
                held.add(app_id)
        return tried

    async def _held_back(self, position: int, app_id: str, now: float) -> bool:
        """Whether an earlier message of the application is still unfinished (then wait for it)."""
        earlier = await self.redis.zrangebyscore(self.app_key(app_id), "-inf", f"({position}")
        for member in earlier:
            state, next_at, lease_until = await self.redis.hmget(  # type: ignore[misc]
                self.message_key(int(member)), ["state", "next_attempt_at", "lease_until"]
            )
            state = _text(state)
            if state in (PENDING, SENDING):
                blocker_at = float(_text(next_at if state == PENDING else lease_until) or now)
                later = max(blocker_at, now + self.backoff[0])
                await self.redis.zadd(self.due_key, {str(position): later}, xx=True)
                return True
        return False

    async def _deliver(self, position: int, app_id: str, now: float) -> str | None:
        """Claim, send and mark one message; its new state, or None when it was not ours to send."""
        owner = secrets.token_hex(8)
        key = self.message_key(position)
        # The lease is checked here (locally, then the term in the claim's script), just before the send: a
        # process that lost it sends nothing more; one paused between the claim and the send is the one
        # window left (decision 0024).
        fence, term = fenced_args(self.fence, self.key_prefix)
        claimed = await self._claim(
            keys=[key, self.due_key, fence], args=[position, now, now + self.lease, owner, term]
        )
        if refused(claimed):
            raise Fenced("the outbox refused a claim made under an old term")
        if not claimed:
            return None
        attempts = int(claimed[0])
        touser, template, sealed, created_at, kind = (_text(v) for v in claimed[1:6])
        loop = asyncio.get_running_loop()
        state, next_at, errcode = SENT, 0.0, ""
        try:
            data = self._opened(key, sealed)
            await loop.run_in_executor(self.io_executor, lambda: self._send(touser, template, data, app_id))
        except InvalidTag:
            state = FAILED
            log.error("notification %d (%s): its sealed data does not open (another key?)", position, kind)
        except SubscribeRefused as e:
            state, errcode = REFUSED, str(e.errcode)
        except TemplateDataInvalid as e:
            state, errcode = FAILED, str(e.errcode)
            log.error("notification %d (%s): template data refused, errcode=%s", position, kind, e.errcode)
        except WeChatError as e:
            errcode = "" if e.errcode is None else str(e.errcode)
            if isinstance(e.errcode, int) and e.errcode in PERMANENT_ERRCODES:
                state = FAILED
            else:
                state, next_at = self._retry_or_give_up(attempts, float(created_at or now), now)
        except Exception as e:  # a bug or an outage we did not foresee: keep the message, try later
            log.warning("notification %d (%s): send failed (%s)", position, kind, type(e).__name__)
            state, next_at = self._retry_or_give_up(attempts, float(created_at or now), now)
        finished = self.clock()
        await self._finish(
            keys=[key, self.due_key, self.app_key(app_id)],
            args=[position, owner, state, finished, next_at, errcode, self.retention],
        )
        log.info(
            "notification %d (%s) attempt %d: %s%s",
            position,
            kind,
            attempts,
            state,
            f" errcode={errcode}" if errcode else "",
        )
        return state

    def _sealed(self, key: str, data: Mapping[str, str]) -> str:
        """The message data as the record holds it: sealed, bound to the record's key."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return (nonce + self._aead.encrypt(nonce, orjson.dumps(data), key.encode())).hex()

    def _opened(self, key: str, sealed: str) -> dict[str, str]:
        """The message data of a record (``InvalidTag`` when it does not open); a record written before the data
        was sealed holds it as JSON."""
        if sealed.startswith("{"):
            legacy: dict[str, str] = orjson.loads(sealed)
            return legacy
        raw = bytes.fromhex(sealed)
        opened: dict[str, str] = orjson.loads(
            self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], key.encode())
        )
        return opened

    def _send(self, touser: str, template: str, data: dict[str, str], app_id: str) -> None:
        """On the I/O executor: one message, through the parent's provincial app or WeChat."""
        page = f"{self.page}?id={app_id}"
        channel = channel_of(touser)
        if channel is not None:
            self.pushes[channel.name].push(
                subject=channel.subject_of(touser), kind=template, data=data, page=page
            )
            return
        self.wechat.send_subscribe_message(
            touser=touser, template_id=template, data=data, page=page, state=self.miniprogram_state
        )

    def _retry_or_give_up(self, attempts: int, created_at: float, now: float) -> tuple[str, float]:
        if now - created_at >= self.give_up_after:
            return FAILED, 0.0
        first, most = self.backoff
        delay = min(first * 2 ** min(attempts - 1, 60), most)
        return PENDING, now + delay

    # ------------------------------------------------------------------ the retry loop

    def wake(self) -> None:
        """Look at the outbox now."""
        self._wake.set()

    def stop(self) -> None:
        """Let ``run()`` return after the message in hand."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver retries as they fall due, until ``stop()``; start it as a task next to the follower.
        ``Fenced`` (the leadership lost) ends it; it may be run again afterwards."""
        self._stopping = False
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                await self.deliver_due()
                delay = await self._until_next_due()
                failures = 0
            except (asyncio.CancelledError, Fenced):
                raise
            except Exception as error:
                failures += 1
                delay = min(self.backoff[0] * 2**failures, 30.0)
                log.warning(
                    "notifications: delivery pass failed (%s); again in %.1fs", type(error).__name__, delay
                )
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(delay, 0.0))

    async def _until_next_due(self) -> float:
        first = await self.redis.zrange(self.due_key, 0, 0, withscores=True)
        if not first:
            return self.idle_interval
        return min(float(first[0][1]) - self.clock(), self.idle_interval)

    # ------------------------------------------------------------------ queries

    async def list_for(self, app_id: UUID | str) -> list[JSON]:
        """The delivery log of one application, oldest first (no openid, no message data)."""
        try:
            index = self.app_key(app_id)
        except ValueError:
            return []
        positions = [int(p) for p in await self.redis.zrange(index, 0, -1)]
        entries: list[JSON] = []
        for position in positions:
            raw = await self.redis.hgetall(self.message_key(position))  # type: ignore[misc]
            if not raw:
                continue  # expired
            record = {_text(k): _text(v) for k, v in raw.items()}
            entries.append(
                {
                    "position": position,
                    "kind": record.get("kind"),
                    "state": record.get("state"),
                    "attempts": int(record.get("attempts") or 0),
                    "sent_at": _iso(record.get("sent_at", "")),
                    "next_attempt_at": _iso(record.get("next_attempt_at", ""))
                    if record.get("state") == PENDING
                    else None,
                    "errcode": int(record["errcode"])
                    if record.get("errcode", "").lstrip("-").isdigit()
                    else None,
                    "note": record.get("note") or None,
                    "event_at": _iso(record.get("event_at", "")),
                }
            )
        return entries

    async def backlog(self) -> int:
        """How many messages wait to be sent (pending or being sent)."""
        return int(await self.redis.zcard(self.due_key))
