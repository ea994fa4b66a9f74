"""The demo accounts `make run` seeds (backend/dev.py), over real HTTP: each logs in with the role, institution
and scope it is listed with, the Hebei district's manager (``manager3``, 长安区) sees the Hebei hospital's figures
and nothing outside the district, and the README lists every one of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from backend.dev import DEMO_ACCOUNTS, DEMO_DISTRICTS, DEMO_MANAGERS, DEMO_PASSWORD
from miniprogram_stub.client import StaffClient
from tests.e2e.conftest import Stack
from tests.e2e.test_staff import staff

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_every_demo_account_logs_in_as_listed(stack: Stack) -> None:
    await staff(stack, "issuer1")  # seeds the demo institutions and accounts
    client = StaffClient(stack.session, stack.api, check=stack.check)
    for username, role, institution, name in DEMO_ACCOUNTS:
        answer = await client.login(username, DEMO_PASSWORD)
        assert (answer["role"], answer["institution"], answer["name"]) == (role, institution, name)
        assert "scope" not in answer, username
    for username, scope, name in DEMO_MANAGERS:
        answer = await client.login(username, DEMO_PASSWORD)
        assert (answer["role"], answer["institution"], answer["scope"], answer["name"]) == (
            "manager",
            None,
            scope,
            name,
        )


async def _statistics(client: StaffClient, query: str = "") -> tuple[int, Any]:
    async with client.session.get(
        f"{client.api}/api/v1/statistics?{query}", headers={"Authorization": f"Bearer {client.token}"}
    ) as r:
        body = await r.json()
        assert client.check is not None
        client.check("GET", "/api/v1/statistics", r.status, r.content_type, body)
        return r.status, body


async def test_the_hebei_district_manager_sees_the_hebei_hospital_and_nothing_outside(stack: Stack) -> None:
    manager = await staff(stack, "manager3")
    assert DEMO_DISTRICTS["SJZFY01"] == "130102"
    status, body = await _statistics(manager)
    assert status == 200 and (body["scope"]["kind"], body["scope"]["code"]) == ("district", "130102")
    assert body["scope"]["label"] == "河北省区县 130102"
    status, body = await _statistics(manager, "scope=institution:SJZFY01")
    assert status == 200 and body["scope"]["label"] == "石家庄市妇产医院"
    for scope in ("province:HE", "district:370124", "institution:GZFY01", "institution:JNPY01"):
        status, body = await _statistics(manager, f"scope={scope}")
        assert (status, body["code"]) == (403, "statistics_scope_forbidden"), scope


def test_the_readme_lists_every_demo_account() -> None:
    """What `make run` seeds is what the README tells a developer to log in with (and nothing more)."""
    text = README.read_text(encoding="utf-8")
    part = text[text.index("## Trying the staff side") :]
    part = part[: part.index("\n## ", 1)]
    listed = set(re.findall(r"`((?:issuer|his|auditor|manager|police)\d+)`", part))
    seeded = {a[0] for a in DEMO_ACCOUNTS} | {m[0] for m in DEMO_MANAGERS}
    assert listed == seeded
    for username, scope, _ in DEMO_MANAGERS:
        assert re.search(rf"`{username}`[^`]*`{scope}`", part), username
