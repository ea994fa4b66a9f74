"""Managers' statistics over real HTTP (decision 0043): real journeys, then the figures against the event log.

Three families go through the service as in the issuers' tests: one is rejected, fixes and is issued and its
parcel delivered by the fake EMS; one is issued; one is rejected past Guangdong's modification limit and sent to
the counter. The province's manager then reads ``GET /api/v1/statistics``, and the test counts the same figures
from the store's own events by hand. A district's manager may not look at the province (403), the CSV opens in
Excel (BOM, Chinese headers), and counting the log again from nothing gives the same figures.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest

from backend.components import APPLICATIONS, CONFIG, TOKENS, WORKING_CALENDAR
from domain.application import BirthCertificateApplication as App
from domain.policy import SHANGHAI
from domain.statistics import field_group
from domain.values import Actor
from miniprogram_stub.client import ApiProblem, StaffClient
from miniprogram_stub.people import demo_family
from projections.cli import rebuild_statistics
from projections.log_reader import LogReader
from projections.sql import Database
from tests.e2e.conftest import Stack
from tests.e2e.test_staff import staff, submitted, wait_for_state

pytestmark = pytest.mark.e2e


async def _journeys(stack: Stack) -> None:
    issuer = await staff(stack, "issuer1")
    review = "/api/v1/review/applications"
    # 1: rejected for the newborn's name (two reason codes), fixed, issued, delivered by EMS.
    one = await submitted(stack, demo_family(1))
    await issuer.call(
        "POST",
        f"{review}/{one.app_id}/reject",
        json={
            "reason_codes": ["name_rare_character", "newborn_name_inconsistent"],
            "reasons": ["姓名有误"],
            "fields": ["newborn_name"],
        },
    )
    await one.provide_details(newborn_name="张小草")
    await one.sign()
    await one.submit()
    await issuer.call(
        "POST", f"{review}/{one.app_id}/issue", json={"certificate_number": "X440100061", "sealer": "赵盖章"}
    )
    waybill = (await wait_for_state(one, "dispatched"))["tracking_number"]
    assert (await one.fake("/_fake/ems/deliver", {"waybill_no": waybill}))["status"] == 200
    await wait_for_state(one, "delivered")
    # 2: issued at once.
    two = await submitted(stack, demo_family(2))
    await issuer.call(
        "POST", f"{review}/{two.app_id}/issue", json={"certificate_number": "X440100062", "sealer": "赵盖章"}
    )
    # 3: rejected six times (Guangdong allows five changes) with the first API's body (no codes: 其他问题),
    # then to the counter.
    three = await submitted(stack, demo_family(3))
    for submission in range(1, 7):
        await issuer.call(
            "POST",
            f"{review}/{three.app_id}/reject",
            json={"reasons": ["请确认领取方式"], "fields": ["delivery_method", "documents.father_id_front"]},
        )
        if submission < 6:
            await three.submit()
    assert (await three.status())["state"] == "counter_only"


def _rank(values: list[int], p: float) -> int | None:
    values = sorted(values)
    return values[math.ceil(p * len(values)) - 1] if values else None


async def _count_by_hand(stack: Stack, day: str) -> dict[str, Any]:
    """Today's figures of Guangdong, read from the store's events directly."""
    events = [e for _, e in await stack.in_store(LogReader.of(stack.service).read, 0, 100_000)]
    today = [e for e in events if e.timestamp.astimezone(SHANGHAI).date().isoformat() == day]
    first_submitted: dict[Any, datetime] = {}
    for e in events:
        if isinstance(e, App.Submitted):
            first_submitted.setdefault(e.originator_id, e.timestamp)

    def count(cls: type) -> int:
        return sum(isinstance(e, cls) for e in today)

    issues = [
        round((e.timestamp - first_submitted[e.originator_id]).total_seconds())
        for e in today
        if isinstance(e, App.Issued)
    ]
    fields: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    for e in today:
        if isinstance(e, App.Rejected):
            fields.update(set(e.fields))
            groups.update({field_group(f) for f in e.fields})
            codes.update(set(e.reason_codes))
    return {
        "started": count(App.ApplicationStarted),
        "submitted": sum(isinstance(e, App.Submitted) and e.submission == 1 for e in today),
        "resubmitted": sum(isinstance(e, App.Submitted) and e.submission > 1 for e in today),
        "issued": count(App.Issued),
        "delivered": count(App.Delivered),
        "rejected": count(App.Rejected),
        "referred": count(App.ReferredToCounter),
        "referrals_by_reason": dict(Counter(e.reason for e in today if isinstance(e, App.ReferredToCounter))),
        "rejections_by_reason": dict(sorted(codes.items())),
        "rejections_by_field": dict(sorted(fields.items())),
        "rejections_by_field_group": dict(sorted(groups.items())),
        "issue_seconds": {"count": len(issues), "median": _rank(issues, 0.5), "p90": _rank(issues, 0.9)},
    }


async def _statistics(stack: Stack, client: StaffClient, query: str, **headers: str) -> tuple[int, Any]:
    async with stack.session.get(
        f"{stack.api}/api/v1/statistics?{query}",
        headers={"Authorization": f"Bearer {client.token}", **headers},
    ) as r:
        if r.content_type == "text/csv":
            return r.status, await r.read()
        body = await r.json()
        stack.check("GET", "/api/v1/statistics", r.status, r.content_type, body)
        return r.status, body


async def test_a_managers_figures_match_a_count_made_from_the_event_log(stack: Stack) -> None:
    await _journeys(stack)
    manager = await staff(stack, "manager1")  # province:GD
    day = datetime.now(SHANGHAI).date().isoformat()
    status, got = await _statistics(stack, manager, f"from={day}&to={day}")
    assert status == 200, got
    assert got["scope"] == {"kind": "province", "code": "GD", "label": "广东省"}
    expected = await _count_by_hand(stack, day)
    assert {k: got["total"][k] for k in expected} == expected
    assert expected["issued"] == 2 and expected["referred"] == 1 and expected["delivered"] == 1
    assert got["total"]["online_share"] == round(2 / 3, 4)
    assert got["total"]["delivery_seconds"]["count"] == 1
    assert got["labels"]["referrals_by_reason"] == {"modification_limit": "退回修改次数已达上限"}
    assert got["total"]["rejections_by_reason"] == {
        "name_rare_character": 1,
        "newborn_name_inconsistent": 1,
        "other": 6,
    }
    assert got["labels"]["rejections_by_reason"] == {
        "name_rare_character": "姓名含生僻字或不规范字",
        "newborn_name_inconsistent": "新生儿姓名有误或前后不一致",
        "other": "其他问题",
    }
    assert got["labels"]["rejections_by_field_group"]["documents"] == "证件照片"
    assert [p["period"] for p in got["periods"]] == [day]
    assert got["overdue_open"] == 0

    # The district and the institution within the province: the same applications.
    for scope in ("district:440104", "institution:GZFY01"):
        status, part = await _statistics(stack, manager, f"from={day}&to={day}&scope={scope}")
        assert status == 200 and part["total"]["issued"] == 2, (scope, part)

    # Counted again from nothing (birthcert projections rebuild --view statistics): the same figures.
    executor = ThreadPoolExecutor(max_workers=1)
    db = Database.open(stack.app[CONFIG].event_store_env())
    try:
        await rebuild_statistics(stack.app[APPLICATIONS], db, executor, stack.app[WORKING_CALENDAR])
    finally:
        db.close()
        executor.shutdown()
    status, again = await _statistics(stack, manager, f"from={day}&to={day}")
    assert {**again, "as_of": None} == {**got, "as_of": None}

    # As CSV, for Excel: a BOM, Chinese headers, one row for the day and one for the total.
    for query, headers in (
        (f"from={day}&to={day}&format=csv", {}),
        (f"from={day}&to={day}", {"Accept": "text/csv"}),
    ):
        status, raw = await _statistics(stack, manager, query, **headers)
        assert status == 200 and raw.startswith("\ufeff".encode())
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
        assert [r["日期"] for r in rows] == [day, "合计"]
        assert rows[1]["签发"] == "2" and rows[1]["转窗口：退回修改次数已达上限"] == "1"
        assert rows[1]["网办占比"] == "66.7%"
        assert (rows[1]["驳回原因：其他问题"], rows[1]["驳回原因：姓名含生僻字或不规范字"]) == ("6", "1")
        assert rows[1]["驳回项目分类：证件照片"] == "6"


async def test_a_manager_sees_only_their_scope_and_bad_questions_are_problems(stack: Stack) -> None:
    district = await staff(stack, "manager2")  # district:370124 (平阴县)
    status, body = await _statistics(stack, district, "")
    assert status == 200 and body["scope"]["code"] == "370124"
    for scope in ("province:GD", "province:SD", "institution:GZFY01", "district:440104"):
        status, body = await _statistics(stack, district, f"scope={scope}")
        assert (status, body["code"]) == (403, "statistics_scope_forbidden"), scope
    status, body = await _statistics(stack, district, "scope=institution:JNPY01")
    assert status == 200 and body["scope"]["label"] == "平阴县人民医院"
    today = datetime.now(SHANGHAI).date()
    for query, code in (
        (f"from={today}&to={today - timedelta(days=1)}", "invalid_range"),
        (f"from={today - timedelta(days=400)}&to={today}", "range_too_long"),
        ("from=yesterday", "invalid_date"),
        ("granularity=month", "invalid_granularity"),
        ("scope=county:440104", "invalid_scope"),
        ("scope=district:999999", "invalid_district"),
    ):
        status, body = await _statistics(stack, district, query)
        assert status in (400, 422) and body["code"] == code, (query, body)
        assert body["title"] and body["detail"]
    issuer = await staff(stack, "issuer1")
    with pytest.raises(ApiProblem) as refused:
        await issuer.call("GET", "/api/v1/statistics")
    assert (refused.value.status, refused.value.code) == (403, "role_not_allowed")


async def test_a_manager_whose_own_scope_no_longer_reads_is_refused_not_told_to_fix_the_request(
    stack: Stack,
) -> None:
    """A manager's account whose scope names a district the code list no longer has (or a profile taken out):
    the request is not at fault, so not a 422 about ``scope``, but a 403 sending them to the administrator."""
    token, _ = stack.app[TOKENS].issue(Actor(id="manager9", role="manager", scope="district:999999"))
    client = StaffClient(stack.session, stack.api, check=stack.check)
    client.token = token
    status, body = await _statistics(stack, client, "")
    assert (status, body["code"]) == (403, "statistics_scope_missing") and "管理员" in body["detail"]
