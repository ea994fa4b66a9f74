"""The benchmark's seeder (bench/seed.py) makes a store the service could have written.

A few families seeded by the fast path (in-memory domain service with the store's keys, one batch insert
per batch) are read back through the service from the real SQLite file: every application submitted, its
events decrypted with the store's keys, the status view rebuilt from the log, the form archive's position
at the log's end; seeding again with ``--top-up`` adds nothing, without it adds new families.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import UUID

import pytest
import redis.asyncio as aioredis
from rich.console import Console

from backend.migrate import schema_status
from bench.seed import ARCHIVE_POSITION, SEED_FILE, main, seed, store_env
from domain.application import BirthCertificateApplication
from domain.service import Applications
from projections.runner import LogFollower
from projections.sql import Database
from projections.status import StatusView

QUIET = Console(quiet=True)


def started_ids(applications: Applications) -> list[str]:
    topic = BirthCertificateApplication.ApplicationStarted.TOPIC
    return [
        str(n.originator_id) for n in applications.recorder.select_notifications(1, 10_000, topics=(topic,))
    ]


async def test_a_seeded_store_is_one_the_service_reads_and_rebuilds(
    tmp_path: Path, executor: ThreadPoolExecutor, client: aioredis.Redis
) -> None:
    store = tmp_path / "store"
    info = seed(store, 3, batch_size=2, console=QUIET)
    assert (info["applications"], info["next_family"], info["events"]) == (3, 3, 63)

    applications = Applications(store_env(store))
    db = Database.open(store_env(store))
    try:
        ids = started_ids(applications)
        assert len(ids) == 3
        for app_id in ids:
            app: BirthCertificateApplication = applications.repository.get(UUID(app_id))
            assert (app.state, app.version) == ("submitted", 15)
        end = applications.recorder.max_notification_id()
        assert end == info["max_notification_id"] == 63
        assert db.position(ARCHIVE_POSITION) == end

        view = StatusView(client, applications, executor, pseudonym_key=b"k" * 32, seal_key=b"s" * 32)
        follower = LogFollower(applications, view, executor=executor)
        assert await follower.catch_up() == end
        assert await view.count() == 3
    finally:
        db.close()
        applications.close()


def test_top_up_adds_only_what_the_store_lacks(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert main(["--store", str(store), "--scale", "2"]) == 0
    assert main(["--store", str(store), "--scale", "2", "--top-up"]) == 0
    assert json.loads((store / SEED_FILE).read_text())["applications"] == 2
    assert main(["--store", str(store), "--scale", "1"]) == 0  # one more, a new family
    info = json.loads((store / SEED_FILE).read_text())
    assert (info["applications"], info["next_family"], len(info["runs"])) == (3, 3, 2)


@pytest.mark.postgres
def test_a_new_postgres_store_is_migrated_before_it_is_seeded(
    tmp_path: Path, unmigrated_postgres_env: dict[str, str]
) -> None:
    """``make bench-processes`` on a database nobody migrated: the seeder migrates it as an operator would."""
    settings = {
        k: v
        for k, v in unmigrated_postgres_env.items()
        if k.startswith("POSTGRES_") or k == "PERSISTENCE_MODULE"
    }
    store = tmp_path / "store"
    info = seed(store, 2, batch_size=2, postgres=settings, console=QUIET)
    assert info["applications"] == 2
    assert schema_status(store_env(store)).ready
