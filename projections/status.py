"""The parents' status view in Redis: one JSON document per application, one list per user.

For every application touched by a page, the document is computed from the aggregate AT THE
VERSION of its last event in that page, so a view depends only on the log up to the page's
end: a rebuild, whatever its page size, writes byte-identical documents. The documents hold
no personal data in plaintext: no ID numbers, no full names, no addresses or phone numbers,
no newborn name; the mother's name is masked (王*); certificate numbers and e-licence identifiers
are sealed (``projections.status_seal``, decision 0042). A user's list is keyed by an HMAC of the
user id (a WeChat openid: pseudonymous, still not stored in clear).

A father who joined by invitation (FatherJoined) gets his own, reduced document: the state and his
own part (his face check, his ID photos), nothing of the mother's or the newborn's data. It is listed
under his user id as ``father:<uuid>``, so a list tells whose view each entry is.

Keys (``key_prefix`` defaults to ``bc:``; ``<g>`` is the generation, ``projections.redis_view``):
- ``bc:status:live``: the generation being served (``g0`` when missing)
- ``bc:status:<g>:app:<uuid>``: the applicant's document (orjson)
- ``bc:status:<g>:father:<uuid>``: the joined father's reduced document (orjson)
- ``bc:status:<g>:user:<hmac hex>``: sorted set of ``<uuid>`` (as applicant) and ``father:<uuid>`` (as the
  joined father), scored by the application's start time (µs since epoch)
- ``bc:status:<g>:position``: the last notification id applied

A page is applied by one Lua script: it applies only on top of the position the page was read from
(compare-and-set, a missing position being 0) in the generation it was read in, and sets the
documents, the user lists and the new position together, so a page is applied whole or not at all,
and applying it twice (or two followers racing, or a flush in between) changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import redis.asyncio as aioredis

from domain.application import (
    COLLECTED,
    COUNTER_ONLY,
    DELIVERED,
    DISPATCHED,
    DRAFT,
    ISSUED,
    ISSUED_STATES,
    LOST,
    OLD_CERTIFICATE_FATES,
    REPLACEMENT_CAUSES,
    RETURNED,
    REVOKED,
    STEP_NAMES,
    SUBMITTED,
    WITHDRAWN,
    BirthCertificateApplication,
    resigning_needed,
)
from domain.bundle import CERTIFICATE, MATERIAL_KINDS, SERVICE_STATES, handoffs
from domain.errors import InvalidValue
from domain.pickup import Slot, what_to_bring, who_may_collect
from domain.referral import Referral
from domain.rejection import label_of as rejection_label
from domain.rejection import message_of as rejection_message
from domain.revocation import told as told_revocation
from domain.service import Applications
from projections.redis_view import CAS_EPILOGUE, CAS_PRELUDE, Generations, application_events, masked
from projections.runner import DomainEvent, Page
from projections.status_seal import StatusSeal, secrets_of

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
JSON = dict[str, Any]
MAX_LIST_LIMIT: Final = 100
USER_SUFFIXES_KEPT: Final = 10_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# A user's list member for an application they joined as the father (the applicant's is the bare id).
FATHER_MEMBER: Final = "father:"

STATE_LABELS: Final = {
    DRAFT: "填写中",
    SUBMITTED: "审核中",
    RETURNED: "已退回，待修改",
    ISSUED: "已签发",
    # Dispatched = EMS booked the pickup and gave a waybill: the courier may not have it yet.
    DISPATCHED: "已预约邮政揽收",
    DELIVERED: "已送达",
    COLLECTED: "已领取",
    WITHDRAWN: "已撤回",
    LOST: "邮件遗失，待补发",
    COUNTER_ONLY: "需到签发机构现场办理",
    REVOKED: "出生医学证明已作废",
}

# What the issuer may ask to be fixed (domain.application.FIXABLE_FIELDS), as a parent reads it.
FIELD_LABELS: Final = {
    "delivery_record": "分娩信息",
    "newborn_name": "新生儿姓名",
    "mother.nationality": "母亲国籍",
    "mother.ethnicity": "母亲民族",
    "mother.address": "母亲住址",
    "father.name": "父亲姓名",
    "father.id_number": "父亲身份证号码",
    "father.nationality": "父亲国籍",
    "father.ethnicity": "父亲民族",
    "father.address": "父亲住址",
    "documents.mother_id_front": "母亲身份证人像面照片",
    "documents.mother_id_back": "母亲身份证国徽面照片",
    "documents.father_id_front": "父亲身份证人像面照片",
    "documents.father_id_back": "父亲身份证国徽面照片",
    "documents.father_handheld_id": "父亲手持身份证照片",
    **{f"documents.{kind}": f"{label}照片" for kind, label in MATERIAL_KINDS.items()},
    "signature": "电子签名",
    "delivery_method": "领取方式",
}

# The hospital's answer to her dispute of the delivery record, as she reads it (docs/decisions/0034).
DISPUTE_ANSWERS: Final = {
    "corrected": "医院已更正分娩信息（{reason}），请核对更正后的分娩信息并确认",
    "upheld": "医院核实后答复分娩信息无误：{reason}。请核对后确认；如仍有异议，可再次提出或到助产机构咨询",
}
DISPUTE_LABELS: Final = {
    "open": "已提出异议，等待医院答复",
    "corrected": "医院已更正",
    "upheld": "医院答复原记录无误",
}


# The page body after the CAS prelude. ARGV[6] n, then n documents, n scores, n members, n document-key
# suffixes (app:<uuid> or father:<uuid>), n user-list suffixes (user:<hmac>).
APPLY_PAGE_LUA: Final = (
    CAS_PRELUDE
    + """
local n = tonumber(ARGV[6])
for i = 1, n do
  redis.call('SET', prefix .. ARGV[6 + 3 * n + i], ARGV[6 + i])
  redis.call('ZADD', prefix .. ARGV[6 + 4 * n + i], ARGV[6 + n + i], ARGV[6 + 2 * n + i])
end
"""
    + CAS_EPILOGUE
)


# A user's document in one round trip (decision 0029). KEYS[1]: the live pointer. ARGV[1] base, ARGV[2] fixed
# generation or '', ARGV[3] the user-list suffix, ARGV[4] the application id, ARGV[5] ``father:<id>`` (the joined
# father's list member and document suffix alike). → the applicant's document if the id is on the user's list as
# theirs, else the father's reduced one if it is there as his, else false: the stored bytes, never decoded.
READ_FOR_USER_LUA: Final = """
local gen = ARGV[2]
if gen == '' then
  gen = redis.call('GET', KEYS[1]) or 'g0'
end
local prefix = ARGV[1] .. gen .. ':'
local list = prefix .. ARGV[3]
if redis.call('ZSCORE', list, ARGV[4]) then
  local document = redis.call('GET', prefix .. 'app:' .. ARGV[4])
  if document then
    return document
  end
end
if redis.call('ZSCORE', list, ARGV[5]) then
  return redis.call('GET', prefix .. ARGV[5])
end
return false
"""
# Both documents put "version" before any free text (status_of, father_status_of): its first occurrence is theirs.
_VERSION: Final = re.compile(rb'"version":(\d+)')


def document_version(document: bytes) -> int:
    """The version a stored status document carries (its ETag), read without decoding the document."""
    found = _VERSION.search(document)
    if found is None:
        raise ValueError("not a status document")
    return int(found.group(1))


def derive_pseudonym_key(index_key: bytes) -> bytes:
    """The key of the per-user list names, derived from the service's index key (fixed forever too)."""
    return hmac.new(index_key, b"birthcert:status:user-pseudonym:v1", hashlib.sha256).digest()


def _iso(moment: datetime | str | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(SHANGHAI).isoformat(timespec="milliseconds")


def _step(code: str, label: str, by: str) -> JSON:
    return {"code": code, "label": label, "by": by}


def _applicable_steps(app: BirthCertificateApplication) -> list[str]:
    steps = ["mother_verified", "delivery_record_linked", "delivery_info_confirmed", "details_provided"]
    if app.two_parents:
        steps.append("father_verified")
    steps.append("documents_uploaded")
    if app.bundle_materials_required():  # 出生一件事's materials (0047): only with a service that needs them
        steps.append("bundle_materials_uploaded")
    steps += ["form_signed", "delivery_method_chosen"]
    if app.postage_required:
        steps.append("postage_paid")
    return steps


def _next_steps(app: BirthCertificateApplication, missing: list[str]) -> list[JSON]:
    """What happens next, and who does it (``by``: parent, hospital, issuer or courier)."""
    state = app.state
    method = app.delivery_method["method"] if app.delivery_method else None
    if state in (DRAFT, RETURNED):
        steps: list[JSON] = []
        if app.awaiting_delivery_record and app.delivery_awaited:
            name = app.delivery_awaited["institution_name"]
            steps.append(
                _step("await_delivery_entry", f"已提醒{name}录入分娩信息，录入后请查看并确认", "hospital")
            )
        if app.dispute_open:
            steps.append(_step("await_hospital_correction", "等待医院核实分娩信息并答复", "hospital"))
        elif app.dispute_reason and app.dispute_answer:
            outcome, reason = app.dispute_answer["outcome"], app.dispute_answer["reason"]
            steps.append(
                _step(f"hospital_{outcome}_record", DISPUTE_ANSWERS[outcome].format(reason=reason), "parent")
            )
        if state == RETURNED and app.rejection:
            fields = [FIELD_LABELS.get(f, f) for f in app.rejection.get("fields", [])]
            steps.append(_step("fix_returned_items", "按退回意见修改：" + "、".join(fields), "parent"))
        steps += [_step(code, _step_name(app, code), "parent") for code in missing]
        if not missing:
            steps.append(_step("submit", "提交审核", "parent"))
        return steps
    if state == SUBMITTED:
        return [_step("await_review", "等待签发机构审核", "issuer")]
    if state == ISSUED and method == "pickup":
        return _pickup_steps(app)
    if state == ISSUED:
        return [_step("await_dispatch", "等待邮寄", "issuer")]
    if state == DISPATCHED:
        return [_step("await_delivery", "已预约邮政上门揽收，揽收后寄出，可凭邮件号查询物流", "courier")]
    if state == LOST:
        return [_step("await_reissue", "邮件遗失或损毁，等待签发机构补发", "issuer")]
    if state == COUNTER_ONLY:
        counter = (app.referral or {}).get("counter")
        where = counter["institution_name"] if counter else "签发机构"
        return [_step("visit_counter", f"请携带所列材料到{where}现场办理", "parent")]
    if state == REVOKED:
        counter = (app.revocation or {}).get("counter")
        where = counter["institution_name"] if counter else "签发机构"
        return [
            _step(
                "visit_counter",
                f"原证件不得再使用；如有疑问或需重新办理，请携带所列材料到{where}现场咨询",
                "parent",
            )
        ]
    return []  # delivered, collected, withdrawn: nothing left to do


def _step_name(app: BirthCertificateApplication, code: str) -> str:
    """A step's words; the record she reported missing, once a hospital entered it, is hers to look at."""
    entered = app.awaited_record_entered
    if code == "delivery_record_linked" and entered is not None:
        return f"{entered['institution_name'] or '医院'}已录入您的分娩信息，请查看并确认"
    if code == "bundle_materials_uploaded" and app.missing_bundle_materials():
        return "上传一件事一次办材料：" + "、".join(MATERIAL_KINDS[k] for k in app.missing_bundle_materials())
    return STEP_NAMES.get(code, code)


def _pickup_steps(app: BirthCertificateApplication) -> list[JSON]:
    """Ready to collect: book a time (预约取证), then come, or send someone with her signed letter."""
    where = (app.record or {}).get("institution_name") or "签发机构"
    letter = "；如委托他人领取，须先在小程序中签署授权委托书" if app.profile.collector_letter_required else ""
    booked = _appointment(app)
    if booked is None:
        return [_step("book_pickup", f"请预约到{where}领取的时间（预约取证）", "parent")]
    return [
        _step(
            "collect_on_site",
            f"请于{booked['label']}携带本人身份证件到{where}领取，现场须刷脸认证{letter}",
            "parent",
        )
    ]


def _appointment(app: BirthCertificateApplication) -> JSON | None:
    booked = app.pickup_appointment
    if booked is None:
        return None
    slot = Slot(datetime.fromisoformat(booked["date"]).date(), booked["start"], booked["end"], 1)
    return {**booked, "label": slot.label()}


def _pickup(app: BirthCertificateApplication) -> JSON | None:
    """The appointment and who may collect (the letter's collector masked), for an on-site pickup."""
    if not app.delivery_method or app.delivery_method["method"] != "pickup":
        return None
    letter = app.collector_letter
    agent = None if letter is None else masked(letter["name"])
    return {
        "appointment": _appointment(app),
        "letter_required": app.profile.collector_letter_required,
        "collector": None
        if letter is None
        else {"name_masked": agent, "signed_at": _iso(letter["signed_at"])},
        "institution_name": (app.record or {}).get("institution_name"),
        "who_may_collect": who_may_collect(app.profile.collector_letter_required, agent),
        "bring": what_to_bring(agent),
    }


def replacement_message(replacement: JSON) -> str:
    """What a replacement (the institution's own error) tells the parent, in Chinese."""
    cause = REPLACEMENT_CAUSES.get(replacement["cause"], replacement["cause"])
    fate = OLD_CERTIFICATE_FATES.get(replacement["old_certificate"], "已作废")
    return (
        f"因签发机构{cause}，原出生医学证明（编号 {replacement['voided_certificate_number']}）{fate}，"
        f"已重新签发新证（编号 {replacement['certificate_number']}），登记信息不变"
    )


def _done_steps(app: BirthCertificateApplication, missing: list[str]) -> list[JSON]:
    # missing_for_submission() names a confirmation only once a record is linked: ask the state itself.
    done = [
        {"code": code, "label": STEP_NAMES.get(code, code)}
        for code in _applicable_steps(app)
        if code not in missing and (code != "delivery_info_confirmed" or app.delivery_confirmed is True)
    ]
    state = app.state
    if state == SUBMITTED or state in ISSUED_STATES:
        done.append({"code": "submitted", "label": "已提交审核"})
    if state in ISSUED_STATES:
        done.append({"code": "issued", "label": "出生医学证明已签发"})
    if app.replacements:
        done.append({"code": "certificate_replaced", "label": replacement_message(app.replacements[-1])})
    if app.collector_letter is not None and state not in (WITHDRAWN, COUNTER_ONLY):
        done.append({"code": "collector_authorized", "label": "已签署授权委托书"})
    if app.pickup_appointment is not None and state in (ISSUED, COLLECTED):
        done.append({"code": "pickup_booked", "label": "已预约领取时间"})
    if state in (DISPATCHED, DELIVERED, LOST):
        done.append({"code": "dispatched", "label": "已预约邮政揽收（已生成邮件号）"})
    if state == DELIVERED:
        done.append({"code": "delivered", "label": "已送达"})
    if state == COLLECTED:
        done.append({"code": "collected", "label": "已现场领取"})
    if state == WITHDRAWN:
        done.append({"code": "withdrawn", "label": "已撤回申请，签发机构不再办理"})
    if state == REVOKED:
        done.append({"code": "revoked", "label": "签发机构已宣布出生医学证明作废"})
    return done


def status_of(app: BirthCertificateApplication) -> JSON:
    """The parent's status document of ``app`` (no personal data in plaintext)."""
    # What is really done, in every state: a closed application (withdrawn, sent to the counter) shows
    # only the steps it had finished, never the rest as if completed.
    missing = app.missing_for_submission()
    record = app.record
    mother = app.verified.get("mother")
    mother_name = (mother or {}).get("name") or (record or {}).get("mother_name")
    method = app.delivery_method["method"] if app.delivery_method else None
    rejection = app.rejection if app.state == RETURNED and app.rejection else None
    return {
        "id": str(app.id),
        "state": app.state,
        "state_label": STATE_LABELS.get(app.state, app.state),
        "version": app.version,
        "province": app.province,
        "started_at": _iso(app.created_on),
        "updated_at": _iso(app.modified_on),
        "submitted_at": _iso(app.submitted_at),
        "submissions": app.submissions,
        "next_steps": _next_steps(app, missing),
        "done_steps": _done_steps(app, missing),
        "rejection": None
        if rejection is None
        else {
            "reasons": list(rejection.get("reasons", [])),
            # The catalogue's codes, each with what she is told (docs/decisions/0045); none for a hospital's
            # correction under review, nor in a snapshot taken before codes existed.
            "reason_codes": list(rejection.get("reason_codes", [])),
            "reason_messages": [
                {"code": code, "label": rejection_label(code), "message": rejection_message(code)}
                for code in rejection.get("reason_codes", [])
            ],
            "fields": list(rejection.get("fields", [])),
            "field_labels": [FIELD_LABELS.get(f, f) for f in rejection.get("fields", [])],
            "resign_required": resigning_needed(rejection.get("fields", [])),
        },
        "counter_reason": None if app.counter_reason is None else counter_reason_of(app),
        "revocation": None
        if app.revocation is None
        else {**told_revocation(app.revocation), "at": _iso(app.revocation["at"])},
        "certificate_number": app.certificate_number,
        "tracking_number": app.tracking_number,
        "delivery_method": method,
        "postage": {"required": app.postage_required, "paid": app.postage_paid is not None},
        "signature_valid": "form_signed" not in missing,  # missing_for_submission() asked the signature
        "delivery_record": None
        if record is None
        else {
            "institution_name": record.get("institution_name"),
            "mother_name_masked": masked(record.get("mother_name")),
            "confirmed": app.delivery_confirmed,
        },
        "mother_name_masked": masked(mother_name),
        "elicense_issued": app.licence_id is not None,
        "elicense": _elicense(app),
        "father_invitation": _father_invitation(app),
        "voided_certificate_numbers": list(app.voided_numbers),
        "replacement": None
        if not app.replacements
        else {
            "cause": app.replacements[-1]["cause"],
            "old_certificate": app.replacements[-1]["old_certificate"],
            "voided_certificate_number": app.replacements[-1]["voided_certificate_number"],
            "at": _iso(app.replacements[-1]["at"]),
            "message": replacement_message(app.replacements[-1]),
        },
        "pickup": _pickup(app),
        "delivery_dispute": _delivery_dispute(app),
        "delivery_record_requested": _delivery_record_requested(app),
        "delivery_record_entered": _delivery_record_entered(app),
        "bundle": _bundle(app),
        "bundle_offered": app.policy.get("birth_bundle") is not None,
    }


def _bundle(app: BirthCertificateApplication) -> JSON | None:
    return bundle_view(app)


def bundle_view(app: BirthCertificateApplication) -> JSON | None:
    """出生一件事: the services she applied for with the certificate and each one's state in Chinese, a
    department's refusal with its reason, its result masked with each field's label (decisions 0044, 0046).
    The certificate is done once issued."""
    requested = app.bundle
    offer = None if requested is None else app.bundle_offer
    if offer is None or requested is None:
        return None
    services = []
    for s in offer.services:
        if s.code not in requested["services"]:
            continue
        part = (app.bundle_services or {}).get(s.code) or {}
        state = part.get("state", "requested")
        if s.code == CERTIFICATE and app.state in ISSUED_STATES:
            state = "done"
        handoff = handoffs().get(s.code)
        result: JSON = {}
        labels: JSON = {}
        if handoff is not None:
            shown = handoff.masked_result(part.get("result") or {})
            # In the department's order; a field its list no longer names is not shown (nor is it known
            # whether it is personal).
            result = {k: shown[k] for k in handoff.result_fields if k in shown}
            # Each field's name in Chinese, so a screen labels it without a table of its own.
            labels = {k: handoff.result_labels[k] for k in result}
        services.append(
            {
                "code": s.code,
                "name": s.name,
                "department": s.department,
                "state": state,
                "state_label": SERVICE_STATES[state],
                "reason": part.get("reason"),
                "result": result or None,
                "result_labels": labels or None,
                "at": _iso(part["at"]) if part.get("at") else None,
            }
        )
    return {"name": offer.name, "requested_at": _iso(requested["requested_at"]), "services": services}


def _delivery_dispute(app: BirthCertificateApplication) -> JSON | None:
    """Her dispute of the delivery record and the hospital's answer, while she has not confirmed the record since
    (her own reason stays out: she reads it with the record)."""
    answer = None if app.dispute_open else app.dispute_answer
    if not app.dispute_reason or (answer is None and not app.dispute_open):
        return None
    status = "open" if answer is None else answer["outcome"]
    return {
        "status": status,
        "label": DISPUTE_LABELS[status],
        "disputed_at": _iso(app.disputed_at),
        "answer": None if answer is None else answer["reason"],
        "answered_at": None if answer is None else _iso(answer["at"]),
    }


def _delivery_record_requested(app: BirthCertificateApplication) -> JSON | None:
    """The institution she asked to enter her missing delivery record, while none is entered or linked."""
    awaited = app.delivery_awaited
    if awaited is None or not app.awaiting_delivery_record:
        return None
    return {"institution_name": awaited["institution_name"], "reported_at": _iso(awaited["reported_at"])}


def _delivery_record_entered(app: BirthCertificateApplication) -> JSON | None:
    """The record she reported missing, entered since, until she links it by looking at it."""
    entered = app.awaited_record_entered
    if entered is None or app.record is not None or app.state not in (DRAFT, RETURNED):
        return None
    return {"institution_name": entered["institution_name"], "entered_at": _iso(entered["entered_at"])}


def counter_reason_of(app: BirthCertificateApplication) -> JSON:
    """Why the application went to the counter, and where to go with what (domain/referral.py): the
    institution's counter as the parent was told it when referred; nothing personal."""
    told = app.referral or {"reason": app.counter_reason, "message": "", "counter": None, "bring": []}
    referral = Referral.from_event(**told).to_dict()
    return {"code": referral.pop("reason"), **referral}


def father_status_of(app: BirthCertificateApplication) -> JSON:
    """The joined father's reduced view: the state and his own part, nothing of the mother's or newborn's data."""
    own_missing = app.missing_for_father()
    steps: list[JSON] = []
    if app.state in (DRAFT, RETURNED):
        fields = (app.rejection or {}).get("fields", []) if app.state == RETURNED else []
        his = [FIELD_LABELS.get(f, f) for f in fields if f.startswith("documents.father_")]
        if his:
            steps.append(_step("fix_returned_items", "按退回意见重新上传：" + "、".join(his), "father"))
        steps += [_step(code, STEP_NAMES.get(code, code), "father") for code in own_missing]
        if not own_missing:
            steps.append(_step("await_applicant", "您的部分已完成，等待孩子母亲完成其余步骤并提交", "mother"))
    elif app.state == COUNTER_ONLY:
        where = (father_counter(app)["counter"] or {}).get("institution_name") or "签发机构"
        steps = [
            _step("visit_counter", f"该申请需到{where}现场办理，请与孩子母亲联系并携带所列材料", "parent")
        ]
    elif app.state == REVOKED:
        where = ((app.revocation or {}).get("counter") or {}).get("institution_name") or "签发机构"
        steps = [
            _step(
                "visit_counter", f"出生医学证明已被宣布作废，请与孩子母亲联系，或到{where}现场咨询", "parent"
            )
        ]
    else:
        steps = _next_steps(app, [])
    done = [{"code": "father_joined", "label": "已通过邀请加入申请"}]
    done += [
        {"code": code, "label": STEP_NAMES.get(code, code)}
        for code in ("father_verified", "father_documents_uploaded")
        if code not in own_missing
    ]
    done += [d for d in _done_steps(app, []) if d["code"] in _LIFECYCLE_STEPS]
    return {
        "id": str(app.id),
        "role": "father",
        "state": app.state,
        "state_label": STATE_LABELS.get(app.state, app.state),
        "version": app.version,
        "province": app.province,
        "updated_at": _iso(app.modified_on),
        "next_steps": steps,
        "done_steps": done,
        "counter": father_counter(app) if app.state == COUNTER_ONLY else None,
        "elicense": _elicense(app),
        "father": {
            "verified": "father_verified" not in own_missing,
            "documents": sorted(k for k in app.documents if k.startswith("father_")),
        },
    }


def _elicense(app: BirthCertificateApplication) -> JSON:
    """The e-licence's state for both parents (the credential itself: GET …/elicense, decision 0038)."""
    state = app.elicense_state()
    current = app.elicense_for(app.certificate_number) if state == "issued" else None
    return {"state": state, "licence_id": None if current is None else current["licence_id"]}


def father_counter(app: BirthCertificateApplication) -> JSON:
    """Where the father goes with what, when the application went to the counter: the institution's counter
    and the materials, as the mother is told them; not why (her reason is hers to tell)."""
    told = counter_reason_of(app)
    return {"counter": told["counter"], "where": told["where"], "bring": told["bring"]}


_LIFECYCLE_STEPS: Final = (
    "submitted",
    "issued",
    "dispatched",
    "delivered",
    "collected",
    "withdrawn",
    "revoked",
)


def _father_invitation(app: BirthCertificateApplication) -> JSON | None:
    """For the mother: whether she invited the father and whether he joined (never the code)."""
    if app.father_user_id is not None:
        return {"status": "joined", "expires_at": None}
    if app.father_invitation is not None:
        return {"status": "invited", "expires_at": app.father_invitation["expires_at"]}
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StatusView:
    """The parents' status view: a ``View`` for ``projections.runner.LogFollower``.

    ``generation`` pins the view to one generation (a rebuild's, ``projections.cli``); by default it
    follows the live one.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        applications: Applications,
        executor: Executor,
        *,
        key_prefix: str = "bc:",
        pseudonym_key: bytes,
        seal_key: bytes,
        generation: str | None = None,
    ) -> None:
        if len(pseudonym_key) < 16:
            raise ValueError("pseudonym_key must be at least 16 bytes")
        self.redis = redis
        self.applications = applications
        self.executor = executor
        self.generations = Generations(redis, f"{key_prefix}status:", fixed=generation)
        self._pseudonym_key = pseudonym_key
        self.seal = StatusSeal(seal_key)
        self._apply_page = redis.register_script(APPLY_PAGE_LUA)
        self._read_for_user = redis.register_script(READ_FOR_USER_LUA)
        self._user_suffixes: dict[str, str] = {}

    # ------------------------------------------------------------------ keys (within a generation)

    @staticmethod
    def app_suffix(app_id: UUID | str) -> str:
        """The key of one application's document, within a generation."""
        return f"app:{UUID(str(app_id))}"

    @staticmethod
    def father_suffix(app_id: UUID | str) -> str:
        """The key of the joined father's reduced document of one application, within a generation."""
        return f"father:{UUID(str(app_id))}"

    def user_suffix(self, user_id: str) -> str:
        """The key of one user's list: an HMAC of the user id, never the id itself."""
        suffix = self._user_suffixes.get(user_id)
        if suffix is None:
            # Remembered for the next reads of the same parent (a status poll is the hot path), boundedly.
            if len(self._user_suffixes) >= USER_SUFFIXES_KEPT:
                self._user_suffixes.clear()
            digest = hmac.new(self._pseudonym_key, user_id.encode(), hashlib.sha256).hexdigest()
            suffix = self._user_suffixes[user_id] = f"user:{digest}"
        return suffix

    def _member_suffix(self, member: str) -> str:
        if member.startswith(FATHER_MEMBER):
            return self.father_suffix(member.removeprefix(FATHER_MEMBER))
        return self.app_suffix(member)

    async def prefix(self) -> str:
        """The key prefix of the generation being read."""
        return self.generations.prefix(await self.generations.current())

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id applied in the live generation (0 before any, or when lost)."""
        return await self.generations.position()

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Write the documents of the applications the page touched and the page's end, atomically,
        if the view still stands at ``start`` (False otherwise)."""
        if end is None:
            end = page[-1][0] if page else start
        rows = await self._rows(page)
        return await self._write(rows, self.generations.cas_args(start, end))

    async def redo(self, position: int, event: DomainEvent) -> None:
        """A parked event retried: the application's documents as of now, the position untouched."""
        rows = await self._rows([(position, event)], latest=True)
        await self._write(rows, self.generations.cas_args(0, 0, "redo"))

    async def _rows(self, page: Page, *, latest: bool = False) -> list[tuple[str, bytes, str, int, str]]:
        touched = application_events(page)
        if not touched:
            return []
        versions: list[tuple[UUID, int | None, list[DomainEvent]]] = [
            (a, None if latest else events[-1].originator_version, events) for a, events in touched.items()
        ]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._documents, versions)

    async def _write(self, rows: list[tuple[str, bytes, str, int, str]], cas: list[str | int]) -> bool:
        args: list[str | bytes | int] = [*cas, len(rows)]
        args += [row[1] for row in rows]
        args += [row[3] for row in rows]
        args += [row[4] for row in rows]
        args += [row[0] for row in rows]
        args += [self.user_suffix(row[2]) for row in rows]
        return bool(await self._apply_page(keys=[self.generations.pointer_key], args=args))

    def _documents(
        self, versions: Sequence[tuple[UUID, int | None, Sequence[DomainEvent]]]
    ) -> list[tuple[str, bytes, str, int, str]]:
        """On the executor: (document key suffix, document, user id, start score, list member) of each view
        of each application at its version: the applicant's, and the joined father's once he joined.
        The application as stored at that version comes from the process's cache advanced by the page's
        own events, and is loaded only when they do not lead there (decision 0027)."""
        rows = []
        for app_id, version, page_events in versions:
            app: object = self.applications.get_as_stored(app_id, version, page_events)
            if not isinstance(app, BirthCertificateApplication):
                continue
            rows.extend(self.rows_of(app))
        return rows

    def rows_of(self, app: BirthCertificateApplication) -> list[tuple[str, bytes, str, int, str]]:
        """The view's rows of one application as loaded."""
        # Whole microseconds: exact in a Redis score (a double) for millennia to come.
        score = (app.created_on - _EPOCH) // timedelta(microseconds=1)
        app_id, secrets = app.id, secrets_of(app)
        mine = self.seal.sealed(status_of(app), secrets)
        rows = [(self.app_suffix(app_id), mine, app.applicant_id, score, str(app_id))]
        if app.father_user_id is not None:
            rows.append(
                (
                    self.father_suffix(app_id),
                    self.seal.sealed(father_status_of(app), secrets),
                    app.father_user_id,
                    score,
                    FATHER_MEMBER + str(app_id),
                )
            )
        return rows

    async def reset(self) -> None:
        """Delete every key of the generation being followed, its position last."""
        await self.generations.drop(await self.generations.current())

    # ------------------------------------------------------------------ queries

    async def get(self, app_id: UUID | str) -> JSON | None:
        """One application's document, or None (unknown, malformed id, or not projected yet)."""
        try:
            suffix = self.app_suffix(app_id)
        except ValueError:
            return None
        return await self._load(suffix)

    async def get_father(self, app_id: UUID | str) -> JSON | None:
        """The joined father's reduced document of one application, or None."""
        try:
            suffix = self.father_suffix(app_id)
        except ValueError:
            return None
        return await self._load(suffix)

    async def _load(self, suffix: str) -> JSON | None:
        raw = await self.redis.get(await self.prefix() + suffix)
        opened = None if raw is None else self.seal.opened(raw)
        if opened is None:
            return None
        document: JSON = orjson.loads(opened)
        return document

    async def get_for(self, user_id: str, app_id: UUID | str) -> JSON | None:
        """The document this user sees of one application (theirs, or the father's view), or None."""
        raw = await self.get_bytes_for(user_id, app_id)
        if raw is None:
            return None
        document: JSON = orjson.loads(raw)
        return document

    async def get_bytes_for(self, user_id: str, app_id: UUID | str) -> bytes | None:
        """``get_for`` as JSON bytes: ownership and the document in one script, one round trip; the stored bytes
        themselves unless members are sealed (None when those do not open: the store answers)."""
        try:
            member = str(UUID(str(app_id)))
        except ValueError:
            return None
        generations = self.generations
        raw = await self._read_for_user(
            keys=[generations.pointer_key],
            args=[
                generations.base,
                generations.fixed or "",
                self.user_suffix(user_id),
                member,
                self.father_suffix(member),
            ],
        )
        return None if raw is None else self.seal.opened(bytes(raw))

    async def list_for(
        self, applicant_id: str, cursor: str | None = None, limit: int = 20
    ) -> tuple[list[JSON], str | None]:
        """A user's applications, newest first: (documents, cursor of the next page or None)."""
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        prefix = await self.prefix()
        key = prefix + self.user_suffix(applicant_id)
        entries: list[tuple[str, int]]
        if cursor is None:
            raw = await self.redis.zrevrange(key, 0, limit, withscores=True)
            entries = [(_text(m), int(s)) for m, s in raw]
        else:
            after_score, after_id = _parse_cursor(cursor)
            # Same-score entries come in reverse id order: skip those up to the cursor's.
            ties = int(await self.redis.zcount(key, after_score, after_score))
            raw = await self.redis.zrevrangebyscore(
                key, after_score, "-inf", start=0, num=limit + 1 + ties, withscores=True
            )
            entries = [
                (m, s)
                for m, s in ((_text(m), int(s)) for m, s in raw)
                if s < after_score or (s == after_score and m < after_id)
            ]
        more = len(entries) > limit
        entries = entries[:limit]
        if not entries:
            return [], None
        values = await self.redis.mget([prefix + self._member_suffix(m) for m, _ in entries])
        seal = self.seal
        items: list[JSON] = [orjson.loads(seal.opened(v) or seal.bare(v)) for v in values if v is not None]
        next_cursor = f"{entries[-1][1]}:{entries[-1][0]}" if more else None
        return items, next_cursor

    async def count(self) -> int:
        """How many applications the view holds."""
        n = 0
        async for _ in self.redis.scan_iter(match=f"{await self.prefix()}app:*", count=1000):
            n += 1
        return n


def _parse_cursor(cursor: str) -> tuple[int, str]:
    score, _, member = cursor.partition(":")
    prefix = FATHER_MEMBER if member.startswith(FATHER_MEMBER) else ""
    try:
        return int(score), prefix + str(UUID(member.removeprefix(prefix)))
    except ValueError:
        raise InvalidValue("cursor", "invalid_cursor", "分页参数无效，请从第一页重新加载") from None
