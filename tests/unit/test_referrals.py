"""Referrals name the counter (issue 10 item 3) and one Hong Kong/Macao parent goes online (item 4): the domain
through the service on the in-memory store.

Every referral — a case kept at the counter at the start, the modification limit, a parent's face checks
failing again and again in one day, a document the face check cannot use — names the institution's counter
(address, telephone, opening hours from its record) and what to bring for the reason. Hypothesis for the
counting of failed face checks.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.domain import Snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.application import COUNTER_ONLY, BirthCertificateApplication
from domain.errors import InvalidValue, NotEligibleOnline
from domain.policy import SHANGHAI, get_profile
from domain.referral import (
    COMMON_BRING,
    COUNTED_FACE_FAILURES,
    REASONS,
    Referral,
    bring_for,
    face_failures_exhausted,
    tally_face_failure,
)
from domain.service import Applications
from domain.values import Actor, CounterDetails, IdDocument, PersonName
from projections.status import status_of
from tests.builders import (
    GD_HOSPITAL,
    MOTHER_ID,
    SD_FATHER_ID,
    SD_HOSPITAL,
    SD_MOTHER_ID,
    Walk,
    father_details,
    in_memory,
    make_id_number,
    mother_details,
    two_parents,
)

ADMIN = Actor(id="cli:operator", role="system")
GD_COUNTER = CounterDetails(
    "广州市越秀区演示路1号 门诊楼二楼 出生医学证明办理窗口",
    "020-12345678",
    "周一至周五 8:00-12:00，14:30-17:30",
)
HK_FATHER_PERMIT = make_id_number("810000", "19890714", "013")
MACAO_MOTHER_PERMIT = make_id_number("820000", "19920302", "026")
TAIWAN_FATHER_PERMIT = make_id_number("830000", "19880808", "015")
FACE_MISMATCH = 10004


@pytest.fixture
def app() -> Applications:
    service = in_memory()
    for inst in (GD_HOSPITAL, SD_HOSPITAL):
        service.register_institution(ADMIN, code=inst.code, name=inst.name, province=inst.province)
    service.set_institution_counter(ADMIN, GD_HOSPITAL.code, counter=GD_COUNTER)
    return service


def gd_counter() -> dict[str, object]:
    return {
        "institution_code": "GZFY01",
        "institution_name": "广州市妇女儿童医疗中心",
        **GD_COUNTER.to_dict(),
    }


# ---------------------------------------------------------------- what a referral says


def test_every_reason_brings_the_common_materials_and_its_own() -> None:
    for reason, entry in REASONS.items():
        assert bring_for(reason) == COMMON_BRING + entry.bring
        assert entry.source.startswith(("seed", "domain.md"))
    assert bring_for("unheard_of") == COMMON_BRING


def test_a_referral_without_a_known_institution_says_where_to_go_all_the_same() -> None:
    referral = Referral.to("face_verification_failed", None)
    assert referral.counter is None
    assert "分娩所在医疗机构" in referral.where()
    assert referral.explanation().startswith("当日刷脸认证多次未通过")
    assert "1. 父母双方有效身份证件原件及复印件" in referral.explanation()


def test_an_institution_without_counter_details_is_named_and_the_rest_asked_for(app: Applications) -> None:
    referral = Referral.to("modification_limit", app.get_institution("JNPY01"))
    assert referral.counter == {
        "institution_code": "JNPY01",
        "institution_name": "平阴县人民医院",
        "address": None,
        "phone": None,
        "hours": None,
    }
    assert referral.where() == "办理地点：平阴县人民医院；地址、电话和办公时间请向该机构咨询。"


def test_the_counter_is_edited_once_and_an_edit_to_the_same_records_nothing(app: Applications) -> None:
    before = app.recorder.max_notification_id()
    app.set_institution_counter(ADMIN, "gzfy01", counter=GD_COUNTER)
    assert app.recorder.max_notification_id() == before
    moved = CounterDetails("广州市越秀区演示路2号 新门诊楼一楼", "020-87654321", "周一至周六 8:00-17:00")
    app.set_institution_counter(ADMIN, "GZFY01", counter=moved)
    assert app.get_institution("GZFY01").counter == moved
    with pytest.raises(Exception) as refused:
        app.set_institution_counter(Actor(id="x", role="parent"), "GZFY01", counter=moved)
    assert getattr(refused.value, "code", "") == "forbidden"


# ---------------------------------------------------------------- at the start


def test_a_case_kept_at_the_counter_is_refused_naming_the_counter_she_named(app: Applications) -> None:
    with pytest.raises(NotEligibleOnline) as refused:
        app.start_application(
            Actor(id="openid-mother", role="parent"),
            circumstances=two_parents(father_residency="foreign"),
            institution="GZFY01",
        )
    referral = refused.value.referral
    assert referral.reason == "foreign_national"
    assert referral.counter == gd_counter()
    assert "外国籍一方的护照原件及复印件" in referral.bring
    assert "020-12345678" in referral.explanation()


def test_the_named_institution_gives_the_province_and_must_exist(app: Applications) -> None:
    mother = Actor(id="openid-mother", role="parent")
    started = app.start_application(mother, circumstances=two_parents(), institution="JNPY01")
    agg = app.get_application(mother, started.id)
    assert (agg.province, agg.province_chosen, agg.named_institution) == ("SD", False, "JNPY01")
    with pytest.raises(InvalidValue) as unknown:
        app.start_application(mother, circumstances=two_parents(), institution="NOPE01")
    assert unknown.value.code == "unknown_institution"
    with pytest.raises(InvalidValue) as elsewhere:
        app.start_application(mother, circumstances=two_parents(), province="GD", institution="JNPY01")
    assert elsewhere.value.code == "institution_wrong_province"


# ---------------------------------------------------------------- the modification limit


def test_the_modification_limit_refers_to_the_linked_institutions_counter(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    for _ in range(5):
        w.reject(fields=["delivery_method"])  # no new signature needed: resubmitted as it is
        w.submit()
    w.reject(fields=["delivery_method"])
    agg = app.get_application(w.parent, w.id)
    assert agg.state == COUNTER_ONLY
    assert agg.referral == {
        "reason": "modification_limit",
        "message": "退回修改次数已达上限，不能继续网上申领，请到签发机构现场办理",
        "counter": gd_counter(),
        "bring": list(COMMON_BRING),
    }
    view = status_of(agg)["counter_reason"]
    assert (view["code"], view["counter"], view["bring"]) == (
        "modification_limit",
        gd_counter(),
        list(COMMON_BRING),
    )
    assert "咨询电话：020-12345678" in view["where"]
    assert app.get_delivery_record(w.record_id or "").application_id is None  # the record is free again


# ---------------------------------------------------------------- failed face checks


def started(app: Applications, **kw: object) -> Walk:
    w = Walk(app)
    w.record_delivery()
    out = app.start_application(w.parent, circumstances=two_parents(), **kw)  # type: ignore[arg-type]
    w.app_id = out.id
    return w


def test_the_days_third_mismatch_of_the_mother_refers_her_to_the_counter_she_named(app: Applications) -> None:
    w = started(app, institution="GZFY01")
    for _ in range(2):
        assert w.verify("mother", verify_ret=FACE_MISMATCH).detail == "face_mismatch"
        assert w.state() == "draft"
    w.verify("mother", verify_ret=10003)  # a typo in the name is not her face failing
    w.verify("mother", verify_ret=90003)  # nor a check she cancelled
    assert w.state() == "draft"
    assert w.verify("mother", verify_ret=FACE_MISMATCH).detail == "face_mismatch"
    agg = app.get_application(w.parent, w.id)
    assert (agg.state, agg.referral["reason"], agg.referral["counter"]) == (
        COUNTER_ONLY,
        "face_verification_failed",
        gd_counter(),
    )
    assert "父母双方本人到场，现场核验人证一致" in agg.referral["bring"]
    with pytest.raises(Exception) as closed:
        w.verify("mother")
    assert getattr(closed.value, "code", "") == "application_closed"


def test_without_a_named_institution_the_mothers_referral_says_where_in_general(app: Applications) -> None:
    w = started(app)
    for _ in range(3):
        w.verify("mother", verify_ret=FACE_MISMATCH)
    agg = app.get_application(w.parent, w.id)
    assert (agg.state, agg.referral["counter"]) == (COUNTER_ONLY, None)
    assert "分娩所在医疗机构" in status_of(agg)["counter_reason"]["where"]


def test_the_fathers_failures_refer_to_the_linked_institution_and_free_the_record(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify("mother")
    for _ in range(3):
        w.verify("father", verify_ret=FACE_MISMATCH)
    agg = app.get_application(w.parent, w.id)
    assert (agg.state, agg.referral["counter"]) == (COUNTER_ONLY, gd_counter())
    assert app.get_delivery_record(w.record_id or "").application_id is None


INPATIENT_NUMBERS = itertools.count(7_000_000)
counted_codes = st.sampled_from([10004, 10003, 10002, 10001, 10005, 10300, 90003, 90007, 12345])
verdicts = st.lists(st.tuples(st.sampled_from(["mother", "father"]), counted_codes), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verdicts)
def test_referred_exactly_when_a_parent_reaches_the_days_limit_of_counted_failures(
    app: Applications, sequence: list[tuple[str, int]]
) -> None:
    """Whatever the order of verdicts within a day: the application goes to the counter at the verdict
    that makes one parent's counted failures (face mismatch, or no reason given) reach the profile's limit,
    not one verdict before; afterwards nothing more is recorded."""
    limit = get_profile("GD").face_failures_per_day
    assert limit == 3
    w = Walk(app, mother_id=MOTHER_ID)
    w.record_delivery(inpatient_no=f"ZY{next(INPATIENT_NUMBERS)}")  # one app for every example
    w.start()
    counts = {"mother": 0, "father": 0}
    verified_mother = False
    for role, verify_ret in sequence:
        if role == "father" and not verified_mother:
            w.verify("mother")
            verified_mother = True
        if role == "mother" and verified_mother:
            continue  # her check is done: only the father's remain
        w.verify(role, verify_ret=verify_ret)  # type: ignore[arg-type]
        code = {10004: "face_mismatch", 12345: "face_failed"}.get(verify_ret)
        if code in COUNTED_FACE_FAILURES:
            counts[role] += 1
        expected = COUNTER_ONLY if max(counts.values()) >= limit else "draft"
        assert w.state() == expected
        if expected == COUNTER_ONLY:
            assert app.get_application(w.parent, w.id).referral["reason"] == "face_verification_failed"
            return


moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 4), timezones=st.just(UTC))
attempts = st.lists(
    st.tuples(
        st.sampled_from(["mother", "father"]),
        st.sampled_from(["face_mismatch", "face_failed", "id_mismatch", "face_client_failed"]),
        moments,
    ),
    max_size=20,
)


@given(attempts)
def test_the_count_is_per_parent_and_per_beijing_day(sequence: list[tuple[str, str, datetime]]) -> None:
    """A model: the tally after each failure equals the number of that parent's counted failures in the same
    Beijing day so far; a new day starts from nothing (Beijing midnight is 16:00 UTC)."""
    tally = None
    ordered = sorted(sequence, key=lambda x: x[2])
    for i, (role, code, at) in enumerate(ordered):
        tally = tally_face_failure(tally, role, code, at)
        if code not in COUNTED_FACE_FAILURES:
            continue
        day = at.astimezone(SHANGHAI).date()
        model = sum(
            1
            for r, c, t in ordered[: i + 1]
            if r == role and c in COUNTED_FACE_FAILURES and t.astimezone(SHANGHAI).date() == day
        )
        assert tally is not None and tally["day"] == day.isoformat() and tally[role] == model
        assert face_failures_exhausted(tally, role, 3) == (model >= 3)
        assert not face_failures_exhausted(tally, role, None)


def test_failures_either_side_of_beijing_midnight_are_two_days() -> None:
    before = datetime(2026, 3, 1, 15, 59, tzinfo=UTC)  # 23:59 in Beijing
    tally = None
    for _ in range(2):
        tally = tally_face_failure(tally, "mother", "face_mismatch", before)
    tally = tally_face_failure(tally, "mother", "face_mismatch", before + timedelta(minutes=2))
    assert tally == {"day": "2026-03-02", "mother": 1}


# ---------------------------------------------------------------- one Hong Kong/Macao parent (Guangdong)


def hk_father_walk(app: Applications, father_id: str = HK_FATHER_PERMIT) -> Walk:
    w = Walk(app, father_id=father_id)
    w.record_delivery()
    w.start(two_parents(father_residency="hk_macao"))
    w.verify("mother")
    w.confirm()
    return w


def test_a_hong_kong_father_with_a_residence_permit_goes_through_to_issue(app: Applications) -> None:
    w = hk_father_walk(app)
    w.details()
    w.verify("father")
    w.upload_all()
    w.sign()
    w.choose_ems()
    w.submit()
    w.issue()
    agg = app.get_application(w.parent, w.id)
    assert agg.state == "issued"
    form = agg.form() or {}
    assert (form["father"]["id_type"], form["father"]["id_number"], form["father"]["age"]) == (
        "hk_macao_residence_permit",
        HK_FATHER_PERMIT,
        37,
    )
    assert agg.details["father"]["residency"] == "hk_macao"  # said by the document


def test_a_father_with_only_a_travel_permit_is_referred_naming_the_counter(app: Applications) -> None:
    w = hk_father_walk(app, father_id=HK_FATHER_PERMIT)
    permit = IdDocument("H12345678")
    with pytest.raises(NotEligibleOnline) as refused:
        app.request_face_verification(
            w.parent, w.id, role="father", name=PersonName("陈大文"), id_number=permit, out_seq_no="tp-00001"
        )
    assert refused.value.reasons == ["face_check_unavailable"]
    assert "港澳居民来往内地通行证" in refused.value.message
    assert refused.value.referral.counter == gd_counter()
    assert "持该证件的一方本人到场，携带该证件原件及复印件，现场核验人证一致" in refused.value.referral.bring
    # His details with the travel permit are taken (with his birth date, which its number lacks).
    with pytest.raises(InvalidValue) as no_birth_date:
        app.provide_details(
            w.parent, w.id, newborn_name=PersonName("张小花"), mother=mother_details(), father=_father(permit)
        )
    assert no_birth_date.value.code == "birth_date_required"
    father = _father(permit)
    father.birth_date = datetime(1989, 7, 14).date()
    app.provide_details(
        w.parent, w.id, newborn_name=PersonName("陈小花"), mother=mother_details(), father=father
    )
    form = app.get_application(w.parent, w.id).form() or {}
    assert (form["father"]["id_type"], form["father"]["age"]) == ("hk_macao_permit", 37)


def _father(document: IdDocument):  # type: ignore[no-untyped-def]
    father = father_details(name="陈大文")
    father.id_number = document
    return father


def test_a_taiwan_parent_stays_at_the_counter_in_guangdong_whatever_the_document(app: Applications) -> None:
    w = hk_father_walk(app)
    with pytest.raises(NotEligibleOnline) as refused:
        app.request_face_verification(
            w.parent,
            w.id,
            role="father",
            name=PersonName("林志明"),
            id_number=IdDocument(TAIWAN_FATHER_PERMIT),
            out_seq_no="tw-00001",
        )
    assert refused.value.reasons == ["taiwan_compatriot"]
    assert refused.value.referral.counter == gd_counter()


def test_details_that_contradict_the_document_are_refused(app: Applications) -> None:
    w = hk_father_walk(app)
    father = father_details(HK_FATHER_PERMIT)
    father.residency = "mainland"
    with pytest.raises(InvalidValue) as refused:
        app.provide_details(
            w.parent, w.id, newborn_name=PersonName("张小花"), mother=mother_details(), father=father
        )
    assert refused.value.code == "residency_document_mismatch"


def test_a_macao_mother_with_a_residence_permit_applies_and_is_issued(app: Applications) -> None:
    w = Walk(app, mother_id=MACAO_MOTHER_PERMIT, mother_name="何美玲")
    w.record_delivery()  # the hospital recorded her residence permit's number
    w.start(two_parents(mother_residency="hk_macao"))
    w.verify("mother")
    assert app.get_application(w.parent, w.id).delivery_record_id is not None
    w.confirm()
    w.details()
    w.verify("father")
    w.upload_all()
    w.sign()
    w.choose_pickup()
    w.submit()
    w.issue()
    agg = app.get_application(w.parent, w.id)
    assert agg.state == "issued"
    form = agg.form() or {}
    assert (form["mother"]["id_type"], form["mother"]["age"]) == ("hk_macao_residence_permit", 34)
    assert agg.details["mother"]["residency"] == "hk_macao"


def test_shandong_takes_no_residence_permit_for_the_face_check(app: Applications) -> None:
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID, mother_name="刘红")
    w.record_delivery(province="山东省")
    w.start()
    w.verify("mother")
    with pytest.raises(NotEligibleOnline) as refused:
        w.verify("father", id_number=HK_FATHER_PERMIT)
    assert refused.value.reasons == ["parent_hk_macao_taiwan_overseas_foreign"]
    assert refused.value.referral.counter["institution_code"] == "JNPY01"


# ---------------------------------------------------------------- stored before: upcast


def test_a_referral_recorded_before_it_named_the_counter_reads_with_todays_words(app: Applications) -> None:
    w = Walk(app)
    w.submitted()
    for _ in range(6):
        w.reject(fields=["delivery_method"])
        if w.state() != COUNTER_ONLY:
            w.submit()
    agg = app.get_application(w.parent, w.id)
    snapshot = Snapshot.take(agg)
    state = dict(snapshot.state)
    assert state.pop("class_version") == 6
    assert state.pop("elicenses") == []  # v6's (decision 0038)
    for name in ("named_institution", "face_failure_day", "referral"):
        state.pop(name)
    old = Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state={**state, "class_version": 4},
    )
    loaded = old.mutate(None)
    assert isinstance(loaded, BirthCertificateApplication)
    assert loaded.elicenses == [] and loaded.elicense_state() == "none"
    assert loaded.referral == {"reason": "modification_limit", "message": "", "counter": None, "bring": []}
    view = status_of(loaded)["counter_reason"]
    assert view["message"].startswith("退回修改次数已达上限") and view["bring"] == list(COMMON_BRING)
    v1 = BirthCertificateApplication.ReferredToCounter
    state_v1 = {"reason": "modification_limit"}
    v1.upcast_v1_v2(state_v1)
    assert state_v1 == {"reason": "modification_limit", "message": "", "counter": None, "bring": []}
