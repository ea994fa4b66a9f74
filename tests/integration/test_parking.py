"""A follower that meets one event it cannot apply: it finds that event, parks it, goes on, and takes it
back when an operator asks — except the audit log, whose order matters, which stops and says so.

The poisoned row is real: the signature image behind one application's first ``FormSigned`` becomes
unreadable on disk (an I/O error, not a missing or damaged blob that the PDF records as such). The form
is archived at once all the same; only its PDF, drawn behind the archive, waits parked.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from backend.object_store import LocalObjects
from backend.storage import BlobStore, blob_key
from projections.archive import FormArchive
from projections.runner import LogFollower, Page
from projections.sql import Database, SqlParkingLot
from tests.integration.following import projections_cli, running
from tests.integration.test_archive import Bench, count, journey
from tests.integration.test_archive import bench as bench
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def lot(bench: Bench) -> AsyncIterator[SqlParkingLot]:
    executor = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    db = await loop.run_in_executor(executor, Database.open, bench.env)
    yield SqlParkingLot(db, executor)
    await loop.run_in_executor(executor, db.close)
    executor.shutdown(wait=True)


def break_blob(blobs: BlobStore, sha256: str) -> tuple[Path, bytes]:
    """Make one stored blob unreadable (a directory where its file was): reading it raises an OSError."""
    assert isinstance(blobs.objects, LocalObjects)
    path = blobs.objects.path(blob_key(sha256))
    data = path.read_bytes()
    path.unlink()
    path.mkdir()
    return path, data


async def test_a_poisoned_pdf_is_parked_and_the_rest_is_rendered(
    bench: Bench,
    lot: SqlParkingLot,
) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    path, data = break_blob(bench.blobs, j.signatures[0])
    archive: FormArchive = await bench.run(bench.archive)
    end = await bench.follow(archive, pdfs=False)
    assert await bench.run(count, archive) == 3  # every form is archived at once, with its hash
    renderer = bench.renderer(archive)
    renderer.parking, renderer.park_after, renderer.retry_poll_seconds = lot, 3, 0.05
    renderer.poll_interval = 0.01
    task = asyncio.create_task(renderer.run())
    try:
        await eventually(lambda: renderer.position == end, "the renderer reached the end of the archive")
        parked = await lot.parked("archive_pdf")
        assert [(p.follower, p.error, p.attempts) for p in parked] == [
            ("archive_pdf", "IsADirectoryError", 3)
        ]
        # The PDFs after it are drawn: the second signed form (its own image) and the issued one.
        forms = await bench.run(archive.forms_of, j.walk.id)
        assert [(f.kind, f.pdf_pending) for f in forms] == [
            ("signed", True),
            ("signed", False),
            ("issued", False),
        ]
        health = renderer.health()
        assert (health.parked, health.stalled) == (1, False)

        # The operator repairs the disk and asks for a retry (what `birthcert projections retry` does).
        path.rmdir()
        path.write_bytes(data)
        assert await bench.run(lot.request_retry, "archive_pdf", None) == 1
        await eventually(lambda: _none_pending(bench, archive, j.walk.id), "the parked PDF drawn on retry")
        await eventually(lambda: _none_parked(lot), "the parked row released")
    finally:
        renderer.stop()
        await task
    first = await bench.run(archive.get, forms[0].id)
    assert first is not None and first.pdf is not None and first.pdf.startswith(b"%PDF-")
    assert renderer.health().parked == 0


async def _none_pending(on: Bench, archive: FormArchive, app_id: object) -> bool:
    return not any(f.pdf_pending for f in await on.run(archive.forms_of, app_id))


async def _count_is(on: Bench, archive: FormArchive, n: int) -> bool:
    return bool(await on.run(count, archive) == n)


async def _none_parked(lot: SqlParkingLot) -> bool:
    return not await lot.parked()


async def test_the_audit_log_order_is_kept_a_failing_event_stops_it_loudly(bench: Bench) -> None:
    """An ordered view never skips: the follower stays before the failing event and reports itself stalled."""
    await bench.run(journey, bench.applications, bench.blobs)
    end = await bench.run(bench.applications.recorder.max_notification_id)
    poisoned = end // 2

    class Ordered:
        """A log whose order matters, refusing one event (as a damaged stored event would be)."""

        ordered = True

        def __init__(self) -> None:
            self.at = 0

        async def position(self) -> int:
            return self.at

        async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
            if start != self.at:
                return False
            if any(position == poisoned for position, _ in page):
                raise ValueError("cannot hash this event")
            self.at = page[-1][0] if end is None else end
            return True

        async def reset(self) -> None:
            self.at = 0

    view = Ordered()
    follower = LogFollower(
        bench.applications, view, executor=bench.executor, page_size=8, poll_interval=0.01, park_after=2
    )
    async with running(follower):
        await eventually(lambda: follower.health().stalled, "the follower reports itself stalled")
        assert view.at < poisoned
        assert follower.position < poisoned
        assert follower.health().last_error == "ValueError"


def test_the_cli_lists_parked_events_and_asks_for_their_retry(
    sqlite_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = Database.open(sqlite_env)
    lot = SqlParkingLot(db, ThreadPoolExecutor(max_workers=1))
    lot.park_now("archive", 42, "IsADirectoryError", 5)
    assert projections_cli(monkeypatch, sqlite_env, tmp_path, "parked") == 0
    out = capsys.readouterr().out
    assert "archive" in out and "42" in out and "IsADirectoryError" in out

    assert projections_cli(monkeypatch, sqlite_env, tmp_path, "retry", "--follower", "archive") == 0
    assert "1 parked event(s) marked for a retry" in capsys.readouterr().out
    assert [p.retry_requested for p in lot.list_now()] == [True]
    # Nothing of that follower's is parked.
    assert projections_cli(monkeypatch, sqlite_env, tmp_path, "retry", "--follower", "status") == 1
    db.close()


async def test_a_pdf_worker_that_dies_parks_nothing_and_a_new_pool_draws_the_page(
    bench: Bench, lot: SqlParkingLot
) -> None:
    """A worker process killed (the OOM killer, an operator) breaks its pool: no row's fault."""
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive: FormArchive = await bench.run(bench.archive)
    end = await bench.follow(archive, pdfs=False)

    def pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    broken = pool()
    await asyncio.get_running_loop().run_in_executor(broken, os.getpid)  # its worker started
    for process in list(broken._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    renderer = bench.renderer(archive)
    renderer.parking, renderer.park_after, renderer.poll_interval = lot, 1, 0.01
    renderer.render_executor, renderer.new_render_executor = broken, pool
    task = asyncio.create_task(renderer.run())
    try:
        await eventually(lambda: renderer.position == end, "the PDFs drawn by a new pool")
    finally:
        renderer.stop()
        await task
        renderer.render_executor.shutdown(wait=True)
    assert renderer.render_executor is not broken
    assert await lot.parked() == []
    assert not any(f.pdf_pending for f in await bench.run(archive.forms_of, j.walk.id))


WORKER_PARENT = """
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
from projections.archive_pdf import render_worker_init

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=context, initializer=render_worker_init, initargs=(os.getpid(), 0.05))
    print(pool.submit(os.getpid).result(), flush=True)
    sys.stdin.read()
"""


async def test_a_render_worker_leaves_with_the_service_even_after_a_kill_9() -> None:
    """A pool's worker never sees its parent die on its own (it holds its queue's write end too)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", WORKER_PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, parent.stdout.readline)
        worker = psutil.Process(int(line))
        parent.kill()
        parent.wait()
        await eventually(lambda: not _running(worker), "the worker gone with its parent", 10.0)
    finally:
        parent.kill()
        parent.wait()


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
