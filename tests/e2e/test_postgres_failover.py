"""PostgreSQL failing over under concurrent journeys: in-flight commands are answered 503 with Retry-After (never a
500), the mini-program sends them again under their keys, no acknowledged command is lost or doubled, and every
view catches up on connections opened anew.

The service reaches PostgreSQL through a proxy that, at each failover, cuts every connection at once and refuses
new ones for longer than the library's own retries last (10 × 0.2 s), as clients see a primary die and a standby
be promoted. The journeys and what is checked afterwards are the kill -9 test's (tests/e2e/test_kill_nine.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.tcp_proxy import FailoverProxy
from tests.e2e.test_kill_nine import Service, run_kill_nine

pytestmark = pytest.mark.postgres

# Longer than the library's retries of a statement (10 attempts 0.2 s apart), so commands in flight fail.
DOWN_SECONDS = 12.0


async def failovers(
    tmp_path: Path, redis_url: str, postgres_env: dict[str, str], *, families: int, failovers: int
) -> None:
    proxy = FailoverProxy(postgres_env["POSTGRES_HOST"], int(postgres_env["POSTGRES_PORT"]))
    port = await proxy.start()

    async def fail_over(_service: Service) -> None:
        await proxy.fail_over(DOWN_SECONDS)

    store = {**postgres_env, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(port)}
    try:
        figures = await run_kill_nine(
            tmp_path, redis_url, families=families, kills=failovers, fault=fail_over, store=store
        )
    finally:
        await proxy.close()
    assert proxy.cuts == failovers
    print(figures, f"proxy: {proxy.accepted} connections, {proxy.refused} refused")


async def test_a_failover_of_postgresql_answers_503_and_loses_no_acknowledged_command(
    tmp_path: Path, redis_url: str, postgres_env: dict[str, str]
) -> None:
    await failovers(tmp_path, redis_url, postgres_env, families=5, failovers=1)


@pytest.mark.long
async def test_failovers_under_many_journeys(
    tmp_path: Path, redis_url: str, postgres_env: dict[str, str]
) -> None:
    await failovers(tmp_path, redis_url, postgres_env, families=20, failovers=3)
