"""The archived registration forms over real HTTP: an auditor lists and downloads them, another
institution's issuer is told they do not exist, and the auditor's reading is on the record. The
database file the running service wrote holds none of the family's data in clear, and a row
tampered with in it answers 503 ``integrity_failure`` without a word of what it holds.

The family goes through the mini-program and the issuer issues over HTTP, exactly as in
test_staff; the archive follows the log in the running service. Until ``backend.app`` mounts the
archive, the fixture here adds ``archive_ctx`` and the routes to the app ``create_app`` built (and
the archive's paths to the OpenAPI document every JSON answer is checked against).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from uuid import UUID

import pytest

from backend.components import CONFIG
from backend.dev import DEMO_PASSWORD, seed_demo_staff
from backend.routes.archive import FORM_ARCHIVE, PDF_RENDERER
from domain.staff import AccessRecord
from miniprogram_stub.client import StaffClient
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_staff import submitted
from tests.integration.test_archive import sealed_values, swap, tamper
from tests.integration.test_store import assert_nothing_in_clear, stored_bytes
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


async def login(stack: Stack, username: str) -> StaffClient:
    await stack.in_store(seed_demo_staff, stack.service)
    client = StaffClient(stack.session, stack.api, check=stack.check)
    await client.login(username, DEMO_PASSWORD)
    return client


async def get(
    stack: Stack, token: str | None, path: str, accept: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if accept:
        headers["Accept"] = accept
    async with stack.session.get(stack.api + path, headers=headers) as r:
        body = await r.read()
        if r.content_type in ("application/json", "application/problem+json"):
            stack.check("GET", path, r.status, r.content_type, json.loads(body))
        else:
            documented = stack.check.document["paths"]["/api/v1/archive/forms/{form_id}"]["get"]
            assert r.content_type in documented["responses"][str(r.status)]["content"], r.content_type
        return r.status, dict(r.headers), body


async def rendered(stack: Stack, token: str | None, app_id: str) -> tuple[int, dict[str, str], bytes]:
    """The list of an application's archived forms, once every form's PDF is drawn (they follow the forms)."""
    path = f"/api/v1/archive/forms?application_id={app_id}"

    async def drawn() -> tuple[int, dict[str, str], bytes] | None:
        answer = await get(stack, token, path)
        done = answer[0] != 200 or not any(f["pdf_pending"] for f in json.loads(answer[2])["forms"])
        return answer if done else None

    answer: tuple[int, dict[str, str], bytes] = await eventually(drawn, "the archived forms' PDFs drawn")
    return answer


async def test_a_pdf_not_drawn_yet_is_a_503_pdf_pending_and_its_form_is_there(
    stack: Stack, family: Family
) -> None:
    stack.app[PDF_RENDERER].stop()  # the renderer far behind (a cold catch-up): nothing is drawn
    mp = await submitted(stack, family)
    app_id = str(mp.app_id)
    auditor = await login(stack, "auditor1")
    status, _, body = await get(stack, auditor.token, f"/api/v1/archive/forms?application_id={app_id}")
    [signed] = json.loads(body)["forms"]
    assert (status, signed["pdf_pending"], signed["pdf_sha256"]) == (200, True, None)
    status, headers, body = await get(stack, auditor.token, signed["url"], accept="application/pdf")
    assert (status, json.loads(body)["code"], headers["Retry-After"]) == (503, "pdf_pending", "5")
    status, _, document = await get(stack, auditor.token, signed["url"])
    assert status == 200 and hashlib.sha256(document).hexdigest() == signed["document_sha256"]
    # Drawn once the renderer catches up, with the hash the list then shows.
    await stack.app[PDF_RENDERER].catch_up()
    _, _, body = await rendered(stack, auditor.token, app_id)
    [signed] = json.loads(body)["forms"]
    status, _, pdf = await get(stack, auditor.token, signed["url"], accept="application/pdf")
    assert status == 200 and hashlib.sha256(pdf).hexdigest() == signed["pdf_sha256"]


def family_texts(family: Family) -> list[str]:
    """Every personal value of the family the form carries."""
    people = [family.mother, *([family.father] if family.father else [])]
    return [
        *(p.name for p in people),
        *(p.id_number for p in people),
        *(p.address for p in people),
        family.newborn_name,
        family.inpatient_no,
        family.openid,
    ]


def archive_readings(stack: Stack, app_id: str) -> list[Any]:
    """The AccessRecord events of ``archive_form`` readings of one application (on the store thread)."""
    service = stack.service
    found = []
    for n in service.recorder.select_notifications(start=1, limit=100_000):
        event = service.mapper.to_domain_event(n)
        if (
            isinstance(event, AccessRecord.PersonalDataViewed)
            and event.application_id == app_id
            and event.what == "archive_form"
        ):
            found.append(event)
    return found


async def test_auditor_lists_and_downloads_the_forms_and_the_reading_is_recorded(
    stack: Stack, family: Family
) -> None:
    mp = await submitted(stack, family)
    app_id = str(mp.app_id)
    issuer = await login(stack, "issuer1")
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{app_id}/issue",
        json={"certificate_number": "X440100061", "sealer": "赵盖章"},
    )
    auditor = await login(stack, "auditor1")
    assert auditor.token
    status, headers, body = await rendered(stack, auditor.token, app_id)
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    listing = json.loads(body)
    assert listing["application_id"] == app_id
    forms = listing["forms"]
    assert [f["kind"] for f in forms] == ["signed", "issued"]
    signed, issued = forms
    form_answer = await mp.form()
    assert signed["form_sha256"] == issued["form_sha256"] == form_answer["sha256"]
    assert (issued["certificate_number"], issued["issuer_name"], issued["sealer_name"]) == (
        "X440100061",
        "李签发",
        "赵盖章",
    )
    assert (signed["certificate_number"], signed["issuer_name"], signed["sealer_name"]) == (None, None, None)
    assert signed["version"] < issued["version"]
    # The list carries no personal data of the family: no names, ID numbers or addresses.
    assert family.mother.name not in body.decode() and family.mother.id_number not in body.decode()
    assert await stack.in_store(archive_readings, stack, app_id) == []

    status, headers, pdf = await get(stack, auditor.token, issued["url"], accept="application/pdf")
    assert status == 200
    assert headers["Content-Type"] == "application/pdf"
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("inline; filename=") and re.search(r'filename="[^"]+\.pdf"', disposition)
    assert headers["Cache-Control"] == "no-store"
    assert pdf.startswith(b"%PDF-")
    assert hashlib.sha256(pdf).hexdigest() == issued["pdf_sha256"]
    assert headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(hashlib.sha256(pdf).digest()).decode()}:"
    readings = await stack.in_store(archive_readings, stack, app_id)
    assert len(readings) == 1
    assert readings[0].actor["role"] == "auditor", readings[0].actor

    status, headers, document = await get(stack, auditor.token, issued["url"])
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert hashlib.sha256(document).hexdigest() == issued["document_sha256"]  # the archived bytes
    doc = json.loads(document)
    assert doc["form"] == form_answer["form"]
    assert doc["form"]["mother"]["name"] == family.mother.name
    assert (doc["certificate_number"], doc["issuer_name"], doc["sealer_name"]) == (
        "X440100061",
        "李签发",
        "赵盖章",
    )
    assert len(await stack.in_store(archive_readings, stack, app_id)) == 2

    # The application's own issuer reads them too (not an auditor: no access record).
    status, _, _ = await get(stack, issuer.token, f"/api/v1/archive/forms?application_id={app_id}")
    assert status == 200
    status, headers, _ = await get(stack, issuer.token, signed["url"], accept="application/pdf")
    assert (status, headers["Content-Type"]) == (200, "application/pdf")
    assert len(await stack.in_store(archive_readings, stack, app_id)) == 2

    # What the service wrote to its database file (and WAL): the archive's rows, none of the family in clear.
    everything = b"\n".join(stored_bytes(stack.app[CONFIG].event_store_env()))
    assert issued["id"].encode() in everything and issued["form_sha256"].encode() in everything
    assert_nothing_in_clear(everything, [*family_texts(family), "X440100061"])
    assert b"%PDF-" not in everything


async def test_other_institutions_issuer_parents_and_strangers_get_nothing(
    stack: Stack, family: Family
) -> None:
    mp = await submitted(stack, family)
    app_id = str(mp.app_id)
    auditor = await login(stack, "auditor1")
    status, _, body = await get(stack, auditor.token, f"/api/v1/archive/forms?application_id={app_id}")
    assert status == 200
    url = json.loads(body)["forms"][0]["url"]
    other = await login(stack, "issuer2")  # Shandong's issuer
    position = await stack.in_store(stack.service.recorder.max_notification_id)
    for path, accept in (
        (f"/api/v1/archive/forms?application_id={app_id}", None),
        (url, None),
        (url, "application/pdf"),
    ):
        status, _, body = await get(stack, other.token, path, accept)
        assert status == 404, path
        assert json.loads(body)["code"] == "not_found"
        status, _, _ = await get(stack, mp.token, path, accept)
        assert status == 403, path
        status, _, _ = await get(stack, None, path, accept)
        assert status == 401, path
    assert await stack.in_store(stack.service.recorder.max_notification_id) == position  # nothing recorded
    for path in (
        f"/api/v1/archive/forms?application_id={UUID(int=7)}",
        "/api/v1/archive/forms?application_id=not-a-uuid",
        f"/api/v1/archive/forms/{UUID(int=7)}",
        "/api/v1/archive/forms/not-a-uuid",
    ):
        status, _, _ = await get(stack, auditor.token, path)
        assert status == 404, path
    status, _, body = await get(stack, auditor.token, "/api/v1/archive/forms")
    assert (status, json.loads(body)["code"]) == (400, "application_id_required")


async def test_a_tampered_row_answers_integrity_failure_without_its_content(
    stack: Stack, family: Family
) -> None:
    mp = await submitted(stack, family)
    app_id = str(mp.app_id)
    issuer = await login(stack, "issuer1")
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{app_id}/issue",
        json={"certificate_number": "X440100062", "sealer": "赵盖章"},
    )
    auditor = await login(stack, "auditor1")
    listing = f"/api/v1/archive/forms?application_id={app_id}"
    status, _, body = await rendered(stack, auditor.token, app_id)
    assert status == 200
    signed, issued = json.loads(body)["forms"]
    # Someone holding the database file drops the trigger and swaps the two rows' sealed documents
    # and PDFs (same application, same form_sha256: only the rows' identities tell them apart).
    archive = stack.app[FORM_ARCHIVE]
    sealed = await stack.in_store(sealed_values, archive)
    env = stack.app[CONFIG].event_store_env()
    statements = [
        *swap("sealed_document", sealed, signed["id"], issued["id"]),
        *swap("sealed_pdf", sealed, signed["id"], issued["id"]),
    ]
    await stack.in_store(tamper, env, *statements)
    position = await stack.in_store(stack.service.recorder.max_notification_id)
    for path, accept in ((issued["url"], None), (issued["url"], "application/pdf"), (listing, None)):
        status, _, body = await get(stack, auditor.token, path, accept)
        assert status == 503, (path, body)
        answer = json.loads(body)
        assert answer["code"] == "integrity_failure"
        assert answer["form_id"] in (signed["id"], issued["id"])
        assert_nothing_in_clear(body, [*family_texts(family), "X440100062", "李签发", "赵盖章"])
    # Nothing was read, so no reading is on the record.
    assert await stack.in_store(stack.service.recorder.max_notification_id) == position
    # Another institution's issuer still hears nothing of the row.
    other = await login(stack, "issuer2")
    status, _, body = await get(stack, other.token, issued["url"])
    assert (status, json.loads(body)["code"]) == (404, "not_found")
