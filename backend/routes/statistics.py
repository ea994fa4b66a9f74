"""Managers' statistics: ``GET /api/v1/statistics`` as JSON or CSV (docs/decisions/0043).

``?scope=institution:CODE|district:440104|province:GD`` (default: the manager's own), ``from`` and ``to`` (Beijing
dates, inclusive; default the last 30 days up to today), ``granularity=day|week`` (weeks from Monday). Only the
role ``manager`` may ask, and only for their scope or a part of it (403 ``statistics_scope_forbidden``).
``Accept: text/csv`` or ``format=csv`` answers the periods as CSV, UTF-8 with a BOM so that Excel reads the
Chinese headers. The figures come from the ``statistics`` SQL view, followed on the leader
(``statistics_ctx``); an answer waits up to ``CATCH_UP_SECONDS`` for it to reach the end of the log and says
which ``position`` it counts up to.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any, Final, cast

from aiohttp import web

from backend.components import (
    APPLICATIONS,
    CONFIG,
    FOLLOWERS,
    LEADERSHIP,
    PARKING,
    STORE_EXECUTOR,
    WORKING_CALENDAR,
    actor_of,
    follow_on_leader,
    in_store,
    json_response,
)
from backend.errors import BadRequest
from backend.headers import content_disposition
from backend.routes.console import FIELD_LABELS
from domain.bundle import handoff_of_department
from domain.errors import Forbidden, InvalidValue
from domain.policy import SHANGHAI, load_profiles
from domain.referral import label_of
from domain.rejection import label_of as rejection_label
from domain.statistics import FIELD_GROUPS, SCOPE_LABELS, Scope
from projections.runner import LogFollower
from projections.sql import Database
from projections.statistics import Granularity, StatisticsView

routes = web.RouteTableDef()

STATISTICS_VIEW = web.AppKey("statistics_view", StatisticsView)
STATISTICS_FOLLOWER = web.AppKey("statistics_follower", LogFollower)
CATCH_UP_SECONDS: Final = 2.0
DEFAULT_DAYS: Final = 30
MAX_DAYS: Final = 366
CSV_TYPE: Final = "text/csv"

# The CSV's columns: (header, how to read it from a period).
COUNT_COLUMNS: Final = (
    ("started", "开始申请"),
    ("submitted", "首次提交"),
    ("resubmitted", "修改后再次提交"),
    ("issued", "签发"),
    ("delivered", "邮寄签收"),
    ("collected", "现场领取"),
    ("referred", "转窗口办理"),
    ("withdrawn", "撤回"),
    ("rejected", "驳回"),
    ("decided", "审核办结"),
    ("decided_late", "超时办结"),
    ("revoked", "宣布作废"),
)
# 出生一件事, per department (decision 0049): (key in the period's ``bundle[department]``, header).
BUNDLE_COLUMNS: Final = (
    ("sent", "推送"),
    ("done", "办结"),
    ("refused", "未予办理"),
    ("on_time", "按时答复"),
    ("late", "超时答复"),
)
DURATION_LABELS: Final = {"issue": "提交至签发", "delivery": "提交至送达"}


async def statistics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the view's own connection to the store's database and follow the log into it on the leader."""
    loop = asyncio.get_running_loop()
    executor = app[STORE_EXECUTOR]
    db = await loop.run_in_executor(executor, Database.open, app[CONFIG].event_store_env())
    db.fence = app[LEADERSHIP]  # its rows and position written under the leader's term only
    view = StatisticsView(db, executor, calendar=app[WORKING_CALENDAR])
    follower = LogFollower(
        app[APPLICATIONS], view, executor=executor, name="statistics", parking=app.get(PARKING)
    )
    app[STATISTICS_VIEW], app[STATISTICS_FOLLOWER] = view, follower
    follow_on_leader(app, follower)
    yield
    await app[LEADERSHIP].close()  # (already done on shutdown) before the view's connection closes
    with contextlib.suppress(ValueError):
        app[FOLLOWERS].remove(follower)
    await loop.run_in_executor(executor, db.close)


def _day(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} 应为日期，如 2026-03-01", code="invalid_date") from None


def _granularity(request: web.Request) -> Granularity:
    value = request.query.get("granularity", "day")
    if value not in ("day", "week"):
        raise BadRequest("granularity 只能是 day（按日）或 week（按周）", code="invalid_granularity")
    return cast(Granularity, value)


def wants_csv(request: web.Request) -> bool:
    """``format=csv``, or an ``Accept`` that names ``text/csv`` before any JSON."""
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("csv", "json"):
            raise BadRequest("format 只能是 json 或 csv", code="invalid_format")
        return fmt == "csv"
    for part in request.headers.get("Accept", "").split(","):
        media = part.split(";")[0].strip().lower()
        if media == CSV_TYPE:
            return True
        if media in ("application/json", "application/*"):
            return False
    return False


def scope_label(view: StatisticsView, scope: Scope) -> str:
    """The scope as a manager reads it: 广州市第一人民医院, 440104 区县, 广东省."""
    if scope.kind == "province":
        profile = load_profiles().get(scope.code)
        return profile.name if profile else scope.code
    if scope.kind == "institution":
        known = view.institution(scope.code)
        return known[0] if known else scope.code
    return f"{scope.district_province() or ''}{SCOPE_LABELS['district']} {scope.code}"


@routes.get("/api/v1/statistics")
async def get_statistics(request: web.Request) -> web.StreamResponse:
    """The figures of a scope per day or week, with totals; JSON, or CSV."""
    actor = actor_of(request, "manager")
    try:
        own = Scope.parse(actor.scope or "")
    except InvalidValue:  # the account's own scope, not the request, is wrong: an administrator's matter
        raise Forbidden(
            "您的账号未设定有效的统计范围，请联系系统管理员", code="statistics_scope_missing"
        ) from None
    asked = request.query.get("scope")
    scope = own if asked in (None, "") else Scope.parse(asked)
    today = datetime.now(SHANGHAI).date()
    last = _day(request, "to", today)
    first = _day(request, "from", last - timedelta(days=DEFAULT_DAYS - 1))
    granularity = _granularity(request)
    csv_wanted = wants_csv(request)
    if last < first:
        raise BadRequest("结束日期（to）不能早于开始日期（from）", code="invalid_range")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRequest(f"一次最多查询{MAX_DAYS}天", code="range_too_long")
    view = request.app[STATISTICS_VIEW]
    if not await in_store(request, view.contains, own, scope):
        raise Forbidden(
            f"您只能查看{SCOPE_LABELS[own.kind]}范围 {own} 内的统计", code="statistics_scope_forbidden"
        )
    end = await in_store(request, request.app[APPLICATIONS].recorder.max_notification_id)
    await request.app[STATISTICS_FOLLOWER].wait_for(end, timeout=CATCH_UP_SECONDS)
    now = datetime.now(SHANGHAI)
    figures = await in_store(request, view.figures, scope, first, last, granularity, now)
    label = await in_store(request, scope_label, view, scope)
    body: dict[str, Any] = {
        "scope": {"kind": scope.kind, "code": scope.code, "label": label},
        "from": first.isoformat(),
        "to": last.isoformat(),
        "granularity": granularity,
        "time_zone": "Asia/Shanghai",
        "as_of": now.isoformat(timespec="seconds"),
        **figures,
        "labels": _labels(figures),
    }
    if csv_wanted:
        return _csv(body)
    return json_response(body)


def _labels(figures: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Chinese labels of every reason and field the figures name."""
    total = figures["total"]
    return {
        "referrals_by_reason": {r: label_of(r) for r in total["referrals_by_reason"]},
        "rejections_by_reason": {r: rejection_label(r) for r in total["rejections_by_reason"]},
        "rejections_by_field": {f: FIELD_LABELS.get(f, f) for f in total["rejections_by_field"]},
        "rejections_by_field_group": {g: FIELD_GROUPS.get(g, g) for g in total["rejections_by_field_group"]},
        "bundle_departments": {
            d: _department_name(d) for d in sorted({*total["bundle"], *figures["bundle_overdue_open"]})
        },
    }


def _department_name(department: str) -> str:
    handoff = handoff_of_department(department)
    return handoff.name if handoff else department


def _hours(seconds: int | None) -> str:
    return "" if seconds is None else f"{seconds / 3600:.1f}"


def _csv(body: dict[str, Any]) -> web.Response:
    """The periods and their total as CSV (UTF-8 with BOM), a column per reason and field seen."""
    labels = body["labels"]
    breakdowns = [
        (key, prefix, list(labels[key]))
        for key, prefix in (
            ("referrals_by_reason", "转窗口："),
            ("rejections_by_reason", "驳回原因："),
            ("rejections_by_field", "驳回项目："),
            ("rejections_by_field_group", "驳回项目分类："),
        )
    ]
    header = ["周（周一）" if body["granularity"] == "week" else "日期"]
    header += [title for _, title in COUNT_COLUMNS] + ["网办占比"]
    for title in DURATION_LABELS.values():
        header += [f"{title}件数", f"{title}中位数（小时）", f"{title}P90（小时）"]
    for key, prefix, items in breakdowns:
        header += [prefix + labels[key][item] for item in items]
    departments = labels["bundle_departments"]
    for name in departments.values():
        header += [f"一件事·{name}{title}" for _, title in BUNDLE_COLUMNS]
        header += [f"一件事·{name}办理时长中位数（小时）", f"一件事·{name}办理时长P90（小时）"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for name, period in [*((p["period"], p) for p in body["periods"]), ("合计", body["total"])]:
        share = period["online_share"]
        row: list[Any] = [name, *(period[key] for key, _ in COUNT_COLUMNS)]
        row.append("" if share is None else f"{share * 100:.1f}%")
        for kind in DURATION_LABELS:
            d = period[f"{kind}_seconds"]
            row += [d["count"], _hours(d["median"]), _hours(d["p90"])]
        for key, _, items in breakdowns:
            row += [period[key].get(item, 0) for item in items]
        for department in departments:
            part = period["bundle"].get(department)
            if part is None:
                row += [0] * len(BUNDLE_COLUMNS) + ["", ""]
                continue
            row += [part[key] for key, _ in BUNDLE_COLUMNS]
            row += [_hours(part["turnaround_seconds"]["median"]), _hours(part["turnaround_seconds"]["p90"])]
        writer.writerow(row)
    scope = body["scope"]
    filename = f"出生医学证明统计_{scope['kind']}-{scope['code']}_{body['from']}_{body['to']}.csv"
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode("utf-8"),
        content_type=CSV_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": content_disposition("attachment", filename)},
    )
