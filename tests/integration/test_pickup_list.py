"""The issuer's EMS pickup list (揽件清单) of a day: JSON, CSV and PDF over real HTTP.

Two applications of one institution and one of another are issued and dispatched by the EMS process;
the first institution's list for that day holds its two, in full (it is the signed paper record), and
nothing of the other. The PDF is checked as a reader sees it: its text and its fonts all embedded
(pypdf), and, where poppler is installed, a rendered page kept in test-artifacts/pickup-list.png.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import aiohttp
import pytest

from backend.errors import BadRequest
from backend.routes.ems import EMS_PROCESS, negotiate
from domain.application import BirthCertificateApplication
from domain.staff import AccessRecord
from domain.values import Actor
from tests.builders import MOTHER_ID, SD_MOTHER_ID, SECOND_MOTHER_ID, Walk, issuer
from tests.integration.test_ems import (  # noqa: F401  (fixtures)
    SHANGHAI,
    Stack,
    fake_ems,
    http,
    sd_family,
    second_gd_family,
    stack,
)
from tests.pdf_reading import pdf_fonts, pdf_text, render_first_page, rendering_unavailable

HEADINGS = (
    "序号",
    "出生医学证明编号",
    "EMS邮件号",
    "新生儿母亲姓名",
    "新生儿母亲身份证号",
    "新生儿姓名",
    "出生日期",
    "收件人姓名",
    "收件人联系电话",
)


class Day:
    """Three dispatched applications: two of 广州市妇女儿童医疗中心 (GD), one of 平阴县人民医院 (SD)."""

    def __init__(self, service_stack: Stack, gd: list[Walk], sd: Walk, day: date) -> None:
        self.stack, self.gd, self.sd, self.day = service_stack, gd, sd, day

    async def get(self, actor: Actor, query: str = "", accept: str | None = None) -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {self.stack.token(actor)}"}
        if accept is not None:
            headers["Accept"] = accept
        url = f"{self.stack.api}/api/v1/review/pickup-list?date={self.day.isoformat()}{query}"
        response = await self.stack.session.get(url, headers=headers)
        await response.read()
        return response


@pytest.fixture
async def day(stack: Stack) -> Day:  # noqa: F811  (the fixture imported above)
    """The three families issued and dispatched by the EMS process; the day of their dispatch."""
    gd = [Walk(stack.service), second_gd_family(stack.service)]
    sd = sd_family(stack.service)
    await stack.issue(gd[0], "X440100001")
    await stack.issue(sd, "Y370100001")
    await stack.issue(gd[1], "X440100002")
    for walk in (*gd, sd):
        await stack.dispatched(walk)
    # The index follows the log: wait until the process has read its own Dispatched events.
    process = stack.app[EMS_PROCESS]
    end = await stack.store(stack.service.recorder.max_notification_id) or 0
    async with asyncio.timeout(10):
        while await process.position() < end:
            await asyncio.sleep(0.05)
    [dispatched] = await stack.events(gd[0], BirthCertificateApplication.Dispatched)
    return Day(stack, gd, sd, dispatched.timestamp.astimezone(SHANGHAI).date())


async def test_the_json_list_holds_the_institutions_dispatches_of_the_day(day: Day) -> None:
    response = await day.get(issuer())
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["title"] == "广东省出生医学证明邮政速递揽件签收登记表"
    assert body["institution"] == {"code": "GZFY01", "name": "广州市妇女儿童医疗中心"}
    assert body["date"] == day.day.isoformat()
    assert [c["label"] for c in body["columns"]] == list(HEADINGS)
    assert body["count"] == 2
    assert body["count_sentence"] == "本次揽件共 2 枚出生医学证明，请打印一式两份，各执一份。"
    assert [s["label"] for s in body["signatures"]] == ["签发经办人签名", "邮政揽件人签名"]
    first, second = body["rows"]
    assert {k: first[k] for k in ("no", "certificate_number", "mother_name", "mother_id_number")} == {
        "no": 1,
        "certificate_number": "X440100001",
        "mother_name": "王芳",
        "mother_id_number": MOTHER_ID,
    }
    born = (await day.stack.app_of(day.gd[0])).record or {}
    assert first["birth_date"] == str(born["born_at"])[:10]
    assert (first["newborn_name"], first["recipient_name"], first["recipient_phone"]) == (
        "张小花",
        "王芳",
        "13812345678",
    )
    assert first["tracking_number"] == (await day.stack.app_of(day.gd[0])).tracking_number
    assert (second["no"], second["certificate_number"], second["mother_name"]) == (2, "X440100002", "李梅")
    assert second["mother_id_number"] == SECOND_MOTHER_ID
    assert SD_MOTHER_ID not in await response.text()

    other = await day.get(Actor(id="issuer-JNPY01", role="issuer", institution="JNPY01"))
    sd = await other.json()
    assert sd["title"] == "山东省出生医学证明邮政速递揽件签收登记表"
    assert [r["mother_id_number"] for r in sd["rows"]] == [SD_MOTHER_ID]

    day.day -= timedelta(days=1)
    assert (await (await day.get(issuer())).json())["count"] == 0


async def test_the_csv_opens_in_excel(day: Day) -> None:
    response = await day.get(issuer(), "&format=csv")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert (
        f'filename="pickup-list-GZFY01-{day.day.isoformat()}.csv"' in response.headers["Content-Disposition"]
    )
    raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == list(HEADINGS)
    assert len(rows) == 3
    # Long digit strings stay text in Excel (a leading tab); the values are whole.
    assert [r[4].strip() for r in rows[1:]] == [MOTHER_ID, SECOND_MOTHER_ID]
    assert rows[1][4] == "\t" + MOTHER_ID
    assert [r[3] for r in rows[1:]] == ["王芳", "李梅"]
    assert rows[1][8].strip() == "13812345678"
    assert [r[2] for r in rows[1:]] == [(await day.stack.app_of(w)).tracking_number for w in day.gd]
    assert SD_MOTHER_ID not in raw.decode("utf-8-sig")


async def pickup_pdf(day: Day) -> bytes:
    response = await day.get(issuer(), accept="application/pdf")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Cache-Control"] == "no-store"
    pdf = await response.read()
    assert pdf.startswith(b"%PDF-")
    return pdf


async def test_the_pdf_is_the_printed_form_with_its_fonts_embedded(day: Day) -> None:
    pdf = await pickup_pdf(day)
    text = pdf_text(pdf)
    waybills = [(await day.stack.app_of(w)).tracking_number for w in day.gd]
    assert all(waybills)
    for expected in (
        *waybills,  # the courier matches each envelope to its row by its waybill number
        "广东省出生医学证明邮政速递揽件签收登记表",
        "广州市妇女儿童医疗中心",
        f"{day.day.year}年{day.day.month}月{day.day.day}日",
        *HEADINGS,
        "X440100001",
        "X440100002",
        MOTHER_ID,
        SECOND_MOTHER_ID,
        "王芳",
        "李梅",
        "13812345678",
        "签发经办人签名",
        "邮政揽件人签名",
    ):
        assert expected in text, expected
    assert re.search(r"第\s*1\s*页\s*共\s*1\s*页", text)
    assert "本次揽件共" in text and "2" in text.split("本次揽件共", 1)[1][:10]
    assert "枚出生医学证明，请打印一式两份，各执一份。" in text
    assert SD_MOTHER_ID not in text and "Y370100001" not in text

    fonts = pdf_fonts(pdf)
    assert fonts and all(font.embedded for font in fonts), f"a font is not embedded: {fonts}"


async def test_the_pdf_renders_as_an_image(day: Day) -> None:
    """test-artifacts/pickup-list.png, to look at."""
    reason = rendering_unavailable()
    if reason:
        pytest.skip(reason)
    assert render_first_page(await pickup_pdf(day), "pickup-list").stat().st_size > 10_000


async def test_formats_by_accept_header(day: Day) -> None:
    csv_answer = await day.get(issuer(), accept="text/csv")
    assert csv_answer.headers["Content-Type"].startswith("text/csv")
    json_answer = await day.get(issuer(), accept="text/html, application/json;q=0.9, */*;q=0.1")
    assert json_answer.headers["Content-Type"].startswith("application/json")
    refused = await day.get(issuer(), accept="image/png")
    assert refused.status == 406
    assert (await refused.json())["code"] == "not_acceptable"
    assert (await day.get(issuer(), "&format=xlsx")).status == 400


async def test_who_may_read_which_list(day: Day) -> None:
    assert (await day.get(issuer(), "&institution=JNPY01")).status == 404
    assert (await day.get(Actor(id="openid-mother", role="parent"))).status == 403
    auditor = Actor(id="auditor-1", role="auditor", name="审计员")
    missing = await day.get(auditor)
    assert (missing.status, (await missing.json())["code"]) == (400, "institution_required")
    answer = await day.get(auditor, "&institution=gzfy01")
    assert answer.status == 200
    assert (await answer.json())["count"] == 2
    # Reading full personal data as an auditor leaves a record of who read what.
    records = await day.stack.store(
        lambda: [
            agg
            for _, agg in _aggregates(day.stack)
            if isinstance(agg, AccessRecord) and getattr(agg, "what", None) == "ems_pickup_list"
        ]
    )
    assert len(records) == 2
    wrong_date = await day.stack.session.get(
        f"{day.stack.api}/api/v1/review/pickup-list?date=2026-13-01",
        headers={"Authorization": f"Bearer {day.stack.token(issuer())}"},
    )
    assert (wrong_date.status, (await wrong_date.json())["code"]) == (400, "invalid_date")


def _aggregates(service_stack: Stack) -> list[tuple[Any, Any]]:
    """Every aggregate in the store (on the store thread)."""
    service = service_stack.service
    ids = {n.originator_id for n in service.recorder.select_notifications(start=1, limit=10_000)}
    return [(i, service.repository.get(UUID(str(i)))) for i in ids]


def test_negotiation() -> None:
    assert negotiate(None, None) == "json"
    assert negotiate("PDF", "text/csv") == "pdf"
    assert negotiate(None, "application/pdf") == "pdf"
    assert negotiate(None, "text/*") == "csv"
    assert negotiate(None, "*/*") == "json"
    assert negotiate(None, "application/json;q=0.5, text/csv") == "csv"
    assert negotiate(None, "text/csv;q=0, application/pdf;q=0.2") == "pdf"
    with pytest.raises(BadRequest):
        negotiate("docx", None)


async def test_an_auditors_institution_is_checked_before_it_reaches_a_header(day: Day) -> None:
    """A DEL byte or a quote in ``institution`` is refused with a problem; nothing is read or recorded."""
    auditor = Actor(id="auditor-1", role="auditor", name="审计员")
    for raw in ("%7F", "GZFY01%22%3B%20filename%3D%22evil.exe", "GZFY01%0D%0AX-Injected%3A%201", "AB"):
        for fmt in ("json", "csv", "pdf"):
            refused = await day.get(auditor, f"&institution={raw}&format={fmt}")
            assert refused.status == 400, (raw, fmt)
            assert refused.headers["Content-Type"] == "application/problem+json"
            assert (await refused.json())["code"] == "invalid_institution_code"
            assert "Content-Disposition" not in refused.headers
            assert "X-Injected" not in refused.headers
    assert (await day.get(issuer(), "&institution=%22x")).status == 400


async def test_the_download_names_exactly_one_file(day: Day) -> None:
    answer = await day.get(
        Actor(id="auditor-1", role="auditor", name="审计员"), "&institution=gzfy01&format=csv"
    )
    assert answer.status == 200
    disposition = answer.headers["Content-Disposition"]
    stem = f"pickup-list-GZFY01-{day.day.isoformat()}.csv"
    assert disposition == f"attachment; filename=\"{stem}\"; filename*=UTF-8''{stem}"
    assert disposition.count("filename=") == 1


async def test_a_day_outside_the_services_era_is_refused(day: Day) -> None:
    for wrong in ("0133-12-27", "1999-12-31", "2100-01-01", "9999-12-31"):
        day.day = date.fromisoformat(wrong)
        refused = await day.get(issuer())
        assert (refused.status, (await refused.json())["code"]) == (400, "date_out_of_range"), wrong
    for fine in (
        "2000-01-01",
        (datetime.now(SHANGHAI).date() + timedelta(days=30)).isoformat(),
        "2099-12-31",
    ):
        day.day = date.fromisoformat(fine)
        answer = await day.get(issuer())
        assert (answer.status, (await answer.json())["count"]) == (200, 0), fine
