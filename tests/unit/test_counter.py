"""The counter's side, in the domain: a certificate the institution misprinted or damaged replaced on a new
blank; on-site pickup by appointment, with the mother's letter and the collector's face check."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.admin import operator
from domain.application import BirthCertificateApplication, form_digest
from domain.errors import Conflict, Forbidden, InvalidValue, NotFound, RuleViolated
from domain.pickup import PickupWindow, Slot, bookable_slots
from domain.policy import WorkingCalendar
from domain.service import Applications
from domain.values import Actor, CertificateNumber, IdNumber, PersonName
from projections.status import status_of
from tests.builders import (
    BJ_HOSPITAL,
    BJ_MOTHER_ID,
    BORN,
    EMS,
    FATHER_ID,
    GD_HOSPITAL,
    NOW,
    OTHER_MAN_ID,
    SECOND_MOTHER_ID,
    SHANGHAI,
    Walk,
    in_memory,
    refused,
    sha,
    store_as_written_before,
)

# A Friday morning: the next working days are Monday 23rd on.
FRIDAY = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)


def number(n: int) -> CertificateNumber:
    return CertificateNumber(f"X44010{n:04d}")


def replace(app: Applications, w: Walk, n: int, **kw: str) -> None:
    app.replace_certificate(
        w.issuer,
        w.id,
        certificate_number=number(n),
        cause=kw.get("cause", "misprinted"),
        old_certificate=kw.get("old_certificate", "destroyed"),
        note=kw.get("note", ""),
        sealer_name="赵盖章",
    )


# ---------------------------------------------------------------- replacement


def test_a_misprint_found_before_it_left_is_replaced_and_the_parent_reads_why() -> None:
    app = in_memory()
    w = Walk(app)
    w.submitted()
    w.issue("X440100001")
    before = app.get_application(w.parent, w.id)
    replace(app, w, 2, note="出生时间打印错位")
    after = app.get_application(w.parent, w.id)
    assert (after.state, after.certificate_number, after.voided_numbers) == (
        "issued",
        "X440100002",
        ["X440100001"],
    )
    assert after.form() == before.form() and after.form_sha256() == before.form_sha256()
    doc = status_of(after)
    assert doc["replacement"]["message"] == (
        "因签发机构打印错误，原出生医学证明（编号 X440100001）已销毁作废，已重新签发新证（编号 X440100002），登记信息不变"
    )
    assert "certificate_replaced" in [s["code"] for s in doc["done_steps"]]
    assert doc["next_steps"][0]["code"] == "await_dispatch"  # EMS: the new certificate is sent again
    assert app.find_application_by_certificate(CertificateNumber("X440100001")) == w.id


def test_a_delivered_or_collected_certificate_is_replaced_once_recovered_never_in_the_post() -> None:
    app = in_memory()
    w = Walk(app)
    w.submitted()
    w.issue("X440100001")
    app.dispatch(EMS, w.id, tracking_number="EA123456789CN")
    with refused(app, RuleViolated, "invalid_state"):
        replace(app, w, 2)  # on its way: wait for it, or report it lost
    app.report_loss(EMS, w.id, reason="邮件在运输途中丢失")
    with refused(app, RuleViolated, "invalid_state"):
        replace(app, w, 2)  # lost in the post is a reissue, not the institution's error
    app.reissue(w.issuer, w.id, certificate_number=number(2), sealer_name="赵盖章")
    app.dispatch(EMS, w.id, tracking_number="EA123456780CN")
    app.record_delivered(EMS, w.id)
    replace(app, w, 3, cause="damaged", old_certificate="recovered")
    agg = app.get_application(w.parent, w.id)
    assert agg.voided_numbers == ["X440100001", "X440100002"]
    assert status_of(agg)["replacement"]["message"].startswith(
        "因签发机构毁损，原出生医学证明（编号 X440100002）已收回作废"
    )

    pickup = Walk(app, mother_id=SECOND_MOTHER_ID, parent=Actor(id="openid-b", role="parent"))
    pickup.record_delivery(inpatient_no="ZY2026009")
    pickup.submitted(method="pickup")
    pickup.issue("X440100011")
    pickup.hand_over()
    replace(app, pickup, 12, old_certificate="recovered")
    again = app.get_application(pickup.parent, pickup.id)
    assert (again.state, again.collector_check) == ("issued", None)  # to be collected again, checked again
    with refused(app, RuleViolated, "collector_not_verified"):
        handover_only(app, pickup, "mother", "王芳", SECOND_MOTHER_ID)


def test_only_the_own_institutions_issuer_replaces_with_a_cause_and_what_became_of_the_old_blank() -> None:
    app = in_memory()
    w = Walk(app)
    w.submitted()
    w.issue("X440100001")
    with refused(app, InvalidValue, "invalid_cause"):
        replace(app, w, 2, cause="lost")
    with refused(app, InvalidValue, "invalid_old_certificate"):
        replace(app, w, 2, old_certificate="kept")
    other = Actor(id="issuer-x", role="issuer", institution="JNPY01", name="赵签发")
    with pytest.raises(NotFound):  # another institution's: not even found
        app.replace_certificate(
            other,
            w.id,
            certificate_number=number(2),
            cause="damaged",
            old_certificate="destroyed",
            sealer_name="赵",
        )
    with refused(app, Conflict, "certificate_number_used"):
        replace(app, w, 1)


@settings(max_examples=40, deadline=None)
@given(numbers=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=8))
def test_a_number_is_used_once_ever_and_the_registered_data_never_changes(numbers: list[int]) -> None:
    """Two applications, any sequence of replacements drawing new numbers from a small pool: each number is
    taken at most once across both, a used or voided one is refused without a trace, and the form stays."""
    app = in_memory()
    a = Walk(app)
    a.submitted()
    a.issue("X440100100")
    b = Walk(app, mother_id=SECOND_MOTHER_ID, parent=Actor(id="openid-b", role="parent"))
    b.record_delivery(inpatient_no="ZY2026009")
    b.submitted()
    b.issue("X440100200")
    forms = {w.id: app.get_application(w.parent, w.id).form_sha256() for w in (a, b)}
    used = {"X440100100", "X440100200"}
    for i, n in enumerate(numbers):
        w = (a, b)[i % 2]
        candidate = number(n).value
        if candidate in used:
            with refused(app, Conflict, "certificate_number_used"):
                replace(app, w, n)
            continue
        replace(app, w, n)
        used.add(candidate)
    for w in (a, b):
        agg = app.get_application(w.parent, w.id)
        assert agg.form_sha256() == forms[w.id]
        assert agg.certificate_number not in agg.voided_numbers
        assert len(set(agg.voided_numbers)) == len(agg.voided_numbers)
        for voided in agg.voided_numbers:
            assert app.find_application_by_certificate(CertificateNumber(voided)) == w.id
    every = [n for w in (a, b) for n in [*app.get_application(w.parent, w.id).voided_numbers]]
    every += [app.get_application(w.parent, w.id).certificate_number or "" for w in (a, b)]
    assert sorted(every) == sorted(used)


# ---------------------------------------------------------------- pickup hours and slots


@settings(max_examples=60)
@given(
    days=st.sets(st.integers(min_value=1, max_value=7), min_size=1),
    start=st.integers(min_value=0, max_value=22 * 60),
    length=st.integers(min_value=1, max_value=120),
    capacity=st.integers(min_value=1, max_value=500),
)
def test_a_window_reads_back_as_written(days: set[int], start: int, length: int, capacity: int) -> None:
    end = min(start + length, 23 * 60 + 59)
    window = PickupWindow(
        tuple(sorted(days)),
        f"{start // 60:02d}:{start % 60:02d}",
        f"{end // 60:02d}:{end % 60:02d}",
        capacity,
    )
    assert PickupWindow.parse(window.spec()) == window
    assert PickupWindow.from_dict(window.to_dict()) == window


def test_slots_are_on_working_days_only_and_never_in_the_past() -> None:
    windows = [PickupWindow.parse("1-5 08:30-11:30 2"), PickupWindow.parse("1-5 14:30-17:00 2")]
    calendar = WorkingCalendar()
    slots = bookable_slots(windows, FRIDAY, calendar)
    assert slots[0] == Slot(date(2026, 11, 20), "14:30", "17:00", 2)  # this morning's has begun
    assert all(calendar.is_working_day(s.day) and s.starts_at > FRIDAY for s in slots)
    assert all(s.day < date(2026, 12, 4) for s in slots)
    # 2026-10-01..07 is the National Day holiday; Saturday 2026-10-10 a make-up working day (调休) that keeps
    # a weekday's hours; Sunday 2026-10-11 is off.
    october = bookable_slots(windows, datetime(2026, 9, 30, 18, 0, tzinfo=SHANGHAI), calendar)
    days = sorted({s.day for s in october})
    assert days[:4] == [date(2026, 10, 8), date(2026, 10, 9), date(2026, 10, 10), date(2026, 10, 12)]


def test_windows_that_overlap_or_are_malformed_are_refused() -> None:
    with pytest.raises(InvalidValue):
        PickupWindow.parse("1-5 11:30-08:30 20")
    with pytest.raises(InvalidValue):
        PickupWindow.parse("mon 08:30-11:30 20")
    app = in_memory(FRIDAY)
    app.register_institution(operator(), code="GZFY01", name="广州市妇女儿童医疗中心", province="GD")
    with pytest.raises(InvalidValue) as overlapping:
        app.set_pickup_hours(
            operator(),
            "GZFY01",
            [PickupWindow.parse("1-5 08:30-11:30 2"), PickupWindow.parse("5 11:00-12:00 2")],
        )
    assert overlapping.value.code == "overlapping_windows"


def pickup_walk(app: Applications, mother_id: str, n: int) -> Walk:
    w = Walk(app, mother_id=mother_id, parent=Actor(id=f"openid-{n}", role="parent"))
    w.record_delivery(inpatient_no=f"ZY20260{n:02d}")
    w.submitted(method="pickup")
    w.issue(f"X4401{n:05d}")
    return w


def test_a_slot_holds_its_capacity_and_moving_a_booking_frees_its_place() -> None:
    app = in_memory(FRIDAY)
    app.register_institution(operator(), code="GZFY01", name="广州市妇女儿童医疗中心", province="GD")
    app.set_pickup_hours(operator(), "GZFY01", [PickupWindow.parse("1-5 08:30-11:30 1")])
    first = pickup_walk(app, BJ_MOTHER_ID, 1)
    second = pickup_walk(app, SECOND_MOTHER_ID, 2)
    monday = date(2026, 11, 23)
    app.book_pickup(first.parent, first.id, day=monday, start="08:30")
    assert (
        app.book_pickup(first.parent, first.id, day=monday, start="08:30").position is None
    )  # again: nothing
    with refused(app, RuleViolated, "pickup_slot_full"):
        app.book_pickup(second.parent, second.id, day=monday, start="08:30")
    with refused(app, InvalidValue, "no_such_slot"):
        app.book_pickup(second.parent, second.id, day=date(2026, 11, 22), start="08:30")  # a Sunday
    app.book_pickup(first.parent, first.id, day=date(2026, 11, 24), start="08:30")
    app.book_pickup(second.parent, second.id, day=monday, start="08:30")
    issuer = first.issuer
    assert [a.id for _, a in app.get_pickup_day(issuer, monday)] == [second.id]
    assert [a.id for _, a in app.get_pickup_day(issuer, date(2026, 11, 24))] == [first.id]
    remaining = {s.key: left for s, left in app.get_pickup_slots(first.parent, first.id)}
    assert (remaining["2026-11-23 08:30"], remaining["2026-11-24 08:30"], remaining["2026-11-25 08:30"]) == (
        0,
        0,
        1,
    )
    doc = status_of(app.get_application(second.parent, second.id))
    assert doc["pickup"]["appointment"]["label"] == "11月23日（周一）08:30–11:30"
    assert doc["next_steps"][0]["code"] == "collect_on_site"


def test_booking_waits_for_the_certificate_and_only_the_mother_books() -> None:
    app = in_memory(FRIDAY)
    app.register_institution(operator(), code="GZFY01", name="广州市妇女儿童医疗中心", province="GD")
    app.set_pickup_hours(operator(), "GZFY01", [PickupWindow.parse("1-5 08:30-11:30 5")])
    w = Walk(app)
    w.submitted(method="pickup")
    assert status_of(app.get_application(w.parent, w.id))["pickup"]["appointment"] is None
    with refused(app, RuleViolated, "invalid_state"):
        app.book_pickup(w.parent, w.id, day=date(2026, 11, 23), start="08:30")
    w.issue()
    assert status_of(app.get_application(w.parent, w.id))["next_steps"][0]["code"] == "book_pickup"
    with pytest.raises(NotFound):
        app.book_pickup(Actor(id="openid-x", role="parent"), w.id, day=date(2026, 11, 23), start="08:30")


# ---------------------------------------------------------------- the letter and the counter's face check


def beijing_walk(app: Applications) -> Walk:
    w = Walk(app, inst=BJ_HOSPITAL, mother_id=BJ_MOTHER_ID, mother_name="刘梅")
    w.record_delivery(province="北京市")
    w.submitted(method="pickup")
    w.issue("X110100001")
    return w


def handover_only(app: Applications, w: Walk, relation: str, name: str, id_number: str) -> None:
    """The handover itself (after ``w.collector_check``)."""
    app.hand_over(
        w.issuer, w.id, recipient_name=PersonName(name), relation=relation, recipient_id=IdNumber(id_number)
    )


def sign_letter(app: Applications, w: Walk, name: str, id_number: str) -> str:
    letter = app.get_collector_letter(
        w.parent, w.id, collector_name=PersonName(name), collector_id=IdNumber(id_number)
    )
    app.authorize_collector(
        w.parent,
        w.id,
        collector_name=PersonName(name),
        collector_id=IdNumber(id_number),
        letter_sha256=form_digest(letter),
        signature_document_id=sha("letter-signature"),
        signature_sha256=sha("letter-signature"),
    )
    return form_digest(letter)


def test_in_beijing_anyone_but_the_mother_collects_only_with_her_signed_letter() -> None:
    app = in_memory(BORN + timedelta(days=10))
    w = beijing_walk(app)
    w.collector_check("张伟", FATHER_ID)
    with refused(app, RuleViolated, "authorization_required"):
        handover_only(app, w, "father", "张伟", FATHER_ID)
    with refused(app, Conflict, "stale_letter"):
        app.authorize_collector(
            w.parent,
            w.id,
            collector_name=PersonName("李强"),
            collector_id=IdNumber(OTHER_MAN_ID),
            letter_sha256="0" * 64,
            signature_document_id=sha("s"),
            signature_sha256=sha("s"),
        )
    with refused(app, InvalidValue, "collector_is_mother"):
        app.get_collector_letter(
            w.parent, w.id, collector_name=PersonName("刘梅"), collector_id=IdNumber(BJ_MOTHER_ID)
        )
    digest = sign_letter(app, w, "李强", OTHER_MAN_ID)
    with refused(app, RuleViolated, "authorization_required"):
        handover_only(app, w, "father", "张伟", FATHER_ID)  # the letter names someone else
    w.hand_over("authorized", "李强", OTHER_MAN_ID)
    collected = list(app.events.get(w.id))[-1]
    assert isinstance(collected, BirthCertificateApplication.CollectedOnSite)
    assert collected.authorization_sha256 == digest and collected.face_check_seq_no
    assert status_of(app.get_application(w.parent, w.id))["state"] == "collected"


def test_in_guangdong_the_father_on_the_form_collects_without_a_letter_but_nobody_unchecked() -> None:
    app = in_memory()
    w = Walk(app)
    w.submitted(method="pickup")
    w.issue()
    w.collector_check("李强", OTHER_MAN_ID)
    with refused(app, RuleViolated, "not_the_father"):
        handover_only(app, w, "father", "李强", OTHER_MAN_ID)
    with refused(app, RuleViolated, "not_the_mother"):
        handover_only(app, w, "mother", "李强", OTHER_MAN_ID)
    assert w.collector_check("张伟", FATHER_ID, verify_ret=10004) == "face_mismatch"
    with refused(app, RuleViolated, "collector_not_verified"):
        handover_only(app, w, "father", "张伟", FATHER_ID)
    assert w.collector_check("张伟", FATHER_ID) is None
    with refused(app, RuleViolated, "collector_mismatch"):
        app.hand_over(
            w.issuer,
            w.id,
            recipient_name=PersonName("王芳"),
            relation="mother",
            recipient_id=IdNumber(w.mother_id),
        )
    app.hand_over(
        w.issuer, w.id, recipient_name=PersonName("张伟"), relation="father", recipient_id=IdNumber(FATHER_ID)
    )
    assert w.state() == "collected"


def test_the_counters_check_is_used_by_the_phone_that_began_it_within_half_an_hour() -> None:
    moments = [NOW]
    app = Applications(clock=lambda: moments[0])
    w = Walk(app)
    w.submitted(method="pickup")
    w.issue()
    code = app.open_collector_check(
        w.issuer, w.id, name=PersonName("王芳"), id_number=IdNumber(w.mother_id)
    ).detail
    assert code is not None
    phone, other = Actor(id="openid-phone", role="parent"), Actor(id="openid-other", role="parent")
    app.request_collector_face_check(phone, code, out_seq_no="seq-00001", verify_id="v1")
    with refused(app, NotFound, "collector_check_not_found"):
        app.request_collector_face_check(phone, "x" * 27, out_seq_no="seq-00002", verify_id="v2")
    with pytest.raises(Exception) as not_yours:
        app.record_collector_face_check(other, code, out_seq_no="seq-00001", verify_ret=10000)
    assert getattr(not_yours.value, "code", "") == "not_your_verification"
    assert (
        app.record_collector_face_check(phone, code, out_seq_no="seq-00001", verify_ret=10000).detail is None
    )
    again = app.record_collector_face_check(phone, code, out_seq_no="seq-00001", verify_ret=None)
    assert again.detail is None and again.position is None  # asked again: the same verdict, nothing new
    moments[0] = NOW + timedelta(minutes=31)
    with refused(app, RuleViolated, "collector_check_expired"):
        app.hand_over(
            w.issuer,
            w.id,
            recipient_name=PersonName("王芳"),
            relation="mother",
            recipient_id=IdNumber(w.mother_id),
        )


def test_a_v1_collected_on_site_event_reads_without_a_face_check() -> None:
    app = in_memory()
    w = Walk(app)
    w.submitted(method="pickup")
    issued = w.issue()
    v1_state = {
        "timestamp": datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        "actor": w.issuer.to_dict(),
        "recipient_name": "王芳",
        "relation": "mother",
        "recipient_id_number": w.mother_id,
    }
    store_as_written_before(app, w.id, issued.version + 1, "birthcert:CollectedOnSite", v1_state)
    event = list(app.events.get(w.id))[-1]
    assert isinstance(event, BirthCertificateApplication.CollectedOnSite)
    assert (event.face_check_seq_no, event.authorization_sha256) == (None, None)
    assert app.get_application(w.parent, w.id).state == "collected"


def test_the_day_list_is_the_issuers_own_institutions() -> None:
    app = in_memory(FRIDAY)
    with pytest.raises(Forbidden):
        app.get_pickup_day(Actor(id="p", role="parent"), date(2026, 11, 23))
    assert app.get_pickup_day(Walk(app, inst=GD_HOSPITAL).issuer, date(2026, 11, 23)) == []
