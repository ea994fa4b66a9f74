"""What the access log and the metrics say about answers that are not errors of ours.

An upload the client cuts off mid-body and a redirect raised by a handler were both counted and logged as
500s: an operator watching the 5xx rate saw failures that were not. Each is driven over a real socket
against the running service, and the log line and the metric of that request are read back.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
DEADLINE = 10.0
UPLOAD_ROUTE = "/api/v1/applications/{app_id}/documents"


async def access_line(caplog: pytest.LogCaptureFixture, route: str, method: str) -> logging.LogRecord:
    """The access-log record of the (first) request to ``route``, waited for (the handler may still run)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            for record in caplog.records:
                if record.name == "birthcert.access" and (record.route, record.method) == (route, method):  # type: ignore[attr-defined]
                    return record
            await asyncio.sleep(0.02)


async def counted(stack: Stack, method: str, route: str) -> dict[str, float]:
    """``birthcert_http_requests_total`` of ``method route`` by status, from ``/metrics``."""
    async with stack.session.get(f"{stack.api}/metrics") as r:
        text = await r.text()
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "birthcert_http_requests_total"
        and (sample.labels["method"], sample.labels["route"]) == (method, route)
    }


async def started(stack: Stack, family: Family, caplog: pytest.LogCaptureFixture) -> MiniProgram:
    """Logs captured; the family's delivery recorded and their application started."""
    caplog.set_level(logging.INFO)
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    return mp


async def test_an_upload_cut_off_mid_body_is_a_client_abort_not_a_500(
    stack: Stack, family: Family, caplog: pytest.LogCaptureFixture
) -> None:
    mp = await started(stack, family, caplog)
    await mp.verify_face("mother")
    where = urlsplit(stack.api)
    _, writer = await asyncio.open_connection(where.hostname, where.port)
    boundary = "cutoff"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nmother_id_front\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    writer.write(
        (
            f"POST /api/v1/applications/{mp.app_id}/documents HTTP/1.1\r\n"
            f"Host: {where.netloc}\r\nAuthorization: Bearer {mp.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 2000000\r\n\r\n"
        ).encode()
        + head
        + b"\xff\xd8\xff\xe0"
        + b"\x00" * 200_000
    )
    await writer.drain()
    writer.close()  # the phone lost its signal: 200 KB of 2 MB sent
    await writer.wait_closed()

    line = await access_line(caplog, UPLOAD_ROUTE, "POST")
    assert 400 <= line.status < 500  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records
    ]
    statuses = await counted(stack, "POST", UPLOAD_ROUTE)
    assert "500" not in statuses and sum(statuses.values()) == 1
    # Nothing was stored: the application still misses its photos.
    assert "documents_uploaded" in [s["code"] for s in (await mp.status())["next_steps"]]


async def test_a_raised_redirect_is_logged_as_the_redirect(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with stack.session.get(f"{stack.api}/console", allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (308, "/console/")
    line = await access_line(caplog, "/console", "GET")
    assert line.status == 308  # type: ignore[attr-defined]
    assert await counted(stack, "GET", "/console") == {"308": 1.0}


STATUS_ROUTE = "/api/v1/applications/{app_id}"


async def test_status_reads_that_succeed_are_sampled_in_the_access_log_and_counted_in_full(
    stack: Stack, family: Family, caplog: pytest.LogCaptureFixture
) -> None:
    """Decision 0029: one line per 100 successful status reads (marked ``sampled``); every failure logged."""
    mp = await started(stack, family, caplog)
    for _ in range(5):
        await mp.status()
    stranger = f"{stack.api}/api/v1/applications/00000000-0000-4000-8000-000000000000"
    async with stack.session.get(stranger, headers={"Authorization": f"Bearer {mp.token}"}) as r:
        assert r.status == 404
    await access_line(caplog, STATUS_ROUTE, "GET")
    lines = [
        r
        for r in caplog.records
        if r.name == "birthcert.access" and (r.route, r.method) == (STATUS_ROUTE, "GET")  # type: ignore[attr-defined]
    ]
    assert [(r.status, getattr(r, "sampled", None)) for r in lines] == [(200, 100), (404, None)]  # type: ignore[attr-defined]
    statuses = await counted(stack, "GET", STATUS_ROUTE)
    assert statuses["200"] >= 5 and statuses["404"] == 1
