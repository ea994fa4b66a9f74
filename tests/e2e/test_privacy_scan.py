"""After whole journeys, no personal value of the test families is anywhere in clear.

Two families go through the service over HTTP (the father joining by invitation, photos, signature, EMS,
review, issue, the EMS pickup booked, the parcel delivered, an auditor reading the history, the proof and
the pickup list). Then everything the service keeps is read back — every file of its data directory (the
SQLite event store and its WAL, the archive, the encrypted blobs, the keys), every key and value of its
Redis, and every log record it wrote, with their fields — and searched for the families' names, ID
numbers, phone number, address and inpatient numbers, as UTF-8 and as JSON escapes; Redis also for the
certificate number and the e-licence's identifier, which the status view answers in clear (decision 0042).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import orjson
import pytest

from backend.components import CONFIG
from miniprogram_stub.client import StaffClient
from miniprogram_stub.people import demo_family
from tests.e2e.conftest import Stack
from tests.e2e.test_access_matrix import world
from tests.e2e.test_father_invitation import redis_text
from tests.integration.test_store import forms

pytestmark = pytest.mark.e2e
SCAN_SECONDS = 20.0


def personal_values() -> list[str]:
    """What must never be stored or logged in clear: the two test families' personal data."""
    values: list[str] = []
    for family in (demo_family(1), demo_family(2)):
        people = [family.mother, *([family.father] if family.father else [])]
        values += [p.name for p in people] + [p.id_number for p in people]
        values += [family.mother.address, "中山二路58号", family.newborn_name, family.inpatient_no]
    values.append("13800138000")  # the EMS recipient's phone
    return list(dict.fromkeys(values))


def log_text(records: list[logging.LogRecord]) -> bytes:
    """Each record's message and every field it carries (the JSON log lines are made of these)."""
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts += [f"{key}={value!r}" for key, value in vars(record).items() if key not in ("msg", "args")]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts).encode()


def findings(where: str, content: bytes, values: list[str]) -> list[str]:
    return [f"{value!r} in {where}" for value in values for form in forms(value) if form in content]


async def test_nothing_personal_is_kept_or_logged_in_clear(
    stack: Stack, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    w = await world(stack)
    app_id = w.ids["app_id"]
    issuer = StaffClient(stack.session, stack.api, token=w.tokens["issuer"])
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{app_id}/issue",
        json={"certificate_number": "X440100777", "sealer": "李盖章"},
    )
    mother = StaffClient(stack.session, stack.api, token=w.tokens["mother"])
    async with asyncio.timeout(15):  # the EMS process books the pickup on its own
        while (status := await mother.call("GET", f"/api/v1/applications/{app_id}"))["state"] != "dispatched":
            await asyncio.sleep(0.05)
    async with asyncio.timeout(15):  # Guangdong: the e-licence at once, by the leader's process
        while (status := await mother.call("GET", f"/api/v1/applications/{app_id}"))["elicense"][
            "state"
        ] != "issued":
            await asyncio.sleep(0.05)
    numbers = [status["certificate_number"], status["elicense"]["licence_id"]]
    assert numbers[0] == "X440100777"  # answered in clear
    async with stack.session.post(
        f"{stack.platform}/_fake/ems/deliver", json={"waybill_no": status["tracking_number"]}
    ) as r:
        assert (await r.json())["body"]["state"] == "delivered"
    auditor = StaffClient(stack.session, stack.api, token=w.tokens["auditor"])
    await auditor.call("GET", f"/api/v1/audit/applications/{app_id}/events")
    await auditor.call("GET", f"/api/v1/audit/applications/{app_id}/proof")
    listed = await auditor.call("GET", "/api/v1/review/pickup-list?institution=GZFY01")
    # Full values on the signed paper record: answered (which shows the scan finds what is there)…
    assert findings("the pickup list", orjson.dumps(listed), personal_values())

    started = time.monotonic()
    values = personal_values()
    data_dir = Path(stack.app[CONFIG].data_dir)
    found: list[str] = []
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") for p in files) and any("blob" in str(p) for p in files), files
    for path in files:
        found += findings(str(path.relative_to(data_dir)), path.read_bytes(), values)
    # The certificate number names the child, and the licence id opens its e-licence (decision 0042).
    found += findings("Redis", await redis_text(redis_url), [*values, *numbers])
    found += findings("the logs", log_text(caplog.records), values)
    # … and never kept.
    assert found == []
    assert time.monotonic() - started < SCAN_SECONDS
    assert (
        len([r for r in caplog.records if r.name.startswith("birthcert")]) > 20
    )  # the service's logs were read
