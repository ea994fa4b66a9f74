"""Province profiles, counter-only cases and working days: each rule of domain/policy.py."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidValue
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
    load_profiles,
    review_deadline,
)
from domain.values import PersonName, Residency

ALL = ["GD", "SD", "BJ", "HE"]
CALENDAR = WorkingCalendar()


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


def end_of(y: int, m: int, d: int) -> datetime:
    return datetime.combine(date(y, m, d), time(23, 59, 59), tzinfo=SHANGHAI)


def case(
    *,
    request_kind: str = "first_issue",
    born_in_institution: bool = True,
    parents: str = "both",
    mother: Residency = "mainland",
    father: Residency | None = "mainland",
    face_verification_failed: bool = False,
) -> Circumstances:
    return Circumstances(
        request_kind=request_kind,  # type: ignore[arg-type]
        born_in_institution=born_in_institution,
        parents=parents,  # type: ignore[arg-type]
        mother_residency=mother,
        father_residency=father,
        face_verification_failed=face_verification_failed,
    )


# Profiles ---------------------------------------------------------------------------------------


def test_profiles_cover_guangdong_shandong_beijing_hebei() -> None:
    profiles = load_profiles()
    assert sorted(profiles) == sorted(ALL)
    assert [profiles[c].name for c in ALL] == ["广东省", "山东省", "北京市", "河北省"]


def test_load_profiles_is_cached() -> None:
    assert load_profiles() is load_profiles()


def test_guangdong_delivery_entry_within_72_hours() -> None:
    assert get_profile("GD").delivery_entry_hours == 72


def test_shandong_delivery_entry_within_24_hours() -> None:
    assert get_profile("SD").delivery_entry_hours == 24


def test_beijing_application_opens_one_week_after_birth() -> None:
    assert get_profile("BJ").earliest_application_days_after_birth == 7


def test_hebei_application_closes_30_working_days_after_birth() -> None:
    assert get_profile("HE").latest_application_working_days_after_birth == 30


def test_review_deadline_is_2_working_days_in_shandong_and_6_in_hebei() -> None:
    assert get_profile("SD").review_working_days == 2
    assert get_profile("HE").review_working_days == 6
    assert get_profile("GD").review_working_days is None


def test_shandong_postage_is_prepaid_in_the_app() -> None:
    profile = get_profile("SD")
    assert (profile.postage, profile.postage_fee_fen) == ("prepaid", 2000)


def test_guangdong_postage_is_settled_with_ems() -> None:
    profile = get_profile("GD")
    assert (profile.postage, profile.postage_fee_fen) == ("collect_on_delivery", 0)


def test_only_prepaid_profiles_charge_a_fee() -> None:
    for profile in load_profiles().values():
        assert (profile.postage_fee_fen > 0) == (profile.postage == "prepaid")


def test_shandong_accepts_father_handheld_id_photo() -> None:
    assert get_profile("SD").father_handheld_id_allowed
    assert not get_profile("GD").father_handheld_id_allowed


def test_guangdong_single_mother_online() -> None:
    assert get_profile("GD").single_mother_online
    assert check_eligibility(get_profile("GD"), case(parents="single_mother", father=None)) == []


def test_shandong_refuses_single_mother() -> None:
    assert not get_profile("SD").single_mother_online
    assert check_eligibility(get_profile("SD"), case(parents="single_mother", father=None)) == [
        "single_mother"
    ]


def test_single_mother_online_flag_agrees_with_counter_only_cases() -> None:
    for profile in load_profiles().values():
        assert profile.single_mother_online == ("single_mother" not in profile.counter_only_cases)


def test_shandong_newborn_surname_must_be_a_parents() -> None:
    assert get_profile("SD").newborn_surname_must_be_parents
    assert "third_surname" in get_profile("SD").counter_only_cases


def test_guangdong_allows_5_modifications() -> None:
    assert get_profile("GD").modification_limit == 5


def test_guangdong_prefills_from_population_registry() -> None:
    assert get_profile("GD").population_registry_prefill
    assert not get_profile("SD").population_registry_prefill


def test_every_profile_explains_its_sources() -> None:
    for profile in load_profiles().values():
        assert "seed" in profile.notes


@pytest.mark.parametrize("code", ALL)
def test_profile_round_trips_through_dict(code: str) -> None:
    profile = get_profile(code)
    data = profile.to_dict()
    assert ProvinceProfile.from_dict(data) == profile
    assert ProvinceProfile.from_dict(json.loads(json.dumps(data))) == profile
    assert ProvinceProfile.from_dict(data).to_dict() == data


def test_profile_from_dict_ignores_keys_from_a_future_version() -> None:
    data = {**get_profile("SD").to_dict(), "postage_provider": "EMS", "new_rule": [1, 2]}
    assert ProvinceProfile.from_dict(data) == get_profile("SD")


@pytest.mark.parametrize(
    "change",
    [
        {"postage": "free"},
        {"review_working_days": "2"},
        {"single_mother_online": 1},
        {"counter_only_cases": "x"},
    ],
)
def test_profile_from_dict_refuses_malformed_snapshots(change: dict[str, object]) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        ProvinceProfile.from_dict({**get_profile("SD").to_dict(), **change})
    assert excinfo.value.code == "invalid_profile"


def test_profile_from_dict_refuses_missing_keys() -> None:
    data = get_profile("GD").to_dict()
    del data["postage_fee_fen"]
    with pytest.raises(InvalidValue):
        ProvinceProfile.from_dict(data)


def test_get_profile_unknown_province() -> None:
    with pytest.raises(InvalidValue) as excinfo:
        get_profile("XZ")
    error = excinfo.value.errors[0]
    assert (error.field, error.code) == ("province", "unknown_province")


def test_get_profile_accepts_lowercase_code() -> None:
    assert get_profile("sd").code == "SD"


def test_every_reason_code_has_a_chinese_message() -> None:
    codes = {c for p in load_profiles().values() for c in p.counter_only_cases} | {"too_early", "too_late"}
    assert codes <= set(REASON_MESSAGES)
    assert all("\u4e00" <= message[0] <= "\u9fff" for message in REASON_MESSAGES.values())


# Eligibility ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ALL)
def test_two_mainland_parents_may_apply_online(code: str) -> None:
    assert check_eligibility(get_profile(code), case()) == []


@pytest.mark.parametrize("code", ALL)
def test_every_province_refuses_foreign_national(code: str) -> None:
    assert "foreign_national" in check_eligibility(get_profile(code), case(father="foreign"))


@pytest.mark.parametrize("code", ALL)
def test_every_province_refuses_taiwan_compatriot(code: str) -> None:
    assert "taiwan_compatriot" in check_eligibility(get_profile(code), case(mother="taiwan"))


@pytest.mark.parametrize("code", ALL)
def test_every_province_refuses_single_father(code: str) -> None:
    assert check_eligibility(get_profile(code), case(parents="single_father")) == ["single_father"]


@pytest.mark.parametrize("code", ALL)
def test_every_province_refuses_birth_outside_institution(code: str) -> None:
    assert check_eligibility(get_profile(code), case(born_in_institution=False)) == [
        "born_outside_institution"
    ]


@pytest.mark.parametrize("code", ALL)
@pytest.mark.parametrize("kind", ["replacement", "reissue"])
def test_every_province_refuses_replacement_and_reissue(code: str, kind: str) -> None:
    assert check_eligibility(get_profile(code), case(request_kind=kind)) == [kind]


@pytest.mark.parametrize("code", ALL)
def test_every_province_refuses_when_face_verification_impossible(code: str) -> None:
    result = check_eligibility(get_profile(code), case(face_verification_failed=True))
    assert result == ["face_verification_impossible"]


@pytest.mark.parametrize(
    ("mother", "father"),
    [("hk_macao", "hk_macao"), ("overseas_chinese", "hk_macao"), ("overseas_chinese", "overseas_chinese")],
)
def test_guangdong_refuses_both_parents_hk_macao_or_overseas(mother: Residency, father: Residency) -> None:
    assert check_eligibility(get_profile("GD"), case(mother=mother, father=father)) == [
        "both_parents_hk_macao_overseas"
    ]


def test_guangdong_accepts_one_parent_from_hong_kong() -> None:
    assert check_eligibility(get_profile("GD"), case(father="hk_macao")) == []


@pytest.mark.parametrize("other", ["hk_macao", "overseas_chinese"])
def test_shandong_refuses_either_parent_not_mainland(other: Residency) -> None:
    assert check_eligibility(get_profile("SD"), case(father=other)) == [
        "parent_hk_macao_taiwan_overseas_foreign"
    ]


def test_check_eligibility_returns_every_reason() -> None:
    reasons = check_eligibility(
        get_profile("SD"), case(request_kind="reissue", born_in_institution=False, father="foreign")
    )
    assert reasons == [
        "foreign_national",
        "parent_hk_macao_taiwan_overseas_foreign",
        "born_outside_institution",
        "reissue",
    ]


def test_profile_switches_a_case_on_by_listing_its_code() -> None:
    gd = get_profile("GD")
    single_mother = case(parents="single_mother", father=None)
    assert check_eligibility(gd, single_mother) == []
    stricter = dataclasses.replace(gd, counter_only_cases=(*gd.counter_only_cases, "single_mother"))
    assert check_eligibility(stricter, single_mother) == ["single_mother"]
    assert check_eligibility(dataclasses.replace(gd, counter_only_cases=()), case(father="foreign")) == []


def test_single_mother_ignores_father_residency() -> None:
    assert check_eligibility(get_profile("GD"), case(parents="single_mother", father="foreign")) == []


def test_circumstances_with_both_parents_need_father_residency() -> None:
    with pytest.raises(InvalidValue) as excinfo:
        case(father=None)
    assert excinfo.value.code == "father_required"


def test_circumstances_refuse_unknown_request_kind() -> None:
    with pytest.raises(InvalidValue):
        case(request_kind="upgrade")


# Newborn's surname ------------------------------------------------------------------------------


def surname_check(code: str, newborn: str, mother: str, father: str | None = "王伟") -> list[str]:
    return check_newborn_surname(
        get_profile(code), PersonName(newborn), PersonName(mother), PersonName(father) if father else None
    )


def test_shandong_refuses_third_surname() -> None:
    assert surname_check("SD", "赵小明", "李芳") == ["third_surname"]


@pytest.mark.parametrize("newborn", ["王小明", "李小明", "王李明", "李王明"])
def test_shandong_accepts_a_parents_surname_or_both(newborn: str) -> None:
    assert surname_check("SD", newborn, "李芳") == []


def test_shandong_compares_compound_surnames_whole() -> None:
    assert surname_check("SD", "欧阳明", "李芳", "欧阳峰") == []
    assert surname_check("SD", "阳明", "李芳", "欧阳峰") == ["third_surname"]


def test_compound_looking_surname_may_be_a_single_one() -> None:
    # 单于军 could be 单 + 于军; a child named 单明 must not be sent to the counter for it.
    assert surname_check("SD", "单明", "李芳", "单于军") == []


def test_newborn_name_equal_to_a_bare_surname_is_third_surname() -> None:
    assert surname_check("SD", "赵", "李芳") == ["third_surname"]


def test_guangdong_does_not_check_the_surname() -> None:
    assert surname_check("GD", "赵小明", "李芳") == []


def test_transliterated_names_are_left_to_the_issuer() -> None:
    assert surname_check("SD", "阿依古丽·买买提", "古丽·热合曼", "买买提·吐尔逊") == []
    assert surname_check("SD", "赵明", "古丽·热合曼", "买买提·吐尔逊") == []


# Working days -----------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [date(2024, 2, 4), date(2024, 2, 18), date(2025, 1, 26), date(2024, 9, 29)])
def test_make_up_sundays_are_working_days(day: date) -> None:
    assert day.weekday() == 6
    assert CALENDAR.is_working_day(day)


@pytest.mark.parametrize("day", [date(2024, 10, 1) + timedelta(days=i) for i in range(7)])
def test_national_day_week_is_a_holiday(day: date) -> None:
    assert not CALENDAR.is_working_day(day)


def test_ordinary_weekend_is_not_a_working_day() -> None:
    assert not CALENDAR.is_working_day(date(2024, 3, 2))
    assert CALENDAR.is_working_day(date(2024, 3, 4))


def test_add_working_days_skips_national_day() -> None:
    # Mon 30 Sep 2024, then 1–7 Oct off: the 1st and 2nd working days are 8 and 9 Oct.
    assert CALENDAR.add_working_days(at(2024, 9, 30), 2) == end_of(2024, 10, 9)


def test_add_working_days_from_a_holiday_counts_from_the_next_working_day() -> None:
    assert CALENDAR.add_working_days(at(2024, 10, 3), 1) == end_of(2024, 10, 8)
    assert CALENDAR.add_working_days(at(2024, 10, 3), 2) == end_of(2024, 10, 9)


def test_add_working_days_counts_make_up_sunday() -> None:
    # Fri 2 Feb 2024, then Sat 3 off, Sun 4 Feb a make-up working day.
    assert CALENDAR.add_working_days(at(2024, 2, 2), 1) == end_of(2024, 2, 4)


def test_add_working_days_zero_is_end_of_start_day_or_next_working_day() -> None:
    assert CALENDAR.add_working_days(at(2024, 3, 4), 0) == end_of(2024, 3, 4)
    assert CALENDAR.add_working_days(at(2024, 10, 3), 0) == end_of(2024, 10, 8)


def test_add_working_days_uses_the_beijing_date_of_the_start() -> None:
    # 17:00 UTC on Friday 1 March is 01:00 on Saturday 2 March in Beijing.
    start = datetime(2024, 3, 1, 17, 0, tzinfo=UTC)
    deadline = CALENDAR.add_working_days(start, 1)
    assert deadline == end_of(2024, 3, 4)
    assert deadline.utcoffset() == timedelta(hours=8)


def test_add_working_days_refuses_naive_start_and_negative_n() -> None:
    with pytest.raises(InvalidValue):
        CALENDAR.add_working_days(datetime(2024, 3, 1), 1)
    with pytest.raises(ValueError, match="negative"):
        CALENDAR.add_working_days(at(2024, 3, 1), -1)


def test_working_days_between_counts_after_a_up_to_b() -> None:
    assert CALENDAR.working_days_between(date(2024, 9, 30), date(2024, 10, 9)) == 2
    assert CALENDAR.working_days_between(date(2024, 10, 9), date(2024, 9, 30)) == -2
    assert CALENDAR.working_days_between(date(2024, 3, 4), date(2024, 3, 4)) == 0


def test_working_day_fallback_for_unknown_year_logs_a_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    calendar = WorkingCalendar()
    with caplog.at_level(logging.WARNING, logger="domain.policy"):
        assert calendar.is_working_day(date(2099, 1, 5))  # a Monday
        assert not calendar.is_working_day(date(2099, 1, 4))  # a Sunday
        assert calendar.add_working_days(datetime(2099, 1, 2, tzinfo=SHANGHAI), 1) == end_of(2099, 1, 5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "2099" in r.getMessage()]
    assert len(warnings) == 1


starts = st.datetimes(
    min_value=datetime(2004, 1, 1), max_value=datetime(2026, 9, 30), timezones=st.just(SHANGHAI)
)


@given(starts, st.integers(min_value=0, max_value=40))
def test_add_working_days_lands_on_a_working_day(start: datetime, n: int) -> None:
    deadline = CALENDAR.add_working_days(start, n)
    assert CALENDAR.is_working_day(deadline.date())
    assert deadline.timetz() == time(23, 59, 59, tzinfo=SHANGHAI)
    assert deadline.date() >= start.date()


@given(starts, st.integers(min_value=0, max_value=40))
def test_add_working_days_is_monotonic_in_n(start: datetime, n: int) -> None:
    # From a holiday, n = 0 and n = 1 both name the next working day; beyond that each step adds a day.
    earlier, later = CALENDAR.add_working_days(start, n), CALENDAR.add_working_days(start, n + 1)
    assert earlier < later if n >= 1 else earlier <= later


@given(starts, st.integers(min_value=1, max_value=40))
def test_working_days_between_inverts_add_working_days(start: datetime, n: int) -> None:
    deadline = CALENDAR.add_working_days(start, n)
    assert CALENDAR.working_days_between(start.date(), deadline.date()) == n


# Deadlines and the application window -----------------------------------------------------------


def test_shandong_review_deadline_is_two_working_days_after_submission() -> None:
    assert review_deadline(get_profile("SD"), at(2024, 9, 30)) == end_of(2024, 10, 9)


def test_review_deadline_is_none_where_the_province_sets_none() -> None:
    assert review_deadline(get_profile("GD"), at(2024, 9, 30)) is None


def test_beijing_too_early_before_one_week_after_birth() -> None:
    bj = get_profile("BJ")
    born = at(2024, 3, 1, 23, 50)
    assert application_window_error(bj, born, at(2024, 3, 7, 23, 59), CALENDAR) == "too_early"
    assert application_window_error(bj, born, at(2024, 3, 8, 0, 1), CALENDAR) is None


def test_hebei_too_late_after_30_working_days() -> None:
    he = get_profile("HE")
    born = at(2024, 9, 20)
    deadline = CALENDAR.add_working_days(born, 30)
    assert CALENDAR.working_days_between(date(2024, 9, 20), deadline.date()) == 30
    assert application_window_error(he, born, deadline, CALENDAR) is None
    assert application_window_error(he, born, deadline + timedelta(seconds=1), CALENDAR) == "too_late"


def test_guangdong_has_no_application_window() -> None:
    assert application_window_error(get_profile("GD"), at(2020, 1, 1), at(2024, 1, 1)) is None


def test_application_window_refuses_naive_times() -> None:
    with pytest.raises(InvalidValue):
        application_window_error(get_profile("BJ"), datetime(2024, 3, 1), at(2024, 3, 9))
