"""The departments' signature (backend/departments.py, decision 0046): the exact body, the key id, fresh."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.departments import DepartmentKey, department_keys, signature, verify
from backend.ems import InvalidSignature
from domain.bundle import SERVICE_CODES, handoff_fields, handoffs

KEY = DepartmentKey("police", "http://127.0.0.1:1/departments/police", "k1", b"a-secret-of-some-length")
bodies = st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=4).map(orjson.dumps)


@given(bodies)
def test_a_signed_body_checks_out(body: bytes) -> None:
    assert verify(body, signature(body, KEY.secret, KEY.key_id), KEY) is not None


@given(bodies, st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=255))
def test_any_change_of_a_byte_breaks_the_signature(body: bytes, index: int, flip: int) -> None:
    header = signature(body, KEY.secret, KEY.key_id)
    changed = bytearray(body)
    changed[index % len(changed)] ^= flip  # a JSON object: never empty
    with pytest.raises(InvalidSignature):
        verify(bytes(changed), header, KEY)


def test_another_key_an_unknown_key_id_and_a_stale_signature_are_refused() -> None:
    body = b'{"message_id":"m"}'
    with pytest.raises(InvalidSignature):
        verify(body, signature(body, b"another-secret-entirely", KEY.key_id), KEY)
    with pytest.raises(InvalidSignature):
        verify(body, signature(body, KEY.secret, "k2"), KEY)
    with pytest.raises(InvalidSignature):
        verify(body, signature(body, KEY.secret, KEY.key_id, at=int(time.time()) - 3600), KEY)
    with pytest.raises(InvalidSignature):
        verify(body, signature(body, KEY.secret, KEY.key_id), None)  # a department with no key


def test_a_department_url_without_a_proper_secret_does_not_start() -> None:
    with pytest.raises(ValueError, match="SECRET"):
        department_keys(
            {"DEPARTMENT_POLICE_URL": "https://police.example", "DEPARTMENT_POLICE_SECRET": "short"}
        )
    assert department_keys({}) == {}


def test_each_department_gets_only_its_fields() -> None:
    table2 = {code: "x" for h in handoffs().values() for code in h.fields} | {"card_bank": "102"}
    police = handoff_fields(handoffs()["household_registration"], table2)
    insurance = handoff_fields(handoffs()["resident_medical_insurance"], table2)
    assert "card_bank" not in police and "card_bank" not in insurance
    assert "settle_with" in police and "settle_with" not in insurance
    assert "insurance_area" in insurance and "insurance_area" not in police


def test_the_vaccination_and_the_card_get_neither_the_bank_nor_the_hukou_respectively() -> None:
    table2 = {code: "x" for h in handoffs().values() for code in h.fields}
    vaccination = handoff_fields(handoffs()["vaccination_certificate"], table2)
    card = handoff_fields(handoffs()["social_security_card"], table2)
    assert {"newborn_born_on", "mother_name", "contact_phone"} <= set(vaccination)
    assert not set(vaccination) & {"card_bank", "hukou_address", "father_id_number", "insurance_area"}
    assert {"card_bank", "card_by_agent", "card_pickup_city", "card_pickup_place"} <= set(card)
    assert not set(card) & {"hukou_address", "settle_with", "father_id_number", "insurance_area"}


def test_every_service_but_the_certificate_has_a_department_and_its_results_are_declared() -> None:
    assert sorted(handoffs()) == sorted(SERVICE_CODES[1:])
    for handoff in handoffs().values():
        assert set(handoff.personal_result_fields) | set(handoff.result_one_of) <= set(handoff.result_fields)
    assert handoffs()["social_security_card"].result_one_of == ("pickup_place", "parcel_number")
