"""A mother who names no province at the start takes her delivery record's province (decision 0013).

Without ``province`` the start follows the deployment's default profile (GD here) only until her face
check links her delivery record: the record's institution then decides, by ProvinceAdopted in the same
save, before DeliveryRecordLinked. A start that named a province keeps it (``wrong_province``). Through
the service on the in-memory store; a refused command must leave the log exactly as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.domain import Snapshot

from domain.application import BirthCertificateApplication
from domain.errors import DomainError, Forbidden, NotEligibleOnline, RuleViolated
from domain.policy import Circumstances, get_profile
from domain.service import Applications
from domain.values import Actor, IdNumber, PersonName
from tests.builders import (
    BJ_HOSPITAL,
    BJ_MOTHER_ID,
    NOW,
    SD_FATHER_ID,
    SD_HOSPITAL,
    SD_MOTHER_ID,
    SYSTEM,
    Walk,
    issuer,
    refused,
    sha,
    store_as_written_before,
    two_parents,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> Applications:
    """The service whose default province is Guangdong (the deployment's BIRTHCERT_PROVINCE)."""
    service = Applications(clock=clock)
    assert service.default_province == "GD"
    return service


@pytest.fixture
def sd(app: Applications) -> Walk:
    """A Shandong family whose delivery the Shandong hospital has entered."""
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID, mother_name="刘红")
    w.record_delivery(province="山东省")
    return w


def start_without_province(w: Walk, circumstances: Circumstances | None = None) -> None:
    """``POST /applications`` with no ``province``: the service's default profile, not chosen."""
    out = w.app.start_application(w.parent, circumstances=circumstances or two_parents())
    w.app_id = out.id


def aggregate(w: Walk) -> BirthCertificateApplication:
    return w.app.get_application(w.parent, w.id)


def event_names(w: Walk) -> list[str]:
    return [type(e).__name__ for e in w.app.events.get(w.id)]


def mother_check_requested(w: Walk) -> str:
    """Her face check begun (WeChat gave a verify_id); returns its out_seq_no for the verdict."""
    seq = w.next_seq()
    w.app.request_face_verification(
        w.parent,
        w.id,
        role="mother",
        name=PersonName(w.mother_name),
        id_number=IdNumber(w.mother_id),
        out_seq_no=seq,
    )
    return seq


def mother_passes(w: Walk, seq: str) -> Any:
    """WeChat's verdict on her check: a pass."""
    return w.app.record_face_verification(w.parent, w.id, out_seq_no=seq, verify_ret=10000)


def passes_but_the_record_is_refused(w: Walk, seq: str, error: type[DomainError], code: str) -> None:
    """Her face check passes and is kept (unlinked); asking for her record then says why, recording nothing."""
    mother_passes(w, seq)
    agg = aggregate(w)
    assert "mother" in agg.verified and agg.delivery_record_id is None
    with refused(w.app, error, code):
        w.app.link_delivery_record(w.parent, w.id)


def upload(w: Walk, kind: str) -> None:
    w.app.upload_document(
        w.parent, w.id, kind=kind, document_id=sha(kind), sha256=sha(kind), content_type="image/jpeg", size=9
    )


# ---------------------------------------------------------------------- adoption at the face check


def test_a_start_without_province_takes_the_shandong_record_at_her_face_check(sd: Walk) -> None:
    start_without_province(sd)
    started = aggregate(sd)
    assert (started.province, started.province_chosen) == ("GD", False)

    seq = mother_check_requested(sd)
    before = sd.app.recorder.max_notification_id()
    mother_passes(sd, seq)
    after = sd.app.recorder.max_notification_id()

    agg = aggregate(sd)
    assert agg.province == "SD"
    assert agg.policy == get_profile("SD").to_dict()
    assert agg.delivery_record_id == str(sd.record_id)
    assert agg.institution == SD_HOSPITAL.code
    assert not agg.province_chosen  # what she did at the start stays recorded as it was
    assert event_names(sd)[-3:] == ["FaceVerified", "ProvinceAdopted", "DeliveryRecordLinked"]
    adopted = next(
        e for e in sd.app.events.get(sd.id) if isinstance(e, BirthCertificateApplication.ProvinceAdopted)
    )
    assert (adopted.province, adopted.policy, adopted.actor["id"]) == (
        "SD",
        get_profile("SD").to_dict(),
        sd.parent.id,
    )
    # One save: the face check's index, the application's three events and the record's link.
    notifications = sd.app.recorder.select_notifications((before or 0) + 1, 100)
    assert [n.topic for n in notifications if n.originator_id == sd.id] == [
        "birthcert:FaceVerified",
        "birthcert:ProvinceAdopted",
        "birthcert:DeliveryRecordLinked",
    ]
    assert sd.app.get_delivery_record(sd.record_id or "").application_id == str(sd.id)
    assert after == notifications[-1].id


def test_the_adopted_shandong_rules_apply_afterwards(app: Applications, sd: Walk) -> None:
    start_without_province(sd)
    sd.verify("mother")
    sd.confirm()
    sd.details(newborn="张小花")
    upload(sd, "father_handheld_id")  # Shandong: the father's handheld-ID photo stands in for his face check
    assert event_names(sd)[-1] == "FatherIdPhotoAccepted"
    assert aggregate(sd).father_confirmed
    sd.upload_all()
    sd.sign()
    sd.choose_ems()
    agg = aggregate(sd)
    assert agg.postage_required  # Shandong charges the postage up front
    assert agg.missing_for_submission() == ["postage_paid"]
    order = app.place_postage_order(sd.parent, sd.id, out_trade_no="BC20261120001")
    assert order.detail == str(get_profile("SD").postage_fee_fen)
    app.record_postage_paid(
        SYSTEM, sd.id, out_trade_no="BC20261120001", amount_fen=2000, transaction_id="4200001"
    )
    sd.submit()
    assert sd.state() == "submitted"
    # The Shandong issuer works it; its review deadline is Shandong's (2 working days).
    assert app.get_application(issuer(SD_HOSPITAL), sd.id).profile.review_working_days == 2


def test_a_guangdong_record_changes_nothing_for_a_start_without_province(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    start_without_province(w)
    w.verify("mother")
    agg = aggregate(w)
    assert (agg.province, agg.delivery_record_id) == ("GD", str(w.record_id))
    assert "ProvinceAdopted" not in event_names(w)


def test_a_start_that_named_its_province_still_refuses_a_record_from_another(sd: Walk) -> None:
    out = sd.app.start_application(sd.parent, circumstances=two_parents(), province="GD")
    sd.app_id = out.id
    assert aggregate(sd).province_chosen
    seq = mother_check_requested(sd)
    passes_but_the_record_is_refused(sd, seq, RuleViolated, "wrong_province")
    assert aggregate(sd).province == "GD"


def test_naming_the_default_province_is_a_choice_too(sd: Walk) -> None:
    """An explicit GD is binding even though GD is also what an absent province would give."""
    out = sd.app.start_application(sd.parent, circumstances=two_parents(), province="gd")
    sd.app_id = out.id
    seq = mother_check_requested(sd)
    passes_but_the_record_is_refused(sd, seq, RuleViolated, "wrong_province")


# ---------------------------------------------------------------------- what adoption re-checks


@pytest.mark.parametrize(
    ("circumstances", "code"),
    [
        # Guangdong takes a single mother online; Shandong does not.
        (two_parents(parents="single_mother", father_residency=None), "single_mother"),
        # Guangdong keeps only BOTH parents from Hong Kong/Macao at the counter; Shandong either one.
        (two_parents(father_residency="hk_macao"), "parent_hk_macao_taiwan_overseas_foreign"),
    ],
)
def test_circumstances_not_online_in_the_records_province_are_refused_with_its_code(
    sd: Walk, circumstances: Circumstances, code: str
) -> None:
    start_without_province(sd, circumstances)  # online in Guangdong: the start is accepted
    version = aggregate(sd).version
    seq = mother_check_requested(sd)
    passes_but_the_record_is_refused(sd, seq, NotEligibleOnline, code)
    agg = aggregate(sd)
    assert (agg.province, agg.delivery_record_id, agg.version) == ("GD", None, version + 2)
    assert sd.app.get_delivery_record(sd.record_id or "").application_id is None


def test_the_application_window_is_the_adopted_profiles(app: Applications, clock: Clock) -> None:
    """Beijing opens a week after the birth; Guangdong (the default) has no such rule."""
    w = Walk(app, inst=BJ_HOSPITAL, mother_id=BJ_MOTHER_ID)
    w.record_delivery(province="北京市")  # born two days before NOW
    start_without_province(w)
    w.verify("mother")  # her face check passes; the record is not linked yet
    agg = aggregate(w)
    assert ("mother" in agg.verified, agg.delivery_record_id, agg.province) == (True, None, "GD")
    with refused(app, RuleViolated, "too_early"):
        app.link_delivery_record(w.parent, w.id)
    clock.now += timedelta(days=6)
    app.link_delivery_record(w.parent, w.id)
    agg = aggregate(w)
    assert (agg.province, agg.delivery_record_id) == ("BJ", str(w.record_id))
    assert event_names(w)[-2:] == ["ProvinceAdopted", "DeliveryRecordLinked"]


def test_face_checks_and_an_invitation_before_the_record_do_not_prevent_adoption(app: Applications) -> None:
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID, mother_name="刘红")
    start_without_province(w)
    w.verify("mother")  # no record entered yet: verified, not linked
    w.verify("father", id_number=SD_FATHER_ID)
    app.invite_father(w.parent, w.id)
    assert aggregate(w).steps_bound_to_profile() == []
    w.record_delivery(province="山东省")
    app.link_delivery_record(w.parent, w.id)
    assert aggregate(w).province == "SD"


def test_after_steps_taken_under_the_default_profile_adoption_is_refused(app: Applications) -> None:
    """Details checked against Guangdong's rules cannot silently become Shandong's: a clear refusal."""
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID, mother_name="刘红")
    start_without_province(w)
    w.verify("mother")  # before the hospital entered the delivery
    w.details(newborn="李三姓")  # a third surname: Guangdong allows it, Shandong would not have
    w.choose_ems()
    w.record_delivery(province="山东省")
    assert aggregate(w).steps_bound_to_profile() == ["details_provided", "delivery_method_chosen"]
    with refused(app, RuleViolated, "province_locked"):
        app.link_delivery_record(w.parent, w.id)
    agg = aggregate(w)
    assert (agg.province, agg.delivery_record_id) == ("GD", None)
    # She withdraws and starts again: the record is free, and the new application adopts Shandong.
    app.withdraw(w.parent, w.id)
    start_without_province(w)
    w.verify("mother")
    assert aggregate(w).province == "SD"


def test_the_refusal_names_what_was_done_and_what_to_do(app: Applications) -> None:
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID, mother_name="刘红")
    start_without_province(w)
    w.verify("mother")
    w.details()
    w.record_delivery(province="山东省")
    with pytest.raises(RuleViolated) as raised:
        app.link_delivery_record(w.parent, w.id)
    assert "填写新生儿姓名及父母信息" in raised.value.message
    assert "山东省" in raised.value.message and "撤回" in raised.value.message


# ---------------------------------------------------------------------- stored events and snapshots


def test_a_v1_application_started_event_loads_as_chosen(sd: Walk) -> None:
    """ApplicationStarted v1 had no province_chosen: its province was binding, so it reads as chosen."""
    app_id = uuid4()
    v1_state = {
        "timestamp": datetime(2026, 11, 20, 2, 0, tzinfo=UTC),
        "originator_topic": "birthcert:BirthCertificateApplication",
        "actor": sd.parent.to_dict(),
        "applicant_id": sd.parent.id,
        "province": "GD",
        "policy": get_profile("GD").to_dict(),
        "circumstances": {
            "request_kind": "first_issue",
            "born_in_institution": True,
            "parents": "both",
            "mother_residency": "mainland",
            "father_residency": "mainland",
            "face_verification_failed": False,
        },
    }
    store_as_written_before(sd.app, app_id, 1, "birthcert:ApplicationStarted", v1_state)
    started = next(iter(sd.app.events.get(app_id)))
    assert isinstance(started, BirthCertificateApplication.ApplicationStarted)
    assert started.province_chosen is True
    sd.app_id = app_id
    agg = aggregate(sd)
    assert (agg.province, agg.province_chosen) == ("GD", True)
    seq = mother_check_requested(sd)
    passes_but_the_record_is_refused(sd, seq, RuleViolated, "wrong_province")


def test_new_application_started_events_are_written_as_v2(sd: Walk) -> None:
    start_without_province(sd)
    stored = sd.app.recorder.select_events(sd.id, limit=1)[0]
    data = stored.state
    if sd.app.mapper.cipher:
        data = sd.app.mapper.cipher.decrypt(data)
    if sd.app.mapper.compressor:
        data = sd.app.mapper.compressor.decompress(data)
    decoded = sd.app.mapper.transcoder.decode(data)
    assert (decoded["class_version"], decoded["province_chosen"]) == (2, False)


def test_a_snapshot_from_before_adoption_loads_as_chosen(sd: Walk) -> None:
    start_without_province(sd)
    snapshot = Snapshot.take(aggregate(sd))
    state = dict(snapshot.state)
    assert state.pop("class_version") == 6
    assert state.pop("elicenses") == []  # v6's (decision 0038)
    assert state.pop("province_chosen") is False
    for name in ("replacements", "pickup_appointment", "collector_letter", "collector_check"):
        state.pop(name)  # v4's
    for name in ("named_institution", "face_failure_day", "referral"):
        state.pop(name)  # v5's
    old = Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state={**state, "class_version": 2},
    )
    loaded = old.mutate(None)
    assert isinstance(loaded, BirthCertificateApplication)
    assert loaded.province_chosen is True


def test_the_father_who_joined_cannot_cause_an_adoption(app: Applications) -> None:
    """Linking is the applicant's: the father on his own account gets no say in the province."""
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID, mother_name="刘红")
    start_without_province(w)
    w.verify("mother")
    code = str(app.invite_father(w.parent, w.id).detail)
    father = Actor(id="openid-father", role="parent")
    app.accept_father_invitation(father, code)
    w.record_delivery(province="山东省")
    with refused(app, Forbidden, "applicant_only"):
        app.link_delivery_record(father, w.id)
    app.link_delivery_record(w.parent, w.id)
    assert aggregate(w).province == "SD"
