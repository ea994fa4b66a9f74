"""A manager's scope (decision 0043): what it may name, how the account and the token carry it."""

from __future__ import annotations

from uuid import uuid4

import pytest

from backend.auth import TokenIssuer, TokenKeys
from domain.errors import InvalidValue
from domain.staff import InstitutionRecord, StaffAccount
from domain.statistics import Scope, field_group
from domain.values import Actor

SYSTEM = Actor(id="test", role="system")
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


@pytest.mark.parametrize(
    ("text", "kind", "code"),
    [
        ("institution:gzfy01", "institution", "GZFY01"),
        (" district:440104 ", "district", "440104"),
        ("province:he", "province", "HE"),
    ],
)
def test_a_scope_names_an_institution_a_district_or_a_province(text: str, kind: str, code: str) -> None:
    scope = Scope.parse(text)
    assert (scope.kind, scope.code) == (kind, code)
    assert Scope.parse(str(scope)) == scope


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("county:440104", "invalid_scope"),
        ("district:44010", "invalid_district"),
        ("district:999999", "invalid_district"),  # never named a county
        ("province:XX", "unknown_province"),
        ("institution:无", "invalid_scope"),
        ("", "invalid_scope"),
    ],
)
def test_anything_else_is_refused_with_a_code(text: str, code: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        Scope.parse(text)
    assert refused.value.code == code


def test_a_manager_account_has_a_scope_and_no_other_account_does() -> None:
    account = StaffAccount.create(
        id=uuid4(),
        actor=SYSTEM,
        username="mgr1",
        role="manager",
        institution=None,
        display_name="孙统计",
        password_hash=HASH,
        scope=Scope.parse("district:440104"),
    )
    assert account.as_actor().scope == "district:440104"
    assert [type(e).__name__ for e in account.collect_events()] == [
        "StaffAccountCreated",
        "ManagerScopeAssigned",
    ]
    for role, scope in (("manager", None), ("auditor", Scope.parse("province:GD"))):
        with pytest.raises(InvalidValue) as refused:
            StaffAccount.create(
                id=uuid4(),
                actor=SYSTEM,
                username="x" + role,
                role=role,
                institution=None,
                display_name="某",
                password_hash=HASH,
                scope=scope,
            )
        assert refused.value.code == "scope_required"


def test_an_institutions_district_lies_in_its_province() -> None:
    record = InstitutionRecord.register(
        id=uuid4(), actor=SYSTEM, code="SJZ01", name="石家庄市妇产医院", province="HE"
    )
    with pytest.raises(InvalidValue) as refused:
        record.set_district(SYSTEM, "440104")
    assert refused.value.code == "district_outside_province"
    record.set_district(SYSTEM, "130102")
    record.set_district(SYSTEM, "130102")  # the same again records nothing
    assert record.district == "130102"
    assert len(record.collect_events()) == 2


def test_the_token_carries_the_scope_and_other_actors_keep_their_recorded_shape() -> None:
    issuer = TokenIssuer(TokenKeys.generate(), issuer="birthcert", audience="birthcert-api")
    token, _ = issuer.issue(Actor(id="mgr1", role="manager", name="孙统计", scope="province:GD"))
    assert issuer.verify(token).scope == "province:GD"
    assert Actor(id="i", role="issuer", institution="GZFY01").to_dict() == {
        "id": "i",
        "role": "issuer",
        "institution": "GZFY01",
        "name": None,
    }


def test_every_fixable_field_has_a_group() -> None:
    assert field_group("documents.father_handheld_id") == "documents"
    assert field_group("newborn_name") == "delivery_newborn"
    assert field_group("delivery_method") == "signature_delivery"
