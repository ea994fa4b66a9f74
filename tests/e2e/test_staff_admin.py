"""An operator manages staff accounts with the CLI beside the running service.

``birthcert users add`` (password on stdin, stored as an argon2 hash), the person logs in to the
console API; ``birthcert users disable`` stops new logins at once and the token already handed out
within ``RECHECK_SECONDS`` (set to 0 here, so the test needs no waiting).
"""

from __future__ import annotations

import pytest

from backend.components import CONFIG
from backend.staff_status import STAFF_STATUS
from miniprogram_stub.client import ApiProblem, StaffClient
from tests.e2e.conftest import Stack
from tests.integration.test_audit_log import run_cli

pytestmark = pytest.mark.e2e


async def test_an_operator_adds_then_disables_an_issuer(stack: Stack) -> None:
    data_dir = stack.app[CONFIG].data_dir
    added = run_cli(
        data_dir,
        "institutions",
        "add",
        "--code",
        "GZFY01",
        "--name",
        "广州市妇女儿童医疗中心",
        "--province",
        "GD",
    )
    assert added.returncode == 0, added.stderr
    added = run_cli(
        data_dir,
        *("users", "add", "--role", "issuer", "--institution", "GZFY01"),
        *("--username", "wangqf", "--name", "王签发"),
        stdin="a-long-enough-password\n",
    )
    assert added.returncode == 0, added.stderr
    assert "a-long-enough-password" not in added.stdout + added.stderr

    issuer = StaffClient(stack.session, stack.api, check=stack.check)
    await issuer.login("wangqf", "a-long-enough-password")
    assert (await issuer.call("GET", "/api/v1/review/queue"))["items"] == []

    stack.app[STAFF_STATUS].recheck_seconds = 0
    disabled = run_cli(data_dir, "users", "disable", "--username", "wangqf", "--reason", "调离岗位")
    assert disabled.returncode == 0, disabled.stderr
    with pytest.raises(ApiProblem) as revoked:
        await issuer.call("GET", "/api/v1/review/queue")  # the token from before
    assert (revoked.value.status, revoked.value.code) == (401, "account_disabled")
    with pytest.raises(ApiProblem) as refused:
        await StaffClient(stack.session, stack.api, check=stack.check).login(
            "wangqf", "a-long-enough-password"
        )
    assert (refused.value.status, refused.value.code) == (401, "invalid_credentials")

    again = run_cli(data_dir, "users", "disable", "--username", "wangqf", "--reason", "调离岗位")
    assert again.returncode == 1 and "already_disabled" in again.stderr
