"""出生一件事 as data (issue 12, item 1; docs/decisions/0044): the offer, its conditions, the mother's opt-in."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.application import BirthCertificateApplication, NotReady
from domain.bundle import (
    CERTIFICATE,
    BundleConditionsUnmet,
    BundleFacts,
    BundleNotOffered,
    BundleOffer,
    check_values,
    evaluate,
)
from domain.delivery import Institution
from domain.errors import InvalidValue
from domain.policy import SHANGHAI, ProvinceProfile, WorkingCalendar, get_profile, load_profiles
from domain.values import Address, EthnicGroup, Nationality, PersonName
from tests.builders import HEBEI_BUNDLE_FIELDS, Walk, in_memory, make_id_number, refused

CALENDAR = WorkingCalendar()
HE = get_profile("HE")
OFFER = HE.birth_bundle
assert OFFER is not None
HE_HOSPITAL = Institution("SJZFY01", "石家庄市妇产医院", "HE")
HE_MOTHER = make_id_number("130102", "19940310", "022")
HE_FATHER = make_id_number("130104", "19920303", "013")
HEBEI = "河北省石家庄市长安区中山东路88号"
BORN = datetime(2026, 11, 18, 8, 30, tzinfo=SHANGHAI)
ALL = [s.code for s in OFFER.services]
FIELDS = HEBEI_BUNDLE_FIELDS


# ---------------------------------------------------------------- the profiles


def test_only_hebei_offers_the_bundle_and_every_profile_reads_back_exactly() -> None:
    offered = {code for code, p in load_profiles().items() if p.birth_bundle is not None}
    assert offered == {"HE"}
    for profile in load_profiles().values():
        assert ProvinceProfile.from_dict(profile.to_dict()) == profile


def test_a_province_switches_the_bundle_on_by_data_alone() -> None:
    gd = get_profile("GD").to_dict()
    switched = ProvinceProfile.from_dict({**gd, "birth_bundle": OFFER.to_dict()})
    assert switched.birth_bundle == OFFER
    # A snapshot from before the bundle existed reads "not offered".
    gd.pop("birth_bundle")
    assert ProvinceProfile.from_dict(gd).birth_bundle is None


def test_hebei_offers_the_five_services_of_the_notice_and_its_conditions() -> None:
    assert ALL[0] == CERTIFICATE and len(ALL) == 5
    assert [c.code for c in OFFER.conditions] == [
        "born_in_province",
        "within_working_days",
        "parents_married",
        "parents_local_hukou",
        "same_ethnicity",
        "family_household",
    ]
    assert OFFER.conditions[1].params["days"] == 30
    assert "父母双方须为本省户籍" in next(
        c.message for c in OFFER.conditions if c.code == "parents_local_hukou"
    )


@pytest.mark.parametrize(
    "broken",
    [
        {"services": []},
        {"conditions": [{"code": "no_such_rule", "label": "x", "message": "y"}]},
        {"fields": [{"code": "x1", "label": "x", "section": "s", "kind": "choice", "choices": []}]},
        {"working_days": 0},
    ],
)
def test_a_malformed_offer_fails_loudly(broken: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue):
        BundleOffer.from_dict({**OFFER.to_dict(), **broken})


# ---------------------------------------------------------------- the conditions (Hypothesis)

parent = st.fixed_dictionaries(
    {
        "id_type": st.sampled_from(["resident_id", "hk_macao_residence_permit"]),
        "ethnicity": st.sampled_from(["01", "02", "03"]),
        "address": st.sampled_from(
            [HEBEI, "石家庄市桥西区自强路1号", "广东省广州市越秀区中山一路1号", "北京市朝阳区"]
        ),
    }
)


@st.composite
def bundle_facts(draw: st.DrawFn) -> BundleFacts:
    two = draw(st.booleans())
    details = draw(st.booleans())
    born = draw(st.none() | st.just(BORN))
    return BundleFacts(
        province="HE",
        record_province=draw(st.none() | st.sampled_from(["HE", "GD"])),
        born_at=born,
        requested_at=BORN + timedelta(days=draw(st.integers(0, 80)), hours=draw(st.integers(0, 23))),
        two_parents=two,
        mother=draw(parent) if details else None,
        father=draw(parent) if details and two else None,
        married=draw(st.none() | st.booleans()),
        services=tuple(draw(st.sets(st.sampled_from(ALL[1:]), min_size=1))),
        values=draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "settle_with": st.sampled_from(["father", "mother"]),
                    "household_type": st.sampled_from(["family", "collective"]),
                },
            )
        ),
    )


def _local(p: dict[str, Any]) -> bool:
    hebei = ("河北", "石家庄")
    return p["id_type"] == "resident_id" and p["address"].startswith(hebei)


@given(bundle_facts())
def test_each_condition_is_met_exactly_when_the_notice_says(f: BundleFacts) -> None:
    results = {r.code: r.state for r in evaluate(OFFER, f, CALENDAR)}
    known = f.mother is not None and f.father is not None
    expect_born = None if f.record_province is None else f.record_province == "HE"
    assert results["born_in_province"] == {None: "unknown", True: "met", False: "unmet"}[expect_born]
    if f.born_at is None:
        assert results["within_working_days"] == "unknown"
    else:
        in_time = CALENDAR.working_days_between(f.born_at.date(), f.requested_at.date()) <= 30
        assert results["within_working_days"] == ("met" if in_time else "unmet")
    if not f.two_parents:
        for code in ("parents_married", "parents_local_hukou", "same_ethnicity"):
            assert results[code] == "unmet"  # no father on the certificate: never the bundle
    else:
        assert results["parents_married"] == {None: "unknown", True: "met", False: "unmet"}[f.married]
        if not known:
            assert results["parents_local_hukou"] == results["same_ethnicity"] == "unknown"
        else:
            assert f.mother is not None and f.father is not None
            local = _local(dict(f.mother)) and _local(dict(f.father))
            assert results["parents_local_hukou"] == ("met" if local else "unmet")
            same = f.mother["ethnicity"] == f.father["ethnicity"]
            assert results["same_ethnicity"] == ("met" if same else "unmet")
    if "household_registration" not in f.services:
        assert "family_household" not in results  # the 户口 condition binds only the 户口 service
    elif "household_type" not in f.values or "settle_with" not in f.values:
        assert results["family_household"] == "unknown"
    else:
        assert results["family_household"] == ("met" if f.values["household_type"] == "family" else "unmet")


@given(
    sex=st.sampled_from(["M", "F"]),
    relation=st.sampled_from([c.value for c in OFFER.field("relation_to_head").choices]),  # type: ignore[union-attr]
)
def test_relation_to_the_head_of_household_agrees_with_the_newborns_sex(sex: str, relation: str) -> None:
    spec = OFFER.field("relation_to_head")
    assert spec is not None
    choice = spec.choice(relation)
    assert choice is not None
    values = {**FIELDS, "relation_to_head": relation}
    if choice.sex is None or choice.sex == sex:
        assert check_values(OFFER, ALL, values, newborn_sex=sex, held={})["relation_to_head"] == relation
    else:
        with pytest.raises(InvalidValue) as caught:
            check_values(OFFER, ALL, values, newborn_sex=sex, held={})
        assert [e.code for e in caught.value.errors] == ["relation_sex_mismatch"]


@given(
    area=st.sampled_from([c.value for c in OFFER.field("insurance_area").choices]),  # type: ignore[union-attr]
    district=st.from_regex(r"13[0-9]{4}", fullmatch=True),
)
def test_the_insurance_district_lies_within_the_chosen_area(area: str, district: str) -> None:
    spec = OFFER.field("insurance_area")
    assert spec is not None
    prefixes = spec.choice(area).prefixes  # type: ignore[union-attr]
    values = {**FIELDS, "insurance_area": area, "insurance_district_code": district}
    if district.startswith(prefixes):
        check_values(OFFER, ALL, values, newborn_sex="F", held={})
    else:
        with pytest.raises(InvalidValue) as caught:
            check_values(OFFER, ALL, values, newborn_sex="F", held={})
        assert [e.code for e in caught.value.errors] == ["district_outside_area"]


@given(services=st.sets(st.sampled_from(ALL[1:]), min_size=1))
def test_only_the_fields_of_the_chosen_services_are_asked(services: set[str]) -> None:
    wanted = {f.code for f in OFFER.fields_for(services)}
    values = {k: v for k, v in FIELDS.items() if k in wanted}
    assert set(check_values(OFFER, services, values, newborn_sex="F", held={})) <= wanted
    extra = sorted(set(FIELDS) - wanted)
    if extra:
        with pytest.raises(InvalidValue) as caught:
            check_values(OFFER, services, FIELDS, newborn_sex="F", held={})
        assert {e.code for e in caught.value.errors} == {"unknown_field"}


def test_a_field_the_application_holds_is_never_asked_and_refused_if_given() -> None:
    held = {"contact_phone": "13812345678"}
    values = {k: v for k, v in FIELDS.items() if k != "contact_phone"}
    assert "contact_phone" not in check_values(OFFER, ALL, values, newborn_sex="F", held=held)
    with pytest.raises(InvalidValue) as caught:
        check_values(OFFER, ALL, FIELDS, newborn_sex="F", held=held)
    assert [e.code for e in caught.value.errors] == ["already_given"]


# ---------------------------------------------------------------- the opt-in, through the service


def _hebei_walk(**kw: Any) -> Walk:
    walk = Walk(
        in_memory(BORN + timedelta(days=3)), inst=HE_HOSPITAL, mother_id=HE_MOTHER, father_id=HE_FATHER
    )
    walk.mother_name = "李娜"
    walk.record_delivery(**{"province": "河北省", "born_at": BORN, **kw})
    walk.start()
    walk.verify("mother")
    walk.confirm()
    return walk


def _details(walk: Walk, *, father_address: str = HEBEI, father_ethnicity: str = "01") -> None:
    from domain.application import ParentDetails
    from domain.values import IdDocument

    walk.app.provide_details(
        walk.parent,
        walk.id,
        newborn_name=PersonName("赵小雨"),
        mother=ParentDetails(
            nationality=Nationality("CHN"), ethnicity=EthnicGroup("01"), address=Address(HEBEI)
        ),
        father=ParentDetails(
            nationality=Nationality("CHN"),
            ethnicity=EthnicGroup(father_ethnicity),
            address=Address(father_address),
            name=PersonName("赵强"),
            id_number=IdDocument(HE_FATHER),
        ),
    )


def _opt_in(walk: Walk, **changes: Any) -> Any:
    return walk.app.request_bundle(
        walk.parent,
        walk.id,
        services=changes.pop("services", ALL),
        values={**FIELDS, **changes.pop("fields", {})},
        parents_married=changes.pop("parents_married", True),
    )


def _app(walk: Walk) -> BirthCertificateApplication:
    return walk.app.get_application(walk.parent, walk.id)


def test_a_hebei_mother_opts_in_and_the_form_she_signs_carries_table_2() -> None:
    walk = _hebei_walk()
    with refused(walk.app, NotReady, "not_ready"):
        _opt_in(walk)  # her details first: the form derives them
    _details(walk)
    _opt_in(walk)
    app = _app(walk)
    assert app.bundle is not None and app.bundle["services"] == ALL
    part = app.form()["bundle"]  # type: ignore[index]
    derived = {d["code"]: d["value"] for d in part["derived"]}
    assert derived["mother_id_number"] == HE_MOTHER and derived["father_name"] == "赵强"
    assert derived["newborn_ethnicity"] == "汉族" and derived["newborn_sex"] == "女"
    chosen = {f["code"]: f["value_label"] for f in part["fields"]}
    assert chosen["relation_to_head"] == "女" and chosen["hukou_address"] == HEBEI  # the 落户方's address
    # Nothing she gave before is in the event: only the services, her statement and the extra fields.
    assert app.bundle["values"] == FIELDS and "newborn_name" not in app.bundle["values"]


def test_opting_in_after_signing_voids_the_signature_and_withdrawing_changes_the_form_again() -> None:
    walk = _hebei_walk()
    _details(walk)
    walk.verify("father")
    walk.upload_all()
    walk.sign()
    assert _app(walk).signature_valid
    _opt_in(walk)
    assert not _app(walk).signature_valid  # 表2 is part of what she signs
    walk.upload_materials()  # 户口登记's 户口簿 pages and 结婚证 (decision 0047)
    walk.sign()
    assert _app(walk).signature_valid
    _opt_in(walk, fields={"card_pickup_place": "建设银行石家庄分行营业部"})
    assert not _app(walk).signature_valid
    walk.app.withdraw_bundle(walk.parent, walk.id)
    assert _app(walk).bundle is None and "bundle" not in _app(walk).form()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("arrange", "code", "words"),
    [
        (
            lambda w: _details(w, father_address="广东省广州市越秀区中山一路1号"),
            "parents_local_hukou",
            "本省户籍",
        ),
        (lambda w: _details(w, father_ethnicity="03"), "same_ethnicity", "民族须一致"),
    ],
)
def test_a_failing_condition_is_refused_with_its_code_and_chinese_words(
    arrange: Any, code: str, words: str
) -> None:
    walk = _hebei_walk()
    arrange(walk)
    with pytest.raises(BundleConditionsUnmet) as caught:
        _opt_in(walk)
    assert caught.value.code == code and words in caught.value.message


def test_not_married_and_a_collective_household_are_refused_each_with_its_code() -> None:
    walk = _hebei_walk()
    _details(walk)
    with pytest.raises(BundleConditionsUnmet) as caught:
        _opt_in(walk, parents_married=False)
    assert caught.value.code == "parents_married"
    with pytest.raises(BundleConditionsUnmet) as caught:
        _opt_in(walk, fields={"household_type": "collective"})
    assert caught.value.code == "family_household" and "家庭户" in caught.value.message


def test_after_30_working_days_the_bundle_is_refused() -> None:
    walk = _hebei_walk()
    _details(walk)
    late = CALENDAR.add_working_days(BORN, 30) + timedelta(seconds=1)
    walk.app.clock = lambda: late
    with pytest.raises(BundleConditionsUnmet) as caught:
        _opt_in(walk)
    assert caught.value.code == "within_working_days"


def test_a_province_without_the_bundle_refuses_the_opt_in() -> None:
    walk = Walk(in_memory())
    walk.record_delivery()
    walk.start()
    walk.verify("mother")
    with pytest.raises(BundleNotOffered):
        _opt_in(walk)


def test_a_change_of_details_that_breaks_a_condition_stops_the_submission() -> None:
    walk = _hebei_walk()
    _details(walk)
    walk.verify("father")
    walk.upload_all()
    _opt_in(walk)
    walk.upload_materials()
    _details(walk, father_ethnicity="03")
    walk.sign()
    walk.choose_pickup()
    with pytest.raises(BundleConditionsUnmet) as caught:
        walk.submit()
    assert caught.value.code == "same_ethnicity"
    walk.app.withdraw_bundle(walk.parent, walk.id)
    walk.sign()
    walk.submit()


def test_the_form_pdf_prints_table_2_on_its_own_page() -> None:
    from backend.form_pdf import render_form_pdf
    from tests.pdf_reading import pdf_pages, pdf_text

    walk = _hebei_walk()
    _details(walk)
    _opt_in(walk)
    app = _app(walk)
    form = app.form()
    assert form is not None
    pdf = render_form_pdf(
        form,
        kind="signed",
        form_sha256=app.form_sha256() or "",
        signature_png=None,
        issuer_name=None,
        sealer_name=None,
        certificate_number=None,
        signed_at=None,
        issued_at=None,
    )
    text = pdf_text(pdf)
    assert pdf_pages(pdf) >= 2
    for words in (
        "申报表单",
        "与户主关系",
        "社保卡银行行号",
        "中国工商银行（102）",
        "基层医保区划编号",
        "130102",
    ):
        assert words in text.replace(" ", "")
