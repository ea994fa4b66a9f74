"""One test per rule of shared/domain.md, through the service on the in-memory store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain.application import BirthCertificateApplication
from domain.errors import Conflict, Forbidden, InvalidValue, NotEligibleOnline, NotFound, RuleViolated
from domain.service import Applications
from domain.values import Actor, CertificateNumber, IdNumber, PersonName
from tests.builders import (
    BJ_HOSPITAL,
    BJ_MOTHER_ID,
    BORN,
    EMS,
    FATHER_ID,
    GD_HOSPITAL,
    NOW,
    OTHER_MAN_ID,
    OTHER_WOMAN_ID,
    SD_FATHER_ID,
    SD_HOSPITAL,
    SD_MOTHER_ID,
    SECOND_MOTHER_ID,
    SYSTEM,
    Walk,
    facts,
    father_details,
    hospital,
    in_memory,
    issuer,
    mother_details,
    sha,
    two_parents,
)


@pytest.fixture
def app() -> Applications:
    return in_memory()


def codes(exc: pytest.ExceptionInfo[Exception]) -> str:
    return getattr(exc.value, "code", "")


# ---------------------------------------------------------------- who may start, and which cases are online


def test_only_a_parent_starts_an_application(app: Applications) -> None:
    with pytest.raises(Forbidden):
        app.start_application(issuer(), circumstances=two_parents(), province="GD")


def test_single_father_is_never_online(app: Applications) -> None:
    with pytest.raises(NotEligibleOnline) as exc:
        Walk(app).start(two_parents(parents="single_father"))
    assert "single_father" in exc.value.reasons


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"father_residency": "foreign"}, "foreign_national"),
        ({"mother_residency": "taiwan"}, "taiwan_compatriot"),
        (
            {"mother_residency": "hk_macao", "father_residency": "overseas_chinese"},
            "both_parents_hk_macao_overseas",
        ),
        ({"born_in_institution": False}, "born_outside_institution"),
        ({"request_kind": "replacement"}, "replacement"),
        ({"request_kind": "reissue"}, "reissue"),
    ],
)
def test_guangdong_keeps_these_cases_at_the_counter(
    app: Applications, changes: dict[str, object], code: str
) -> None:
    with pytest.raises(NotEligibleOnline) as exc:
        Walk(app).start(two_parents(**changes))
    assert code in exc.value.reasons


def test_guangdong_allows_one_hk_parent_online(app: Applications) -> None:
    Walk(app).start(two_parents(father_residency="hk_macao"))


def test_shandong_keeps_any_non_mainland_parent_at_the_counter(app: Applications) -> None:
    with pytest.raises(NotEligibleOnline) as exc:
        Walk(app, inst=SD_HOSPITAL).start(two_parents(father_residency="hk_macao"))
    assert "parent_hk_macao_taiwan_overseas_foreign" in exc.value.reasons


def test_single_mother_is_online_in_guangdong_not_in_shandong(app: Applications) -> None:
    Walk(app, father_id=None).start()
    with pytest.raises(NotEligibleOnline) as exc:
        Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=None).start()
    assert exc.value.reasons == ["single_mother"]


def test_nationality_in_details_can_reveal_a_counter_case(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    w.confirm()
    foreign_father = father_details()
    foreign_father.nationality = type(foreign_father.nationality)("USA")
    assert w.app_id
    with pytest.raises(NotEligibleOnline) as exc:
        app.provide_details(
            w.parent,
            w.app_id,
            newborn_name=PersonName("张小花"),
            mother=mother_details(),
            father=foreign_father,
        )
    assert exc.value.reasons == ["foreign_national"]


def test_shandong_refuses_a_third_surname(app: Applications) -> None:
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID)
    w.record_delivery(province="山东省")
    w.start()
    w.verify()
    w.confirm()
    with pytest.raises(NotEligibleOnline) as exc:
        w.details(newborn="李小花")  # neither 王 (mother) nor 张 (father)
    assert exc.value.reasons == ["third_surname"]
    w.details(newborn="王张小花")


# ---------------------------------------------------------------- the mother's identity (防冒领)


def test_mother_must_be_on_a_delivery_record(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    impostor = Walk(
        app, mother_id=OTHER_WOMAN_ID, mother_name="刘丽", parent=Actor(id="openid-x", role="parent")
    )
    impostor.start()
    # Her check proceeds like any other (records are not revealed before it); the pass is recorded…
    impostor.verify("mother")
    agg = app.get_application(impostor.parent, impostor.app_id or "")
    assert "mother" in agg.verified and agg.delivery_record_id is None
    # …and only then is she told that no delivery record of hers can be linked.
    with pytest.raises(RuleViolated) as exc:
        app.link_delivery_record(impostor.parent, impostor.app_id or "")
    assert codes(exc) == "not_delivery_mother"


def test_verified_mother_must_equal_the_records_mother(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    agg = app.get_application(w.parent, w.app_id or "")
    other = app.record_delivery(
        hospital(), institution=GD_HOSPITAL, facts=facts(OTHER_WOMAN_ID, inpatient_no="ZY9")
    )
    record = app.get_delivery_record(other.id)
    agg2 = app.get_application(w.parent, w.app_id or "")
    agg2.delivery_record_id = None
    with pytest.raises(RuleViolated) as exc:
        agg2.link_delivery_record(
            w.parent, delivery_record_id=str(other.id), record=record.snapshot(), now=NOW
        )
    assert codes(exc) == "not_delivery_mother"
    assert agg.delivery_record_id == str(w.record_id)


def test_mother_face_check_links_her_delivery_record(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    agg = app.get_application(w.parent, w.app_id or "")
    assert agg.delivery_record_id == str(w.record_id)
    assert agg.institution == GD_HOSPITAL.code
    assert app.get_delivery_record(w.record_id or "").application_id == str(w.app_id)


def test_failed_face_check_is_recorded_and_verifies_nobody(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    out = w.verify(verify_ret=10004)
    assert out.detail == "face_mismatch"
    agg = app.get_application(w.parent, w.app_id or "")
    assert agg.verified == {}
    assert agg.face_failures == 1
    assert w.verify(verify_ret=10003).detail == "id_mismatch"


def test_out_seq_no_is_single_use(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    assert w.app_id
    seq = "seq-replayed-1"
    app.request_face_verification(
        w.parent,
        w.app_id,
        role="mother",
        name=PersonName("王芳"),
        id_number=IdNumber(w.mother_id),
        out_seq_no=seq,
    )
    first = app.record_face_verification(w.parent, w.app_id, out_seq_no=seq, verify_ret=10000)
    events = len(list(app.events.get(first.id)))
    # Fetched again (the first answer was lost): the recorded pass, whatever is said now, nothing recorded twice.
    for verify_ret in (10000, 10001, None):
        again = app.record_face_verification(w.parent, w.app_id, out_seq_no=seq, verify_ret=verify_ret)
        assert (again.detail, again.version, again.position) == (None, first.version, None)
    assert len(list(app.events.get(first.id))) == events
    assert app.get_face_verdict(w.parent, w.app_id, seq).role == "mother"
    with pytest.raises(Conflict) as exc:
        app.record_face_verification(w.parent, w.app_id, out_seq_no="seq-never-begun", verify_ret=10000)
    assert codes(exc) == "verification_used"


def test_out_seq_no_is_unique_across_applications(app: Applications) -> None:
    first = Walk(app)
    first.record_delivery()
    first.start()
    second = Walk(app, father_id=None, parent=Actor(id="openid-2", role="parent"))
    second.start()
    assert first.app_id and second.app_id
    seq = "seq-shared-01"
    for w in (first, second):
        app.request_face_verification(
            w.parent,
            w.app_id or "",
            role="mother",
            name=PersonName("王芳"),
            id_number=IdNumber(w.mother_id),
            out_seq_no=seq,
        )
    app.record_face_verification(first.parent, first.app_id, out_seq_no=seq, verify_ret=10004)
    with pytest.raises(Conflict):
        app.record_face_verification(second.parent, second.app_id, out_seq_no=seq, verify_ret=10000)


# ---------------------------------------------------------------- signing


def test_both_parents_verified_before_signing(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    w.confirm()
    w.details()
    with pytest.raises(RuleViolated) as exc:
        w.sign()
    assert codes(exc) == "not_ready"
    assert exc.value.missing == ["father_verified"]  # type: ignore[attr-defined]
    w.verify("father")
    w.sign()


def test_father_verification_must_match_the_father_in_the_details(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    w.confirm()
    w.details()
    w.verify("father")
    assert app.get_application(w.parent, w.app_id or "").father_confirmed
    w.father_id = OTHER_MAN_ID
    w.details()
    assert not app.get_application(w.parent, w.app_id or "").father_confirmed


def test_father_handheld_photo_stands_in_for_his_face_in_shandong(app: Applications) -> None:
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID)
    w.record_delivery(province="山东省")
    w.start()
    w.verify()
    w.confirm()
    w.details(newborn="张小花")
    assert w.app_id
    app.upload_document(
        w.parent,
        w.app_id,
        kind="father_handheld_id",
        document_id=sha("h"),
        sha256=sha("h"),
        content_type="image/jpeg",
        size=9,
    )
    agg = app.get_application(w.parent, w.app_id)
    assert agg.father_confirmed
    assert agg.missing_for_signing() == []


def test_father_handheld_photo_is_refused_in_guangdong(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    w.confirm()
    w.details()
    with pytest.raises(RuleViolated) as exc:
        app.upload_document(
            w.parent,
            w.app_id or "",
            kind="father_handheld_id",
            document_id="d",
            sha256=sha("h"),
            content_type="image/jpeg",
            size=9,
        )
    assert codes(exc) == "handheld_not_allowed"


def test_changing_signed_content_voids_the_signature(app: Applications) -> None:
    w = Walk(app)
    w.ready_to_submit()
    agg = app.get_application(w.parent, w.app_id or "")
    assert agg.signature_valid
    w.details(address="广东省广州市天河区天河路2号")
    agg = app.get_application(w.parent, w.app_id or "")
    assert not agg.signature_valid
    with pytest.raises(RuleViolated) as exc:
        w.submit()
    assert "form_signed" in exc.value.missing  # type: ignore[attr-defined]
    w.sign()
    w.submit()


def test_signature_over_a_stale_form_is_a_conflict(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    w.confirm()
    w.details()
    w.verify("father")
    stale = app.get_application(w.parent, w.app_id or "").form_sha256()
    w.details(newborn="张小草")
    with pytest.raises(Conflict) as exc:
        w.sign(form_sha256=stale)
    assert codes(exc) == "stale_form"


def test_disputed_delivery_info_blocks_signing_until_corrected_and_confirmed(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    app.dispute_delivery_info(w.parent, w.app_id or "", reason="出生体重应为3350克")
    assert app.get_delivery_record(w.record_id or "").open_dispute
    w.details()
    w.verify("father")
    with pytest.raises(RuleViolated):
        w.sign()
    app.correct_delivery(
        hospital(), w.record_id or "", facts=facts(weight_g=3350), reason="产妇提出异议，核对后更正体重"
    )
    agg = app.get_application(w.parent, w.app_id or "")
    assert agg.record and agg.record["weight_g"] == 3350
    w.confirm()
    w.sign()


# ---------------------------------------------------------------- submission


def test_submit_needs_a_delivery_method(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    w.confirm()
    w.details()
    w.verify("father")
    w.upload_all()
    w.sign()
    with pytest.raises(RuleViolated) as exc:
        w.submit()
    assert exc.value.missing == ["delivery_method_chosen"]  # type: ignore[attr-defined]


def test_submit_needs_the_id_photos(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    w.confirm()
    w.details()
    w.verify("father")
    w.sign()
    w.choose_pickup()
    with pytest.raises(RuleViolated) as exc:
        w.submit()
    assert exc.value.missing == ["documents_uploaded"]  # type: ignore[attr-defined]


def _shandong_ready(app: Applications) -> Walk:
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID)
    w.record_delivery(province="山东省")
    w.start()
    w.verify()
    w.confirm()
    w.details()
    w.verify("father")
    w.upload_all()
    w.sign()
    w.choose_ems()
    return w


def test_submit_needs_prepaid_postage_in_shandong(app: Applications) -> None:
    w = _shandong_ready(app)
    with pytest.raises(RuleViolated) as exc:
        w.submit()
    assert exc.value.missing == ["postage_paid"]  # type: ignore[attr-defined]
    order = app.place_postage_order(w.parent, w.app_id or "", out_trade_no="BC20261120000001")
    assert order.detail == "2000"
    app.record_postage_paid(
        SYSTEM, w.app_id or "", out_trade_no="BC20261120000001", amount_fen=2000, transaction_id="T1"
    )
    w.submit()


def test_postage_notification_checks_the_amount_and_counts_once(app: Applications) -> None:
    w = _shandong_ready(app)
    app.place_postage_order(w.parent, w.app_id or "", out_trade_no="BC20261120000002")
    with pytest.raises(RuleViolated) as exc:
        app.record_postage_paid(
            SYSTEM, w.app_id or "", out_trade_no="BC20261120000002", amount_fen=1, transaction_id="T"
        )
    assert codes(exc) == "amount_mismatch"
    first = app.record_postage_paid(
        SYSTEM, w.app_id or "", out_trade_no="BC20261120000002", amount_fen=2000, transaction_id="T"
    )
    again = app.record_postage_paid(
        SYSTEM, w.app_id or "", out_trade_no="BC20261120000002", amount_fen=2000, transaction_id="T"
    )
    assert again.version == first.version


def test_guangdong_charges_no_postage_online(app: Applications) -> None:
    w = Walk(app)
    w.ready_to_submit()
    with pytest.raises(RuleViolated) as exc:
        app.place_postage_order(w.parent, w.app_id or "", out_trade_no="BC20261120000003")
    assert codes(exc) == "postage_not_prepaid"
    w.submit()


# ---------------------------------------------------------------- review


def test_reject_needs_reasons_and_fields(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    with pytest.raises(InvalidValue):
        app.reject(w.issuer, w.app_id or "", reasons=[], fields=["newborn_name"])
    with pytest.raises(InvalidValue):
        app.reject(w.issuer, w.app_id or "", reasons=["姓名有误"], fields=[])
    with pytest.raises(InvalidValue):
        app.reject(w.issuer, w.app_id or "", reasons=["姓名有误"], fields=["shoe_size"])
    w.reject(["newborn_name"])
    agg = app.get_application(w.parent, w.app_id or "")
    assert agg.state == "returned"
    assert agg.rejection == {
        "reasons": ["身份证照片不清晰"],
        "fields": ["newborn_name"],
        "reason_codes": ["other"],  # no codes named: the issuer's words say it
    }


def test_only_an_issuer_of_the_institution_acts_on_an_application(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    stranger = issuer(SD_HOSPITAL)
    with pytest.raises(NotFound):
        app.reject(stranger, w.app_id or "", reasons=["x原因"], fields=["newborn_name"])
    with pytest.raises(NotFound):
        app.get_application(stranger, w.app_id or "")


def test_a_parent_sees_only_her_own_applications(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    with pytest.raises(NotFound):
        app.get_application(Actor(id="someone-else", role="parent"), w.app_id or "")


def test_returned_application_is_fixed_resigned_and_resubmitted(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    w.reject(["newborn_name"])
    w.details(newborn="张小草")
    w.sign()
    w.submit()
    agg = app.get_application(w.parent, w.app_id or "")
    assert (agg.state, agg.submissions, agg.rejection) == ("submitted", 2, None)


def test_modification_limit_sends_the_application_to_the_counter(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    for _ in range(5):  # Guangdong allows 5 resubmissions
        w.reject()
        w.submit()
    w.reject()
    agg = app.get_application(w.parent, w.app_id or "")
    assert agg.state == "counter_only"
    assert agg.counter_reason == "modification_limit"
    assert app.get_delivery_record(w.record_id or "").application_id is None
    with pytest.raises(RuleViolated):
        w.submit()


def test_issue_needs_a_submitted_application(app: Applications) -> None:
    w = Walk(app)
    w.ready_to_submit()
    with pytest.raises(RuleViolated) as exc:
        w.issue()
    assert codes(exc) == "invalid_state"


@pytest.mark.parametrize("number", ["X4401000O1", "X44010000", "4401000011", "XX40100001", ""])
def test_certificate_number_is_a_letter_and_nine_digits(number: str) -> None:
    with pytest.raises(InvalidValue):
        CertificateNumber(number)


def test_certificate_number_is_used_once_ever(app: Applications) -> None:
    first = Walk(app)
    first.submitted()
    first.issue("X440100007")
    second = Walk(
        app, mother_id=SECOND_MOTHER_ID, parent=Actor(id="openid-b", role="parent"), father_id=FATHER_ID
    )
    second.record_delivery(inpatient_no="ZY2026002")
    second.submitted()
    with pytest.raises(Conflict) as exc:
        second.issue("X440100007")
    assert codes(exc) == "certificate_number_used"
    assert second.state() == "submitted"


def test_one_first_certificate_per_delivery_record(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    w.issue()
    again = Walk(app, parent=Actor(id="openid-again", role="parent"))
    again.record_id = w.record_id
    again.start()
    again.verify()
    with pytest.raises(RuleViolated) as exc:
        app.link_delivery_record(again.parent, again.app_id or "")
    assert codes(exc) == "record_in_use"


def test_a_delivery_record_serves_one_open_application_at_a_time(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    rival = Walk(app, parent=Actor(id="openid-rival", role="parent"))
    rival.start()
    rival.verify()
    with pytest.raises(RuleViolated) as exc:
        app.link_delivery_record(rival.parent, rival.app_id or "")
    assert codes(exc) == "record_in_use"
    app.withdraw(w.parent, w.app_id or "")
    app.link_delivery_record(rival.parent, rival.app_id or "")
    rival_app = app.get_application(rival.parent, rival.app_id or "")
    assert rival_app.delivery_record_id == str(w.record_id)


# ---------------------------------------------------------------- after issue


def test_dispatch_only_for_ems_after_issue(app: Applications) -> None:
    w = Walk(app)
    w.submitted(method="pickup")
    with pytest.raises(RuleViolated):
        app.dispatch(w.issuer, w.app_id or "", tracking_number="EA123456789CN")
    w.issue()
    with pytest.raises(RuleViolated) as exc:
        app.dispatch(w.issuer, w.app_id or "", tracking_number="EA123456789CN")
    assert codes(exc) == "not_ems"
    w.hand_over()
    assert w.state() == "collected"


def test_registered_data_is_frozen_after_issue(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    w.issue()
    with pytest.raises(RuleViolated) as exc:
        w.details(newborn="张小草")
    assert codes(exc) == "frozen_after_issue"
    with pytest.raises(RuleViolated):
        app.correct_delivery(hospital(), w.record_id or "", facts=facts(weight_g=3000), reason="更正体重数据")


def test_loss_then_reissue_keeps_the_data_and_takes_a_new_number(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    w.issue("X440100001")
    before = app.get_application(w.parent, w.app_id or "").form()
    app.dispatch(EMS, w.app_id or "", tracking_number="EA123456789CN")
    app.report_loss(EMS, w.app_id or "", reason="邮件在运输途中丢失")
    assert app.report_loss(EMS, w.app_id or "", reason="邮件在运输途中丢失").position is None
    with pytest.raises(Conflict):
        app.reissue(
            w.issuer, w.app_id or "", certificate_number=CertificateNumber("X440100001"), sealer_name="赵盖章"
        )
    app.reissue(
        w.issuer, w.app_id or "", certificate_number=CertificateNumber("X440100002"), sealer_name="赵盖章"
    )
    agg = app.get_application(w.parent, w.app_id or "")
    assert (agg.state, agg.certificate_number, agg.voided_numbers) == ("issued", "X440100002", ["X440100001"])
    assert agg.form() == before
    app.dispatch(EMS, w.app_id or "", tracking_number="EA987654321CN")
    app.record_delivered(EMS, w.app_id or "")
    assert w.state() == "delivered"


def test_withdrawal_only_before_issue(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    w.issue()
    with pytest.raises(RuleViolated):
        app.withdraw(w.parent, w.app_id or "")
    other = Walk(app, mother_id=SECOND_MOTHER_ID, parent=Actor(id="openid-c", role="parent"))
    other.record_delivery(inpatient_no="ZY2026003")
    other.submitted()
    app.withdraw(other.parent, other.app_id or "")
    assert other.state() == "withdrawn"
    with pytest.raises(RuleViolated):
        other.details()


# ---------------------------------------------------------------- delivery records and timing


def test_delivery_record_is_entered_only_by_its_own_hospital(app: Applications) -> None:
    with pytest.raises(Forbidden):
        app.record_delivery(hospital(SD_HOSPITAL), institution=GD_HOSPITAL, facts=facts())


def test_a_delivery_is_recorded_once(app: Applications) -> None:
    app.record_delivery(hospital(), institution=GD_HOSPITAL, facts=facts())
    with pytest.raises(Conflict):
        app.record_delivery(hospital(), institution=GD_HOSPITAL, facts=facts())
    twin = app.record_delivery(hospital(), institution=GD_HOSPITAL, facts=facts(birth_order=2))
    assert twin.version == 1


def test_a_late_delivery_entry_is_flagged(app: Applications) -> None:
    late = app.record_delivery(
        hospital(), institution=GD_HOSPITAL, facts=facts(born_at=NOW - timedelta(days=4))
    )
    on_time = app.record_delivery(hospital(), institution=GD_HOSPITAL, facts=facts(inpatient_no="ZY7"))
    assert app.get_delivery_record(late.id).entered_late
    assert not app.get_delivery_record(on_time.id).entered_late


def test_beijing_applications_open_one_week_after_birth() -> None:
    early = in_memory(now=BORN + timedelta(days=3))
    w = Walk(early, inst=BJ_HOSPITAL, mother_id=BJ_MOTHER_ID)
    w.record_delivery(province="北京市")
    w.start()
    w.verify()  # her identity is proved and kept; the record waits for its window
    with pytest.raises(RuleViolated) as exc:
        early.link_delivery_record(w.parent, w.app_id or "")
    assert codes(exc) == "too_early"


def test_correcting_the_record_under_review_returns_it_to_the_parent(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    app.correct_delivery(hospital(), w.record_id or "", facts=facts(weight_g=3300), reason="更正出生体重")
    agg = app.get_application(w.parent, w.app_id or "")
    assert agg.state == "returned"
    assert not agg.signature_valid
    with pytest.raises(RuleViolated):
        w.issue()


def test_a_stale_expected_version_is_a_conflict_with_the_current_version(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    out = w.verify()
    with pytest.raises(Conflict) as exc:
        app.confirm_delivery_info(w.parent, w.app_id or "", expected_version=out.version - 1)
    assert exc.value.current_version == out.version
    app.confirm_delivery_info(w.parent, w.app_id or "", expected_version=out.version)


def test_every_event_records_its_actor(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    w.issue()
    for event in app.events.get(w.app_id or ""):  # type: ignore[arg-type]
        assert isinstance(event, BirthCertificateApplication.Event)
        assert event.actor["role"] in ("parent", "issuer")
        assert event.actor["id"]


def test_birth_time_in_the_future_is_refused(app: Applications) -> None:
    with pytest.raises(InvalidValue):
        app.record_delivery(
            hospital(), institution=GD_HOSPITAL, facts=facts(born_at=NOW + timedelta(hours=2))
        )
    assert isinstance(datetime.now(), datetime)


@pytest.mark.parametrize(
    "sneaky", ["\u202e章盖赵", "赵\u200b盖章", "赵盖章\u2066", "赵\x07盖章", "赵\ue000章"]
)
def test_texts_that_would_not_print_as_stored_are_refused(app: Applications, sneaky: str) -> None:
    w = Walk(app)
    w.submitted()
    before = app.recorder.max_notification_id()
    with pytest.raises(InvalidValue) as reason:
        app.reject(w.issuer, w.id, reasons=[f"照片{sneaky}"], fields=["documents.mother_id_front"])
    assert reason.value.errors[0].code == "invalid_characters"
    with pytest.raises(InvalidValue) as sealer:
        w.issue(sealer=sneaky)
    assert sealer.value.errors[0].code == "invalid_characters"
    assert app.recorder.max_notification_id() == before
    w.issue(sealer="赵盖章")  # ordinary text goes through


def test_a_delivery_records_mother_has_a_womans_id_number(app: Applications) -> None:
    man = FATHER_ID  # the 17th digit is odd
    assert IdNumber(man).sex == "M"
    with pytest.raises(InvalidValue) as exc:
        facts(man)
    assert exc.value.errors[0].code == "not_a_womans_id_number"
