"""出生一件事's materials of 表1 over real HTTP (issue 12; docs/decisions/0047): a Hebei mother who opts in to the
户口 registration uploads the 落户方户口簿 pages and the 结婚证 before she signs; after the issue the police's message
lists them by reference and the fake police fetch each with a request signed by their key and check its sha256;
no other department can fetch them; the issuer sees them and may send one back; a mother who did not opt in is
never asked. Every answer of ours the mini-program reads is checked against the OpenAPI document."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from miniprogram_stub.client import MiniProgram, id_photo
from miniprogram_stub.people import hebei_family
from tests.builders import HEBEI_BUNDLE_FIELDS
from tests.e2e.conftest import Stack
from tests.e2e.test_birth_bundle_http import ALL, _problem, hebei_details_given
from tests.e2e.test_bundle_handoff_http import (
    DEPARTMENTS,
    answer,
    fake,
    hebei_issuer,
    issued_with_bundle,
    police_result,
    service_state,
    taken,
)

pytestmark = pytest.mark.e2e

POLICE_MATERIALS = ["hukou_first_page", "hukou_head_page", "marriage_certificate"]
LABELS = {
    "hukou_first_page": "落户方户口簿首页",
    "hukou_head_page": "落户方户口簿户主页",
    "marriage_certificate": "结婚证",
}


async def _signable(stack: Stack, family_no: int, services: list[str] = ALL) -> MiniProgram:
    """A Hebei mother with everything done before the signature but the bundle's materials."""
    mp = await hebei_details_given(stack, hebei_family(family_no))
    await mp.verify_face("father")
    await mp.upload_all()
    wanted = {
        k: v
        for k, v in HEBEI_BUNDLE_FIELDS.items()
        if "household_registration" in services or k == "contact_phone"
    }
    await mp.opt_in_bundle(services, wanted)
    return mp


def _materials(bundle: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    return {m["code"]: (m["needed"], m["uploaded"]) for m in bundle["materials"]}


async def test_opting_in_to_the_hukou_registration_asks_the_materials_before_signing(stack: Stack) -> None:
    mp = await _signable(stack, 41)
    assert _materials(await mp.bundle()) == dict.fromkeys(POLICE_MATERIALS, (True, False))
    step = next(s for s in (await mp.status())["next_steps"] if s["code"] == "bundle_materials_uploaded")
    assert step["label"] == "上传一件事一次办材料：落户方户口簿首页、落户方户口簿户主页、结婚证"

    problem = await _problem(mp.sign())
    assert (problem["status"], problem["code"]) == (409, "bundle_materials_missing")
    assert problem["detail"] == "请先上传一件事一次办所需材料：落户方户口簿首页、落户方户口簿户主页、结婚证"
    assert [e["field"] for e in problem["errors"]] == [f"documents.{k}" for k in POLICE_MATERIALS]
    assert problem["missing"] == ["bundle_materials_uploaded"]

    await mp.upload("hukou_first_page")
    assert _materials(await mp.bundle())["hukou_first_page"] == (True, True)
    problem = await _problem(mp.sign())
    assert problem["detail"] == "请先上传一件事一次办所需材料：落户方户口簿户主页、结婚证"
    assert await mp.upload_materials() == ["hukou_head_page", "marriage_certificate"]
    await mp.sign()
    assert "bundle_materials_uploaded" not in {s["code"] for s in (await mp.status())["next_steps"]}


async def test_a_mother_who_did_not_opt_in_is_never_asked(stack: Stack) -> None:
    mp = await hebei_details_given(stack, hebei_family(42))
    await mp.verify_face("father")
    await mp.upload_all()
    assert _materials(await mp.bundle()) == dict.fromkeys(POLICE_MATERIALS, (False, False))
    problem = await _problem(mp.upload("hukou_first_page"))
    assert (problem["status"], problem["code"]) == (409, "material_not_needed")
    assert "无需上传" in problem["detail"]
    status = await mp.status()
    assert "bundle_materials_uploaded" not in {s["code"] for s in status["next_steps"] + status["done_steps"]}
    await mp.sign()
    # Opting in to services that need no material asks for none either.
    await mp.opt_in_bundle(["birth_certificate", "vaccination_certificate"], {"contact_phone": "13912345678"})
    assert _materials(await mp.bundle()) == dict.fromkeys(POLICE_MATERIALS, (False, False))
    await mp.sign()
    await mp.choose_pickup()
    await mp.submit()


async def test_the_police_fetch_the_materials_and_no_other_department_can(stack: Stack) -> None:
    family = hebei_family(43)
    mp, issuer = await issued_with_bundle(stack, family, "R130100043")
    police = (await taken(stack, "police"))[0]["message"]
    listed = police["materials"]
    assert [m["kind"] for m in listed] == POLICE_MATERIALS
    assert [m["label"] for m in listed] == [LABELS[k] for k in POLICE_MATERIALS]
    mid = police["message_id"]
    assert all(
        m["url"].endswith(f"/api/v1/departments/police/materials/{mid}/{m['kind']}")
        and m["content_type"] == "image/jpeg"
        for m in listed
    )
    # PIPL minimum: nobody else's message carries them.
    for department in DEPARTMENTS:
        if department != "police":
            assert "materials" not in (await taken(stack, department))[0]["message"]

    # The police fetch each, signed with their key, and the bytes are those the message names.
    fetched = await fake(stack, "POST", "police/fetch-materials", {"message_id": mid})
    assert [(f["kind"], f["status"], f["matches"]) for f in fetched["materials"]] == [
        (k, 200, True) for k in POLICE_MATERIALS
    ]
    # The same as the issuer sees under the same sha256.
    review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    shown = {d["kind"]: d for d in review["documents"]}
    assert {k: shown[k]["sha256"] for k in POLICE_MATERIALS} == {m["kind"]: m["sha256"] for m in listed}
    async with issuer.session.get(
        stack.api + shown["marriage_certificate"]["url"], headers={"Authorization": f"Bearer {issuer.token}"}
    ) as response:
        assert hashlib.sha256(await response.read()).hexdigest() == shown["marriage_certificate"]["sha256"]

    # Another department: with its own key on the police's path (401); on its own path, for the police's
    # message (404) or for its own message, which lists no material (404).
    first = listed[0]["url"]
    other = await fake(
        stack, "POST", "police/fetch-materials", {"message_id": mid, "as": "medical_insurance"}
    )
    assert [f["status"] for f in other["materials"]] == [401] * 3
    insurance = (await taken(stack, "medical_insurance"))[0]["message"]["message_id"]
    own_path = first.replace("/departments/police/", "/departments/medical_insurance/")
    for url in (own_path, own_path.replace(mid, insurance)):
        tried = await fake(
            stack, "POST", "medical_insurance/fetch-materials", {"message_id": insurance, "url": url}
        )
        assert tried["materials"][0]["status"] == 404, url
    # Unsigned: a problem with a stable code.
    async with stack.session.get(first) as response:
        assert response.status == 401
        body = await response.json()
        stack.check("GET", first.removeprefix(stack.api), response.status, response.content_type, body)
        assert body["code"] == "invalid_signature"

    # Once the police have finished the 户口, the materials are no longer answered.
    await service_state(mp, "household_registration", "sent")
    done = await answer(
        stack,
        "police",
        mid,
        state="done",
        result=police_result((await taken(stack, "police"))[0]["message"]),
    )
    assert done["status"] == 200, done
    await service_state(mp, "household_registration", "done")
    after = await fake(stack, "POST", "police/fetch-materials", {"message_id": mid})
    assert [f["status"] for f in after["materials"]] == [404] * 3


async def test_the_issuer_sends_a_material_back_and_she_uploads_it_again(stack: Stack) -> None:
    mp = await _signable(stack, 44)
    await mp.upload_materials()
    await mp.sign()
    await mp.choose_pickup()
    await mp.submit()
    issuer = await hebei_issuer(stack)
    review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    assert set(POLICE_MATERIALS) <= {d["kind"] for d in review["documents"]}
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/reject",
        json={"reason_codes": ["bundle_material_unclear"], "fields": ["documents.hukou_head_page"]},
    )
    status = await mp.status()
    assert status["rejection"]["field_labels"] == ["落户方户口簿户主页照片"]
    assert status["rejection"]["reason_messages"][0]["label"] == "一件事材料不清晰或不符"
    assert status["rejection"]["resign_required"] is False  # a photo, not the form
    await mp.upload("hukou_head_page", id_photo("户主页 重拍"))
    await mp.submit()
    again = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    assert "documents.hukou_head_page" in {c["field"] for c in again["changes_since_rejection"]}


async def test_withdrawing_the_bundle_hides_the_materials_from_the_issuer(stack: Stack) -> None:
    mp = await _signable(stack, 45)
    await mp.upload_materials()
    await mp.withdraw_bundle()
    await mp.sign()
    await mp.choose_pickup()
    await mp.submit()
    issuer = await hebei_issuer(stack)
    review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    assert not {d["kind"] for d in review["documents"]} & set(POLICE_MATERIALS)
