"""出生一件事's materials of 表1 (issue 12; docs/decisions/0047): which the province asks for, with which service and
when; uploaded like ID photos, before signing, only by a mother whose opt-in asks for them; handed to that
service's department only."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.application import FIXABLE_FIELDS, BundleMaterialsMissing, NotReady
from domain.bundle import CERTIFICATE, MATERIAL_KINDS, BundleOffer
from domain.errors import InvalidValue, RuleViolated
from tests.builders import refused, sha
from tests.unit.test_birth_bundle import ALL, FIELDS, OFFER, _app, _details, _hebei_walk, _opt_in

HUKOU_PAGES = ["hukou_first_page", "hukou_head_page"]
POLICE_MATERIALS = [*HUKOU_PAGES, "marriage_certificate"]
NOT_HUKOU = [s for s in ALL if s not in (CERTIFICATE, "household_registration")]


def _ready(services: list[str] = ALL) -> Any:
    walk = _hebei_walk()
    _details(walk)
    walk.verify("father")
    walk.upload_all()
    _chosen(walk, services)
    return walk


def _chosen(walk: Any, services: list[str]) -> None:
    """Opt in to ``services`` (the certificate always among them) with only the fields they need."""
    services = [s for s in ALL if s in services or s == CERTIFICATE]
    wanted = {f.code for f in OFFER.fields_for(services)}
    walk.app.request_bundle(
        walk.parent,
        walk.id,
        services=services,
        values={k: v for k, v in FIELDS.items() if k in wanted},
        parents_married=True,
    )


def test_hebei_asks_the_hukou_pages_and_the_marriage_certificate_with_the_hukou_registration() -> None:
    assert [(m.code, m.label, m.service, m.when) for m in OFFER.materials] == [
        ("hukou_first_page", "落户方户口簿首页", "household_registration", None),
        ("hukou_head_page", "落户方户口簿户主页", "household_registration", None),
        ("marriage_certificate", "结婚证", "household_registration", "parents_married"),
    ]
    # The 结婚证 only when she states the parents are married (Hebei's bundle requires it anyway).
    assert [m.code for m in OFFER.materials_for(ALL, parents_married=False)] == HUKOU_PAGES
    assert OFFER.materials_for(NOT_HUKOU, parents_married=True) == []
    # The issuer may send each back, like an ID photo.
    assert {f"documents.{k}" for k in MATERIAL_KINDS} <= set(FIXABLE_FIELDS)


@pytest.mark.parametrize(
    ("material", "key"),
    [
        ({"code": "birth_photo", "service": "household_registration", "when": None}, "materials.code"),
        ({"code": "hukou_first_page", "service": CERTIFICATE, "when": None}, "materials.service"),
        (
            {"code": "hukou_first_page", "service": "household_registration", "when": "always"},
            "materials.when",
        ),
    ],
)
def test_a_malformed_material_fails_the_profile(material: dict[str, Any], key: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        BundleOffer.from_dict({**OFFER.to_dict(), "materials": [material]})
    assert key in caught.value.message


def test_a_snapshot_from_before_materials_asks_for_none() -> None:
    data = OFFER.to_dict()
    data.pop("materials")
    assert BundleOffer.from_dict(data).materials == ()


def test_with_the_hukou_registration_she_uploads_the_materials_before_signing() -> None:
    walk = _ready()
    assert _app(walk).missing_bundle_materials() == POLICE_MATERIALS
    assert "bundle_materials_uploaded" in _app(walk).missing_for_submission()
    with refused(walk.app, BundleMaterialsMissing, "bundle_materials_missing"):
        walk.sign()
    with pytest.raises(BundleMaterialsMissing) as caught:
        walk.sign()
    assert (
        caught.value.message == "请先上传一件事一次办所需材料：落户方户口簿首页、落户方户口簿户主页、结婚证"
    )
    assert [e.field for e in caught.value.errors] == [f"documents.{k}" for k in POLICE_MATERIALS]
    assert isinstance(caught.value, NotReady) and caught.value.missing == ["bundle_materials_uploaded"]
    assert walk.upload_materials() == POLICE_MATERIALS
    walk.sign()
    walk.choose_pickup()
    walk.submit()
    # Only the police's hand-off carries them (PIPL minimum): nobody else's.
    app = _app(walk)
    assert [m["kind"] for m in app.bundle_materials_for("household_registration")] == POLICE_MATERIALS
    assert app.bundle_materials_for("household_registration")[0]["sha256"] == sha("hukou_first_page")
    assert all(app.bundle_materials_for(s) == [] for s in NOT_HUKOU)


def test_without_the_hukou_registration_nothing_is_asked_and_a_material_is_refused() -> None:
    walk = _ready(services=NOT_HUKOU)
    assert _app(walk).bundle_materials_required() == []
    with refused(walk.app, RuleViolated, "material_not_needed"):
        walk.upload("hukou_first_page")
    walk.sign()  # nothing more to upload
    assert "bundle_materials_uploaded" not in _app(walk).missing_for_submission()


def test_a_mother_who_did_not_opt_in_is_never_asked() -> None:
    walk = _hebei_walk()
    _details(walk)
    walk.verify("father")
    walk.upload_all()
    with refused(walk.app, RuleViolated, "material_not_needed"):
        walk.upload("marriage_certificate")
    walk.sign()
    walk.choose_pickup()
    walk.submit()


def test_withdrawing_the_bundle_leaves_the_materials_unused() -> None:
    walk = _ready()
    walk.upload_materials()
    walk.app.withdraw_bundle(walk.parent, walk.id)
    app = _app(walk)
    assert app.bundle_materials_required() == [] and app.bundle_materials_for("household_registration") == []
    walk.sign()  # not asked, not sent, not shown to the issuer (backend.routes.staff)
    # Opting in again: what she uploaded counts, never asked twice.
    _opt_in(walk)
    assert _app(walk).missing_bundle_materials() == []


@settings(max_examples=15, deadline=None)
@given(
    chosen=st.sets(st.sampled_from([s for s in ALL if s != CERTIFICATE]), min_size=1),
    material=st.sampled_from(list(MATERIAL_KINDS)),
)
def test_a_material_is_taken_exactly_when_a_chosen_service_needs_it(chosen: set[str], material: str) -> None:
    walk = _ready(sorted(chosen))
    needed = {m.code for m in OFFER.materials_for(chosen, parents_married=True)}
    if material in needed:
        walk.upload(material)
        assert material not in _app(walk).missing_bundle_materials()
    else:
        with refused(walk.app, RuleViolated, "material_not_needed"):
            walk.upload(material)
    walk.upload_materials()
    walk.sign()
