"""The hospital's side over real HTTP: its worklist of disputed, missing and late delivery records, its answer
to a dispute, and the mother who reads that answer and goes on to submit.

A mother disputes her record; the hospital (role ``hospital``) finds the dispute with her reason on its worklist
and either upholds the record with a reason or corrects it; the mother reads the answer in Chinese in her
status view, confirms and submits; the answer is an event of her application's audit trail. A record entered
past the province's limit (Guangdong 72 h, Shandong 24 h) and a birth whose record the mother reports missing
show as overdue; once the hospital enters the missing record the mother finds it. Finally the worklist as served
equals a fresh blue/green rebuild from the log (``birthcert projections rebuild --view worklist``).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from rich.console import Console

from backend.admin import operator
from backend.components import CONFIG, REDIS
from backend.dev import DEMO_PASSWORD
from backend.routes.staff import hash_password
from miniprogram_stub.client import ApiProblem, MiniProgram, StaffClient
from miniprogram_stub.people import Family, demo_family
from projections.cli import _rebuild
from tests.e2e.conftest import Stack
from tests.e2e.test_staff import delivery_body, staff
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
SHANGHAI = timezone(timedelta(hours=8))
WORKLIST = "/api/v1/hospital/worklist"


def born(hours_ago: float) -> str:
    """A birth time that many hours ago, as the HIS sends it."""
    return (datetime.now(SHANGHAI) - timedelta(hours=hours_ago)).replace(microsecond=0).isoformat()


def delivery(family: Family, hours_ago: float = 20, **changes: Any) -> dict[str, Any]:
    body = delivery_body(family, **changes)
    body["newborn"]["born_at"] = born(hours_ago)
    return body


async def items(his: StaffClient, **query: str) -> list[dict[str, Any]]:
    page = await his.call(
        "GET", WORKLIST + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    )
    found: list[dict[str, Any]] = page["items"]
    return found


async def worklist_shows(his: StaffClient, item_id: str, present: bool = True) -> dict[str, Any] | None:
    """The item once the worklist shows it (or no longer does), within the deadline."""

    async def look() -> Any:
        found = {i["item_id"]: i for i in await items(his)}
        if present:
            return found.get(item_id)
        return item_id not in found

    value = await eventually(look, f"{item_id} {'on' if present else 'off'} the worklist")
    return value if present else None


async def shandong_hospital(stack: Stack) -> StaffClient:
    """The Shandong hospital's staff (JNPY01, 24 h to enter a delivery), logged in."""
    await stack.in_store(
        stack.service.create_staff_account,
        operator(),
        username="his-sd",
        role="hospital",
        institution="JNPY01",
        display_name="孙录入",
        password_hash=hash_password(DEMO_PASSWORD),
    )
    client = StaffClient(stack.session, stack.api, check=stack.check)
    await client.login("his-sd", DEMO_PASSWORD)
    return client


async def disputed(stack: Stack, family: Family, reason: str) -> tuple[StaffClient, MiniProgram, str]:
    """The hospital entered the record over HTTP; the mother verified her face and disputed it."""
    his = await staff(stack, "his1")
    record = await his.call("POST", "/api/v1/deliveries", json=delivery(family))
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    await mother.verify_face("mother")
    await mother.call("POST", f"{mother.base}/delivery-record/dispute", json={"reason": reason})
    return his, mother, record["id"]


async def submit_the_rest(mother: MiniProgram) -> dict[str, Any]:
    """From the confirmation of the record to submission."""
    await mother.confirm_delivery()
    await mother.provide_details()
    await mother.verify_face("father")
    await mother.upload_all()
    await mother.sign()
    await mother.choose_ems()
    await mother.submit()
    return await mother.status()


async def test_a_dispute_the_hospital_upholds_is_answered_and_the_mother_submits(
    stack: Stack, family: Family
) -> None:
    reason = "出生体重应为3350克，不是3250克"
    his, mother, record_id = await disputed(stack, family, reason)

    item = await worklist_shows(his, f"dispute:{mother.app_id}")
    assert item is not None
    assert (item["kind"], item["reason"], item["delivery_record_id"]) == ("dispute", reason, record_id)
    assert (item["application_id"], item["mother_name_masked"], item["overdue"]) == (
        mother.app_id,
        "王*",
        False,
    )
    waiting = await mother.status()
    assert waiting["delivery_dispute"]["status"] == "open"
    assert [s["code"] for s in waiting["next_steps"] if s["by"] == "hospital"] == [
        "await_hospital_correction"
    ]

    # Another institution's staff neither see it nor can answer it.
    other = await shandong_hospital(stack)
    assert await items(other) == []
    with pytest.raises(ApiProblem) as stranger:
        await other.call("POST", f"/api/v1/deliveries/{record_id}/uphold", json={"reason": "维持原记录"})
    assert stranger.value.status == 404

    answer = "经核对产房称重记录，出生体重为3250克，原记录无误"
    upheld = await his.call("POST", f"/api/v1/deliveries/{record_id}/uphold", json={"reason": answer})
    assert upheld["id"] == record_id
    await worklist_shows(his, f"dispute:{mother.app_id}", present=False)
    record = await his.call("GET", f"/api/v1/deliveries/{record_id}")
    assert record["open_dispute"] is None
    with pytest.raises(ApiProblem) as twice:
        await his.call("POST", f"/api/v1/deliveries/{record_id}/uphold", json={"reason": answer})
    assert (twice.value.status, twice.value.problem["code"]) == (409, "no_open_dispute")

    status = await mother.status()
    assert status["delivery_dispute"]["status"] == "upheld"
    assert status["delivery_dispute"]["label"] == "医院答复原记录无误"
    assert status["delivery_dispute"]["answer"] == answer
    told = [s for s in status["next_steps"] if s["code"] == "hospital_upheld_record"]
    assert told and answer in told[0]["label"] and told[0]["label"].startswith("医院核实后答复分娩信息无误")
    shown = (await mother.delivery_record())["delivery_record"]
    assert (shown["newborn"]["weight_g"], shown["disputed"], shown["confirmed"]) == (3250, False, False)

    final = await submit_the_rest(mother)
    assert final["state"] == "submitted"
    assert final["delivery_dispute"] is None  # she confirmed the record: nothing left open

    # The answer is an event of her application's audit trail, with the hospital as the actor.
    auditor = await staff(stack, "auditor1")
    history = await auditor.call("GET", f"/api/v1/audit/applications/{mother.app_id}/events")
    answers = [e for e in history["events"] if e["event"] == "DeliveryRecordUpheld"]
    assert len(answers) == 1
    assert answers[0]["data"]["reason"] == answer and answers[0]["leaf_index"] is not None
    assert (answers[0]["actor"]["role"], answers[0]["actor"]["institution"]) == ("hospital", "GZFY01")


async def test_a_dispute_the_hospital_corrects_is_answered_and_the_mother_submits(stack: Stack) -> None:
    family = demo_family(2)
    his, mother, record_id = await disputed(stack, family, "出生体重应为3350克")
    await worklist_shows(his, f"dispute:{mother.app_id}")

    corrected = delivery(family, reason="按产妇异议核对后更正出生体重")
    corrected["newborn"]["weight_g"] = 3350
    await his.call("PUT", f"/api/v1/deliveries/{record_id}", json=corrected)
    await worklist_shows(his, f"dispute:{mother.app_id}", present=False)

    status = await mother.status()
    assert status["delivery_dispute"]["status"] == "corrected"
    assert status["delivery_dispute"]["answer"] == "按产妇异议核对后更正出生体重"
    told = [s for s in status["next_steps"] if s["code"] == "hospital_corrected_record"]
    assert told and told[0]["label"].startswith("医院已更正分娩信息（按产妇异议核对后更正出生体重）")
    assert (await mother.delivery_record())["delivery_record"]["newborn"]["weight_g"] == 3350
    assert (await submit_the_rest(mother))["state"] == "submitted"


async def test_late_and_missing_records_show_as_overdue_and_the_worklist_equals_a_rebuild(
    stack: Stack,
) -> None:
    his = await staff(stack, "his1")
    on_time, late, reported = demo_family(3), demo_family(4), demo_family(5)

    # Guangdong: within 72 h of the birth is on time; 80 h is late, and shows as overdue.
    await his.call("POST", "/api/v1/deliveries", json=delivery(on_time, hours_ago=70))
    entered_late = await his.call("POST", "/api/v1/deliveries", json=delivery(late, hours_ago=80))
    item = await worklist_shows(his, f"late:{entered_late['id']}")
    assert item is not None
    assert (item["kind"], item["entered_late"], item["overdue"]) == ("late_entry", True, True)
    due = datetime.fromisoformat(item["due_at"]) - datetime.fromisoformat(item["since"])
    assert timedelta(hours=-9) < due < timedelta(hours=-7)  # born 80 h before entry, due 72 h after birth
    assert [i["kind"] for i in await items(his)] == ["late_entry"]  # the one on time is not there

    # Shandong: 24 h. A record entered 30 h after the birth is late there.
    shandong = await shandong_hospital(stack)
    sd_body = delivery(
        demo_family(6), hours_ago=30, birthplace={"province": "山东省", "city": "济南市", "county": "平阴县"}
    )
    sd_record = await shandong.call("POST", "/api/v1/deliveries", json=sd_body)
    sd_item = await worklist_shows(shandong, f"late:{sd_record['id']}")
    assert sd_item is not None and sd_item["overdue"] is True
    assert (await his.call("GET", WORKLIST))["counts"]["late_entry"] == 1  # each institution its own

    # A mother finds no record five days after the birth and names the hospital: missing, overdue.
    mother = stack.mini_program(reported)
    await mother.login()
    await mother.start()
    await mother.verify_face("mother")
    with pytest.raises(ApiProblem) as none_yet:
        await mother.delivery_record()
    assert none_yet.value.problem["code"] == "not_delivery_mother"
    listed = await mother.call("GET", "/api/v1/institutions?province=GD")
    assert {"code": "GZFY01", "name": "广州市妇女儿童医疗中心", "province": "GD"} in [
        {k: i[k] for k in ("code", "name", "province")} for i in listed["items"]
    ]
    born_on = (datetime.now(SHANGHAI) - timedelta(days=5)).date()
    with pytest.raises(ApiProblem) as unknown:
        await mother.call(
            "POST",
            f"{mother.base}/delivery-record/missing",
            json={"institution": "NOPE01", "born_on": str(born_on)},
        )
    assert unknown.value.status == 422
    await mother.call(
        "POST",
        f"{mother.base}/delivery-record/missing",
        json={"institution": "GZFY01", "born_on": str(born_on)},
    )
    missing = await worklist_shows(his, f"missing:{mother.app_id}")
    assert missing is not None
    assert (missing["kind"], missing["overdue"], missing["born_on"]) == ("missing", True, str(born_on))
    assert missing["mother_id_number_masked"].startswith("4401") and "*" in missing["mother_id_number_masked"]
    assert datetime.fromisoformat(missing["due_at"]).date() == born_on + timedelta(
        days=4
    )  # end of day + 72 h
    status = await mother.status()
    assert status["delivery_record_requested"]["institution_name"] == "广州市妇女儿童医疗中心"
    assert any(s["code"] == "await_delivery_entry" for s in status["next_steps"])
    overdue = await his.call("GET", WORKLIST + "?overdue=true")
    assert {i["kind"] for i in overdue["items"]} == {"late_entry", "missing"}
    assert overdue["counts"] == {"dispute": 0, "missing": 1, "late_entry": 1, "overdue": 2, "total": 2}

    # The hospital enters it (late): off the missing list, on the late one; the mother finds her record.
    entered = await his.call("POST", "/api/v1/deliveries", json=delivery(reported, hours_ago=5 * 24))
    await worklist_shows(his, f"missing:{mother.app_id}", present=False)
    await worklist_shows(his, f"late:{entered['id']}")
    status = await mother.status()
    assert status["delivery_record_requested"] is None
    assert not any(s["code"] == "await_delivery_entry" for s in status["next_steps"])
    assert (await mother.delivery_record())["delivery_record"]["institution_name"] == "广州市妇女儿童医疗中心"
    with pytest.raises(ApiProblem) as linked:
        await mother.call(
            "POST",
            f"{mother.base}/delivery-record/missing",
            json={"institution": "GZFY01", "born_on": str(born_on)},
        )
    assert linked.value.problem["code"] == "already_linked"
    late_only = await items(his, kind="late_entry")
    assert {i["item_id"] for i in late_only} == {f"late:{entered_late['id']}", f"late:{entered['id']}"}

    # The worklist as served equals a fresh rebuild from the log, switched in while the service serves.
    before = {code: await served(client) for code, client in (("GZFY01", his), ("JNPY01", shandong))}
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        position, count = await _rebuild(
            stack.app[CONFIG],
            stack.service,
            stack.app[REDIS].url,
            executor,
            Console(file=io.StringIO()),
            "worklist",
        )
    finally:
        executor.shutdown()
    assert position > 0 and count == 3
    after = {code: await served(client) for code, client in (("GZFY01", his), ("JNPY01", shandong))}
    assert after == before


async def served(client: StaffClient) -> dict[str, Any]:
    """The worklist as served, without the moment it was read."""
    page = await client.call("GET", WORKLIST)
    return {k: v for k, v in page.items() if k != "as_of"}


async def test_a_mother_cannot_report_a_record_that_is_there_or_a_birth_in_the_future(
    stack: Stack, family: Family
) -> None:
    his = await staff(stack, "his1")
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    missing = f"{mother.base}/delivery-record/missing"
    today = datetime.now(SHANGHAI).date()
    with pytest.raises(ApiProblem) as unverified:
        await mother.call("POST", missing, json={"institution": "GZFY01", "born_on": str(today)})
    assert unverified.value.status == 409  # her face check first: only then is "no record of hers" true
    await mother.verify_face("mother")
    with pytest.raises(ApiProblem) as future:
        await mother.call(
            "POST", missing, json={"institution": "GZFY01", "born_on": str(today + timedelta(days=1))}
        )
    assert [(e["field"], e["code"]) for e in future.value.problem["errors"]] == [
        ("born_on", "birth_in_future")
    ]
    with pytest.raises(ApiProblem) as malformed:
        await mother.call("POST", missing, json={"institution": "GZFY01", "born_on": "tomorrow"})
    assert [(e["field"], e["code"]) for e in malformed.value.problem["errors"]] == [
        ("born_on", "invalid_date")
    ]

    # The hospital entered it after her face check: she is sent to it, not to the hospital.
    await his.call("POST", "/api/v1/deliveries", json=delivery(family))
    with pytest.raises(ApiProblem) as there:
        await mother.call("POST", missing, json={"institution": "GZFY01", "born_on": str(today)})
    assert (there.value.status, there.value.problem["code"]) == (409, "delivery_record_entered")
    assert (await mother.delivery_record())["delivery_record"]["institution_name"] == "广州市妇女儿童医疗中心"
    assert await items(his) == []
