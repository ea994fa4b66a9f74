"""The police's registration into the e-licence's record, as the aggregate rules it (decision 0048).

The e-licence in force is amended once, to the next version of the same licence, only after the police registered
the newborn in a province that wants it, never for a certificate declared void; a citizen ID number of another birth
date or sex never reaches the record. The offer's flag is data, checked when the profile loads.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.application import BirthCertificateApplication
from domain.bundle import BundleOffer
from domain.elicense import ALPHABET, LicenceId
from domain.errors import InvalidValue, RuleViolated
from domain.values import Actor
from tests.builders import SYSTEM, make_id_number, refused
from tests.unit.test_birth_bundle import OFFER, _details, _hebei_walk, _opt_in

POLICE = Actor(id="department:police", role="system")
MESSAGE = "police-message-1"
V1 = str(LicenceId("C0134", "SJZFY01", "A" * 20))
V2 = str(LicenceId("C0134", "SJZFY01", "A" * 20, "002"))
REGISTRATION = {
    "registered_name": "赵小雨",
    "citizen_id_number": make_id_number("130102", "20261118", "028"),  # born 2026-11-18, a girl
    "household_place": "河北省石家庄市长安区青园街道",
}


def _issued() -> Any:
    walk = _hebei_walk()
    _details(walk)
    walk.verify("father")
    _opt_in(walk)
    walk.upload_all()
    walk.upload_materials()
    walk.sign()
    walk.choose_pickup()
    walk.submit()
    walk.issue("R130100001")
    _elicense(walk, V1)
    walk.app.record_bundle_service(
        POLICE,
        walk.id,
        service="household_registration",
        department="police",
        state="sent",
        message_id=MESSAGE,
    )
    return walk


def _elicense(walk: Any, licence: str, amends: str | None = None, index: int = 1) -> Any:
    return walk.app.issue_elicense(
        SYSTEM,
        walk.id,
        licence_id=licence,
        certificate_number="R130100001",
        key_id="key-00000001",
        status_list="1",
        status_index=index,
        amends=amends,
    )


def _registered(walk: Any, result: dict[str, str] | None = None, result_id: str = "r1") -> Any:
    return walk.app.record_bundle_service(
        POLICE,
        walk.id,
        service="household_registration",
        department="police",
        state="done",
        message_id=MESSAGE,
        result_id=result_id,
        result=result or REGISTRATION,
    )


def _app(walk: Any) -> BirthCertificateApplication:
    app: BirthCertificateApplication = walk.app.get_application(walk.issuer, walk.id)
    return app


def test_the_licence_in_force_is_amended_once_after_the_registration() -> None:
    walk = _issued()
    with refused(walk.app, RuleViolated, "registration_missing"):
        _elicense(walk, V2, amends=V1, index=2)  # nothing registered yet
    _registered(walk)
    assert _app(walk).bundle_registration() == REGISTRATION
    with refused(walk.app, RuleViolated, "elicense_not_current"):
        _elicense(walk, V2, amends=str(LicenceId("C0134", "SJZFY01", "B" * 20)), index=2)
    _elicense(walk, V2, amends=V1, index=2)
    app = _app(walk)
    assert app.elicense_for("R130100001") == {
        "licence_id": V2,
        "certificate_number": "R130100001",
        "key_id": "key-00000001",
        "at": app.elicenses[-1]["at"],
        "version": app.version,
        "amends": V1,
    }
    assert app.elicense_state() == "issued" and app.licence_id == V2
    with refused(walk.app, RuleViolated, "already_issued"):
        _elicense(walk, V2, amends=V1, index=3)  # the same amendment again
    with refused(walk.app, RuleViolated, "elicense_not_current"):
        _elicense(walk, str(LicenceId.parse(V2).next_version()), amends=V1, index=3)  # 001 is not in force
    with refused(walk.app, RuleViolated, "already_issued"):
        _elicense(walk, V1, index=4)  # nor a second first version
    events = list(walk.app.events.get(walk.id))
    assert sum(isinstance(e, BirthCertificateApplication.ELicenseAmended) for e in events) == 1


def test_a_certificate_declared_void_is_never_amended() -> None:
    walk = _issued()
    _registered(walk)
    walk.app.revoke_certificate(walk.issuer, walk.id, reason="issued_in_error", note="经复核，该证件不应签发")
    with refused(walk.app, RuleViolated, "certificate_revoked"):
        _elicense(walk, V2, amends=V1, index=2)


@pytest.mark.parametrize(
    "number",
    [
        make_id_number("130102", "20261117", "028"),  # the day before her birth
        make_id_number("130102", "20261118", "017"),  # a boy's number
    ],
)
def test_a_citizen_id_number_of_another_child_is_refused_and_records_nothing(number: str) -> None:
    walk = _issued()
    before = _app(walk).version
    with refused(walk.app, InvalidValue, "citizen_id_mismatch"):
        _registered(walk, REGISTRATION | {"citizen_id_number": number})
    assert _app(walk).version == before and _app(walk).bundle_registration() is None


def test_the_flag_is_data_checked_when_the_profile_loads() -> None:
    base = OFFER.to_dict()
    assert base["elicense_registration"] is True  # Hebei: the notice's 二(四) sharing
    assert BundleOffer.from_dict({**base, "elicense_registration": False}).elicense_registration is False
    before = {k: v for k, v in base.items() if k != "elicense_registration"}
    assert BundleOffer.from_dict(before).elicense_registration is False  # snapshots from before 0048
    for broken in (
        {**base, "elicense_registration": "yes"},
        {
            **base,
            "services": [s for s in base["services"] if s["code"] != "household_registration"],
            "conditions": [c for c in base["conditions"] if c["service"] != "household_registration"],
            "fields": [f for f in base["fields"] if f["service"] != "household_registration"],
            "materials": [],
        },
    ):
        with pytest.raises(InvalidValue) as caught:
            BundleOffer.from_dict(broken)
        assert "elicense_registration" in caught.value.errors[0].message
        assert (
            BundleOffer.from_dict({**broken, "elicense_registration": False}).elicense_registration is False
        )


@given(sequence=st.text(ALPHABET, min_size=1, max_size=20), version=st.integers(1, 998))
def test_the_next_version_is_the_same_licence_with_its_check_recomputed(sequence: str, version: int) -> None:
    licence = LicenceId("C0134", "SJZFY01", sequence, f"{version:03d}")
    following = LicenceId.parse(str(licence.next_version()))
    assert (following.type_code, following.issuer_code, following.sequence) == ("C0134", "SJZFY01", sequence)
    assert int(following.version) == version + 1
