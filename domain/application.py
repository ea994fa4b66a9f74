"""The BirthCertificateApplication aggregate: one parent's application, from start to delivery.

Every rule of shared/domain.md that concerns one application is checked here, before an
event is triggered, so that no order of commands can break it. Events are a public contract
(see docs/decisions/0001-event-contract.md): their topics and field names never change; a
change of shape gets a ``class_version`` and an ``upcast_vN_vN+1``. Event fields hold plain
JSON values only (str, int, float, bool, None, lists and dicts of them) so that a stored
event reads the same in any language; the aggregate's own state is plain too, so that
snapshots transcode. Value objects from ``domain.values`` are validated at the command and
stored by value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID

import orjson
import rfc8785
from eventsourcing.domain import Aggregate

from domain.bundle import (
    CERTIFICATE,
    DEPARTMENT_ANSWERS,
    MATERIAL_KINDS,
    REGISTRATION_FIELDS,
    REGISTRATION_SERVICE,
    BundleConditionsUnmet,
    BundleFacts,
    BundleNotOffered,
    BundleOffer,
    DerivedItem,
    check_services,
    check_values,
    derived_items,
    evaluate,
    form_part,
    handoffs,
    settled_address,
    table2_values,
)
from domain.bundle_clock import ServiceClock, clocks
from domain.channels import WECHAT
from domain.delivery import Institution, entry_deadline, latest_birth_on
from domain.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidValue,
    NotEligibleOnline,
    NotFound,
    RuleViolated,
)
from domain.pickup import COLLECTOR_CHECK_TTL, Slot, collector_letter
from domain.policy import (
    REASON_MESSAGES,
    SHANGHAI,
    Circumstances,
    ProvinceProfile,
    WorkingCalendar,
    application_window_error,
    check_eligibility,
    check_newborn_surname,
    get_profile,
)
from domain.referral import Referral, face_failures_exhausted, tally_face_failure
from domain.rejection import OTHER as OTHER_REJECTION
from domain.rejection import check_reason_codes
from domain.revocation import NOTE_HIGH, NOTE_LOW, check_reason, referral_for
from domain.values import (
    ETHNIC_GROUPS,
    ID_TYPE_LABELS,
    Actor,
    Address,
    CertificateNumber,
    EthnicGroup,
    IdDocument,
    IdNumber,
    MobileNumber,
    Nationality,
    PersonName,
    Residency,
    as_id_document,
    completed_years,
    has_control,
    id_type_of,
)

# The states of the status view (shared/api.md).
DRAFT: Final = "draft"
SUBMITTED: Final = "submitted"
RETURNED: Final = "returned"
ISSUED: Final = "issued"
DISPATCHED: Final = "dispatched"
DELIVERED: Final = "delivered"
COLLECTED: Final = "collected"
WITHDRAWN: Final = "withdrawn"
LOST: Final = "lost"
COUNTER_ONLY: Final = "counter_only"
# Declared void by the issuing institution (domain/revocation.py): nothing more online.
REVOKED: Final = "revoked"
STATES: Final = (
    DRAFT,
    SUBMITTED,
    RETURNED,
    ISSUED,
    DISPATCHED,
    DELIVERED,
    COLLECTED,
    WITHDRAWN,
    LOST,
    COUNTER_ONLY,
    REVOKED,
)

STATE_LABELS: Final = {
    DRAFT: "填写中",
    SUBMITTED: "审核中",
    RETURNED: "已退回待修改",
    ISSUED: "已签发",
    DISPATCHED: "已寄出",
    DELIVERED: "已签收",
    COLLECTED: "已现场领取",
    WITHDRAWN: "已撤回",
    LOST: "邮件丢失待补发",
    COUNTER_ONLY: "需到现场办理",
    REVOKED: "证件已作废",
}
EDITABLE_STATES: Final = (DRAFT, RETURNED)
# Printed: the registered data is frozen. A revoked certificate was printed too (and is void now).
ISSUED_STATES: Final = (ISSUED, DISPATCHED, DELIVERED, COLLECTED, LOST, REVOKED)
# Where an issuer may declare the certificate void: printed, not lost in the post, not void already.
REVOCABLE_STATES: Final = (ISSUED, DISPATCHED, DELIVERED, COLLECTED)
CLOSED_STATES: Final = (WITHDRAWN, COUNTER_ONLY)

DOCUMENT_KINDS: Final = (
    "mother_id_front",
    "mother_id_back",
    "father_id_front",
    "father_id_back",
    "father_handheld_id",
    # 出生一件事's materials of 表1 (domain.bundle.MATERIAL_KINDS, docs/decisions/0047): asked only with a
    # service that needs them.
    *MATERIAL_KINDS,
)
# What an issuer may name as "to fix" when rejecting: the form's fields, the documents, the signature.
FIXABLE_FIELDS: Final = (
    "delivery_record",
    "newborn_name",
    "mother.nationality",
    "mother.ethnicity",
    "mother.address",
    "father.name",
    "father.id_number",
    "father.nationality",
    "father.ethnicity",
    "father.address",
    *(f"documents.{kind}" for kind in DOCUMENT_KINDS),
    "signature",
    "delivery_method",
)
HANDOVER_RELATIONS: Final = ("mother", "father", "authorized")
# Why an issuing institution replaces a certificate it issued (its own error), and what became of the old blank.
REPLACEMENT_CAUSES: Final = {"misprinted": "打印错误", "damaged": "毁损"}
OLD_CERTIFICATE_FATES: Final = {"recovered": "已收回作废", "destroyed": "已销毁作废"}
# The collector's letter may be signed while the certificate is still to be collected.
LETTER_STATES: Final = (DRAFT, RETURNED, SUBMITTED, ISSUED)


def resigning_needed(fields: Iterable[str]) -> bool:
    """Whether fixing ``fields`` means signing the form again.

    A signature stands while the form is exactly what was signed (``signature_valid``): the ID photos
    and the delivery method are not on the form, so fixing only those keeps it; anything printed on the
    form, or the signature itself, needs a new one.
    """
    return any(not (f.startswith("documents.") or f == "delivery_method") for f in fields)


# WeChat's queryverifyinfo verdicts (shared/wechat-platform.md §1 row 11) as our failure codes.
FACE_PASS: Final = 10000
_FACE_FAILURES: Final = {
    10001: "face_bad_request",
    10002: "face_not_detected",
    10003: "id_mismatch",
    10004: "face_mismatch",
    10005: "face_pending",
    10006: "face_no_permission",
    10300: "face_not_finished",
}

FORM_TITLE: Final = "出生医学证明首次签发登记表（网上申办专用）"
FORM_NOTICE: Final = (
    "本表用于《出生医学证明》网上申办的申办人确认签名。须新生儿母亲发起申办，内容由申办人（刷脸认证）在线填写和或确认，"
    "请核对信息无误后签字确认。该表签字确认与现场申领签名确认具有同等效力，并承担相应法律责任。"
    "《出生医学证明》一经签发，证件上的各项信息原则上不应变更。申请邮政速递到家方式领取的，因邮政速递过程产生的费用由申办人承担，"
    "相关费用由申办人与邮政速递部门进行结算，网上申办一般5个工作日内由当地邮政机构揽件，"
    "具体证件查收可在收到发证通知后及时关注邮政官网查询。"
)
_TRACKING_RE: Final = re.compile(r"^[A-Z0-9]{10,32}$")
_OUT_SEQ_RE: Final = re.compile(r"^[0-9A-Za-z_-]{5,32}$")
_OUT_TRADE_RE: Final = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_DIGEST_RE: Final = re.compile(r"^[0-9a-f]{64}$")

# How long the father's invitation can be accepted. The code travels through a WeChat chat or a share
# card: a day is long enough for a father at work to open it, short enough that a forwarded or leaked
# card soon stops working. No policy document speaks of invitations, so this is not a provincial rule
# (provinces.json) but the service's own security setting (docs/decisions/0011-father-invitation.md).
FATHER_INVITATION_TTL: Final = timedelta(hours=24)
# The father's own part (his face check and his ID photos): everything else is the applicant's.
FATHER_DOCUMENT_KINDS: Final = ("father_id_front", "father_id_back", "father_handheld_id")

JSON = dict[str, Any]


FACE_MESSAGES: Final = {
    "face_bad_request": "刷脸认证请求无效，请重新发起",
    "face_not_detected": "未检测到人脸，请在光线充足处正对手机重试",
    "id_mismatch": "姓名与身份证号码不匹配，请核对后重试",
    "face_mismatch": "人脸与身份证信息不一致，须本人完成刷脸认证",
    "face_pending": "认证结果还在核验中，请稍后再查询",
    "face_no_permission": "暂无刷脸认证权限，请稍后再试",
    "face_not_finished": "刷脸认证尚未完成，请先完成刷脸",
    "face_client_failed": "刷脸未完成（已取消或设备权限不足），请重新发起",
    "face_failed": "刷脸认证未通过，请重试；多次失败请到签发机构现场办理",
    # A provincial app's answer that does not prove the claimed identity (docs/decisions/0030).
    "face_state_mismatch": "认证结果与本次刷脸认证不对应，请重新发起",
    "face_code_invalid": "认证授权码无效或已使用，请重新发起刷脸认证",
    "face_token_invalid": "认证结果签名无效，请重新发起刷脸认证",
    "face_nonce_mismatch": "认证结果不属于本次刷脸认证，请重新发起",
    "face_subject_mismatch": "认证结果不属于当前登录账号，请重新发起",
    "face_acr_mismatch": "认证方式不是刷脸认证，请重新发起并完成刷脸",
    "face_stale": "刷脸认证已超时，请重新发起并立即完成刷脸",
}


def face_failure_code(verify_ret: int) -> str:
    """Our stable code for a WeChat face-verification verdict that is not a pass."""
    if 90001 <= verify_ret <= 90199:
        return "face_client_failed"
    return _FACE_FAILURES.get(verify_ret, "face_failed")


# Digests of forms seen lately, keyed by a hash of the form's sorted-keys orjson bytes (never the form):
# the status and queue views and the notifications process each ask for the same version's digest, and
# RFC 8785's encoder is pure Python (~0.3 ms a form). Equal orjson bytes are equal JSON values, so a hit
# is the digest the canonical encoding gives. Bounded: emptied when full.
_DIGESTS: dict[bytes, str] = {}
_DIGESTS_KEPT: Final = 4096


def form_digest(form: JSON) -> str:
    """SHA-256 (hex) of the form's RFC 8785 canonical JSON: what the mother signs."""
    key = hashlib.blake2b(orjson.dumps(form, option=orjson.OPT_SORT_KEYS), digest_size=20).digest()
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = hashlib.sha256(rfc8785.dumps(form)).hexdigest()
        if len(_DIGESTS) >= _DIGESTS_KEPT:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return digest


def _text(value: str, field: str, *, low: int = 2, high: int = 200) -> str:
    cleaned = " ".join(value.split())
    if not low <= len(cleaned) <= high:
        raise InvalidValue(field, "invalid_text", f"请填写{low}到{high}个字")
    # A right-to-left override or a zero-width character would be printed on the certificate's archived
    # form or shown to the parent as something other than what was stored.
    if has_control(cleaned):
        raise InvalidValue(field, "invalid_characters", "含有无法显示或打印的字符，请重新输入")
    return cleaned


class NotReady(RuleViolated):
    """A step the command needs has not been done yet; ``missing`` names them."""

    code = "not_ready"
    message = "申请还有未完成的步骤"

    def __init__(self, missing: list[str]) -> None:
        names = "、".join(STEP_NAMES.get(step, step) for step in missing)
        super().__init__(f"请先完成：{names}")
        self.missing = list(missing)


class BundleMaterialsMissing(NotReady):
    """She opted in to a service whose department needs materials of 表1 not uploaded yet (0047); ``errors``
    names each as ``documents.<kind>``."""

    code = "bundle_materials_missing"

    def __init__(self, kinds: list[str]) -> None:
        labels = "、".join(MATERIAL_KINDS[k] for k in kinds)
        RuleViolated.__init__(self, f"请先上传一件事一次办所需材料：{labels}")
        self.missing = ["bundle_materials_uploaded"]
        self.errors = [
            FieldError(f"documents.{k}", "required", f"请上传{MATERIAL_KINDS[k]}照片") for k in kinds
        ]


STEP_NAMES: Final = {
    "mother_verified": "母亲刷脸认证",
    "delivery_record_linked": "关联分娩记录",
    "delivery_info_confirmed": "确认分娩信息",
    "details_provided": "填写新生儿姓名及父母信息",
    "father_verified": "父亲刷脸认证（或上传父亲手持身份证照片）",
    "father_documents_uploaded": "上传父亲身份证照片",
    "documents_uploaded": "上传父母身份证照片",
    "bundle_materials_uploaded": "上传一件事一次办材料（户口簿、结婚证）",
    "form_signed": "在登记表上电子签名",
    "delivery_method_chosen": "选择领取方式",
    "postage_paid": "支付邮寄费用",
}


class BirthCertificateApplication(Aggregate):
    """One application for a first Birth Medical Certificate, started by the newborn's mother."""

    TOPIC = "birthcert:BirthCertificateApplication"
    # v2 added the father's invitation (father_invitation, invitation_digests, father_user_id,
    # father_joined_digest); v3 added province_chosen (docs/decisions/0013-province-from-institution.md):
    # snapshots taken before them are upcast below. v4 added replacements, pickup_appointment,
    # collector_letter and collector_check (docs/decisions/0032-replacement-and-pickup.md).
    # v5 added named_institution, face_failure_day and referral (docs/decisions/0033).
    # v6 added elicenses, every e-licence generated (docs/decisions/0038).
    class_version = 6
    # The hospital's side (docs/decisions/0034-hospital-worklist.md): when she last disputed the record, the
    # hospital's answer to that dispute, the delivery record she reported missing, and that record once entered
    # (until she links it). Class defaults stand in for snapshots taken before these existed (new attributes
    # with class defaults, no class_version bump).
    disputed_at: str | None = None
    dispute_answer: JSON | None = None
    delivery_awaited: JSON | None = None
    awaited_record_entered: JSON | None = None
    # 出生一件事 (domain/bundle.py, docs/decisions/0044): her opt-in {services, values, parents_married,
    # requested_at}, None when she has not opted in or withdrew it. A class default, like the above.
    bundle: JSON | None = None
    # Each bundle service's hand-off and its department's latest answer (docs/decisions/0046), by service code:
    # {department, state, message_id, reason, result, result_ids, at, version}. A class default like the above;
    # only ever replaced, never mutated in place.
    bundle_services: JSON | None = None
    # The institution's declaration that the certificate is void (CertificateRevoked, docs/decisions/0040):
    # {certificate_number, reason, note, counter, bring, at}. A class default as above.
    revocation: JSON | None = None

    @staticmethod
    def upcast_v1_v2(state: JSON) -> None:
        """Snapshots from before invitations existed: nobody was invited, no father joined."""
        state.setdefault("father_invitation", None)
        state.setdefault("invitation_digests", [])
        state.setdefault("father_user_id", None)
        state.setdefault("father_joined_digest", None)

    @staticmethod
    def upcast_v2_v3(state: JSON) -> None:
        """Snapshots from before a province could be adopted: the start's province was binding ("chosen")."""
        state.setdefault("province_chosen", True)

    @staticmethod
    def upcast_v3_v4(state: JSON) -> None:
        """Snapshots from before replacements and appointments: none made, no letter, no counter check."""
        state.setdefault("replacements", [])
        state.setdefault("pickup_appointment", None)
        state.setdefault("collector_letter", None)
        state.setdefault("collector_check", None)

    @staticmethod
    def upcast_v4_v5(state: JSON) -> None:
        """Snapshots from before referrals named the counter: no institution named at the start, no failed
        face check counted (the day's count starts again), a referral told only by its reason."""
        state.setdefault("named_institution", None)
        state.setdefault("face_failure_day", None)
        reason = state.get("counter_reason")
        state.setdefault(
            "referral",
            None if reason is None else {"reason": reason, "message": "", "counter": None, "bring": []},
        )

    @staticmethod
    def upcast_v5_v6(state: JSON) -> None:
        """Snapshots from before e-licences were generated: none was."""
        state.setdefault("elicenses", [])

    class Event(Aggregate.Event):
        """Base of this aggregate's events: each records who acted (``Actor.to_dict()``)."""

        actor: JSON

    class ApplicationStarted(Event, Aggregate.Created):
        """The mother started an application. ``policy`` is the province profile as it was then.

        v2 added ``province_chosen``: False when she named no province, so that ``province`` is the
        deployment's default until her delivery record's institution says which (ProvinceAdopted).
        """

        TOPIC = "birthcert:ApplicationStarted"
        class_version = 2
        applicant_id: str
        province: str
        policy: JSON
        circumstances: JSON
        province_chosen: bool

        @staticmethod
        def upcast_v1_v2(state: JSON) -> None:
            """v1 events predate adoption: the province they name was the one the application kept."""
            state["province_chosen"] = True

    Created = ApplicationStarted

    class FaceVerificationRequested(Event):
        """A verify_id was obtained from WeChat for this claimed identity; ``out_seq_no`` is ours."""

        TOPIC = "birthcert:FaceVerificationRequested"
        role: str
        out_seq_no: str
        verify_id: str
        name: str
        id_number: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.pending_face[self.out_seq_no] = {
                "role": self.role,
                "verify_id": self.verify_id,
                "name": self.name,
                "id_number": self.id_number,
                # WeChat binds the verify_id to this user's openid: only they can fetch the verdict.
                "by": self.actor.get("id"),
            }

    class FaceVerificationFailed(Event):
        """The face check did not pass. ``code`` is ours, ``verify_ret`` WeChat's (0 where a provincial app
        checked: its reason is in ``code``).

        v2 added ``channel``: ``wechat`` or the provincial app that checked (docs/decisions/0030).
        """

        TOPIC = "birthcert:FaceVerificationFailed"
        class_version = 2
        role: str
        out_seq_no: str
        verify_ret: int
        code: str
        channel: str

        @staticmethod
        def upcast_v1_v2(state: JSON) -> None:
            """v1 events predate the provincial apps' face checks: WeChat checked."""
            state["channel"] = WECHAT

        def apply(self, a: BirthCertificateApplication) -> None:
            a.pending_face.pop(self.out_seq_no, None)
            a.face_failures += 1
            a.face_failure_day = tally_face_failure(a.face_failure_day, self.role, self.code, self.timestamp)

    class FaceVerified(Event):
        """A parent passed face verification (verify_ret 10000) as this name and resident ID number.

        v2 added ``channel``: ``wechat``, or the provincial app (``yueshengshi``, …) whose OpenID Connect
        step-up proved it; ``verify_ret`` is then 10000 too (docs/decisions/0030).
        """

        TOPIC = "birthcert:FaceVerified"
        class_version = 2
        role: str
        out_seq_no: str
        name: str
        id_number: str
        verify_ret: int
        channel: str

        @staticmethod
        def upcast_v1_v2(state: JSON) -> None:
            """v1 events predate the provincial apps' face checks: WeChat checked."""
            state["channel"] = WECHAT

        def apply(self, a: BirthCertificateApplication) -> None:
            a.pending_face.pop(self.out_seq_no, None)
            a.verified[self.role] = {"name": self.name, "id_number": self.id_number}

    class ProvinceAdopted(Event):
        """She named no province at the start, and her delivery record's institution is in ``province``:
        the application follows that province's profile (``policy``, as it was then) from now on.

        Always in the same save as, and just before, the DeliveryRecordLinked of that record.
        """

        TOPIC = "birthcert:ProvinceAdopted"
        province: str
        policy: JSON

        def apply(self, a: BirthCertificateApplication) -> None:
            a.province = self.province
            a.policy = dict(self.policy)

    class DeliveryRecordLinked(Event):
        """The hospital's delivery record whose mother is the verified mother; ``record`` is its content."""

        TOPIC = "birthcert:DeliveryRecordLinked"
        delivery_record_id: str
        institution: str
        record: JSON

        def apply(self, a: BirthCertificateApplication) -> None:
            a.delivery_record_id = self.delivery_record_id
            a.institution = self.institution
            a.record = dict(self.record)
            a.delivery_confirmed = None
            a.awaited_record_entered = None

    class DeliveryRecordRefreshed(Event):
        """The hospital corrected the linked record; the mother must confirm it and sign again.

        An application under review goes back to the parent: its signature no longer covers the form.
        """

        TOPIC = "birthcert:DeliveryRecordRefreshed"
        delivery_record_id: str
        record: JSON
        reason: str

        def apply(self, a: BirthCertificateApplication) -> None:
            if a.dispute_reason:  # it answers her dispute (open, or upheld before and corrected now)
                a.dispute_answer = {
                    "outcome": "corrected",
                    "reason": self.reason,
                    "at": self.timestamp.isoformat(),
                }
            a.record = dict(self.record)
            a.delivery_confirmed = None
            if a.state == SUBMITTED:
                a.state = RETURNED
                a.rejection = {
                    "reasons": [f"医院已更正分娩信息：{self.reason}"],
                    "fields": ["delivery_record"],
                }

    class DeliveryInfoConfirmed(Event):
        """The mother confirmed the delivery record as shown to her."""

        TOPIC = "birthcert:DeliveryInfoConfirmed"

        def apply(self, a: BirthCertificateApplication) -> None:
            a.delivery_confirmed = True
            a.dispute_reason = None

    class DeliveryInfoDisputed(Event):
        """The mother says the delivery record is wrong; the hospital must correct it."""

        TOPIC = "birthcert:DeliveryInfoDisputed"
        reason: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.delivery_confirmed = False
            a.dispute_reason = self.reason
            a.disputed_at = self.timestamp.isoformat()
            a.dispute_answer = None

    class DetailsProvided(Event):
        """The newborn's name and the parents' details. ``father`` is None for a single mother."""

        TOPIC = "birthcert:DetailsProvided"
        newborn_name: str
        mother: JSON
        father: JSON | None

        def apply(self, a: BirthCertificateApplication) -> None:
            a.details = {"newborn_name": self.newborn_name, "mother": self.mother, "father": self.father}

    class DocumentUploaded(Event):
        """An ID photo was stored (encrypted, content-addressed); only its reference is here."""

        TOPIC = "birthcert:DocumentUploaded"
        kind: str
        document_id: str
        sha256: str
        content_type: str
        size: int

        def apply(self, a: BirthCertificateApplication) -> None:
            a.documents[self.kind] = {
                "document_id": self.document_id,
                "sha256": self.sha256,
                "content_type": self.content_type,
                "size": self.size,
            }

    class FatherIdPhotoAccepted(Event):
        """Where the province allows it: a photo of the father holding his ID stands in for his face check."""

        TOPIC = "birthcert:FatherIdPhotoAccepted"
        document_id: str
        father_id_number: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.father_handheld_for = self.father_id_number

    class FatherInvited(Event):
        """The mother invited the father to verify on his own WeChat account; a later one supersedes it.

        Only ``invitation_digest`` (HMAC-SHA256 of the code under the index key, hex) is recorded, never
        the code itself; ``expires_at`` is ISO 8601 with offset.
        """

        TOPIC = "birthcert:FatherInvited"
        invitation_digest: str
        expires_at: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.father_invitation = {"digest": self.invitation_digest, "expires_at": self.expires_at}
            a.invitation_digests = [*a.invitation_digests, self.invitation_digest]

    class FatherJoined(Event):
        """The father accepted the invitation on his own account: ``actor.id`` is his user id from now on."""

        TOPIC = "birthcert:FatherJoined"
        invitation_digest: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.father_user_id = str(self.actor["id"])
            a.father_joined_digest = self.invitation_digest
            a.father_invitation = None

    class FormSigned(Event):
        """The mother e-signed exactly ``form`` (canonical JSON hashed to ``form_sha256``)."""

        TOPIC = "birthcert:FormSigned"
        form: JSON
        form_sha256: str
        signature_document_id: str
        signature_sha256: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.signature = {
                "form_sha256": self.form_sha256,
                "signature_document_id": self.signature_document_id,
                "signature_sha256": self.signature_sha256,
            }
            a.signatures += 1

    class DeliveryMethodChosen(Event):
        """EMS to ``recipient`` ({name, phone, address}) or on-site pickup (recipient None)."""

        TOPIC = "birthcert:DeliveryMethodChosen"
        method: str
        recipient: JSON | None

        def apply(self, a: BirthCertificateApplication) -> None:
            a.delivery_method = {"method": self.method, "recipient": self.recipient}

    class PostageOrderPlaced(Event):
        """A WeChat Pay order for the postage; the notification must match its amount."""

        TOPIC = "birthcert:PostageOrderPlaced"
        out_trade_no: str
        amount_fen: int

        def apply(self, a: BirthCertificateApplication) -> None:
            a.postage_orders[self.out_trade_no] = self.amount_fen

    class PostagePaid(Event):
        """WeChat Pay confirmed the postage order (signature and amount checked)."""

        TOPIC = "birthcert:PostagePaid"
        out_trade_no: str
        amount_fen: int
        transaction_id: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.postage_paid = {"out_trade_no": self.out_trade_no, "transaction_id": self.transaction_id}

    class Submitted(Event):
        """Sent to the issuing institution for review. ``submission`` counts from 1."""

        TOPIC = "birthcert:Submitted"
        submission: int
        form_sha256: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = SUBMITTED
            a.submissions = self.submission
            a.rejection = None
            if a.first_submitted_at is None:
                a.first_submitted_at = self.timestamp.isoformat()
            a.submitted_at = self.timestamp.isoformat()

    class Rejected(Event):
        """Sent back to the parent with reasons and the fields to fix.

        v2 added ``reason_codes`` (domain/rejection.py, docs/decisions/0045): the catalogue's codes, at least
        one; ``reasons`` is the issuer's own words, which ``other`` requires and any code may add to.
        """

        TOPIC = "birthcert:Rejected"
        class_version = 2
        reasons: list[str]
        fields: list[str]
        reason_codes: list[str]

        @staticmethod
        def upcast_v1_v2(state: JSON) -> None:
            """v1 rejections were the issuer's words only: what ``other`` means (and a body without codes)."""
            state["reason_codes"] = [OTHER_REJECTION]

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = RETURNED
            a.rejection = {
                "reasons": list(self.reasons),
                "fields": list(self.fields),
                "reason_codes": list(self.reason_codes),
            }

    class ReferredToCounter(Event):
        """The application can no longer proceed online; the parents must go to the counter.

        v2 added what the parent was told (domain/referral.py, docs/decisions/0033): ``message``, ``counter``
        (the institution's code and name, its counter's address, telephone and opening hours as they were
        then; None when no institution was known) and ``bring`` (the materials for the reason).
        """

        TOPIC = "birthcert:ReferredToCounter"
        class_version = 2
        reason: str
        message: str
        counter: JSON | None
        bring: list[str]

        @staticmethod
        def upcast_v1_v2(state: JSON) -> None:
            """v1 referrals recorded only the reason: told with today's words and materials, no counter."""
            state["message"] = ""
            state["counter"] = None
            state["bring"] = []

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = COUNTER_ONLY
            a.counter_reason = self.reason
            a.referral = {
                "reason": self.reason,
                "message": self.message,
                "counter": self.counter,
                "bring": list(self.bring),
            }

    class Withdrawn(Event):
        """The mother withdrew the application before issue."""

        TOPIC = "birthcert:Withdrawn"
        reason: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = WITHDRAWN

    class Issued(Event):
        """The certificate was printed on the blank numbered ``certificate_number``."""

        TOPIC = "birthcert:Issued"
        certificate_number: str
        issuer_name: str
        sealer_name: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = ISSUED
            a.certificate_number = self.certificate_number

    class Dispatched(Event):
        """Handed to the courier with this waybill number. v2 added ``carrier``."""

        TOPIC = "birthcert:Dispatched"
        class_version = 2
        tracking_number: str
        carrier: str

        @staticmethod
        def upcast_v1_v2(state: JSON) -> None:
            """v1 events predate other carriers: every one of them went by EMS."""
            state["carrier"] = "EMS"

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = DISPATCHED
            a.tracking_number = self.tracking_number

    class Delivered(Event):
        """The courier reported the parcel signed for."""

        TOPIC = "birthcert:Delivered"
        tracking_number: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = DELIVERED

    class CollectedOnSite(Event):
        """Handed over at the counter to this recipient (name, relation, ID number).

        v2 added ``face_check_seq_no``: the collector's passed face check at the counter against the ID shown
        (CollectorFaceVerified), and ``authorization_sha256``: the mother's signed letter naming the collector
        (CollectorAuthorized), when one was needed or shown.
        """

        TOPIC = "birthcert:CollectedOnSite"
        class_version = 2
        recipient_name: str
        relation: str
        recipient_id_number: str
        face_check_seq_no: str | None
        authorization_sha256: str | None

        @staticmethod
        def upcast_v1_v2(state: JSON) -> None:
            """v1 handovers predate the counter's face check and the letter: neither was recorded."""
            state["face_check_seq_no"] = None
            state["authorization_sha256"] = None

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = COLLECTED
            a.collector_check = None

    class LossReported(Event):
        """The courier lost or damaged the parcel; a reissue with a new number follows."""

        TOPIC = "birthcert:LossReported"
        tracking_number: str
        reason: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = LOST

    class Reissued(Event):
        """Printed again on a new blank; the old number is void; the registered data is unchanged."""

        TOPIC = "birthcert:Reissued"
        certificate_number: str
        voided_certificate_number: str
        issuer_name: str
        sealer_name: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = ISSUED
            a.voided_numbers.append(self.voided_certificate_number)
            a.certificate_number = self.certificate_number
            a.tracking_number = None

    class ELicenseIssued(Event):
        """The electronic certificate (电子证照) was generated for the certificate ``certificate_number``.

        v2 (docs/decisions/0038) added what identifies the credential without any personal data: the
        ``certificate_number`` it is for, the ``key_id`` of the key that signed it, and its Token Status List
        entry (``status_list``, ``status_index``), where part B's revocation flips its bit.
        """

        TOPIC = "birthcert:ELicenseIssued"
        class_version = 2
        licence_id: str
        certificate_number: str
        key_id: str
        status_list: str | None
        status_index: int | None

        @staticmethod
        def upcast_v1_v2(state: JSON) -> None:
            """v1 (never written by a release: nothing called it) named the licence only."""
            state["certificate_number"] = ""
            state["key_id"] = ""
            state["status_list"] = None
            state["status_index"] = None

        def apply(self, a: BirthCertificateApplication) -> None:
            _record_elicense(a, self)

    class ELicenseAmended(Event):
        """The electronic certificate of ``certificate_number`` was amended to a new version (docs/decisions/0048):
        the police registered the newborn's 户口 and the province puts the registration (name, citizen ID number,
        户籍地) into the e-licence's record. ``licence_id`` is the new version's identifier (same sequence, version
        002), ``amends`` the one it supersedes; its status entry like ``ELicenseIssued``'s. No personal data."""

        TOPIC = "birthcert:ELicenseAmended"
        licence_id: str
        amends: str
        certificate_number: str
        key_id: str
        status_list: str
        status_index: int

        def apply(self, a: BirthCertificateApplication) -> None:
            _record_elicense(a, self, amends=self.amends)

    class CertificateReplaced(Event):
        """The issuing institution's own error (粤卫办妇幼函〔2020〕26号 五(一); Shandong 4(D)2): the certificate
        was misprinted or damaged (``cause``), so it was printed again on a new blank. The old number is void,
        the old blank ``recovered`` or ``destroyed`` (``old_certificate``); the registered data is unchanged.
        Not a loss in the post: that is LossReported → Reissued."""

        TOPIC = "birthcert:CertificateReplaced"
        certificate_number: str
        voided_certificate_number: str
        cause: str
        old_certificate: str
        note: str
        issuer_name: str
        sealer_name: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = ISSUED
            a.voided_numbers.append(self.voided_certificate_number)
            a.replacements.append(
                {
                    "certificate_number": self.certificate_number,
                    "voided_certificate_number": self.voided_certificate_number,
                    "cause": self.cause,
                    "old_certificate": self.old_certificate,
                    "at": self.timestamp.isoformat(),
                }
            )
            a.certificate_number = self.certificate_number
            a.tracking_number = None
            a.collector_check = None

    class CertificateRevoked(Event):
        """The issuing institution, after its review, declared the certificate ``voided_certificate_number`` void
        (宣布作废) for ``reason`` (domain/revocation.py: ``obtained_by_deception``, ``issued_in_error``,
        ``court_order``); ``note`` is the issuer's account of it, read by the institution's issuers and by
        auditors only (it may name people: never projected). ``counter`` and ``bring``: the institution's counter
        and the materials, as the family was told them (a referral's, docs/decisions/0033). Nothing follows
        online: no e-licence, no courier, no replacement; the old e-licence's bit is set (docs/decisions/0040)."""

        TOPIC = "birthcert:CertificateRevoked"
        voided_certificate_number: str
        reason: str
        note: str
        counter: JSON | None
        bring: list[str]

        def apply(self, a: BirthCertificateApplication) -> None:
            a.state = REVOKED
            a.revocation = {
                "certificate_number": self.voided_certificate_number,
                "reason": self.reason,
                "note": self.note,
                "counter": self.counter,
                "bring": list(self.bring),
                "at": self.timestamp.isoformat(),
            }
            a.collector_check = None

    class PickupBooked(Event):
        """The mother booked a time to collect at the issuing institution (预约取证); a later one replaces it.
        ``date`` is ISO, ``start``/``end`` HH:MM Beijing time, one of the institution's pickup windows."""

        TOPIC = "birthcert:PickupBooked"
        date: str
        start: str
        end: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.pickup_appointment = {"date": self.date, "start": self.start, "end": self.end}

    class CollectorAuthorized(Event):
        """The mother e-signed a 授权委托书: ``letter['agent']`` may collect for her (canonical JSON hashed to
        ``letter_sha256``, her signature image by reference). A later letter supersedes it."""

        TOPIC = "birthcert:CollectorAuthorized"
        letter: JSON
        letter_sha256: str
        signature_document_id: str
        signature_sha256: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.collector_letter = {
                "name": self.letter["agent"]["name"],
                "id_number": self.letter["agent"]["id_number"],
                "letter_sha256": self.letter_sha256,
                "signed_at": self.timestamp.isoformat(),
            }

    class CollectorCheckOpened(Event):
        """At the counter, the issuer typed the name and ID number of the ID the collector shows, and opened a
        face check of that person (one-time code; only its keyed digest ``check_digest`` is recorded).
        ``expires_at`` is ISO 8601 with offset; a later check supersedes it."""

        TOPIC = "birthcert:CollectorCheckOpened"
        check_digest: str
        name: str
        id_number: str
        expires_at: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.collector_check = {
                "digest": self.check_digest,
                "name": self.name,
                "id_number": self.id_number,
                "expires_at": self.expires_at,
                "status": "opened",
                "out_seq_no": None,
                "pending": {},
                "verdicts": {},
            }

    class CollectorFaceCheckRequested(Event):
        """WeChat gave a verify_id for the open check, to the WeChat user (``actor``) who opened its code."""

        TOPIC = "birthcert:CollectorFaceCheckRequested"
        check_digest: str
        out_seq_no: str
        verify_id: str

        def apply(self, a: BirthCertificateApplication) -> None:
            if a.collector_check is not None:
                a.collector_check["pending"][self.out_seq_no] = {
                    "verify_id": self.verify_id,
                    "by": self.actor.get("id"),
                }

    class CollectorFaceVerified(Event):
        """The collector passed WeChat's face check (verify_ret 10000) as the name and ID number shown."""

        TOPIC = "birthcert:CollectorFaceVerified"
        check_digest: str
        out_seq_no: str
        name: str
        id_number: str
        verify_ret: int

        def apply(self, a: BirthCertificateApplication) -> None:
            check = a.collector_check
            if check is not None:
                check["pending"].pop(self.out_seq_no, None)
                check["verdicts"][self.out_seq_no] = None
                check["status"] = "verified"
                check["out_seq_no"] = self.out_seq_no

    class CollectorFaceCheckFailed(Event):
        """The collector's face check did not pass. ``code`` is ours, ``verify_ret`` WeChat's."""

        TOPIC = "birthcert:CollectorFaceCheckFailed"
        check_digest: str
        out_seq_no: str
        verify_ret: int
        code: str

        def apply(self, a: BirthCertificateApplication) -> None:
            check = a.collector_check
            if check is not None:
                check["pending"].pop(self.out_seq_no, None)
                check["verdicts"][self.out_seq_no] = self.code
                check["status"] = "failed"

    class DeliveryRecordUpheld(Event):
        """The hospital answered the mother's dispute: the record stands as entered, for ``reason`` (the
        record's RecordUpheld, in the same save). Her dispute is closed: she confirms the record, disputes it
        again, or goes to the counter."""

        TOPIC = "birthcert:DeliveryRecordUpheld"
        delivery_record_id: str
        reason: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.delivery_confirmed = None
            a.dispute_answer = {"outcome": "upheld", "reason": self.reason, "at": self.timestamp.isoformat()}

    class DeliveryReportedMissing(Event):
        """The verified mother found no delivery record and named the institution (``institution``, its name as
        it was then) where she gave birth on ``born_on``: its worklist shows the record as missing, overdue after
        ``entry_due_at`` (the province's entry deadline counted from the end of that day; None where the
        province sets none). A later report replaces it."""

        TOPIC = "birthcert:DeliveryReportedMissing"
        institution: str
        institution_name: str
        born_on: str
        entry_due_at: str | None

        def apply(self, a: BirthCertificateApplication) -> None:
            a.delivery_awaited = {
                "institution": self.institution,
                "institution_name": self.institution_name,
                "born_on": self.born_on,
                "entry_due_at": self.entry_due_at,
                "reported_at": self.timestamp.isoformat(),
            }

    class AwaitedDeliveryRecorded(Event):
        """A hospital entered the delivery record she reported missing (its DeliveryRecorded is in the same
        save): she can look at it now. ``entered_late``: past the province's entry deadline."""

        TOPIC = "birthcert:AwaitedDeliveryRecorded"
        delivery_record_id: str
        institution: str
        entered_late: bool

        def apply(self, a: BirthCertificateApplication) -> None:
            reported = a.delivery_awaited or {}
            # The name she picked, when the institution she named entered it (another may have: no name then).
            same = reported.get("institution") == self.institution
            a.awaited_record_entered = {
                "institution": self.institution,
                "institution_name": reported.get("institution_name") if same else None,
                "entered_at": self.timestamp.isoformat(),
            }
            a.delivery_awaited = None

    class InstitutionNamed(Event):
        """At the start she named the institution where she gave birth (the hospital's QR code carries its
        code): a referral sends her to its counter while no delivery record is linked. Always in the start's
        save, just after ApplicationStarted; the linked record's institution prevails (docs/decisions/0033)."""

        TOPIC = "birthcert:InstitutionNamed"
        institution: str

        def apply(self, a: BirthCertificateApplication) -> None:
            a.named_institution = self.institution

    class BundleRequested(Event):
        """The mother opted in to the province's 出生一件事 (or changed her opt-in; a later one replaces it):
        ``services`` (codes, the certificate among them), ``values`` the extra fields of 表2 she chose or typed
        (addresses, the bank, the card's pickup place: personal, encrypted at rest with the event like the
        details), ``parents_married`` her statement (现行婚姻内生育, the 结婚证 of 表1). What the application
        already held is not repeated here: the form derives it (docs/decisions/0044)."""

        TOPIC = "birthcert:BundleRequested"
        services: list[str]
        values: JSON
        parents_married: bool

        def apply(self, a: BirthCertificateApplication) -> None:
            a.bundle = {
                "services": list(self.services),
                "values": dict(self.values),
                "parents_married": self.parents_married,
                "requested_at": self.timestamp.isoformat(),
            }

    class BundleServiceUpdated(Event):
        """A department's part of 出生一件事 moved on (docs/decisions/0046): ``sent`` (the hand-off process
        delivered message ``message_id``), or the department's answer ``accepted``, ``refused`` (``reason``) or
        ``done`` (``result``: the police's carries the newborn's registered name and citizen ID number,
        personal data sealed with the event at rest, masked in every view). ``result_id`` is the department's
        id of its answer: the same one again records nothing."""

        TOPIC = "birthcert:BundleServiceUpdated"
        service: str
        department: str
        state: str
        message_id: str
        result_id: str | None
        reason: str | None
        result: JSON

        def apply(self, a: BirthCertificateApplication) -> None:
            services = dict(a.bundle_services or {})
            before = services.get(self.service) or {}
            ids = list(before.get("result_ids", []))
            if self.result_id is not None:
                ids.append(self.result_id)
            services[self.service] = {
                "department": self.department,
                "state": self.state,
                "message_id": self.message_id,
                "reason": self.reason,
                "result": dict(self.result),
                "result_ids": ids,
                "at": self.timestamp.isoformat(),
                "version": self.originator_version,
                "sent_at": before.get("sent_at") or self.timestamp.isoformat(),
            }
            a.bundle_services = services

    class BundleWithdrawn(Event):
        """The mother withdrew her opt-in before submission: the certificate alone is applied for."""

        TOPIC = "birthcert:BundleWithdrawn"

        def apply(self, a: BirthCertificateApplication) -> None:
            a.bundle = None

    # ------------------------------------------------------------------ construction

    def __init__(
        self,
        actor: JSON,
        applicant_id: str,
        province: str,
        policy: JSON,
        circumstances: JSON,
        province_chosen: bool = True,
    ) -> None:
        self.applicant_id = applicant_id
        self.province = province
        self.province_chosen = province_chosen
        self.policy = dict(policy)
        self.circumstances = dict(circumstances)
        self.state: str = DRAFT
        self.pending_face: dict[str, JSON] = {}
        self.face_failures = 0
        self.verified: dict[str, JSON] = {}
        self.delivery_record_id: str | None = None
        self.institution: str | None = None
        self.record: JSON | None = None
        self.delivery_confirmed: bool | None = None
        self.dispute_reason: str | None = None
        self.details: JSON | None = None
        self.documents: dict[str, JSON] = {}
        self.father_handheld_for: str | None = None
        self.signature: JSON | None = None
        self.signatures = 0
        self.delivery_method: JSON | None = None
        self.postage_orders: dict[str, int] = {}
        self.postage_paid: JSON | None = None
        self.submissions = 0
        self.first_submitted_at: str | None = None
        self.submitted_at: str | None = None
        self.rejection: JSON | None = None
        self.counter_reason: str | None = None
        self.certificate_number: str | None = None
        self.voided_numbers: list[str] = []
        self.tracking_number: str | None = None
        self.licence_id: str | None = None
        # Every e-licence generated, oldest first: {licence_id, certificate_number, key_id, at}.
        self.elicenses: list[JSON] = []
        self.father_invitation: JSON | None = None
        self.invitation_digests: list[str] = []
        self.father_user_id: str | None = None
        self.father_joined_digest: str | None = None
        self.replacements: list[JSON] = []
        self.pickup_appointment: JSON | None = None
        self.collector_letter: JSON | None = None
        self.collector_check: JSON | None = None

        self.named_institution: str | None = None
        self.face_failure_day: JSON | None = None
        self.referral: JSON | None = None

    @classmethod
    def start(
        cls,
        *,
        id: UUID,
        actor: Actor,
        profile: ProvinceProfile,
        circumstances: Circumstances,
        province_chosen: bool = True,
        institution: Institution | None = None,
    ) -> BirthCertificateApplication:
        """Only a parent (the mother, proven by her face check later) starts, and only for an online case.

        ``province_chosen`` is False when she named no province and ``profile`` is the deployment's
        default: her delivery record's institution then decides the province (``link_delivery_record``).
        ``institution``: where she says she gave birth, if she named it (InstitutionNamed).
        """
        if actor.role != "parent":
            raise Forbidden("只有新生儿母亲可以发起申办")
        if institution is not None and institution.province != profile.code:
            raise InvalidValue(
                "institution", "institution_wrong_province", "所选分娩机构不在所选省份，请核对省份和分娩机构"
            )
        _check_online(profile, circumstances)
        app = cls._create(
            cls.ApplicationStarted,
            id=id,
            actor=actor.to_dict(),
            applicant_id=actor.id,
            province=profile.code,
            policy=profile.to_dict(),
            circumstances=_circumstances_dict(circumstances),
            province_chosen=bool(province_chosen),
        )
        if institution is not None:
            app.trigger_event(cls.InstitutionNamed, actor=actor.to_dict(), institution=institution.code)
        return app

    # ------------------------------------------------------------------ derived state

    @property
    def profile(self) -> ProvinceProfile:
        """The province profile snapshotted when the application started."""
        return ProvinceProfile.from_dict(self.policy)

    def profile_after_linking(self, province: str) -> ProvinceProfile:
        """The profile the application would follow with a delivery record of ``province`` linked.

        Its own, unless she named no province at the start and the record's institution is in another
        province with a profile: that one is adopted at the link. Refusals are ``link_delivery_record``'s.
        """
        if province == self.province or self.province_chosen:
            return self.profile
        try:
            return get_profile(province)
        except InvalidValue:
            return self.profile

    @property
    def counter_institution(self) -> str | None:
        """The institution whose counter a referral names: the linked record's, else the one she named."""
        return self.institution or self.named_institution

    @property
    def stated_circumstances(self) -> Circumstances:
        """The circumstances the mother stated when she started."""
        fields = {f.name for f in dataclasses.fields(Circumstances)}
        return Circumstances(**{k: v for k, v in self.circumstances.items() if k in fields})

    @property
    def two_parents(self) -> bool:
        """Whether the father is on the certificate (双亲) rather than a single mother."""
        return bool(self.circumstances.get("parents") == "both")

    @property
    def father_confirmed(self) -> bool:
        """The father in the details passed his face check, or his handheld-ID photo was accepted."""
        if not self.two_parents:
            return True
        if self.details is None or self.details["father"] is None:
            return False
        father_id = self.details["father"]["id_number"]
        verified = self.verified.get("father")
        if verified is not None and verified["id_number"] == father_id:
            return True
        return self.father_handheld_for == father_id and self.profile.father_handheld_id_allowed

    def form(self) -> JSON | None:
        """The registration form (附件 3) as it would be signed now, or None while incomplete."""
        mother = self.verified.get("mother")
        if mother is None or self.record is None or self.details is None:
            return None
        record = self.record
        born_on = datetime.fromisoformat(record["born_at"]).date()
        mother_details = self.details["mother"]
        father_details = self.details["father"]
        father: JSON | None = None
        if father_details is not None:
            father = {
                "name": father_details["name"],
                "age": _age_on(father_details["id_number"], father_details.get("birth_date"), born_on),
                "nationality": father_details["nationality"],
                "ethnicity": father_details["ethnicity"],
                "id_type": father_details.get("id_type", "resident_id"),
                "id_number": father_details["id_number"],
                "address": father_details["address"],
            }
        return {
            "title": FORM_TITLE,
            "delivery": {
                "mother_name": record["mother_name"],
                "inpatient_no": record["inpatient_no"],
                "newborn_sex": record["newborn_sex"],
                "born_at": record["born_at"],
                "gestational_weeks": record["gestational_weeks"],
                "weight_g": record["weight_g"],
                "length_cm": record["length_cm"],
                "birthplace": record["birthplace"],
                "institution_code": record["institution_code"],
                "institution_name": record["institution_name"],
                "attendant": record["attendant"],
                "entered_on": record["entered_on"],
            },
            "newborn": {"name": self.details["newborn_name"]},
            "mother": {
                "name": mother["name"],
                "age": _age_on(mother["id_number"], None, born_on),
                "nationality": mother_details["nationality"],
                "ethnicity": mother_details["ethnicity"],
                "id_type": id_type_of(mother["id_number"]),
                "id_number": mother["id_number"],
                "address": mother_details["address"],
            },
            "father": father,
            "notice": FORM_NOTICE,
            # Only with an opt-in, so that a form without one hashes as it always did (decision 0004).
            **({} if self.bundle is None else {"bundle": self._bundle_form()}),
        }

    def form_sha256(self) -> str | None:
        """The hash the mother must sign now, or None while the form is incomplete."""
        form = self.form()
        return None if form is None else form_digest(form)

    @property
    def signature_valid(self) -> bool:
        """A signature stands only while the form is exactly what was signed."""
        return self.signature is not None and self.signature["form_sha256"] == self.form_sha256()

    @property
    def postage_required(self) -> bool:
        """Whether the province charges postage up front for the chosen delivery method."""
        method = self.delivery_method
        return bool(method and method["method"] == "ems" and self.profile.postage == "prepaid")

    def missing_for_signing(self) -> list[str]:
        """The steps still needed before the mother can sign."""
        missing = []
        if "mother" not in self.verified:
            missing.append("mother_verified")
        if self.record is None:
            missing.append("delivery_record_linked")
        elif self.delivery_confirmed is not True:
            missing.append("delivery_info_confirmed")
        if self.details is None:
            missing.append("details_provided")
        if not self.father_confirmed:
            missing.append("father_verified")
        return missing

    def missing_for_submission(self) -> list[str]:
        """The steps still needed before the application can be submitted."""
        missing = self.missing_for_signing()
        if [k for k in self.required_documents() if k not in self.documents]:
            missing.append("documents_uploaded")
        if self.missing_bundle_materials():
            missing.append("bundle_materials_uploaded")
        if not self.signature_valid:
            missing.append("form_signed")
        if self.delivery_method is None:
            missing.append("delivery_method_chosen")
        elif self.postage_required and self.postage_paid is None:
            missing.append("postage_paid")
        return missing

    def missing_for_father(self) -> list[str]:
        """What the father himself still has to do: his face check and his ID photos (his view's steps)."""
        if not self.two_parents:
            return []
        missing = []
        verified = self.verified.get("father")
        # Before the details name him, a passed check is his part done; after, it must be the named father.
        if not self.father_confirmed and (verified is None or self.details is not None):
            missing.append("father_verified")
        if [k for k in self.required_documents() if k.startswith("father_") and k not in self.documents]:
            missing.append("father_documents_uploaded")
        return missing

    def required_documents(self) -> list[str]:
        """ID photos (front and back) of each parent on the certificate."""
        kinds = ["mother_id_front", "mother_id_back"]
        if self.two_parents:
            kinds += ["father_id_front", "father_id_back"]
        return kinds

    # ------------------------------------------------------------------ guards

    def is_joined_father(self, actor: Actor) -> bool:
        """Whether ``actor`` is the father who joined by invitation on his own account."""
        return (
            actor.role == "parent"
            and self.father_user_id is not None
            and actor.id == self.father_user_id
            and actor.id != self.applicant_id
        )

    def _as_applicant(self, actor: Actor) -> None:
        if actor.role == "parent" and actor.id == self.applicant_id:
            return
        if self.is_joined_father(actor):
            raise Forbidden("该操作只能由申办人（新生儿母亲）办理", code="applicant_only")
        raise Forbidden("只能办理本人发起的申请")

    def _as_parent(self, actor: Actor) -> Literal["applicant", "father"]:
        """The applicant (everything) or the father who joined by invitation (his own part only)."""
        if actor.role == "parent" and actor.id == self.applicant_id:
            return "applicant"
        if self.is_joined_father(actor):
            return "father"
        raise Forbidden("只能办理本人发起的申请")

    def _as_issuer(self, actor: Actor) -> None:
        if actor.role != "issuer":
            raise Forbidden("只有签发人员可以进行此操作")
        if self.institution is None or actor.institution != self.institution:
            raise Forbidden("只能处理本机构的申请")

    def _as_courier_or_issuer(self, actor: Actor) -> None:
        if actor.role in ("ems", "system"):
            return
        self._as_issuer(actor)

    def _editable(self) -> None:
        if self.state in EDITABLE_STATES:
            return
        self._not_revoked()
        if self.state in ISSUED_STATES:
            raise RuleViolated("出生医学证明已签发，登记信息不能更改", code="frozen_after_issue")
        if self.state == SUBMITTED:
            raise RuleViolated("申请已提交审核，审核期间不能修改；如需修改请先撤回申请", code="under_review")
        raise RuleViolated(_closed_message(self.state), code="application_closed")

    def _not_revoked(self) -> None:
        if self.state == REVOKED:
            raise RuleViolated(REVOKED_MESSAGE, code="certificate_revoked")

    def _in_state(self, *states: str) -> None:
        if self.state not in states:
            label = STATE_LABELS.get(self.state, self.state)
            raise RuleViolated(f"申请当前为「{label}」状态，不能进行此操作", code="invalid_state")

    # ------------------------------------------------------------------ the mother's and father's commands

    def request_face_verification(
        self,
        actor: Actor,
        *,
        role: Literal["mother", "father"],
        name: PersonName,
        id_number: IdNumber | IdDocument,
        out_seq_no: str,
        verify_id: str = "",
    ) -> None:
        """Record that WeChat gave a verify_id for this identity (the client then shows the face check).

        The father who joined by invitation may begin only his own check, as the father the details name.
        """
        who = self._as_parent(actor)
        self._editable()
        if who == "father" and role != "father":
            raise Forbidden("父亲只能完成本人的刷脸认证", code="father_own_check_only")
        if not _OUT_SEQ_RE.match(out_seq_no) or out_seq_no in self.pending_face:
            raise InvalidValue("out_seq_no", "invalid_out_seq_no", "认证流水号无效")
        if role == "mother":
            if "mother" in self.verified:
                raise RuleViolated("母亲已完成刷脸认证", code="already_verified")
        elif role == "father":
            if not self.two_parents:
                raise RuleViolated("单亲母亲申办无需父亲认证", code="no_father")
            if "mother" not in self.verified:
                raise NotReady(["mother_verified"])
            if id_number.value == self.verified["mother"]["id_number"]:
                raise InvalidValue("id_number", "father_is_mother", "父亲的身份证号码不能与母亲相同")
            named = (self.details or {}).get("father")
            if who == "father" and named is not None and named["id_number"] != id_number.value:
                raise InvalidValue(
                    "id_number",
                    "not_named_father",
                    "身份证号码与申请中填写的父亲信息不一致，请核对，或请孩子母亲修改父亲信息",
                )
        else:
            raise InvalidValue("role", "invalid_role", "认证角色只能是母亲或父亲")
        self._check_face_document(role, as_id_document(id_number))
        self.trigger_event(
            self.FaceVerificationRequested,
            actor=actor.to_dict(),
            role=role,
            out_seq_no=out_seq_no,
            verify_id=verify_id,
            name=name.value,
            id_number=id_number.value,
        )

    def _check_face_document(self, role: str, document: IdDocument) -> None:
        """The document a parent's face is checked against says where they live: a case the profile keeps at
        the counter (a Taiwan compatriot, both parents from Hong Kong or Macao, …) is refused before any check;
        and a check is done online only with a document the profile names (``face_check_documents``: GD takes
        an HK/Macao resident's residence permit), else the counter (docs/decisions/0033)."""
        if document.residency != "mainland":
            residencies: JSON = {f"{role}_residency": document.residency}
            reasons = check_eligibility(
                self.profile, dataclasses.replace(self.stated_circumstances, **residencies)
            )
            if reasons:
                raise NotEligibleOnline(reasons, REASON_MESSAGES.get(reasons[0]))
        if document.id_type not in self.profile.face_check_documents:
            raise NotEligibleOnline(
                ["face_check_unavailable"], f"持{document.label}的，暂不能网上刷脸认证，请到签发机构现场办理"
            )

    def pending_face_of(self, actor: Actor, out_seq_no: str) -> JSON:
        """The pending check ``actor`` may fetch the verdict of: only the one who began it (WeChat binds it)."""
        who = self._as_parent(actor)
        pending = self.pending_face.get(out_seq_no)
        if pending is None:
            raise Conflict("该认证流水号无效或已使用，请重新发起刷脸认证", code="verification_used")
        # Checks begun before the requester was recorded were all the applicant's own.
        requester = pending.get("by") or self.applicant_id
        if requester != actor.id:
            raise Forbidden("只能查询本人发起的刷脸认证结果", code="not_your_verification")
        if who == "father" and pending["role"] != "father":  # pragma: no cover - he can begin no other
            raise Forbidden("父亲只能完成本人的刷脸认证", code="father_own_check_only")
        return pending

    def record_face_verification(
        self,
        actor: Actor,
        *,
        out_seq_no: str,
        verify_ret: int,
        institution: Institution | None = None,
        channel: str = WECHAT,
        failure: str | None = None,
    ) -> str | None:
        """Record the verdict on a pending check; returns the failure code, or None on a pass.

        WeChat's verdict is its ``verify_ret``; a provincial app's (``channel``) is a pass (``verify_ret``
        10000) or our ``failure`` code for why its answer did not prove the claimed identity.
        The day's last allowed failure of a parent (``face_failures_per_day``, counting only the failures
        ``domain.referral`` counts) refers the application to the counter of ``institution`` (the one of
        ``counter_institution``, as the service found it), in the same save.
        """
        pending = self.pending_face_of(actor, out_seq_no)
        self._editable()
        role = pending["role"]
        if failure is not None or verify_ret != FACE_PASS:
            code = failure or face_failure_code(verify_ret)
            before = self.face_failure_day
            self.trigger_event(
                self.FaceVerificationFailed,
                actor=actor.to_dict(),
                role=role,
                out_seq_no=out_seq_no,
                verify_ret=0 if failure is not None else verify_ret,
                code=code,
                channel=channel,
            )
            counted = self.face_failure_day is not before
            if counted and face_failures_exhausted(
                self.face_failure_day, role, self.profile.face_failures_per_day
            ):
                self._refer(actor, "face_verification_failed", institution)
            return code
        if (
            role == "mother"
            and self.record is not None
            and self.record["mother_id_number"] != pending["id_number"]
        ):
            raise RuleViolated(REASON_NOT_MOTHER, code="not_delivery_mother")
        self.trigger_event(
            self.FaceVerified,
            actor=actor.to_dict(),
            role=role,
            out_seq_no=out_seq_no,
            name=pending["name"],
            id_number=pending["id_number"],
            verify_ret=verify_ret,
            channel=channel,
        )
        return None

    def link_delivery_record(
        self,
        actor: Actor,
        *,
        delivery_record_id: str,
        record: JSON,
        now: datetime,
        calendar: WorkingCalendar | None = None,
    ) -> None:
        """Attach the hospital's delivery record whose mother is the verified mother (防冒领)."""
        self._as_applicant(actor)
        self._editable()
        mother = self.verified.get("mother")
        if mother is None:
            raise NotReady(["mother_verified"])
        if self.delivery_record_id is not None:
            if self.delivery_record_id == delivery_record_id:
                return
            raise RuleViolated("申请已关联分娩记录", code="already_linked")
        if record["mother_id_number"] != mother["id_number"]:
            raise RuleViolated(REASON_NOT_MOTHER, code="not_delivery_mother")
        profile = self.profile
        if record["province"] != self.province:
            profile = self._profile_to_adopt(record["province"])
        window = application_window_error(profile, datetime.fromisoformat(record["born_at"]), now, calendar)
        if window is not None:
            raise RuleViolated(REASON_MESSAGES.get(window), code=window)
        if profile.code != self.province:
            self.trigger_event(
                self.ProvinceAdopted,
                actor=actor.to_dict(),
                province=profile.code,
                policy=profile.to_dict(),
            )
        self.trigger_event(
            self.DeliveryRecordLinked,
            actor=actor.to_dict(),
            delivery_record_id=delivery_record_id,
            institution=record["institution_code"],
            record=record,
        )

    def _profile_to_adopt(self, province: str) -> ProvinceProfile:
        """The profile of the record's province, if this application may still take it; else why not.

        Only when she named no province at the start (docs/decisions/0013-province-from-institution.md),
        only while nothing has been recorded under the default profile but face checks and invitations
        (none of which depends on a province), and only if her stated circumstances are online there too.
        """
        wrong = RuleViolated("该分娩记录属于其他省份，请通过当地的申领入口办理", code="wrong_province")
        if self.province_chosen:
            raise wrong
        try:
            profile = get_profile(province)
        except InvalidValue:
            raise wrong from None
        done = self.steps_bound_to_profile()
        if done:
            names = "、".join(STEP_NAMES.get(step, step) for step in done)
            raise RuleViolated(
                f"本申请已按{self.profile.name}的规定办理了以下步骤：{names}，不能再改按分娩机构所在的"
                f"{profile.name}办理；请撤回本申请后重新发起申办，并选择{profile.name}",
                code="province_locked",
            )
        _check_online(profile, self.stated_circumstances)
        return profile

    def steps_bound_to_profile(self) -> list[str]:
        """The steps recorded under the current profile whose checks depend on it (empty before the link
        in practice: only the parents' face checks and the father's invitation come before it)."""
        done = []
        if self.details is not None:
            done.append("details_provided")  # checked against its counter-only cases and surname rule
        if self.documents or self.father_handheld_for is not None:
            done.append("documents_uploaded")  # the handheld-ID photo is a provincial rule
        if self.signature is not None or self.signatures:
            done.append("form_signed")
        if self.delivery_method is not None:
            done.append("delivery_method_chosen")  # postage is provincial
        if self.postage_orders or self.postage_paid is not None:
            done.append("postage_paid")
        return done

    def refresh_delivery_record(self, actor: Actor, *, record: JSON, reason: str) -> None:
        """Take in the hospital's correction of the linked record (only before issue)."""
        if actor.role not in ("hospital", "system") or (
            actor.role == "hospital" and actor.institution != self.institution
        ):
            raise Forbidden("只有助产机构可以更正分娩信息")
        if self.state in ISSUED_STATES:
            raise RuleViolated("出生医学证明已签发，分娩信息不能更正", code="frozen_after_issue")
        if self.state in CLOSED_STATES or self.record is None:
            return
        if record["mother_id_number"] != self.record["mother_id_number"]:
            raise RuleViolated("已关联申请的分娩记录不能更改产妇身份", code="mother_change_while_linked")
        if record == self.record:
            return
        self.trigger_event(
            self.DeliveryRecordRefreshed,
            actor=actor.to_dict(),
            delivery_record_id=self.delivery_record_id or "",
            record=record,
            reason=_text(reason, "reason"),
        )

    def confirm_delivery_info(self, actor: Actor) -> None:
        """The mother confirms the delivery record shown to her."""
        self._as_applicant(actor)
        self._editable()
        if self.record is None:
            raise NotReady(["delivery_record_linked"])
        if self.delivery_confirmed is True:
            return
        self.trigger_event(self.DeliveryInfoConfirmed, actor=actor.to_dict())

    def dispute_delivery_info(self, actor: Actor, *, reason: str) -> None:
        """The mother says the delivery record is wrong, and why."""
        self._as_applicant(actor)
        self._editable()
        if self.record is None:
            raise NotReady(["delivery_record_linked"])
        self.trigger_event(self.DeliveryInfoDisputed, actor=actor.to_dict(), reason=_text(reason, "reason"))

    @property
    def dispute_open(self) -> bool:
        """She disputed the linked record, and neither the hospital answered since nor she confirmed it."""
        return (
            self.state in EDITABLE_STATES
            and self.record is not None
            and self.delivery_confirmed is False
            and bool(self.dispute_reason)
        )

    def uphold_delivery_record(self, actor: Actor, *, reason: str) -> str:
        """The hospital answers her open dispute: the record stands, and why. Returns the reason as recorded."""
        if actor.role != "hospital" or actor.institution != self.institution:
            raise Forbidden("只有出具该分娩记录的助产机构可以答复异议")
        if not self.dispute_open:
            raise RuleViolated("该申请没有待答复的分娩信息异议", code="no_open_dispute")
        cleaned = _text(reason, "reason")
        self.trigger_event(
            self.DeliveryRecordUpheld,
            actor=actor.to_dict(),
            delivery_record_id=self.delivery_record_id or "",
            reason=cleaned,
        )
        return cleaned

    @property
    def awaiting_delivery_record(self) -> bool:
        """She reported her delivery record missing, and none has been entered or linked since."""
        return self.delivery_awaited is not None and self.record is None and self.state in EDITABLE_STATES

    def report_missing_delivery(
        self,
        actor: Actor,
        *,
        institution: Institution,
        profile: ProvinceProfile | None,
        born_on: date,
        now: datetime,
    ) -> None:
        """Her face check passed and no record of hers is there: ask ``institution`` (under ``profile``, its
        province's, for the entry deadline) to enter the delivery of ``born_on``."""
        self._as_applicant(actor)
        self._editable()
        if "mother" not in self.verified:
            raise NotReady(["mother_verified"])
        if self.record is not None:
            raise RuleViolated("申请已关联分娩记录", code="already_linked")
        today = now.astimezone(SHANGHAI).date()
        if born_on > today:
            raise InvalidValue("born_on", "birth_in_future", "分娩日期不能晚于今天")
        if born_on < today - timedelta(days=366):
            raise InvalidValue("born_on", "birth_too_long_ago", "分娩日期已超过一年，请到签发机构现场办理")
        due = None if profile is None else entry_deadline(profile, latest_birth_on(born_on))
        awaited = self.delivery_awaited
        if awaited and (awaited["institution"], awaited["born_on"]) == (
            institution.code,
            born_on.isoformat(),
        ):
            return  # reported already, as it stands
        self.trigger_event(
            self.DeliveryReportedMissing,
            actor=actor.to_dict(),
            institution=institution.code,
            institution_name=institution.name,
            born_on=born_on.isoformat(),
            entry_due_at=None if due is None else due.isoformat(),
        )

    def note_awaited_delivery(
        self, actor: Actor, *, delivery_record_id: str, institution: str, late: bool
    ) -> None:
        """A hospital entered her delivery (the record she reported missing): she is told to look at it."""
        if actor.role != "hospital":
            raise Forbidden("只有助产机构可以录入分娩信息")
        if self.awaiting_delivery_record:
            self.trigger_event(
                self.AwaitedDeliveryRecorded,
                actor=actor.to_dict(),
                delivery_record_id=delivery_record_id,
                institution=institution,
                entered_late=late,
            )

    def provide_details(
        self,
        actor: Actor,
        *,
        newborn_name: PersonName,
        mother: ParentDetails,
        father: ParentDetails | None,
    ) -> None:
        """The newborn's name and both parents' details (or the mother's alone, for a single mother)."""
        self._as_applicant(actor)
        self._editable()
        verified_mother = self.verified.get("mother")
        if verified_mother is None:
            raise NotReady(["mother_verified"])
        if self.two_parents and father is None:
            raise InvalidValue("father", "father_required", "请填写父亲信息")
        if not self.two_parents and father is not None:
            raise InvalidValue("father", "father_not_allowed", "单亲母亲申办不填写父亲信息")
        # The mother's document is the one her face check proved (a resident ID or a residence permit).
        mother_document = as_id_document(verified_mother["id_number"])
        mother_residency = mother.residency_with(mother_document, "mother")
        father_document: IdDocument | None = None
        if father is not None:
            if father.name is None or father.id_number is None:
                raise InvalidValue("father", "father_required", "请填写父亲的姓名和身份证号码")
            father_document = as_id_document(father.id_number)
            if father_document.value == verified_mother["id_number"]:
                raise InvalidValue("father.id_number", "father_is_mother", "父亲的身份证号码不能与母亲相同")
            if father_document.birth_date is None and father.birth_date is None:
                raise InvalidValue(
                    "father.birth_date", "birth_date_required", "持通行证的，请填写父亲的出生日期"
                )
            if self.record is not None:
                born_on = datetime.fromisoformat(self.record["born_at"]).date()
                if father_document.age_on(born_on, father.birth_date) < 12:
                    raise InvalidValue(
                        "father.id_number", "implausible_parent_age", "父亲身份证号码与新生儿出生日期不符"
                    )
        # Nationality, residency and the documents can reveal a case the profile keeps at the counter.
        circumstances = dataclasses.replace(
            self.stated_circumstances,
            mother_residency=mother_residency,
            father_residency=None if father is None else father.residency_with(father_document, "father"),
        )
        reasons = check_eligibility(self.profile, circumstances)
        mother_name = PersonName(verified_mother["name"])
        reasons += check_newborn_surname(
            self.profile, newborn_name, mother_name, None if father is None else father.name
        )
        if reasons:
            raise NotEligibleOnline(reasons, REASON_MESSAGES.get(reasons[0]))
        self.trigger_event(
            self.DetailsProvided,
            actor=actor.to_dict(),
            newborn_name=newborn_name.value,
            mother=mother.to_dict(mother_document),
            father=None if father is None else father.to_dict(father_document),
        )

    def upload_document(
        self, actor: Actor, *, kind: str, document_id: str, sha256: str, content_type: str, size: int
    ) -> None:
        """Attach an ID photo; the father's handheld-ID photo also stands in for his face check where allowed.

        The father who joined by invitation may upload only his own photos.
        """
        who = self._as_parent(actor)
        self._editable()
        if kind not in DOCUMENT_KINDS:
            raise InvalidValue("kind", "invalid_document_kind", "材料类型不正确")
        if who == "father" and kind not in FATHER_DOCUMENT_KINDS:
            raise Forbidden("父亲只能上传本人的证件照片", code="father_documents_only")
        if kind.startswith("father") and not self.two_parents:
            raise InvalidValue("kind", "father_not_allowed", "单亲母亲申办无需上传父亲材料")
        if kind in MATERIAL_KINDS and kind not in self.bundle_materials_required():
            raise RuleViolated(
                f"您未申请需要{MATERIAL_KINDS[kind]}的一件事一次办事项，无需上传", code="material_not_needed"
            )
        handheld = kind == "father_handheld_id"
        father_id: str | None = None
        if handheld:
            if not self.profile.father_handheld_id_allowed:
                raise RuleViolated("本省不支持以手持身份证照片代替父亲刷脸认证", code="handheld_not_allowed")
            if self.details is None or self.details["father"] is None:
                raise NotReady(["details_provided"])
            father_id = self.details["father"]["id_number"]
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or size <= 0:
            raise InvalidValue("file", "invalid_document", "上传的文件无效")
        self.trigger_event(
            self.DocumentUploaded,
            actor=actor.to_dict(),
            kind=kind,
            document_id=document_id,
            sha256=sha256,
            content_type=content_type,
            size=size,
        )
        if father_id is not None:
            self.trigger_event(
                self.FatherIdPhotoAccepted,
                actor=actor.to_dict(),
                document_id=document_id,
                father_id_number=father_id,
            )

    def invite_father(self, actor: Actor, *, invitation_digest: str, now: datetime) -> str:
        """The mother invites the father to verify on his own account; returns when the invitation expires.

        Only once her own face check passed, while the application is editable and a father is expected,
        not yet verified and not yet joined. A new invitation supersedes the previous one.
        """
        self._as_applicant(actor)
        self._editable()
        if not self.two_parents:
            raise RuleViolated("单亲母亲申办无需邀请父亲", code="no_father")
        if "mother" not in self.verified:
            raise NotReady(["mother_verified"])
        if self.father_user_id is not None:
            raise RuleViolated("孩子父亲已通过邀请加入本申请", code="father_already_joined")
        if self.father_confirmed:
            raise RuleViolated("父亲已完成认证，无需再邀请", code="father_already_verified")
        if not _DIGEST_RE.match(invitation_digest) or invitation_digest in self.invitation_digests:
            raise InvalidValue("invitation", "invalid_invitation", "邀请码无效")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        expires_at = (now + FATHER_INVITATION_TTL).astimezone(SHANGHAI).isoformat(timespec="seconds")
        self.trigger_event(
            self.FatherInvited,
            actor=actor.to_dict(),
            invitation_digest=invitation_digest,
            expires_at=expires_at,
        )
        return expires_at

    def accept_father_invitation(self, actor: Actor, *, invitation_digest: str, now: datetime) -> None:
        """The father, on his own account, accepts the current, unexpired, unused invitation (once)."""
        if actor.role != "parent":
            raise Forbidden("只有家长可以接受邀请")
        if actor.id == self.applicant_id:
            raise Forbidden("不能接受自己发出的邀请，请转发给孩子父亲", code="own_invitation")
        if invitation_digest not in self.invitation_digests:
            raise NotFound("邀请无效，请让孩子母亲重新发送邀请", code="invitation_not_found")
        if invitation_digest == self.father_joined_digest:
            if actor.id == self.father_user_id:
                return  # his own retry (a lost answer): he is in already
            raise RuleViolated("该邀请已被使用", code="invitation_used")
        if self.father_user_id is not None:  # pragma: no cover - no invitation is made once he joined
            raise RuleViolated("孩子父亲已通过邀请加入本申请", code="father_already_joined")
        current = self.father_invitation
        if current is None or current["digest"] != invitation_digest:
            raise RuleViolated(
                "该邀请已被新的邀请替代，请使用孩子母亲最新发送的邀请", code="invitation_superseded"
            )
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if now >= datetime.fromisoformat(current["expires_at"]):
            raise RuleViolated("邀请已过期，请让孩子母亲重新发送邀请", code="invitation_expired")
        self._editable()
        self.trigger_event(self.FatherJoined, actor=actor.to_dict(), invitation_digest=invitation_digest)

    def sign_form(
        self, actor: Actor, *, form_sha256: str, signature_document_id: str, signature_sha256: str
    ) -> None:
        """The mother's e-signature, bound to the exact form she was shown."""
        self._as_applicant(actor)
        self._editable()
        missing = self.missing_for_signing()
        if missing:
            raise NotReady(missing)
        materials = self.missing_bundle_materials()
        if materials:
            # What she signs covers the bundle's services: the materials they need come first (0047).
            raise BundleMaterialsMissing(materials)
        form = self.form()
        if form is None:
            raise NotReady(["details_provided"])
        current = form_digest(form)
        if form_sha256 != current:
            raise Conflict("登记表内容已变化，请重新查看后再签名", code="stale_form")
        self.trigger_event(
            self.FormSigned,
            actor=actor.to_dict(),
            form=form,
            form_sha256=current,
            signature_document_id=signature_document_id,
            signature_sha256=signature_sha256,
        )

    def choose_delivery_method(self, actor: Actor, *, method: str, recipient: Recipient | None) -> None:
        """EMS to a recipient, or pickup at the issuing institution."""
        self._as_applicant(actor)
        self._editable()
        if method == "ems":
            if recipient is None:
                raise InvalidValue("recipient", "recipient_required", "邮寄到家需要填写收件人信息")
            payload: JSON | None = recipient.to_dict()
        elif method == "pickup":
            payload = None
        else:
            raise InvalidValue(
                "method", "invalid_delivery_method", "领取方式只能是邮寄（ems）或现场领取（pickup）"
            )
        if self.postage_paid is not None and method != "ems":
            raise RuleViolated("已支付邮寄费用，不能改为现场领取", code="postage_already_paid")
        self.trigger_event(self.DeliveryMethodChosen, actor=actor.to_dict(), method=method, recipient=payload)

    def place_postage_order(self, actor: Actor, *, out_trade_no: str) -> int:
        """Open a WeChat Pay order for the postage; returns the amount in fen."""
        self._as_applicant(actor)
        self._editable()
        if self.profile.postage != "prepaid":
            raise RuleViolated("本省邮寄费用由申办人与邮政部门结算，无需在线支付", code="postage_not_prepaid")
        if self.delivery_method is None or self.delivery_method["method"] != "ems":
            raise RuleViolated("请先选择邮寄到家", code="delivery_method_not_ems")
        if self.postage_paid is not None:
            raise RuleViolated("邮寄费用已支付", code="postage_already_paid")
        if not _OUT_TRADE_RE.match(out_trade_no):
            raise InvalidValue("out_trade_no", "invalid_out_trade_no", "订单号无效")
        amount = self.profile.postage_fee_fen
        self.trigger_event(
            self.PostageOrderPlaced, actor=actor.to_dict(), out_trade_no=out_trade_no, amount_fen=amount
        )
        return amount

    def record_postage_paid(
        self, actor: Actor, *, out_trade_no: str, amount_fen: int, transaction_id: str
    ) -> bool:
        """WeChat Pay's notification; False when it was already recorded (notifications repeat)."""
        if actor.role != "system":
            raise Forbidden("支付结果只能由支付平台通知")
        expected = self.postage_orders.get(out_trade_no)
        if expected is None:
            raise RuleViolated("未找到对应的支付订单", code="unknown_order")
        if amount_fen != expected:
            raise RuleViolated("支付金额与订单金额不符", code="amount_mismatch")
        if self.postage_paid is not None:
            if self.postage_paid["transaction_id"] == transaction_id:
                return False
            raise RuleViolated("邮寄费用已支付", code="postage_already_paid")
        self.trigger_event(
            self.PostagePaid,
            actor=actor.to_dict(),
            out_trade_no=out_trade_no,
            amount_fen=amount_fen,
            transaction_id=transaction_id,
        )
        return True

    def submit(self, actor: Actor, *, calendar: WorkingCalendar | None = None) -> None:
        """Send for review: needs a valid signature, a delivery method and any prepaid postage (and, with the
        bundle, its conditions still met: ``calendar`` counts its working days)."""
        self._as_applicant(actor)
        self._editable()
        missing = self.missing_for_submission()
        if missing:
            raise NotReady(missing)
        self._check_bundle_conditions(calendar or WorkingCalendar())
        self.trigger_event(
            self.Submitted,
            actor=actor.to_dict(),
            submission=self.submissions + 1,
            form_sha256=self.signature["form_sha256"] if self.signature else "",
        )

    def withdraw(self, actor: Actor, *, reason: str = "申办人撤回") -> None:
        """The mother withdraws; only before issue."""
        self._as_applicant(actor)
        self._not_revoked()
        if self.state in ISSUED_STATES:
            raise RuleViolated("出生医学证明已签发，不能撤回申请", code="frozen_after_issue")
        if self.state == WITHDRAWN:
            raise RuleViolated("申请已撤回", code="application_closed")
        self.trigger_event(self.Withdrawn, actor=actor.to_dict(), reason=_text(reason, "reason", low=1))

    # ------------------------------------------------------------------ the issuer's commands

    def reject(
        self,
        actor: Actor,
        *,
        reasons: list[str],
        fields: list[str],
        reason_codes: list[str] | None = None,
        institution: Institution | None = None,
    ) -> None:
        """Back to the parent with reason codes (None: ``other``), the issuer's words and the fields to fix;
        past the limit, to the counter (that of ``institution``, the application's own, as the service found
        it)."""
        self._as_issuer(actor)
        self._in_state(SUBMITTED)
        cleaned = [_text(r, f"reasons[{i}]") for i, r in enumerate(reasons)]
        codes = check_reason_codes(reason_codes, cleaned)
        if not fields:
            raise InvalidValue("fields", "fields_required", "请选择需要修改的项目")
        for i, name in enumerate(fields):
            if name not in FIXABLE_FIELDS:
                raise InvalidValue(f"fields[{i}]", "invalid_field", f"无法识别的修改项目：{name}")
        self.trigger_event(
            self.Rejected,
            actor=actor.to_dict(),
            reasons=cleaned,
            fields=list(dict.fromkeys(fields)),
            reason_codes=codes,
        )
        limit = self.profile.modification_limit
        if limit is not None and self.submissions > limit:
            self._refer(actor, "modification_limit", institution)

    def _refer(self, actor: Actor, reason: str, institution: Institution | None) -> None:
        """To the counter, for ``reason``: naming the counter of ``institution`` (only if it is the one of
        ``counter_institution``) and the materials to bring, as the parent is told it."""
        referral = Referral.to(reason, self._own_counter(institution))
        self.trigger_event(
            self.ReferredToCounter,
            actor=actor.to_dict(),
            reason=reason,
            message=referral.message,
            counter=referral.counter,
            bring=list(referral.bring),
        )

    def _own_counter(self, institution: Institution | None) -> Institution | None:
        """``institution`` if it is the one whose counter this application's family is sent to, else None."""
        own = institution is not None and institution.code == self.counter_institution
        return institution if own else None

    def issue(
        self, actor: Actor, *, certificate_number: CertificateNumber, issuer_name: str, sealer_name: str
    ) -> None:
        """Print the certificate on the numbered blank (the number's uniqueness is the service's index)."""
        self._as_issuer(actor)
        self._in_state(SUBMITTED)
        if not self.signature_valid:
            raise RuleViolated("登记表签名已失效，不能签发", code="signature_invalid")
        self.trigger_event(
            self.Issued,
            actor=actor.to_dict(),
            certificate_number=certificate_number.value,
            issuer_name=_text(issuer_name, "issuer_name", low=1, high=30),
            sealer_name=_text(sealer_name, "sealer", low=1, high=30),
        )

    def dispatch(self, actor: Actor, *, tracking_number: str, carrier: str = "EMS") -> None:
        """Hand an issued EMS certificate to the courier."""
        self._as_courier_or_issuer(actor)
        self._in_state(ISSUED)
        if self.delivery_method is None or self.delivery_method["method"] != "ems":
            raise RuleViolated("该申请选择现场领取，不能邮寄", code="not_ems")
        number = tracking_number.strip().upper()
        if not _TRACKING_RE.match(number):
            raise InvalidValue("tracking_number", "invalid_tracking_number", "邮件号格式不正确")
        self.trigger_event(self.Dispatched, actor=actor.to_dict(), tracking_number=number, carrier=carrier)

    def record_delivered(self, actor: Actor) -> bool:
        """The courier's report that the parcel was signed for; False if already recorded."""
        self._as_courier_or_issuer(actor)
        if self.state in (DELIVERED, REVOKED):  # the parcel of a void certificate: nothing to record
            return False
        self._in_state(DISPATCHED)
        self.trigger_event(self.Delivered, actor=actor.to_dict(), tracking_number=self.tracking_number or "")
        return True

    def hand_over(
        self,
        actor: Actor,
        *,
        recipient_name: PersonName,
        relation: str,
        recipient_id: IdNumber,
        now: datetime,
    ) -> None:
        """On-site pickup: who took the certificate, their relation to the newborn and their ID.

        Only to someone who has just passed the face check at the counter as the ID they show
        (``open_collector_check``); the mother as herself, the father as the father on the form, and where
        the province requires it (Beijing, Hebei) anyone but the mother only as named in her signed letter.
        """
        self._as_issuer(actor)
        self._awaiting_pickup()
        if relation not in HANDOVER_RELATIONS:
            raise InvalidValue("relation", "invalid_relation", "与新生儿关系只能是母亲、父亲或受委托人")
        check = self.collector_check
        if check is None or check["status"] != "verified":
            raise RuleViolated(
                "领取人须先在现场完成刷脸认证（与所出示的身份证件比对）", code="collector_not_verified"
            )
        if now >= datetime.fromisoformat(check["expires_at"]):
            raise RuleViolated("现场刷脸认证已超过30分钟，请重新认证", code="collector_check_expired")
        if check["id_number"] != recipient_id.value or check["name"] != recipient_name.value:
            raise RuleViolated("领取人姓名或身份证号码与现场刷脸认证的身份不一致", code="collector_mismatch")
        mother_id = self.verified.get("mother", {}).get("id_number")
        father_id = ((self.details or {}).get("father") or {}).get("id_number")
        letter = self.collector_letter
        letter_names = (
            letter is not None
            and letter["id_number"] == recipient_id.value
            and letter["name"] == recipient_name.value
        )
        if relation == "mother":
            if recipient_id.value != mother_id:
                raise RuleViolated("领取人不是新生儿母亲本人", code="not_the_mother")
        else:
            if recipient_id.value == mother_id:
                raise InvalidValue("relation", "relation_mismatch", "领取人是新生儿母亲本人，关系应选母亲")
            if relation == "father" and recipient_id.value != father_id:
                raise RuleViolated("领取人不是登记表上的新生儿父亲", code="not_the_father")
            if self.profile.collector_letter_required and not letter_names:
                raise RuleViolated(
                    "非新生儿母亲本人领取，须有母亲在小程序中签署的授权委托书，且受托人与领取人一致",
                    code="authorization_required",
                )
        self.trigger_event(
            self.CollectedOnSite,
            actor=actor.to_dict(),
            recipient_name=recipient_name.value,
            relation=relation,
            recipient_id_number=recipient_id.value,
            face_check_seq_no=check["out_seq_no"],
            authorization_sha256=letter["letter_sha256"] if letter is not None and letter_names else None,
        )

    def report_loss(self, actor: Actor, *, reason: str) -> bool:
        """The courier lost or damaged the parcel; False if already reported."""
        self._as_courier_or_issuer(actor)
        if self.state in (LOST, REVOKED):
            return False
        self._in_state(DISPATCHED)
        self.trigger_event(
            self.LossReported,
            actor=actor.to_dict(),
            tracking_number=self.tracking_number or "",
            reason=_text(reason, "reason"),
        )
        return True

    def reissue(
        self, actor: Actor, *, certificate_number: CertificateNumber, issuer_name: str, sealer_name: str
    ) -> None:
        """After a loss: a new blank and number, the old number void, the registered data unchanged."""
        self._as_issuer(actor)
        self._in_state(LOST)
        self._check_new_number(certificate_number)
        self.trigger_event(
            self.Reissued,
            actor=actor.to_dict(),
            certificate_number=certificate_number.value,
            voided_certificate_number=self.certificate_number or "",
            issuer_name=_text(issuer_name, "issuer_name", low=1, high=30),
            sealer_name=_text(sealer_name, "sealer", low=1, high=30),
        )

    def _check_new_number(self, number: CertificateNumber) -> None:
        """A new blank's number is none this application has used (the service's index: none used ever)."""
        if number.value == self.certificate_number or number.value in self.voided_numbers:
            raise Conflict("该证件编号已使用", code="certificate_number_used")

    def replace_certificate(
        self,
        actor: Actor,
        *,
        certificate_number: CertificateNumber,
        cause: str,
        old_certificate: str,
        note: str,
        issuer_name: str,
        sealer_name: str,
    ) -> None:
        """The institution's own error: a misprinted or damaged certificate printed again on a new blank.

        Before it left the institution (issued), or once the parent has it (delivered, collected) and the
        old one was recovered; never while a parcel is on its way (dispatched) or lost (that is a reissue).
        """
        self._as_issuer(actor)
        self._in_state(ISSUED, DELIVERED, COLLECTED)
        if cause not in REPLACEMENT_CAUSES:
            raise InvalidValue(
                "cause", "invalid_cause", "换发原因只能是打印错误（misprinted）或毁损（damaged）"
            )
        if old_certificate not in OLD_CERTIFICATE_FATES:
            raise InvalidValue(
                "old_certificate",
                "invalid_old_certificate",
                "原证件只能登记为已收回（recovered）或已销毁（destroyed）",
            )
        self._check_new_number(certificate_number)
        self.trigger_event(
            self.CertificateReplaced,
            actor=actor.to_dict(),
            certificate_number=certificate_number.value,
            voided_certificate_number=self.certificate_number or "",
            cause=cause,
            old_certificate=old_certificate,
            note=_text(note, "note", low=1) if note.strip() else "",
            issuer_name=_text(issuer_name, "issuer_name", low=1, high=30),
            sealer_name=_text(sealer_name, "sealer", low=1, high=30),
        )

    def revoke_certificate(
        self, actor: Actor, *, reason: str, note: str, institution: Institution | None = None
    ) -> None:
        """宣布作废: the issuing institution declares the certificate in force void after its review (obtained by
        deception, issued in error, a court's order), once; the family is sent to ``institution``'s counter (the
        application's own, as the service found it). Not while the parcel is lost (that is a reissue)."""
        self._as_issuer(actor)
        if self.state == REVOKED:
            number = (self.revocation or {}).get("certificate_number") or self.certificate_number
            raise RuleViolated(f"出生医学证明（编号 {number}）已宣布作废", code="already_revoked")
        self._in_state(*REVOCABLE_STATES)
        ground = check_reason(reason)
        account = _text(note, "note", low=NOTE_LOW, high=NOTE_HIGH)
        number = self.certificate_number or ""
        referral = referral_for(ground, number, self._own_counter(institution))
        self.trigger_event(
            self.CertificateRevoked,
            actor=actor.to_dict(),
            voided_certificate_number=number,
            reason=ground,
            note=account,
            counter=referral.counter,
            bring=list(referral.bring),
        )

    # ------------------------------------------------------------------ on-site pickup (domain/pickup.py)

    def _awaiting_pickup(self) -> None:
        self._in_state(ISSUED)
        if self.delivery_method is None or self.delivery_method["method"] != "pickup":
            raise RuleViolated("该申请选择邮寄到家，不能现场领取", code="not_pickup")

    def book_pickup(self, actor: Actor, *, slot: Slot) -> None:
        """预约取证: the mother books one of the institution's slots once the certificate is ready (the
        slot's capacity is the service's, across applications)."""
        self._as_applicant(actor)
        self._awaiting_pickup()
        if self.pickup_appointment == slot.to_dict():
            return
        self.trigger_event(self.PickupBooked, actor=actor.to_dict(), **slot.to_dict())

    def collector_letter_for(self, *, collector_name: PersonName, collector_id: IdNumber) -> JSON:
        """The 授权委托书 the mother would sign for this collector now."""
        mother = self.verified.get("mother")
        if mother is None or self.details is None or self.record is None:
            raise NotReady(self.missing_for_signing() or ["details_provided"])
        if self.delivery_method is None or self.delivery_method["method"] != "pickup":
            raise RuleViolated("选择现场领取后才能委托他人领取", code="not_pickup")
        if collector_id.value == mother["id_number"]:
            raise InvalidValue("collector_id_number", "collector_is_mother", "受托人不能是母亲本人")
        return collector_letter(
            application_id=str(self.id),
            mother=mother,
            collector_name=collector_name.value,
            collector_id_number=collector_id.value,
            newborn_name=self.details["newborn_name"],
            born_at=self.record["born_at"],
            institution_name=self.record["institution_name"],
        )

    def authorize_collector(
        self,
        actor: Actor,
        *,
        collector_name: PersonName,
        collector_id: IdNumber,
        letter_sha256: str,
        signature_document_id: str,
        signature_sha256: str,
    ) -> None:
        """The mother signs the letter she was shown (``collector_letter_for``) for someone else to collect."""
        self._as_applicant(actor)
        self._in_state(*LETTER_STATES)
        letter = self.collector_letter_for(collector_name=collector_name, collector_id=collector_id)
        current = form_digest(letter)
        if letter_sha256 != current:
            raise Conflict("委托书内容已变化，请重新查看后再签名", code="stale_letter")
        self.trigger_event(
            self.CollectorAuthorized,
            actor=actor.to_dict(),
            letter=letter,
            letter_sha256=current,
            signature_document_id=signature_document_id,
            signature_sha256=signature_sha256,
        )

    def open_collector_check(
        self, actor: Actor, *, check_digest: str, name: PersonName, id_number: IdNumber, now: datetime
    ) -> str:
        """The issuer opens a face check of the person at the counter as the ID they show; returns its expiry."""
        self._as_issuer(actor)
        self._awaiting_pickup()
        if not _DIGEST_RE.match(check_digest):
            raise InvalidValue("code", "invalid_code", "认证码无效")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        expires_at = (now + COLLECTOR_CHECK_TTL).astimezone(SHANGHAI).isoformat(timespec="seconds")
        self.trigger_event(
            self.CollectorCheckOpened,
            actor=actor.to_dict(),
            check_digest=check_digest,
            name=name.value,
            id_number=id_number.value,
            expires_at=expires_at,
        )
        return expires_at

    def open_check(self, check_digest: str, now: datetime) -> JSON:
        """The counter's open face check whose code has this digest, or why it cannot be used."""
        check = self.collector_check
        if check is None or check["digest"] != check_digest or self.state != ISSUED:
            raise NotFound(
                "认证码无效或已被新的认证替代，请工作人员重新生成", code="collector_check_not_found"
            )
        if now >= datetime.fromisoformat(check["expires_at"]):
            raise RuleViolated("认证码已过期，请工作人员重新生成", code="collector_check_expired")
        return check

    def request_collector_face_check(
        self, actor: Actor, *, check_digest: str, out_seq_no: str, verify_id: str, now: datetime
    ) -> None:
        """Record the verify_id WeChat gave the user who opened the counter's code (the collector's phone)."""
        if actor.role != "parent":
            raise Forbidden("请在微信小程序中完成刷脸认证")
        check = self.open_check(check_digest, now)
        if check["status"] == "verified":
            raise RuleViolated("领取人已完成刷脸认证", code="already_verified")
        if not _OUT_SEQ_RE.match(out_seq_no) or out_seq_no in check["pending"]:
            raise InvalidValue("out_seq_no", "invalid_out_seq_no", "认证流水号无效")
        self.trigger_event(
            self.CollectorFaceCheckRequested,
            actor=actor.to_dict(),
            check_digest=check_digest,
            out_seq_no=out_seq_no,
            verify_id=verify_id,
        )

    def collector_pending(
        self, actor: Actor, check_digest: str, out_seq_no: str, now: datetime
    ) -> JSON | None:
        """The pending check ``actor`` began (verify_id, name, ID), or None once its verdict is recorded."""
        check = self.open_check(check_digest, now)
        pending = check["pending"].get(out_seq_no)
        if pending is None:
            if out_seq_no in check["verdicts"]:
                return None
            raise Conflict("该认证流水号无效或已使用，请重新发起刷脸认证", code="verification_used")
        if pending["by"] != actor.id:
            raise Forbidden("只能查询本人发起的刷脸认证结果", code="not_your_verification")
        return {**pending, "name": check["name"], "id_number": check["id_number"]}

    def record_collector_face_check(
        self, actor: Actor, *, check_digest: str, out_seq_no: str, verify_ret: int | None, now: datetime
    ) -> str | None:
        """WeChat's verdict on the collector's face; returns the failure code, or None on a pass. A verdict
        asked for again once recorded (``verify_ret`` None) records nothing and answers the same."""
        pending = self.collector_pending(actor, check_digest, out_seq_no, now)
        check = self.open_check(check_digest, now)
        if pending is None:
            verdict: str | None = check["verdicts"][out_seq_no]
            return verdict
        if verify_ret is None:
            raise Conflict("认证结果尚未查询，请重试", code="face_pending")
        if verify_ret != FACE_PASS:
            code = face_failure_code(verify_ret)
            self.trigger_event(
                self.CollectorFaceCheckFailed,
                actor=actor.to_dict(),
                check_digest=check_digest,
                out_seq_no=out_seq_no,
                verify_ret=verify_ret,
                code=code,
            )
            return code
        self.trigger_event(
            self.CollectorFaceVerified,
            actor=actor.to_dict(),
            check_digest=check_digest,
            out_seq_no=out_seq_no,
            name=check["name"],
            id_number=check["id_number"],
            verify_ret=verify_ret,
        )
        return None

    def issue_elicense(
        self,
        actor: Actor,
        *,
        licence_id: str,
        certificate_number: str,
        key_id: str,
        status_list: str,
        status_index: int,
        amends: str | None = None,
    ) -> None:
        """Record the electronic certificate generated for the certificate printed as ``certificate_number``
        (the one in force: a voided number gets none); once per number. ``amends``: the identifier of the
        e-licence in force that this new version supersedes (the police's registration added, 0048), once."""
        if actor.role not in ("issuer", "system"):
            raise Forbidden()
        if self.state == REVOKED:
            raise RuleViolated("出生医学证明已宣布作废，不再生成电子证照", code="certificate_revoked")
        if self.state not in ISSUED_STATES or self.state == LOST:
            raise RuleViolated("证件尚未签发", code="invalid_state")
        if certificate_number != self.certificate_number:
            raise RuleViolated("该证件编号已作废，不再生成电子证照", code="certificate_superseded")
        current = self.elicense_for(certificate_number)
        if amends is None and current is not None:
            raise RuleViolated("电子证照已生成", code="already_issued")
        if amends is not None:
            if any(e["licence_id"] == licence_id for e in self.elicenses):
                raise RuleViolated("电子证照已更新", code="already_issued")
            if current is None or current["licence_id"] != amends:
                raise RuleViolated("要更新的电子证照不是现行版本", code="elicense_not_current")
            if self.bundle_registration() is None:
                raise RuleViolated("尚无户口登记结果，无需更新电子证照", code="registration_missing")
        if not isinstance(status_index, int) or isinstance(status_index, bool) or status_index < 0:
            raise RuleViolated("状态列表索引不正确", code="invalid_status_index")
        extra = {} if amends is None else {"amends": amends}
        self.trigger_event(
            self.ELicenseIssued if amends is None else self.ELicenseAmended,
            **extra,
            actor=actor.to_dict(),
            licence_id=_text(licence_id, "licence_id", low=4),
            certificate_number=certificate_number,
            key_id=_text(key_id, "key_id", low=8),
            status_list=_text(status_list, "status_list", low=1),
            status_index=status_index,
        )

    def elicense_state(self) -> str:
        """``issued`` once the certificate in force has its e-licence, ``pending`` while it waits for it (printed),
        ``none`` before printing (docs/decisions/0038), ``revoked`` once the certificate was declared void (0040):
        its e-licence, if it had one, is void too."""
        if self.state == REVOKED:
            return "revoked"
        if self.certificate_number and self.elicense_for(self.certificate_number) is not None:
            return "issued"
        return "pending" if self.state in ISSUED_STATES else "none"

    def elicense_for(self, certificate_number: str | None) -> JSON | None:
        """The e-licence in force for that certificate number (its latest version, 0048), or None."""
        return next(
            (e for e in reversed(self.elicenses) if e["certificate_number"] == certificate_number), None
        )

    # ------------------------------------------------------------------ 出生一件事 (domain/bundle.py)

    @property
    def bundle_offer(self) -> BundleOffer | None:
        """What the province offers with the certificate (its profile as at the start), or None."""
        return self.profile.birth_bundle

    def bundle_held_phone(self) -> str | None:
        """The mother's mobile number, if the application holds it: she is the EMS parcel's recipient."""
        method = self.delivery_method
        mother = self.verified.get("mother")
        recipient = (method or {}).get("recipient")
        if recipient and mother and recipient.get("name") == mother["name"]:
            return str(recipient["phone"])
        return None

    def bundle_held(self) -> dict[str, str]:
        """The extra fields of 表2 the application already holds, by code: never asked again."""
        phone = self.bundle_held_phone()
        return {} if phone is None else {"contact_phone": phone}

    def bundle_derived(self) -> list[DerivedItem]:
        """The fields of 表2 taken from the application (empty before her face check)."""
        mother = self.verified.get("mother")
        if mother is None:
            return []
        return derived_items(
            mother={**mother, "id_type": id_type_of(mother["id_number"])},
            details=self.details,
            record=self.record,
            ethnic_groups=ETHNIC_GROUPS,
            id_type_labels=ID_TYPE_LABELS,
            held_phone=self.bundle_held_phone(),
        )

    def bundle_facts(
        self, now: datetime, *, services: Iterable[str], values: JSON, parents_married: bool | None
    ) -> BundleFacts:
        """The facts the bundle's conditions read, for these choices."""
        details = self.details or {}
        return BundleFacts(
            province=self.province,
            record_province=None if self.record is None else self.record.get("province"),
            born_at=None if self.record is None else datetime.fromisoformat(self.record["born_at"]),
            requested_at=now,
            two_parents=self.two_parents,
            mother=details.get("mother"),
            father=details.get("father"),
            married=parents_married,
            services=tuple(services),
            values=values,
        )

    def bundle_table2(self) -> dict[str, str]:
        """Every value of 表2, by field code, for the departments' hand-off (personal: never logged); empty
        without an opt-in."""
        offer, bundle = self.bundle_offer, self.bundle
        if offer is None or bundle is None:
            return {}
        chosen = {**bundle, "settled_address": settled_address(bundle["values"], self.details)}
        return table2_values(offer, chosen, self.bundle_derived(), self.certificate_number or "")

    def bundle_materials_required(self) -> list[str]:
        """The materials of 表1 (document kinds) her opt-in asks for, in the profile's order (0047); none
        without an opt-in, or under a profile snapshot from before materials were asked for."""
        offer, bundle = self.bundle_offer, self.bundle
        if offer is None or bundle is None:
            return []
        needed = offer.materials_for(bundle["services"], parents_married=bool(bundle["parents_married"]))
        return [m.code for m in needed]

    def missing_bundle_materials(self) -> list[str]:
        """The materials her opt-in asks for that she has not uploaded yet."""
        return [k for k in self.bundle_materials_required() if k not in self.documents]

    def bundle_materials_for(self, service: str) -> list[JSON]:
        """The uploaded materials the department of ``service`` is to get, by reference (kind, label, sha256,
        content type, size): only those its service needs (PIPL minimum, 0047)."""
        offer, bundle = self.bundle_offer, self.bundle
        if offer is None or bundle is None:
            return []
        married = bool(bundle["parents_married"])
        return [
            {
                "kind": m.code,
                "label": m.label,
                "sha256": self.documents[m.code]["sha256"],
                "content_type": self.documents[m.code]["content_type"],
                "size": self.documents[m.code]["size"],
            }
            for m in offer.materials_for(bundle["services"], parents_married=married)
            if m.service == service and m.code in self.documents
        ]

    def _bundle_form(self) -> JSON:
        offer, bundle = self.bundle_offer, self.bundle
        if offer is None or bundle is None:  # pragma: no cover - an opt-in needs an offer
            return {}
        chosen = {**bundle, "settled_address": settled_address(bundle["values"], self.details)}
        return form_part(offer, chosen, self.bundle_derived())

    def request_bundle(
        self,
        actor: Actor,
        *,
        services: list[str],
        values: JSON,
        parents_married: bool,
        now: datetime,
        calendar: WorkingCalendar,
    ) -> None:
        """She opts in to the bundle, or changes her opt-in, until submission: the chosen services and the
        extra fields of 表2, checked against the province's offer, every condition met."""
        self._as_applicant(actor)
        offer = self.bundle_offer
        if offer is None:
            raise BundleNotOffered()
        self._editable()
        missing = [m for m in self.missing_for_signing() if m != "father_verified"]
        if missing:
            raise NotReady(missing)
        chosen = check_services(offer, services)
        newborn_sex = None if self.record is None else self.record.get("newborn_sex")
        clean = check_values(offer, chosen, values, newborn_sex=newborn_sex, held=self.bundle_held())
        facts = self.bundle_facts(now, services=chosen, values=clean, parents_married=bool(parents_married))
        unmet = [r for r in evaluate(offer, facts, calendar) if r.state != "met"]
        if unmet:
            raise BundleConditionsUnmet(unmet)
        if self.bundle is not None and (
            self.bundle["services"] == list(chosen)
            and self.bundle["values"] == clean
            and self.bundle["parents_married"] == bool(parents_married)
        ):
            return  # the same choices again: nothing changed
        self.trigger_event(
            self.BundleRequested,
            actor=actor.to_dict(),
            services=list(chosen),
            values=clean,
            parents_married=bool(parents_married),
        )

    def withdraw_bundle(self, actor: Actor) -> None:
        """She withdraws her opt-in, until submission."""
        self._as_applicant(actor)
        self._editable()
        if self.bundle is None:
            raise RuleViolated("尚未申请一件事一次办，无需撤回", code="bundle_not_requested")
        self.trigger_event(self.BundleWithdrawn, actor=actor.to_dict())

    def record_bundle_service(
        self,
        actor: Actor,
        *,
        service: str,
        department: str,
        state: str,
        message_id: str,
        result_id: str | None = None,
        reason: str | None = None,
        result: JSON | None = None,
    ) -> bool:
        """The hand-off of ``service`` was delivered (``sent``), or its department answered; False when this
        was recorded already (the same message delivered again, the same answer posted again)."""
        if actor.role != "system":
            raise Forbidden("只有办理部门可以登记办理结果", code="department_only")
        if self.bundle is None or service not in self.bundle["services"] or service == CERTIFICATE:
            raise RuleViolated("该申请未申请此项一件事服务", code="service_not_requested")
        if self.state not in ISSUED_STATES:
            raise RuleViolated("出生医学证明签发后方可办理一件事其他事项", code="not_issued")
        self._not_revoked()  # a void certificate hands nothing on and takes no department's result
        current = (self.bundle_services or {}).get(service)
        if current is not None and current["message_id"] != message_id:
            raise RuleViolated("推送编号与本申请不符", code="unknown_message")
        if state == "sent":
            if current is not None:
                return False  # delivered again after a crash, or answered already
        elif state in DEPARTMENT_ANSWERS:
            if not result_id:
                raise InvalidValue("result_id", "required", "缺少办理结果编号")
            if current is not None and result_id in current["result_ids"]:
                return False  # the same answer again
            if current is not None and current["state"] == "done":
                raise RuleViolated("该事项已办结，不能再变更", code="service_finished")
            if state == "refused" and not (reason or "").strip():
                raise InvalidValue("reason", "required", "部门未予办理时须说明原因")
            if state == "done" and service == REGISTRATION_SERVICE:
                self._check_registration(result or {})
        else:
            raise InvalidValue("state", "invalid", "办理状态只能是 accepted、refused 或 done")
        self.trigger_event(
            self.BundleServiceUpdated,
            actor=actor.to_dict(),
            service=service,
            department=department,
            state=state,
            message_id=message_id,
            result_id=result_id,
            reason=(reason or "").strip() or None if state == "refused" else None,
            result=dict(result or {}) if state == "done" else {},
        )
        return True

    def _check_registration(self, result: JSON) -> None:
        """The police's registration names this newborn: a citizen ID number whose birth date and sex are the
        delivery record's (a number for another child must not reach her e-licence, docs/decisions/0048)."""
        number = result.get("citizen_id_number")
        if number is None or self.record is None:
            return
        id_number = IdNumber(str(number), field="result.citizen_id_number")
        born_on = datetime.fromisoformat(self.record["born_at"]).date()
        if id_number.birth_date != born_on or id_number.sex != self.record["newborn_sex"]:
            raise InvalidValue(
                "result.citizen_id_number", "citizen_id_mismatch", "公民身份号码的出生日期或性别与新生儿不符"
            )

    def bundle_registration(self) -> JSON | None:
        """The police's registration of the newborn (registered name, citizen ID number, 户籍地 where given) when
        the province puts it into the e-licence's record (``elicense_registration``) and the 户口 is registered;
        else None. Personal: sealed in events, masked in views."""
        offer = self.bundle_offer
        part = (self.bundle_services or {}).get(REGISTRATION_SERVICE) or {}
        result = part.get("result") or {}
        if offer is None or not offer.elicense_registration or part.get("state") != "done":
            return None
        if not result.get("registered_name") or not result.get("citizen_id_number"):
            return None
        return {k: result[k] for k in REGISTRATION_FIELDS if result.get(k)}

    def bundle_clocks(self, calendar: WorkingCalendar) -> list[ServiceClock]:
        """Each department's part against the bundle's time limit (domain/bundle_clock.py, 0049), counted from
        the submission the institution accepted; none before the certificate is issued (nothing is handed off
        yet: the review's own deadline runs), nor once it was declared void (nothing more is handed on)."""
        offer, bundle = self.bundle_offer, self.bundle
        if offer is None or bundle is None or self.submitted_at is None:
            return []
        if self.state not in ISSUED_STATES or self.state == REVOKED:
            return []
        start = datetime.fromisoformat(self.submitted_at)
        return clocks(offer, bundle["services"], start, self.bundle_services or {}, handoffs(), calendar)

    def _check_bundle_conditions(self, calendar: WorkingCalendar) -> None:
        """At submission: the conditions still hold for what the application says now (a detail changed since
        the opt-in may break one), counted from when she opted in."""
        offer, bundle = self.bundle_offer, self.bundle
        if offer is None or bundle is None:
            return
        facts = self.bundle_facts(
            datetime.fromisoformat(bundle["requested_at"]),
            services=bundle["services"],
            values=bundle["values"],
            parents_married=bundle["parents_married"],
        )
        unmet = [r for r in evaluate(offer, facts, calendar) if r.state != "met"]
        if unmet:
            raise BundleConditionsUnmet(unmet)


REASON_NOT_MOTHER: Final = "认证的身份与医院分娩记录中的产妇不一致，只有新生儿母亲本人可以申办"


def _record_elicense(a: BirthCertificateApplication, event: Any, **more: str) -> None:
    """An e-licence (``ELicenseIssued``) or its new version (``ELicenseAmended``: ``amends``) now in force."""
    a.licence_id = event.licence_id
    a.elicenses.append(
        {
            "licence_id": event.licence_id,
            "certificate_number": event.certificate_number,
            "key_id": event.key_id,
            "at": event.timestamp.isoformat(),
            "version": event.originator_version,
            **more,
        }
    )


def _age_on(id_number: str, birth_date: str | None, day: date) -> int:
    """A parent's completed years on ``day``: by the birth date in an 18-character number, or the one given
    beside a travel permit (whose number has none). Both were checked when recorded."""
    if birth_date:
        born = date.fromisoformat(birth_date)
    else:
        born = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    return completed_years(born, day)


REVOKED_MESSAGE: Final = "出生医学证明已被签发机构宣布作废，不能继续网上办理，请到签发机构现场咨询"


def _closed_message(state: str) -> str:
    if state == WITHDRAWN:
        return "申请已撤回"
    return "该申请需到签发机构现场办理，不能继续网上申领"


def _check_online(profile: ProvinceProfile, circumstances: Circumstances) -> None:
    """Refuse, with every reason the profile keeps these circumstances at the counter."""
    reasons = check_eligibility(profile, circumstances)
    if circumstances.parents == "single_father" and "single_father" not in reasons:
        reasons.insert(0, "single_father")  # never online, whatever a profile says
    if reasons:
        raise NotEligibleOnline(reasons, REASON_MESSAGES.get(reasons[0]))


def _circumstances_dict(c: Circumstances) -> JSON:
    return dataclasses.asdict(c)


class ParentDetails:
    """A parent's details as the form records them (the mother's name and ID come from her face check).

    ``residency`` None: not said, and then the document's kind says it (a resident ID: the mainland).
    ``birth_date``: for a travel permit, whose number has none (the form prints the parent's age).
    """

    __slots__ = (
        "address",
        "birth_date",
        "ethnicity",
        "id_number",
        "name",
        "nationality",
        "residency",
        "source",
    )

    def __init__(
        self,
        *,
        nationality: Nationality,
        ethnicity: EthnicGroup,
        address: Address,
        residency: Residency | None = None,
        name: PersonName | None = None,
        id_number: IdNumber | IdDocument | None = None,
        source: Literal["typed", "registry"] = "typed",
        birth_date: date | None = None,
    ) -> None:
        self.nationality = nationality
        self.ethnicity = ethnicity
        self.address = address
        self.residency: Residency | None = residency
        self.name = name
        self.id_number = id_number
        self.source = source
        self.birth_date = birth_date

    def residency_with(self, document: IdDocument | None, role: str) -> Residency:
        """Where this parent is a resident: a non-Chinese nationality is a foreign national, whatever was said;
        else what was said, which must agree with the document (an HK/Macao document for ``hk_macao``, a
        Taiwan one for ``taiwan``, neither with a resident ID); else what the document says."""
        if not self.nationality.is_chinese:
            return "foreign"
        implied: Residency = "mainland" if document is None else document.residency
        if self.residency is None:
            return implied
        if (implied != "mainland" and self.residency != implied) or (
            implied == "mainland" and self.residency in ("hk_macao", "taiwan")
        ):
            label = "居民身份证" if document is None else document.label
            raise InvalidValue(
                f"{role}.residency",
                "residency_document_mismatch",
                f"身份类别与证件（{label}）不一致，请核对身份类别或证件类型",
            )
        return self.residency

    def to_dict(self, document: IdDocument | None = None) -> JSON:
        """The event's plain form of these details (``document``: the parent's, whose kind is recorded)."""
        out: JSON = {
            "nationality": self.nationality.code,
            "ethnicity": self.ethnicity.code,
            "address": self.address.value,
            "residency": self.residency_with(document, "parent"),
            "id_type": "resident_id" if document is None else document.id_type,
            "source": self.source,
        }
        if self.name is not None:
            out["name"] = self.name.value
        if self.id_number is not None:
            out["id_number"] = (document or as_id_document(self.id_number)).value
        if self.birth_date is not None and (document is None or document.birth_date is None):
            out["birth_date"] = self.birth_date.isoformat()
        return out


class Recipient:
    """Who receives the EMS parcel."""

    __slots__ = ("address", "name", "phone")

    def __init__(self, *, name: PersonName, phone: MobileNumber, address: Address) -> None:
        self.name = name
        self.phone = phone
        self.address = address

    def to_dict(self) -> JSON:
        """The event's plain form of the recipient."""
        return {"name": self.name.value, "phone": self.phone.value, "address": self.address.value}
