"""The DeliveryRecord aggregate: the midwifery institution's record of one newborn's delivery (分娩信息).

One record per newborn (twins have two, told apart by ``birth_order``). The hospital enters it
(HIS or a staff page) and may correct it until a certificate is issued against it; after that
it is locked for good. The record's ``snapshot()`` is what an application copies into the
registration form's delivery part.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate

from domain.errors import Forbidden, InvalidValue, RuleViolated
from domain.policy import ProvinceProfile
from domain.values import (
    Actor,
    BirthData,
    Birthplace,
    CounterDetails,
    IdDocument,
    IdNumber,
    PersonName,
    as_id_document,
)

JSON = dict[str, Any]
SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
_INPATIENT_RE: Final = re.compile(r"^[0-9A-Za-z-]{1,32}$")
# The fields a correction may change, in the order the form shows them.
CORRECTABLE: Final = (
    "mother_name",
    "mother_id_number",
    "inpatient_no",
    "newborn_sex",
    "born_at",
    "gestational_weeks",
    "weight_g",
    "length_cm",
    "birthplace",
    "attendant",
)


def entry_deadline(profile: ProvinceProfile, born_at: datetime) -> datetime | None:
    """When the delivery must have been entered (分娩信息录入时限), or None where the province sets no limit.

    Counted in hours on the clock (Guangdong 产妇分娩后3日内 = 72 h, Shandong 24 h): neither seed counts in working
    days (docs/decisions/0034-hospital-worklist.md).
    """
    hours = profile.delivery_entry_hours
    return None if hours is None else born_at.astimezone(SHANGHAI) + timedelta(hours=hours)


def latest_birth_on(day: date) -> datetime:
    """The latest a birth on ``day`` (Beijing time) can have been: its deadline is the most lenient one."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=SHANGHAI)


class Institution:
    """A midwifery/issuing institution as the service knows it: code, name, province and, once the operator
    set them, its counter's address, telephone and opening hours (where referrals send families)."""

    __slots__ = ("code", "counter", "name", "province")

    def __init__(self, code: str, name: str, province: str, counter: CounterDetails | None = None) -> None:
        self.code = code
        self.name = name
        self.province = province
        self.counter = counter


class DeliveryFacts:
    """The validated content of a delivery record, as entered or corrected by the hospital."""

    __slots__ = (
        "attendant",
        "birth",
        "birth_order",
        "birthplace",
        "inpatient_no",
        "mother_id_number",
        "mother_name",
    )

    def __init__(
        self,
        *,
        inpatient_no: str,
        mother_name: PersonName,
        mother_id_number: IdNumber | IdDocument,
        birth: BirthData,
        birthplace: Birthplace,
        attendant: PersonName,
        birth_order: int = 1,
    ) -> None:
        if not _INPATIENT_RE.match(inpatient_no):
            raise InvalidValue("inpatient_no", "invalid_inpatient_no", "住院病历号格式不正确")
        if not 1 <= birth_order <= 9:
            raise InvalidValue("birth_order", "invalid_birth_order", "胎次序号应为1到9")
        # A travel permit's number says neither sex nor age: only an 18-character number is checked so.
        document = as_id_document(mother_id_number)
        if document.sex == "M":  # the 17th digit is odd: most likely the father's number typed here
            raise InvalidValue(
                "mother.id_number",
                "not_a_womans_id_number",
                "该身份证号码的性别码为男性，请核对产妇身份证号码",
            )
        if document.birth_date is not None and document.age_on(birth.born_at.date()) < 12:
            raise InvalidValue(
                "mother.id_number", "implausible_parent_age", "产妇身份证号码与新生儿出生日期不符"
            )
        self.inpatient_no = inpatient_no
        self.mother_name = mother_name
        self.mother_id_number = document
        self.birth = birth
        self.birthplace = birthplace
        self.attendant = attendant
        self.birth_order = birth_order

    def to_dict(self) -> JSON:
        """The plain fields stored in the events."""
        return {
            "inpatient_no": self.inpatient_no,
            "birth_order": self.birth_order,
            "mother_name": self.mother_name.value,
            "mother_id_number": self.mother_id_number.value,
            # Only another document than a resident ID says which (records entered before it: resident IDs).
            **(
                {"mother_id_type": self.mother_id_number.id_type}
                if self.mother_id_number.id_type != "resident_id"
                else {}
            ),
            "newborn_sex": self.birth.sex,
            "born_at": self.birth.born_at.astimezone(SHANGHAI).isoformat(),
            "gestational_weeks": self.birth.gestational_weeks,
            "weight_g": self.birth.weight_g,
            "length_cm": self.birth.length_cm,
            "birthplace": {
                "province": self.birthplace.province,
                "city": self.birthplace.city,
                "county": self.birthplace.county,
            },
            "attendant": self.attendant.value,
        }


class DeliveryRecord(Aggregate):
    """One newborn's delivery as recorded by the midwifery institution."""

    TOPIC = "birthcert:DeliveryRecord"

    class Event(Aggregate.Event):
        """Base of this aggregate's events: each records who acted."""

        actor: JSON

    class DeliveryRecorded(Event, Aggregate.Created):
        """The hospital entered the delivery. ``entered_late`` is past the province's entry deadline."""

        TOPIC = "birthcert:DeliveryRecorded"
        institution_code: str
        institution_name: str
        province: str
        facts: JSON
        entered_at: str
        entered_late: bool

    Created = DeliveryRecorded

    class DeliveryRecordCorrected(Event):
        """The hospital corrected the record; ``changes`` holds the new values of the changed fields."""

        TOPIC = "birthcert:DeliveryRecordCorrected"
        changes: JSON
        reason: str

        def apply(self, r: DeliveryRecord) -> None:
            r.facts = {**r.facts, **self.changes}
            r.open_dispute = None

    class ApplicationLinked(Event):
        """An application (by the verified mother) now uses this record."""

        TOPIC = "birthcert:ApplicationLinked"
        application_id: str

        def apply(self, r: DeliveryRecord) -> None:
            r.application_id = self.application_id

    class ApplicationUnlinked(Event):
        """The application using this record was withdrawn or sent to the counter."""

        TOPIC = "birthcert:ApplicationUnlinked"
        application_id: str

        def apply(self, r: DeliveryRecord) -> None:
            r.application_id = None

    class DisputeReceived(Event):
        """The mother disputed the record through her application; the hospital must look at it."""

        TOPIC = "birthcert:DisputeReceived"
        application_id: str
        reason: str

        def apply(self, r: DeliveryRecord) -> None:
            r.open_dispute = self.reason

    class CertificateIssuedAgainst(Event):
        """A first certificate was issued from this record: it is locked from now on."""

        TOPIC = "birthcert:CertificateIssuedAgainst"
        application_id: str
        certificate_number: str

        def apply(self, r: DeliveryRecord) -> None:
            r.issued_certificate = self.certificate_number

    class RecordUpheld(Event):
        """The hospital looked into the mother's dispute and the record stands as entered, for ``reason``
        (the application's DeliveryRecordUpheld, in the same save). A correction answers a dispute instead."""

        TOPIC = "birthcert:RecordUpheld"
        application_id: str
        reason: str

        def apply(self, r: DeliveryRecord) -> None:
            r.open_dispute = None

    def __init__(
        self,
        actor: JSON,
        institution_code: str,
        institution_name: str,
        province: str,
        facts: JSON,
        entered_at: str,
        entered_late: bool,
    ) -> None:
        self.institution_code = institution_code
        self.institution_name = institution_name
        self.province = province
        self.facts = dict(facts)
        self.entered_at = entered_at
        self.entered_late = entered_late
        self.application_id: str | None = None
        self.open_dispute: str | None = None
        self.issued_certificate: str | None = None

    @classmethod
    def record(
        cls,
        *,
        id: UUID,
        actor: Actor,
        institution: Institution,
        profile: ProvinceProfile,
        facts: DeliveryFacts,
        now: datetime,
    ) -> DeliveryRecord:
        """The hospital of ``institution`` enters a delivery (分娩信息录入)."""
        _check_hospital(actor, institution.code)
        if facts.birth.born_at > now + timedelta(minutes=5):
            raise InvalidValue("newborn.born_at", "birth_in_future", "出生时间不能晚于当前时间")
        due = entry_deadline(profile, facts.birth.born_at)
        late = due is not None and now > due
        return cls._create(
            cls.DeliveryRecorded,
            id=id,
            actor=actor.to_dict(),
            institution_code=institution.code,
            institution_name=institution.name,
            province=institution.province,
            facts=facts.to_dict(),
            entered_at=now.astimezone(SHANGHAI).isoformat(),
            entered_late=late,
        )

    def snapshot(self) -> JSON:
        """The record as an application copies it into the form (and shows it, masked, to the mother)."""
        return {
            **self.facts,
            "institution_code": self.institution_code,
            "institution_name": self.institution_name,
            "province": self.province,
            "entered_on": self.entered_at[:10],
        }

    def correct(self, actor: Actor, *, facts: DeliveryFacts, reason: str, now: datetime) -> JSON:
        """Correct the record before issue; returns the changed fields (empty when nothing changed)."""
        _check_hospital(actor, self.institution_code)
        if self.issued_certificate is not None:
            raise RuleViolated("出生医学证明已签发，分娩信息不能更正", code="frozen_after_issue")
        if facts.birth.born_at > now + timedelta(minutes=5):
            raise InvalidValue("newborn.born_at", "birth_in_future", "出生时间不能晚于当前时间")
        new = facts.to_dict()
        if "mother_id_type" in self.facts:  # corrected back to a resident ID: say so, not leave the old kind
            new.setdefault("mother_id_type", "resident_id")
        changes = {k: v for k, v in new.items() if self.facts.get(k) != v}
        if "birth_order" in changes or "inpatient_no" in changes:
            raise InvalidValue(
                "inpatient_no", "identity_of_record", "住院病历号和胎次不能更正，请作废后重新录入"
            )
        if "mother_id_number" in changes and self.application_id is not None:
            raise RuleViolated("已有申请关联此记录，不能更改产妇身份", code="mother_change_while_linked")
        cleaned = " ".join(reason.split())
        if not 2 <= len(cleaned) <= 200:
            raise InvalidValue("reason", "invalid_text", "请填写2到200个字的更正原因")
        if changes:
            self.trigger_event(
                self.DeliveryRecordCorrected, actor=actor.to_dict(), changes=changes, reason=cleaned
            )
        return changes

    def link_application(self, actor: Actor, *, application_id: str) -> None:
        """Reserve this record for one application at a time."""
        if self.issued_certificate is not None:
            raise RuleViolated("该分娩记录已签发出生医学证明", code="already_issued")
        if self.application_id == application_id:
            return
        if self.application_id is not None:
            raise RuleViolated("该分娩记录已有正在办理的申请", code="record_in_use")
        self.trigger_event(self.ApplicationLinked, actor=actor.to_dict(), application_id=application_id)

    def unlink_application(self, actor: Actor, *, application_id: str) -> None:
        """Free the record when its application ends without a certificate."""
        if self.application_id == application_id and self.issued_certificate is None:
            self.trigger_event(self.ApplicationUnlinked, actor=actor.to_dict(), application_id=application_id)

    def receive_dispute(self, actor: Actor, *, application_id: str, reason: str) -> None:
        """Note the mother's dispute so the hospital sees it."""
        self.trigger_event(
            self.DisputeReceived, actor=actor.to_dict(), application_id=application_id, reason=reason
        )

    def uphold(self, actor: Actor, *, application_id: str, reason: str) -> None:
        """Answer the dispute of the linked application: the record stands (``reason`` as the application took it)."""
        _check_hospital(actor, self.institution_code)
        if self.application_id != application_id:
            raise RuleViolated("该分娩记录没有待答复的异议", code="no_open_dispute")
        self.trigger_event(
            self.RecordUpheld, actor=actor.to_dict(), application_id=application_id, reason=reason
        )

    def mark_issued(self, actor: Actor, *, application_id: str, certificate_number: str) -> None:
        """Lock the record: a first certificate now exists for this newborn."""
        if self.issued_certificate is not None:
            raise RuleViolated("该分娩记录已签发出生医学证明", code="already_issued")
        self.trigger_event(
            self.CertificateIssuedAgainst,
            actor=actor.to_dict(),
            application_id=application_id,
            certificate_number=certificate_number,
        )


def _check_hospital(actor: Actor, institution_code: str) -> None:
    if actor.role != "hospital" or actor.institution != institution_code:
        raise Forbidden("只有本机构的助产人员可以录入或更正分娩信息")
