"""Value objects: each rule of domain/values.py, named after the rule."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidValue
from domain.values import (
    ETHNIC_GROUPS,
    Actor,
    Address,
    BirthData,
    Birthplace,
    CertificateNumber,
    EthnicGroup,
    IdNumber,
    MobileNumber,
    Nationality,
    PersonName,
    parse_residency,
    parse_sex,
)

CST = timezone(timedelta(hours=8))
VECTORS = ["11010519491231002X", "440524188001010014", "360426199101010071", "440308199901101512"]
# Counties whose codes are in stdnum's table; some were created after many of the generated birth dates.
REGIONS = ["110105", "440106", "370102", "130102", "440308", "360426", "310101"]
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def check_char(body: str) -> str:
    """ISO 7064 MOD 11-2 written out from the standard, independent of python-stdnum."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(REGIONS))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)))
    sequence = draw(st.integers(min_value=0, max_value=999))
    body = f"{region}{born:%Y%m%d}{sequence:03d}"
    return body + check_char(body)


def error_of(excinfo: pytest.ExceptionInfo[InvalidValue]) -> tuple[str, str]:
    error = excinfo.value.errors[0]
    return error.field, error.code


# IdNumber ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", VECTORS)
def test_id_number_accepts_published_vectors(number: str) -> None:
    assert IdNumber(number).value == number


def test_id_number_normalises_lowercase_x() -> None:
    assert IdNumber(" 11010519491231002x ").value == "11010519491231002X"


def test_id_number_typed_in_full_width_is_the_same_number() -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "11010519491231002x")  # a Chinese IME's digits
    assert IdNumber(full_width).value == "11010519491231002X"


def test_id_number_refuses_other_scripts_digits() -> None:
    arabic_indic = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in "11010519491231002X")
    with pytest.raises(InvalidValue) as exc:
        IdNumber(arabic_indic)
    assert exc.value.errors[0].message == "身份证号码不正确，请核对18位居民身份证号码"


def test_id_number_refuses_15_digit_legacy_numbers() -> None:
    with pytest.raises(InvalidValue) as excinfo:
        IdNumber("110105491231002")
    assert error_of(excinfo) == ("id_number", "invalid_id_number")
    assert "15位" in excinfo.value.message


@pytest.mark.parametrize(
    "number",
    [
        "110105194912310020",  # wrong check char
        "11010519491231002",  # 17 chars
        "1101051949123100X2",  # X not last
        "110105 19491231002X",  # separator inside
        "",
    ],
)
def test_id_number_refuses_malformed_numbers(number: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        IdNumber(number)
    assert error_of(excinfo) == ("id_number", "invalid_id_number")


def test_id_number_refuses_impossible_birth_date() -> None:
    body = "11010519990230001"
    with pytest.raises(InvalidValue, match="出生日期"):
        IdNumber(body + check_char(body))


def test_id_number_refuses_unknown_region() -> None:
    body = "99010119900101001"
    with pytest.raises(InvalidValue, match="地区代码"):
        IdNumber(body + check_char(body))


def test_id_number_accepts_region_created_after_birth() -> None:
    # 盐田区 dates from 1997; the code is the one in force when the number was issued, not at birth.
    body = "44030819900101002"
    assert IdNumber(body + check_char(body)).region_code == "440308"


def test_id_number_refuses_residence_permit_numbers() -> None:
    body = "81000019900101002"
    with pytest.raises(InvalidValue, match="居住证"):
        IdNumber(body + check_char(body))


def test_id_number_reports_the_given_field() -> None:
    with pytest.raises(InvalidValue) as excinfo:
        IdNumber("123", field="mother.id_number")
    assert error_of(excinfo) == ("mother.id_number", "invalid_id_number")


def test_id_number_exposes_birth_date_sex_and_region() -> None:
    number = IdNumber("11010519491231002X")
    assert number.birth_date == date(1949, 12, 31)
    assert number.sex == "F"
    assert number.region_code == "110105"
    assert IdNumber("360426199101010071").sex == "M"


def test_id_number_age_on_counts_completed_years() -> None:
    number = IdNumber("360426199101010071")
    assert number.age_on(date(2020, 12, 31)) == 29
    assert number.age_on(date(2021, 1, 1)) == 30


def test_id_number_age_on_leap_day_birthday_turns_on_march_first() -> None:
    body = "11010520000229002"
    number = IdNumber(body + check_char(body))
    assert number.age_on(date(2021, 2, 28)) == 20
    assert number.age_on(date(2021, 3, 1)) == 21


def test_id_number_age_on_before_birth_is_refused() -> None:
    with pytest.raises(InvalidValue):
        IdNumber("360426199101010071").age_on(date(1990, 1, 1))


def test_id_number_masked_keeps_first_and_last_four() -> None:
    assert IdNumber("11010519491231002X").masked() == "1101**********002X"


def test_id_number_str_is_masked() -> None:
    assert str(IdNumber("11010519491231002X")) == "1101**********002X"
    assert f"{IdNumber('11010519491231002X')}" == "1101**********002X"


def test_id_number_repr_does_not_reveal_the_number() -> None:
    number = IdNumber("11010519491231002X")
    assert "19491231" not in repr(number)
    assert "19491231" not in repr([number])


def test_id_number_is_immutable() -> None:
    number = IdNumber("11010519491231002X")
    with pytest.raises(dataclasses.FrozenInstanceError):
        number.value = "360426199101010071"  # type: ignore[misc]


@given(id_numbers())
def test_generated_id_numbers_validate_and_round_trip(number: str) -> None:
    parsed = IdNumber(number.lower())
    assert parsed.value == number
    assert IdNumber(parsed.value) == parsed
    assert parsed.birth_date.strftime("%Y%m%d") == number[6:14]
    assert parsed.sex == ("M" if int(number[16]) % 2 else "F")


@given(id_numbers())
def test_generated_id_numbers_mask_correctly(number: str) -> None:
    masked = IdNumber(number).masked()
    assert len(masked) == 18
    assert masked == number[:4] + "*" * 10 + number[-4:]
    assert str(IdNumber(number)) == masked


@given(id_numbers(), st.integers(min_value=0, max_value=17), st.sampled_from("0123456789X"))
def test_any_single_character_change_is_rejected(number: str, position: int, char: str) -> None:
    if number[position] == char:
        char = "1" if char == "0" else "0"
    changed = number[:position] + char + number[position + 1 :]
    with pytest.raises(InvalidValue):
        IdNumber(changed)


# MobileNumber -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["13812345678", "+86 138 1234 5678", "8613812345678", "138-1234-5678"])
def test_mobile_number_strips_spaces_and_country_code(raw: str) -> None:
    assert MobileNumber(raw).value == "13812345678"


@pytest.mark.parametrize("raw", ["12812345678", "1381234567", "138123456789", "2381234567a", ""])
def test_mobile_number_refuses_non_mainland_mobiles(raw: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        MobileNumber(raw)
    assert error_of(excinfo) == ("mobile", "invalid_mobile")


def test_mobile_number_str_is_masked() -> None:
    number = MobileNumber("13812345678")
    assert number.masked() == "138****5678"
    assert str(number) == "138****5678"
    assert "12345678" not in repr(number)


# PersonName -------------------------------------------------------------------------------------


def test_person_name_is_trimmed() -> None:
    assert PersonName("  张三 ").value == "张三"


@pytest.mark.parametrize(
    "raw", ["张", "阿依古丽·买买提", "John Smith", "O'Brien", "Mary-Jane Watson", "䶮王", "𠈌明"]
)
def test_person_name_accepts_chinese_minority_and_foreign_names(raw: str) -> None:
    assert PersonName(raw).value == raw


def test_person_name_normalises_bullet_to_middle_dot() -> None:
    assert PersonName("阿依古丽•买买提").value == "阿依古丽·买买提"


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "张三3", "张\x00三", "张三John", "·张三", "张三·", "张··三", "张" * 31, "李@", "John  3"],
)
def test_person_name_refuses_invalid_names(raw: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        PersonName(raw)
    assert error_of(excinfo) == ("name", "invalid_name")


def test_person_name_allows_thirty_characters() -> None:
    assert len(PersonName("张" * 30).value) == 30


@pytest.mark.parametrize(
    ("raw", "surname"),
    [
        ("张三", "张"),
        ("欧阳修", "欧阳"),
        ("诸葛亮", "诸葛"),
        ("司马相如", "司马"),
        ("欧阳", "欧"),  # two characters: a single surname and a given name
        ("爱新觉罗·溥仪", "爱新觉罗"),
        ("阿依古丽·买买提", "阿依古丽"),
        ("SMITH JOHN", "SMITH"),
    ],
)
def test_person_name_surname_knows_compound_surnames(raw: str, surname: str) -> None:
    assert PersonName(raw).surname == surname


@pytest.mark.parametrize(
    ("raw", "masked"), [("张三", "张*"), ("张小三", "张**"), ("欧阳修", "欧**"), ("张", "*")]
)
def test_person_name_masked_keeps_first_character(raw: str, masked: str) -> None:
    assert PersonName(raw).masked() == masked


def test_person_name_str_is_masked() -> None:
    name = PersonName("张小三")
    assert str(name) == "张**"
    assert "小三" not in repr(name)


# Address ----------------------------------------------------------------------------------------


def test_address_collapses_whitespace() -> None:
    assert Address("  广东省广州市   天河区\t体育西路1号 ").value == "广东省广州市 天河区 体育西路1号"


@pytest.mark.parametrize("raw", ["天河区", "广东省广州市\x07天河区", "地" * 121])
def test_address_refuses_short_long_or_control_characters(raw: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        Address(raw)
    assert error_of(excinfo) == ("address", "invalid_address")


def test_address_masked_keeps_first_six_characters() -> None:
    address = Address("广东省广州市天河区体育西路1号")
    assert address.masked() == "广东省广州市****"
    assert str(address) == "广东省广州市****"
    assert "体育西路" not in repr(address)


# CertificateNumber ------------------------------------------------------------------------------


def test_certificate_number_is_one_letter_and_nine_digits() -> None:
    assert str(CertificateNumber("X320101001")) == "X320101001"
    assert CertificateNumber(" x320101001").value == "X320101001"


@pytest.mark.parametrize("raw", ["X32010100", "XX20101001", "3201010011", "X3201010012", ""])
def test_certificate_number_refuses_other_shapes(raw: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        CertificateNumber(raw)
    assert error_of(excinfo) == ("certificate_number", "invalid_certificate_number")


# EthnicGroup, Nationality -----------------------------------------------------------------------


def test_ethnic_groups_are_the_56_groups_plus_97_and_98() -> None:
    assert len(ETHNIC_GROUPS) == 58
    assert list(ETHNIC_GROUPS)[:56] == [f"{i:02d}" for i in range(1, 57)]
    assert ETHNIC_GROUPS["97"] == "其他"
    assert ETHNIC_GROUPS["98"] == "外国血统中国籍人士"
    assert all(name.endswith("族") for code, name in ETHNIC_GROUPS.items() if int(code) <= 56)


def test_ethnic_group_has_chinese_name() -> None:
    assert EthnicGroup("01").name == "汉族"
    assert EthnicGroup("46").name == "德昂族"


@pytest.mark.parametrize("code", ["00", "57", "96", "99", "1", "汉族", ""])
def test_ethnic_group_refuses_unknown_codes(code: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        EthnicGroup(code, field="mother.ethnicity")
    assert error_of(excinfo) == ("mother.ethnicity", "invalid_ethnicity")


def test_nationality_is_iso_alpha3() -> None:
    assert Nationality("chn").code == "CHN"
    assert Nationality("CHN").is_chinese
    assert not Nationality("USA").is_chinese
    assert not Nationality("HKG").is_chinese


@pytest.mark.parametrize("code", ["CN", "XXX", "中国", ""])
def test_nationality_refuses_unknown_codes(code: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        Nationality(code)
    assert error_of(excinfo) == ("nationality", "invalid_nationality")


# Sex, BirthData, Birthplace ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "sex"), [("M", "M"), ("f", "F"), ("男", "M"), ("女", "F"), ("1", "M"), ("2", "F")]
)
def test_parse_sex_accepts_codes_and_chinese(raw: str, sex: str) -> None:
    assert parse_sex(raw) == sex


@pytest.mark.parametrize("raw", ["", "X", "0", "9", "未知"])
def test_parse_sex_refuses_anything_else(raw: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        parse_sex(raw)
    assert error_of(excinfo) == ("sex", "invalid_sex")


def birth(**changes: object) -> BirthData:
    values: dict[str, object] = {
        "sex": "F",
        "born_at": datetime(2024, 3, 1, 8, 30, 45, 123, tzinfo=CST),
        "gestational_weeks": 39,
        "weight_g": 3300,
        "length_cm": 50,
    }
    values.update(changes)
    return BirthData(**values)  # type: ignore[arg-type]


def test_birth_data_keeps_birth_time_to_the_minute() -> None:
    assert birth().born_at == datetime(2024, 3, 1, 8, 30, tzinfo=CST)


def test_birth_data_refuses_naive_birth_time() -> None:
    with pytest.raises(InvalidValue) as excinfo:
        birth(born_at=datetime(2024, 3, 1, 8, 30))
    assert error_of(excinfo) == ("delivery.born_at", "invalid_birth_time")


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"gestational_weeks": 19}, "delivery.gestational_weeks", "implausible_gestational_weeks"),
        ({"gestational_weeks": 46}, "delivery.gestational_weeks", "implausible_gestational_weeks"),
        ({"gestational_weeks": True}, "delivery.gestational_weeks", "implausible_gestational_weeks"),
        ({"weight_g": 299}, "delivery.weight_g", "implausible_weight"),
        ({"weight_g": 7001}, "delivery.weight_g", "implausible_weight"),
        ({"weight_g": 3300.5}, "delivery.weight_g", "implausible_weight"),
        ({"length_cm": 19.9}, "delivery.length_cm", "implausible_length"),
        ({"length_cm": 66}, "delivery.length_cm", "implausible_length"),
        ({"length_cm": float("nan")}, "delivery.length_cm", "implausible_length"),
        ({"sex": "X"}, "delivery.sex", "invalid_sex"),
    ],
)
def test_birth_data_refuses_implausible_values(changes: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        birth(**changes)
    assert error_of(excinfo) == (field, code)


def test_birth_data_accepts_bounds_and_fractional_length() -> None:
    data = birth(gestational_weeks=20, weight_g=7000, length_cm=50.5, sex="男")
    assert (data.gestational_weeks, data.weight_g, data.length_cm, data.sex) == (20, 7000, 50.5, "M")


def test_birthplace_accepts_chinese_place_names() -> None:
    place = Birthplace(" 广东省", "广州市", "天河区")
    assert (place.province, place.city, place.county) == ("广东省", "广州市", "天河区")


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        (("广", "广州市", "天河区"), "birthplace.province"),
        (("广东省", "Guangzhou", "天河区"), "birthplace.city"),
    ],
)
def test_birthplace_refuses_non_chinese_or_short_names(parts: tuple[str, str, str], field: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        Birthplace(*parts)
    assert error_of(excinfo) == (field, "invalid_birthplace")


# Residency, Actor -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "residency"),
    [("mainland", "mainland"), ("HK_MACAO", "hk_macao"), ("台湾", "taiwan"), ("华侨", "overseas_chinese")],
)
def test_parse_residency_accepts_codes_and_chinese_labels(raw: str, residency: str) -> None:
    assert parse_residency(raw) == residency


def test_parse_residency_refuses_unknown() -> None:
    with pytest.raises(InvalidValue) as excinfo:
        parse_residency("mars")
    assert error_of(excinfo) == ("residency", "invalid_residency")


def test_actor_round_trips_through_dict() -> None:
    actor = Actor("u-1", "issuer", institution="inst-9", name="王医生")
    assert Actor.from_dict(actor.to_dict()) == actor
    assert Actor.from_dict({**Actor("p-1", "parent").to_dict(), "future": 1}) == Actor("p-1", "parent")


@pytest.mark.parametrize("role", ["hospital", "issuer"])
def test_actor_institution_required_for_hospital_and_issuer(role: str) -> None:
    with pytest.raises(InvalidValue) as excinfo:
        Actor("u-1", role)  # type: ignore[arg-type]
    assert error_of(excinfo) == ("actor.institution", "institution_required")


def test_actor_refuses_unknown_role_and_empty_id() -> None:
    with pytest.raises(InvalidValue, match="角色"):
        Actor("u-1", "king")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        Actor(" ", "parent")
