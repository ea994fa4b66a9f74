"""A parent's identity document: resident IDs, Hong Kong/Macao/Taiwan residence permits and travel permits.

The residence permit's number is an 18-character 公民身份号码 (GB 11643: ISO 7064 MOD 11-2 check character, a
real birth date) whose address code is 810000 (Hong Kong), 820000 (Macao) or 830000 (Taiwan); the travel
permits are H/M and 8 digits (2 more on the older HK/Macao cards) and 8 digits (Taiwan). Properties over
generated numbers, then the counter details an institution publishes.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric

from domain.errors import InvalidValue
from domain.values import (
    ID_TYPE_LABELS,
    CounterDetails,
    IdDocument,
    IdNumber,
    as_id_document,
    id_type_of,
    mask_id_number,
    parse_id_type,
)
from tests.builders import FATHER_ID, MOTHER_ID, make_id_number

PERMIT_REGIONS = {
    "810000": ("hk_macao_residence_permit", "hk_macao"),
    "820000": ("hk_macao_residence_permit", "hk_macao"),
    "830000": ("taiwan_residence_permit", "taiwan"),
}

birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2012, 12, 31))
sequences = st.integers(min_value=0, max_value=999).map(lambda n: f"{n:03d}")


@st.composite
def residence_permits(draw: st.DrawFn) -> tuple[str, str, date]:
    region = draw(st.sampled_from(sorted(PERMIT_REGIONS)))
    born = draw(birth_dates)
    return make_id_number(region, born.strftime("%Y%m%d"), draw(sequences)), region, born


@given(residence_permits())
def test_a_residence_permit_is_told_by_its_prefix_and_keeps_its_birth_date(
    permit: tuple[str, str, date],
) -> None:
    number, region, born = permit
    document = IdDocument(number)
    kind, residency = PERMIT_REGIONS[region]
    assert (document.value, document.id_type, document.residency, document.birth_date) == (
        number,
        kind,
        residency,
        born,
    )
    assert IdDocument(number, kind) == document  # named, the same document
    assert document.sex == ("M" if int(number[16]) % 2 else "F")
    assert id_type_of(number) == kind
    # Printed masked, like a resident ID number: the birth date and sequence never show.
    assert document.masked() == number[:4] + "*" * 10 + number[-4:]
    assert number not in repr(document) and number not in str(document)


@given(residence_permits(), st.sampled_from("0123456789X"))
def test_a_wrong_check_character_is_refused(permit: tuple[str, str, date], wrong: str) -> None:
    number = permit[0]
    if wrong == number[-1]:
        return
    with pytest.raises(InvalidValue) as refused:
        IdDocument(number[:-1] + wrong)
    assert refused.value.code == "invalid_id_number"


@given(residence_permits())
def test_python_stdnum_computes_the_same_check_character(permit: tuple[str, str, date]) -> None:
    number = permit[0]
    assert ric.calc_check_digit(number) == number[-1]


@given(residence_permits())
def test_the_other_kind_of_residence_permit_is_a_mismatch_and_a_resident_id_refuses_it(
    permit: tuple[str, str, date],
) -> None:
    number, region, _ = permit
    other = "taiwan_residence_permit" if region != "830000" else "hk_macao_residence_permit"
    with pytest.raises(InvalidValue) as mismatch:
        IdDocument(number, other)
    assert mismatch.value.code == "id_type_mismatch"
    with pytest.raises(InvalidValue, match="居住证"):
        IdDocument(number, "resident_id")
    with pytest.raises(InvalidValue, match="居住证"):
        IdNumber(number)


@pytest.mark.parametrize("region", ["811000", "810100", "820001", "831000", "840000"])
def test_only_the_three_permit_address_codes_are_residence_permits(region: str) -> None:
    number = make_id_number(region, "19900101", "011")
    with pytest.raises(InvalidValue) as refused:
        IdDocument(number)
    assert "810000" in refused.value.message or refused.value.code == "invalid_id_number"


def test_a_residence_permit_with_a_date_that_does_not_exist_is_refused() -> None:
    with pytest.raises(InvalidValue, match="出生日期不存在"):
        IdDocument(make_id_number("810000", "19900230", "011"))


@given(
    st.sampled_from("HMhm"),
    st.integers(min_value=0, max_value=99_999_999),
    st.none() | st.integers(min_value=0, max_value=99),
)
def test_hk_macao_travel_permits(letter: str, lifelong: int, renewals: int | None) -> None:
    number = f"{letter}{lifelong:08d}" + ("" if renewals is None else f"{renewals:02d}")
    document = IdDocument(number)
    assert (document.value, document.id_type, document.residency) == (
        number.upper(),
        "hk_macao_permit",
        "hk_macao",
    )
    assert (document.birth_date, document.sex) == (None, None)
    assert document.masked() == number[0].upper() + "*" * (len(number) - 3) + number[-2:]
    with pytest.raises(InvalidValue, match="出生日期"):
        document.age_on(date(2026, 1, 1))
    assert document.age_on(date(2026, 1, 1), date(1990, 6, 1)) == 35


@pytest.mark.parametrize("number", ["H1234567", "H123456789", "X12345678", "H12345678901", "H1234567A"])
def test_malformed_hk_macao_travel_permits_are_refused(number: str) -> None:
    with pytest.raises(InvalidValue):
        IdDocument(number, "hk_macao_permit")


@given(st.integers(min_value=0, max_value=99_999_999))
def test_taiwan_travel_permits_are_eight_digits_and_must_be_named(lifelong: int) -> None:
    number = f"{lifelong:08d}"
    document = IdDocument(number, "taiwan_permit")
    assert (document.value, document.residency, document.label) == (
        number,
        "taiwan",
        "台湾居民来往大陆通行证",
    )
    with pytest.raises(InvalidValue):
        IdDocument(number)  # eight plain digits are no resident ID: the kind must be said


@pytest.mark.parametrize("number", ["1234567", "123456789", "T1234567"])
def test_malformed_taiwan_travel_permits_are_refused(number: str) -> None:
    with pytest.raises(InvalidValue):
        IdDocument(number, "taiwan_permit")


def test_a_resident_id_is_checked_as_before_and_normalised() -> None:
    assert (
        IdDocument(MOTHER_ID) == IdDocument(MOTHER_ID, "resident_id") == as_id_document(IdNumber(MOTHER_ID))
    )
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in FATHER_ID)
    assert IdDocument(f" {full_width} ").value == FATHER_ID
    with pytest.raises(InvalidValue):
        IdDocument(MOTHER_ID[:-1] + ("0" if MOTHER_ID[-1] != "0" else "1"))


def test_an_unknown_kind_is_refused_with_the_kinds_there_are() -> None:
    with pytest.raises(InvalidValue) as refused:
        parse_id_type("passport")
    assert refused.value.code == "invalid_id_type"
    assert all(label in refused.value.message for label in ID_TYPE_LABELS.values())
    assert parse_id_type(" HK_MACAO_PERMIT ") == "hk_macao_permit"


def test_masking_any_number() -> None:
    assert mask_id_number("H12345678") == "H******78"
    assert mask_id_number("12345678") == "1*****78"
    assert mask_id_number(MOTHER_ID) == MOTHER_ID[:4] + "*" * 10 + MOTHER_ID[-4:]


def test_counter_details_are_checked_and_tidied() -> None:
    counter = CounterDetails(
        "  广州市越秀区演示路1号  门诊楼二楼 ", "020-12345678、020 8765 4321", "周一至周五 8:00-12:00"
    )
    assert counter.to_dict() == {
        "address": "广州市越秀区演示路1号 门诊楼二楼",
        "phone": "020-12345678、020 8765 4321",
        "hours": "周一至周五 8:00-12:00",
    }
    for address, phone, hours, code in [
        ("短", "020-12345678", "周一至周五", "invalid_address"),
        ("广州市越秀区演示路1号", "电话", "周一至周五", "invalid_phone"),
        ("广州市越秀区演示路1号", "1234", "周一至周五", "invalid_phone"),
        ("广州市越秀区演示路1号", "020-12345678", "周一", "invalid_hours"),
        ("广州市越秀区演示路1号", "020-12345678", "周一至周五\u202e8:00", "invalid_hours"),
    ]:
        with pytest.raises(InvalidValue) as refused:
            CounterDetails(address, phone, hours)
        assert refused.value.code == code
