"""Test data and a scripted walk through the domain, shared by unit, stateful and store tests.

The people here are invented; their resident ID numbers are valid (correct check character,
real region and date) so that the domain accepts them, and are listed in ``TEST_ID_NUMBERS``
so that a test can scan a store file for any of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from domain.application import ParentDetails, Recipient
from domain.delivery import DeliveryFacts, Institution
from domain.errors import DomainError
from domain.policy import Circumstances
from domain.service import Applications, Outcome
from domain.values import (
    Actor,
    Address,
    BirthData,
    Birthplace,
    CertificateNumber,
    EthnicGroup,
    IdDocument,
    IdNumber,
    MobileNumber,
    Nationality,
    PersonName,
)

SHANGHAI = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)
BORN = datetime(2026, 11, 18, 8, 30, tzinfo=SHANGHAI)


def make_id_number(region: str, birth: str, seq: str) -> str:
    """A valid 18-character resident ID number (GB 11643 check character)."""
    body = region + birth + seq
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]


MOTHER_ID = make_id_number("440106", "19930512", "024")
FATHER_ID = make_id_number("440104", "19910203", "015")
OTHER_WOMAN_ID = make_id_number("440103", "19950808", "046")
SD_MOTHER_ID = make_id_number("370124", "19940101", "028")
SD_FATHER_ID = make_id_number("370124", "19920303", "013")
SECOND_MOTHER_ID = make_id_number("440106", "19900101", "002")
OTHER_MAN_ID = make_id_number("440104", "19880101", "001")
BJ_MOTHER_ID = make_id_number("110105", "19920101", "002")
TEST_ID_NUMBERS = (
    MOTHER_ID,
    FATHER_ID,
    OTHER_WOMAN_ID,
    SD_MOTHER_ID,
    SD_FATHER_ID,
    SECOND_MOTHER_ID,
    OTHER_MAN_ID,
    BJ_MOTHER_ID,
)

GD_HOSPITAL = Institution("GZFY01", "广州市妇女儿童医疗中心", "GD")
SD_HOSPITAL = Institution("JNPY01", "平阴县人民医院", "SD")
BJ_HOSPITAL = Institution("BJFY01", "北京妇产医院", "BJ")


def hospital(inst: Institution = GD_HOSPITAL) -> Actor:
    """The HIS of a midwifery institution."""
    return Actor(id=f"his-{inst.code}", role="hospital", institution=inst.code)


def issuer(inst: Institution = GD_HOSPITAL, name: str = "李签发") -> Actor:
    """An issuer at an institution."""
    return Actor(id=f"issuer-{inst.code}", role="issuer", institution=inst.code, name=name)


SYSTEM = Actor(id="wechat-pay", role="system")
EMS = Actor(id="ems", role="ems")


def facts(
    mother_id: str = MOTHER_ID,
    *,
    mother_name: str = "王芳",
    born_at: datetime = BORN,
    inpatient_no: str = "ZY2026001",
    birth_order: int = 1,
    weight_g: int = 3250,
    province: str = "广东省",
) -> DeliveryFacts:
    """A plausible delivery."""
    return DeliveryFacts(
        inpatient_no=inpatient_no,
        mother_name=PersonName(mother_name),
        mother_id_number=IdDocument(mother_id),
        birth=BirthData(sex="F", born_at=born_at, gestational_weeks=39, weight_g=weight_g, length_cm=50),
        birthplace=Birthplace(province, "广州市", "越秀区"),
        attendant=PersonName("陈助产"),
        birth_order=birth_order,
    )


def two_parents(**changes: object) -> Circumstances:
    """A first issue for a mainland couple, born in hospital."""
    base: dict[str, object] = {
        "request_kind": "first_issue",
        "born_in_institution": True,
        "parents": "both",
        "mother_residency": "mainland",
        "father_residency": "mainland",
    }
    base.update(changes)
    return Circumstances(**base)  # type: ignore[arg-type]


def mother_details(address: str = "广东省广州市越秀区中山一路1号") -> ParentDetails:
    """The mother's part of the details."""
    return ParentDetails(
        nationality=Nationality("CHN"), ethnicity=EthnicGroup("01"), address=Address(address)
    )


def father_details(id_number: str = FATHER_ID, name: str = "张伟") -> ParentDetails:
    """The father's part of the details."""
    return ParentDetails(
        nationality=Nationality("CHN"),
        ethnicity=EthnicGroup("01"),
        address=Address("广东省广州市越秀区中山一路1号"),
        name=PersonName(name),
        id_number=IdDocument(id_number),
    )


def recipient() -> Recipient:
    """An EMS recipient."""
    return Recipient(
        name=PersonName("王芳"),
        phone=MobileNumber("13812345678"),
        address=Address("广东省广州市越秀区中山一路1号"),
    )


def sha(text: str) -> str:
    """A content hash as the blob store would give it."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Walk:
    """One family's way through the service, step by step; each method is one command."""

    app: Applications
    inst: Institution = GD_HOSPITAL
    mother_id: str = MOTHER_ID
    father_id: str | None = FATHER_ID
    mother_name: str = "王芳"
    parent: Actor = field(default_factory=lambda: Actor(id="openid-mother", role="parent"))
    app_id: UUID | None = None
    record_id: UUID | None = None
    _seq: int = 0

    @property
    def id(self) -> UUID:
        """The application's id (a nil id before it started, which the service does not know)."""
        return self.app_id or UUID(int=0)

    @property
    def issuer(self) -> Actor:
        """The issuer of this family's institution."""
        return issuer(self.inst)

    def record_delivery(self, **kw: object) -> Outcome:
        """The hospital enters the delivery."""
        out = self.app.record_delivery(
            hospital(self.inst),
            institution=self.inst,
            facts=facts(self.mother_id, mother_name=self.mother_name, **kw),  # type: ignore[arg-type]
        )
        self.record_id = out.id
        return out

    def start(self, circumstances: Circumstances | None = None) -> Outcome:
        """The mother starts."""
        if circumstances is None:
            circumstances = (
                two_parents()
                if self.father_id
                else two_parents(parents="single_mother", father_residency=None)
            )
        out = self.app.start_application(
            self.parent, circumstances=circumstances, province=self.inst.province
        )
        self.app_id = out.id
        return out

    def next_seq(self) -> str:
        """A fresh out_seq_no."""
        self._seq += 1
        return f"{str(self.id)[:8]}-{self._seq:04d}"

    def verify(
        self,
        role: Literal["mother", "father"] = "mother",
        *,
        id_number: str | None = None,
        verify_ret: int = 10000,
    ) -> Outcome:
        """Request a face check and record WeChat's verdict."""
        if id_number is None:
            id_number = self.mother_id if role == "mother" else (self.father_id or FATHER_ID)
        name = self.mother_name if role == "mother" else "张伟"
        seq = self.next_seq()
        self.app.request_face_verification(
            self.parent,
            self.id,
            role=role,
            name=PersonName(name),
            id_number=IdDocument(id_number),
            out_seq_no=seq,
        )
        return self.app.record_face_verification(self.parent, self.id, out_seq_no=seq, verify_ret=verify_ret)

    def confirm(self) -> Outcome:
        """The mother confirms the delivery record."""
        return self.app.confirm_delivery_info(self.parent, self.id)

    def details(self, newborn: str = "张小花", address: str = "广东省广州市越秀区中山一路1号") -> Outcome:
        """Names and details."""
        father = father_details(self.father_id) if self.father_id else None
        return self.app.provide_details(
            self.parent,
            self.id,
            newborn_name=PersonName(newborn),
            mother=mother_details(address),
            father=father,
        )

    def upload_all(self) -> None:
        """Every required ID photo."""
        kinds = ["mother_id_front", "mother_id_back"]
        if self.father_id:
            kinds += ["father_id_front", "father_id_back"]
        for kind in kinds:
            self.upload(kind)

    def upload(self, kind: str) -> Outcome:
        """One document of ``kind`` (its stand-in content named by the kind)."""
        return self.app.upload_document(
            self.parent,
            self.id,
            kind=kind,
            document_id=sha(kind),
            sha256=sha(kind),
            content_type="image/jpeg",
            size=1000,
        )

    def upload_materials(self) -> list[str]:
        """Every material of 出生一件事's 表1 her opt-in asks for and she has not uploaded (decision 0047)."""
        kinds = self.app.get_application(self.parent, self.id).missing_bundle_materials()
        for kind in kinds:
            self.upload(kind)
        return kinds

    def sign(self, form_sha256: str | None = None) -> Outcome:
        """The mother signs the form as it is now (or a given hash)."""
        current = self.app.get_application(self.parent, self.id).form_sha256()
        return self.app.sign_form(
            self.parent,
            self.id,
            form_sha256=form_sha256 or current or "",
            signature_document_id=sha("sig"),
            signature_sha256=sha("sig"),
        )

    def choose_ems(self) -> Outcome:
        """EMS to the mother."""
        return self.app.choose_delivery_method(self.parent, self.id, method="ems", recipient=recipient())

    def choose_pickup(self) -> Outcome:
        """Pickup at the counter."""
        return self.app.choose_delivery_method(self.parent, self.id, method="pickup", recipient=None)

    def submit(self) -> Outcome:
        """Submit."""
        return self.app.submit(self.parent, self.id)

    def ready_to_submit(self, method: str = "ems") -> None:
        """Everything up to, not including, submission."""
        if self.record_id is None:
            self.record_delivery()
        self.start()
        self.verify("mother")
        self.confirm()
        self.details()
        if self.father_id:
            self.verify("father")
        self.upload_all()
        self.sign()
        if method == "ems":
            self.choose_ems()
        else:
            self.choose_pickup()

    def submitted(self, method: str = "ems") -> Outcome:
        """A submitted application."""
        self.ready_to_submit(method)
        return self.submit()

    def issue(self, number: str = "X440100001", sealer: str = "赵盖章") -> Outcome:
        """The issuer issues."""
        return self.app.issue(
            self.issuer, self.id, certificate_number=CertificateNumber(number), sealer_name=sealer
        )

    def reject(self, fields: list[str] | None = None, codes: list[str] | None = None) -> Outcome:
        """The issuer sends it back (for ``codes``; without, in her words only: ``other``)."""
        return self.app.reject(
            self.issuer,
            self.id,
            reasons=["身份证照片不清晰"],
            fields=fields or ["documents.mother_id_front"],
            reason_codes=codes,
        )

    def collector_check(
        self,
        name: str | None = None,
        id_number: str | None = None,
        *,
        verify_ret: int = 10000,
        phone: Actor | None = None,
    ) -> str | None:
        """At the counter: the issuer opens a face check of the ID shown (the mother's unless told), the
        collector's phone begins and finishes it; returns the failure code, or None on a pass."""
        phone = phone or Actor(id="openid-collector", role="parent")
        code = self.app.open_collector_check(
            self.issuer,
            self.id,
            name=PersonName(name or self.mother_name),
            id_number=IdNumber(id_number or self.mother_id),
        ).detail
        assert code is not None
        seq = self.next_seq()
        self.app.request_collector_face_check(phone, code, out_seq_no=seq, verify_id=f"verify-{seq}")
        return self.app.record_collector_face_check(phone, code, out_seq_no=seq, verify_ret=verify_ret).detail

    def hand_over(
        self, relation: str = "mother", name: str | None = None, id_number: str | None = None
    ) -> Outcome:
        """The collector's face check at the counter, then the handover to them (the mother unless told)."""
        self.collector_check(name, id_number)
        return self.app.hand_over(
            self.issuer,
            self.id,
            recipient_name=PersonName(name or self.mother_name),
            relation=relation,
            recipient_id=IdNumber(id_number or self.mother_id),
        )

    def state(self) -> str:
        """The application's state."""
        return self.app.get_application(self.parent, self.id).state


def store_as_written_before(
    app: Applications, originator_id: UUID, version: int, topic: str, state: dict[str, object]
) -> None:
    """Store an event as an older release wrote it (``state`` without the fields added since), bypassing the
    current classes: what an upcast must read."""
    data = app.mapper.transcoder.encode(state)
    if app.mapper.compressor:
        data = app.mapper.compressor.compress(data)
    if app.mapper.cipher:
        data = app.mapper.cipher.encrypt(data)
    app.recorder.insert_events(
        [StoredEvent(originator_id=originator_id, originator_version=version, topic=topic, state=data)]
    )


def last_written(app: Applications, originator_id: UUID) -> dict[str, Any]:
    """The last event of ``originator_id`` as stored (decrypted, decompressed, decoded): what a release wrote."""
    state = app.recorder.select_events(originator_id, desc=True, limit=1)[0].state
    if app.mapper.cipher:
        state = app.mapper.cipher.decrypt(state)
    if app.mapper.compressor:
        state = app.mapper.compressor.decompress(state)
    decoded: dict[str, Any] = app.mapper.transcoder.decode(state)
    return decoded


def in_memory(now: datetime = NOW) -> Applications:
    """The service on the library's in-memory store, at a fixed time."""
    return Applications(clock=lambda: now)


@contextmanager
def refused(app: Applications, error: type[DomainError], code: str) -> Iterator[None]:
    """The command raises ``error`` with ``code`` and records nothing."""
    before = app.recorder.max_notification_id()
    with pytest.raises(error) as raised:
        yield
    assert raised.value.code == code, raised.value
    assert app.recorder.max_notification_id() == before, "a refused command wrote events"


# The extra fields of Hebei's 表2 for a girl who follows her father into his family household (decision 0044).
HEBEI_BUNDLE_FIELDS: dict[str, str] = {
    "contact_phone": "13912345678",
    "registration_category": "01",
    "settle_with": "father",
    "household_type": "family",
    "relation_to_head": "30",
    "native_place": "河北省石家庄市长安区",
    "card_bank": "102",
    "card_by_agent": "yes",
    "card_pickup_city": "130100",
    "card_pickup_place": "工商银行石家庄中山路支行",
    "insurance_area": "130100",
    "insured_identity": "newborn",
    "insurance_district_name": "长安区",
    "insurance_district_code": "130102",
}
