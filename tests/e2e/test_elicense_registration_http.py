"""The police's registration reaches the e-licence (issue 12 item 3; national notice 二(四); decision 0048).

A Hebei family with 出生一件事: the certificate is issued and its e-licence (version 001) generated at once; the
police register the 户口 and post the newborn's registered name, citizen ID number and 户籍地 through the fake
police. Hebei puts the registration into the e-licence's record, so the credential is amended: version 002 of the
same licence, the registration disclosable in it and shown to the mother masked; version 001 verifies as
``amended``, 002 as valid. It happens once: the issuing loop run again, a row found undone
after a crash, a credential signed but not recorded — none makes a version 003.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from backend.credentials import verify_sd_jwt
from backend.routes.elicense import ELICENSE_PROCESS
from domain.application import BirthCertificateApplication
from domain.elicense import LicenceId
from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import hebei_family, make_id_number
from tests.e2e.conftest import Stack
from tests.e2e.test_bundle_handoff_http import answer, issued_with_bundle, police_result, taken
from tests.e2e.test_elicense_http import issued_days_later, issued_elicense, jwks
from tests.e2e.test_verification_http import verify
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

PLACE = "河北省石家庄市长安区青园街道"


async def elicense_of(mp: MiniProgram) -> dict[str, Any]:
    document: dict[str, Any] = await mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense")
    return document


async def version_shown(mp: MiniProgram, version: str) -> dict[str, Any]:
    async def shown() -> dict[str, Any] | None:
        document = await elicense_of(mp)
        return document if document["licence_version"] == version else None

    found: dict[str, Any] = await eventually(shown, f"the mother's e-licence reaches version {version}")
    return found


async def amendments(stack: Stack, app_id: str) -> int:
    events = await stack.in_store(lambda: list(stack.service.events.get(UUID(app_id))))
    return sum(isinstance(e, BirthCertificateApplication.ELicenseAmended) for e in events)


async def test_the_police_registration_amends_the_e_licence_once_and_the_old_version_reads_superseded(
    stack: Stack,
) -> None:
    family = hebei_family(41)
    mp, _ = await issued_with_bundle(stack, family, "R130100041")
    first = await issued_elicense(mp)
    assert (first["licence_version"], first["registration"]) == ("001", None)
    police = (await taken(stack, "police"))[0]["message"]

    # A citizen ID number of another birth date is refused: it must not reach this child's e-licence.
    wrong = police_result(police) | {"citizen_id_number": make_id_number("130102", "20200101", "028")}
    refused = await answer(stack, "police", police["message_id"], state="done", result=wrong)
    assert (refused["status"], refused["body"]["code"]) == (422, "citizen_id_mismatch"), refused

    result = police_result(police, household_place=PLACE)
    reply = await answer(stack, "police", police["message_id"], state="done", result=result)
    assert reply["status"] == 200 and reply["body"]["recorded"] is True, reply

    second = await version_shown(mp, "002")
    old, new = LicenceId.parse(first["licence_id"]), LicenceId.parse(second["licence_id"])
    # The same licence, its next version (the check character recomputed).
    assert (new.sequence, new.issuer_code, new.version) == (old.sequence, old.issuer_code, "002")
    assert second["certificate_number"] == "R130100041"
    assert second["superseded"] == [
        {
            "licence_id": first["licence_id"],
            "certificate_number": "R130100041",
            "issued_at": second["superseded"][0]["issued_at"],
            "state": "amended",
        }
    ]
    # Shown to her masked; in full only inside the credential she holds.
    registration = second["registration"]
    assert registration["in_elicense"] is True
    shown = {i["code"]: (i["label"], i["value"]) for i in registration["items"]}
    number = result["citizen_id_number"]
    assert shown["registered_name"] == ("登记姓名", "赵**")
    assert shown["citizen_id_number"] == ("公民身份号码", number[:4] + "*" * 10 + number[-4:])
    assert shown["household_place"] == ("户籍地", PLACE[:6] + "****")
    assert number not in str({k: v for k, v in second.items() if k != "credential"})
    disclosed = verify_sd_jwt(second["credential"], await jwks(stack)).disclosed
    assert (disclosed["registered_name"], disclosed["citizen_id_number"], disclosed["household_place"]) == (
        "赵小雪",
        number,
        PLACE,
    )
    assert disclosed["newborn_name"] == family.newborn_name  # the certificate's record is all still there
    assert number not in second["credential"]  # disclosable, never in clear in the JWT

    # Version 001 is superseded by its amendment; 002 is the valid one.
    async def old_superseded() -> dict[str, Any] | None:
        status, body = await verify(stack, {"credential": first["credential"]})
        return body if status == 200 and body["result"] == "amended" else None

    old_answer = await eventually(old_superseded, "version 001 verifies as amended")
    assert old_answer["result_label"] == "已更新为新版本的电子证照取代"
    status, new_answer = await verify(stack, {"credential": second["credential"]})
    assert (status, new_answer["result"]) == (200, "valid")
    # The paper certificate checked by its number finds the version in force.
    paper = {
        "certificate_number": "R130100041",
        "newborn_name": family.newborn_name,
        "birth_date": police["fields"]["newborn_born_on"],
    }
    status, by_number = await verify(stack, paper)
    assert (status, by_number["result"], by_number["issued_at"]) == (200, "valid", second["issued_at"])

    # Exactly once. The issuing loop again, days later: nothing more.
    process = stack.app[ELICENSE_PROCESS]
    assert await issued_days_later(stack) == 0
    # A crash after the event, before the row was marked done: the row is found undone and settles as issued.
    rows = await stack.in_store(process.store.due_of, mp.app_id)
    amendment = rows[-1]
    assert [d.licence_id for d in rows] == [first["licence_id"], second["licence_id"]]
    await stack.in_store(
        process.db.execute,
        "UPDATE elicense_due SET done_at = NULL, outcome = NULL WHERE application_id = ? AND version = ?",
        (mp.app_id, amendment.version),
    )
    await stack.in_store(process.issue_due)
    [settled] = [
        d for d in await stack.in_store(process.store.due_of, mp.app_id) if d.version == amendment.version
    ]
    assert settled.outcome == "issued"
    assert await amendments(stack, mp.app_id) == 1
    assert (await elicense_of(mp))["licence_id"] == second["licence_id"]


async def test_an_amendment_signed_before_a_crash_is_recorded_with_that_credential_and_only_once(
    stack: Stack,
) -> None:
    """The leader signs and stores version 002, then dies before recording it: the next leader's round finds the
    stored credential and records that one (the holder gets the bytes that were signed), and no other."""
    family = hebei_family(43)
    mp, _ = await issued_with_bundle(stack, family, "R130100043")
    first = await issued_elicense(mp)
    police = (await taken(stack, "police"))[0]["message"]
    process = stack.app[ELICENSE_PROCESS]
    issuing = process.issue_due
    process.issue_due = lambda: 0  # type: ignore[method-assign]  # this leader's issuing rounds stall
    try:
        result = police_result(police)
        reply = await answer(stack, "police", police["message_id"], state="done", result=result)
        assert reply["status"] == 200, reply

        async def scheduled() -> Any:
            rows = await stack.in_store(process.store.due_of, mp.app_id)
            return rows[-1] if len(rows) == 2 else None

        due = await eventually(scheduled, "the amendment is scheduled")
        app = await stack.in_store(stack.service.repository.get, UUID(mp.app_id))
        signed = await stack.in_store(process._sign, app, due, "R130100043", stack.service.clock())
    finally:
        process.issue_due = issuing  # type: ignore[method-assign]
    assert await amendments(stack, mp.app_id) == 0  # signed and stored, not recorded: the crash
    await stack.in_store(process.issue_due)
    second = await version_shown(mp, "002")
    assert second["licence_id"] == signed.licence_id and second["credential"] == signed.credential
    assert second["superseded"][0]["licence_id"] == first["licence_id"]
    await stack.in_store(process.issue_due)
    assert await amendments(stack, mp.app_id) == 1
