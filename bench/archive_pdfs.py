"""The form archive's cold catch-up: forms and PDFs per second, and what it holds back meanwhile.

Seeds a SQLite store with N signed applications (a real signature image in the blob store), then lets an archive
catch up from nothing while two probes run: the event loop's lag (a 5 ms sleep, late by how much) and the wait
of a trivial call on the store executor (what a command would wait for). Run on main's code (PYTHONPATH at a
main checkout: the PDF drawn inside the archive's page) and on this branch's (the archive writes rows at once,
``PdfRenderer`` draws the PDFs in worker processes behind it), and compare::

    .venv/bin/python -m bench.archive_pdfs --forms 300 --workers 1 2
    PYTHONPATH=/path/to/main .venv/bin/python /path/to/this/bench/archive_pdfs.py --forms 300

Not a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backend.storage import BlobStore, at_rest_key
from bench.commands import Families, store_env
from domain.service import Applications
from miniprogram_stub.client import signature_png
from projections.archive import FormArchive
from projections.runner import LogFollower
from projections.sql import Database
from tests.builders import NOW

try:  # this branch: the PDFs drawn behind the archive
    from projections.archive_pdf import PdfRenderer
except ImportError:  # main before it: the PDFs drawn in the archive's page
    PdfRenderer = None  # type: ignore[assignment,misc]


def seed(directory: Path, forms: int) -> tuple[dict[str, str], BlobStore]:
    """A store of ``forms`` signed applications, and the blob store holding the signature image."""
    env = store_env(directory)
    app = Applications(env, clock=lambda: NOW)
    blobs = BlobStore(directory / "blobs", at_rest_key(env["CIPHER_KEY"], b""))
    ref = blobs.put(signature_png(), "image/png")
    families = Families(app)
    for _ in range(forms):
        walk = families.walk()
        walk.start()
        walk.verify("mother")
        walk.confirm()
        walk.details()
        walk.verify("father")
        walk.upload_all()
        app.sign_form(
            walk.parent,
            walk.id,
            form_sha256=app.get_application(walk.parent, walk.id).form_sha256() or "",
            signature_document_id=ref.sha256,
            signature_sha256=ref.sha256,
        )
    app.close()
    return env, blobs


class Probes:
    """The event loop's lag and the store executor's wait, sampled while the archive catches up."""

    def __init__(self, store: Executor) -> None:
        self.store = store
        self.loop_lag: list[float] = []
        self.store_wait: list[float] = []
        self._stop = False

    async def run(self) -> None:
        await asyncio.gather(self._loop(), self._store())

    def stop(self) -> None:
        self._stop = True

    async def _loop(self) -> None:
        while not self._stop:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.loop_lag.append(time.perf_counter() - started - 0.005)

    async def _store(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop:
            started = time.perf_counter()
            await loop.run_in_executor(self.store, time.perf_counter)
            self.store_wait.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)

    def summary(self) -> dict[str, float]:
        def pct(values: list[float], q: float) -> float:
            return (
                round(sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000, 2) if values else 0.0
            )

        return {
            "loop_lag_ms_p50": pct(self.loop_lag, 0.5),
            "loop_lag_ms_p99": pct(self.loop_lag, 0.99),
            "store_wait_ms_p50": pct(self.store_wait, 0.5),
            "store_wait_ms_p99": pct(self.store_wait, 0.99),
        }


async def until(condition: Callable[[], bool | Awaitable[bool]], every: float = 0.02) -> float:
    """The time at which ``condition`` first held (polled)."""
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return time.perf_counter()
        await asyncio.sleep(every)


async def catch_up(env: dict[str, str], blobs: BlobStore, forms: int, workers: int) -> dict[str, Any]:
    """One cold catch-up of the archive (and its PDFs) with the probes running."""
    store = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-store")
    io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="io")
    loop = asyncio.get_running_loop()
    app = await loop.run_in_executor(store, lambda: Applications(env, clock=lambda: NOW))
    end = await loop.run_in_executor(store, app.recorder.max_notification_id)
    key = at_rest_key(env["CIPHER_KEY"], b"")
    db = await loop.run_in_executor(store, Database.open, env)
    probes = Probes(store)
    probing = asyncio.create_task(probes.run())
    result: dict[str, Any] = {"forms": forms, "events": end}
    if PdfRenderer is None:
        # main: the archive draws each page's PDFs on the render executor (the service gave it the I/O pool).
        archive = FormArchive(db, app, store, blobs, key=key, render_executor=io)  # type: ignore[call-arg]
        follower = LogFollower(app, archive, executor=store)
        started = time.perf_counter()
        await follower.catch_up()
        took = time.perf_counter() - started
        result.update(code="main", forms_per_s=round(forms / took, 1), pdfs_per_s=round(forms / took, 1))
        result.update(forms_seconds=round(took, 2), pdfs_seconds=round(took, 2))
    else:
        archive = FormArchive(db, app, store, key=key)
        follower = LogFollower(app, archive, executor=store)
        own = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-pdf")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        # Start the workers before the clock (the service starts them with the first PDF, once).
        await asyncio.gather(*(loop.run_in_executor(pool, time.sleep, 0.2) for _ in range(workers)))
        renderer_db = await loop.run_in_executor(own, Database.open, env)
        renderer = PdfRenderer(archive, renderer_db, own, render_executor=pool, io_executor=io, blobs=blobs)
        archive.on_written = renderer.wake
        started = time.perf_counter()
        rendering = asyncio.create_task(renderer.run())
        following = asyncio.create_task(follower.run())
        forms_done = await until(lambda: follower.position >= end)
        pdfs_done = await until(lambda: renderer.position >= end)
        follower.stop()
        renderer.stop()
        await asyncio.gather(following, rendering)
        pool.shutdown()
        own.shutdown()
        forms_took, pdfs_took = forms_done - started, pdfs_done - started
        result.update(code="branch", workers=workers)
        result.update(forms_per_s=round(forms / forms_took, 1), pdfs_per_s=round(forms / pdfs_took, 1))
        result.update(forms_seconds=round(forms_took, 2), pdfs_seconds=round(pdfs_took, 2))
    probes.stop()
    await probing
    result.update(probes.summary())
    await loop.run_in_executor(store, db.close)
    await loop.run_in_executor(store, app.close)
    store.shutdown()
    io.shutdown()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        started = time.perf_counter()
        env, blobs = seed(Path(tmp), args.forms)
        print(
            f"seeded {args.forms} signed applications in {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
        runs = [1] if PdfRenderer is None else args.workers
        for workers in runs:
            # A fresh database copy per run: the archive starts cold each time.
            fresh = Path(tmp) / f"run-{workers}"
            fresh.mkdir()
            source = Path(env["SQLITE_DBNAME"])
            db = Database.open(env)
            db.execute(f"VACUUM INTO '{fresh / source.name}'")
            db.close()
            run_env = {**env, "SQLITE_DBNAME": str(fresh / source.name)}
            print(json.dumps(asyncio.run(catch_up(run_env, blobs, args.forms, workers))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
