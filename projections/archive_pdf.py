"""The archived forms' PDFs, rendered behind the archive by a worker of their own (decision 0028).

The archive (``projections.archive``) writes each form's row — the document and its hash — as soon as
it reads the event. ``PdfRenderer`` follows the archive table with its own tracked position
(``archive_pdf`` in ``projection_positions``): it reads the rows after it (never beyond the archive's own
position), fetches each signature image, has the PDFs drawn by ``render_executor`` (a process pool in the
service: reportlab never runs on the event loop, nor on the executor commands use, nor holds the GIL of
the serving process), seals each PDF for its row and stores it — in the object store under
``<form id>/<pdf sha256>`` when one is configured, else in the row — then writes the ``archive_pdfs`` rows
and its new position in one transaction, only if the position is still the one it read (compare-and-set):
each PDF is recorded exactly once, whoever else renders. Rendering is deterministic (the same form gives
the same bytes), so a page drawn twice after a crash stores the same PDF.

It can fall as far behind as it likes (a cold catch-up of a whole archive) without holding anything
else back: the archive, the views and commands go on; a read of a PDF not yet drawn is told so
(``pdf_pending``, 503 with Retry-After). An object store, database or blob store that does not answer
is retried with backoff and never counts against a row; a row that fails on its own (it does not render,
its document does not check, its signature image cannot be read) is retried and then parked in the
``ParkingLot`` like any follower's event, and taken back when an operator asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, TypeVar

from backend.form_pdf import render_form_pdf
from backend.object_store import ObjectStore, ObjectStoreUnavailable
from backend.storage import BlobCorrupted, BlobNotFound, BlobStore
from projections.archive import NAME as ARCHIVE
from projections.archive import ArchivedForm, ArchiveIntegrityError, FormArchive, pdf_object_key
from projections.runner import (
    MAX_BACKOFF_SECONDS,
    PARK_AFTER,
    RETRY_POLL_SECONDS,
    Fenced,
    FollowerProgress,
    ParkingLot,
)
from projections.sql import Database

log = logging.getLogger(__name__)

NAME: Final = "archive_pdf"
# How much lower than the service a render worker runs (os.nice): requests first, PDFs when there is room.
WORKER_NICENESS: Final = 10
T = TypeVar("T")


class _Outage(Exception):
    """Something the renderer depends on did not answer: retry the page later, blame no row."""


@dataclass
class _Drawn:
    """One form's PDF on its way to its row."""

    form: ArchivedForm
    pdf_sha256: str
    signature_image: str
    object_key: str | None
    sealed_pdf: bytes


class PdfRenderer(FollowerProgress):
    """Renders the PDFs of archived forms behind the archive; run it as a task (``run``), one per leader."""

    def __init__(
        self,
        archive: FormArchive,
        db: Database,
        executor: Executor,
        *,
        render_executor: Executor,
        io_executor: Executor,
        blobs: BlobStore | None,
        objects: ObjectStore | None = None,
        parking: ParkingLot | None = None,
        page_size: int = 16,
        poll_interval: float = 0.5,
        park_after: int = PARK_AFTER,
        retry_poll_seconds: float = RETRY_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        new_render_executor: Callable[[], Executor] | None = None,
    ) -> None:
        """``db``/``executor``: a connection of the renderer's own and its one thread (not the store's).
        ``new_render_executor``: makes a new pool when a worker died and broke the one in use."""
        super().__init__(NAME, parking=parking, clock=clock)
        self.archive = archive
        self.db = db
        self.executor = executor
        self.render_executor = render_executor
        self.new_render_executor = new_render_executor
        self.io_executor = io_executor
        self.blobs = blobs
        self.objects = objects
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.park_after = max(1, park_after)
        self.retry_poll_seconds = retry_poll_seconds
        self._attempts: dict[int, int] = {}
        self._retries_checked_at = 0.0

    # ------------------------------------------------------------------ what a follower offers

    @property
    def position(self) -> int:
        """The archive's position up to which every form's PDF is rendered (or parked)."""
        return self._position

    @property
    def recovering(self) -> bool:
        """Never: the renderer's position is never reset (the archive is permanent)."""
        return False

    async def observe(self) -> int:
        """The stored position, read without rendering (the leader renders elsewhere), for ``/readyz``."""
        position = await self._run(self.executor, self.db.position, NAME)
        if position != self._position:
            self._moved(position)
        await self._count_parked()
        return position

    async def run(self) -> None:
        """Render until ``stop()``: outages are waited out with backoff, failing rows parked. ``Fenced`` (this
        process lost the leadership) ends it at once; it may be called again when elected again."""
        self._stopping, self._running = False, True
        try:
            await self._follow()
        finally:
            self._running = False

    async def _follow(self) -> None:
        first_backoff = min(max(self.poll_interval, 0.01), 1.0)
        backoff = first_backoff
        await self._count_parked()
        while not self._stopping:
            self._wake.clear()
            try:
                more = await self._step()
            except (asyncio.CancelledError, Fenced):
                raise
            except Exception as error:
                self._failed(error)
                log.warning(
                    "archive PDFs: cannot render after %d (%s); retrying in %.1fs",
                    self._position,
                    type(error).__name__,
                    backoff,
                )
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = first_backoff
            await self._retry_requested()
            if not more:
                await self._sleep(self.poll_interval)

    async def catch_up(self) -> int:
        """Render everything the archive holds now, once (failures propagate); the position reached."""
        while await self._step():
            pass
        return self._position

    async def render_late(self, positions: list[int]) -> None:
        """Render the PDFs of rows written out of order (a parked event retried), if still missing."""
        rows = await self._run(self.executor, self.archive.rows_at, self.db, positions)
        forms = await self._run(self.executor, self._open_rows, rows)
        for form in forms:
            if isinstance(form, BaseException):
                raise form
        drawn = await self._draw([f for f in forms if isinstance(f, ArchivedForm) and f.pdf_pending])
        done = [d for d in drawn if isinstance(d, _Drawn)]
        for failure in drawn:
            if isinstance(failure, BaseException):
                raise failure
        await self._run(self.executor, self._write_late, done)

    # ------------------------------------------------------------------ one page

    async def _step(self) -> bool:
        """Render the next rows after the renderer's position; True when more may follow at once."""
        start = await self._run(self.executor, self.db.position, NAME)
        self._position = start
        upto = await self._run(self.executor, self.db.position, ARCHIVE)
        rows = await self._run(self.executor, self.archive.rows_after, self.db, start, upto, self.page_size)
        if not rows:
            if upto > start:  # the archive moved over events without forms: so does the renderer
                if await self._run(self.executor, self._write, start, upto, []):
                    self._moved(upto)
            else:
                self._caught_up()
            return False
        forms = await self._run(self.executor, self._open_rows, rows)
        pending = [f for f in forms if isinstance(f, ArchivedForm) and f.pdf_pending]
        drawn = dict(zip((f.position for f in pending), await self._draw(pending), strict=True))
        # Rows up to the first that failed on its own are written; that one is retried, then parked.
        written: list[_Drawn] = []
        end = start
        for form, row in zip(forms, rows, strict=True):
            position = int(row[2])
            outcome = form if isinstance(form, BaseException) else drawn.get(position)
            if isinstance(outcome, BaseException):
                if not await self._give_up_on(position, outcome):
                    break
            elif outcome is not None:
                written.append(outcome)
            end = position
        if end == start:
            return False  # the first row failed: retried after a backoff
        full = len(rows) >= self.page_size
        if not full and end == int(rows[-1][2]):
            end = upto  # every row up to the archive's position is done: nothing lies between
        if not await self._run(self.executor, self._write, start, end, written):
            return True  # another renderer moved the position: read it again
        self._moved(end)
        return full or end < int(rows[-1][2])

    async def _draw(self, forms: list[ArchivedForm]) -> list[_Drawn | BaseException]:
        """Fetch each signature image, render each PDF (in parallel on the render executor), seal and
        store it. An outage raises (the page is retried); a row's own failure is its entry."""
        if not forms:
            return []
        documents = [json.loads(form.document) for form in forms]
        refs = [str((doc.get("signature") or {}).get("document_id") or "") for doc in documents]
        images: dict[str, tuple[bytes | None, str] | BaseException] = {}
        for ref in refs:
            if ref not in images:
                images[ref] = await self._signature(ref)
        try:
            rendered = await self._render(documents, [images[ref] for ref in refs])
        except BrokenExecutor as error:
            # A worker process died (killed, out of memory): no row's fault. A new pool, and the page again.
            if self.new_render_executor is not None:
                broken, self.render_executor = self.render_executor, self.new_render_executor()
                broken.shutdown(wait=False, cancel_futures=True)
            raise _Outage("a PDF worker process died") from error
        results: list[_Drawn | BaseException] = []
        for form, ref, pdf in zip(forms, refs, rendered, strict=True):
            image = images[ref]
            if isinstance(pdf, asyncio.CancelledError):
                raise pdf
            if isinstance(pdf, BaseException) or isinstance(image, BaseException):
                results.append(pdf if isinstance(pdf, BaseException) else RuntimeError("no image"))
                continue
            try:
                drawn = await self._run(self.io_executor, self._seal_and_store, form, pdf, image[1])
            except ObjectStoreUnavailable as error:
                raise _Outage("the object store is unavailable") from error
            results.append(drawn)
        return results

    async def _render(
        self, documents: list[dict[str, Any]], images: list[tuple[bytes | None, str] | BaseException]
    ) -> list[bytes | BaseException]:
        """Each document drawn on the render executor, in parallel; ``BrokenExecutor`` when its pool is."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes]] = []
        for doc, image in zip(documents, images, strict=True):
            if isinstance(image, BaseException):
                futures.append(_failed_future(loop, image))
            else:
                futures.append(loop.run_in_executor(self.render_executor, _render_job(doc, image[0])))
        rendered = await asyncio.gather(*futures, return_exceptions=True)
        for pdf in rendered:
            if isinstance(pdf, BrokenExecutor):
                raise pdf
        return rendered

    async def _signature(self, document_id: str) -> tuple[bytes | None, str] | BaseException:
        """The signature image and what became of it; an outage raises, another read error is the row's."""
        if self.blobs is None:
            return None, "unavailable"
        try:
            data, _content_type = await self._run(self.io_executor, self.blobs.get, document_id)
        except BlobNotFound:
            log.error("archive PDFs: signature image %s is missing from the blob store", document_id)
            return None, "missing"
        except BlobCorrupted:
            log.error("archive PDFs: signature image %s does not decrypt or verify", document_id)
            return None, "corrupted"
        except ObjectStoreUnavailable as error:
            raise _Outage("the blob store is unavailable") from error
        except OSError as error:  # a local disk that does not read: this row's problem, retried then parked
            return error
        return data, "drawn"

    def _seal_and_store(self, form: ArchivedForm, pdf: bytes, signature_image: str) -> _Drawn:
        """I/O executor: seal the PDF for its row and put it in the object store (if any)."""
        sha256 = hashlib.sha256(pdf).hexdigest()
        sealed = self.archive.cipher.seal(pdf, form.identity().aad("pdf"))
        if self.objects is None:
            return _Drawn(form, sha256, signature_image, None, sealed)
        key = pdf_object_key(form.id, sha256)
        self.objects.put(key, sealed)
        return _Drawn(form, sha256, signature_image, key, b"")

    def _open_rows(self, rows: list[tuple[Any, ...]]) -> list[ArchivedForm | BaseException]:
        """The rows decrypted and checked; a row that does not check is its error (retried, then parked)."""
        forms: list[ArchivedForm | BaseException] = []
        for row in rows:
            try:
                forms.append(self.archive.form_of_row(row))
            except ArchiveIntegrityError as error:
                forms.append(error)
        return forms

    def _write(self, start: int, end: int, drawn: list[_Drawn]) -> bool:
        """The PDFs' rows and the renderer's new position, all or nothing, if it stands at ``start``."""
        with self.db.transaction():
            if not self.db.move(NAME, start, end):
                return False
            for item in drawn:
                self._insert(item)
        return True

    def _write_late(self, drawn: list[_Drawn]) -> None:
        """The PDFs of rows rendered late that are still missing, under the connection's fence."""
        with self.db.fenced_transaction(self.db.fence):
            for item in drawn:
                if self.db.fetchone("SELECT 1 FROM archive_pdfs WHERE form_id = ?", (item.form.id,)) is None:
                    self._insert(item)

    def _insert(self, item: _Drawn) -> None:
        self.db.execute(
            "INSERT INTO archive_pdfs (form_id, position, pdf_sha256, signature_image, rendered_at, "
            "object_key, sealed_pdf) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                item.form.id,
                item.form.position,
                item.pdf_sha256,
                item.signature_image,
                datetime.now(UTC).isoformat(timespec="seconds"),
                item.object_key,
                None if item.object_key else item.sealed_pdf,
            ),
        )

    # ------------------------------------------------------------------ failures, parking, retries

    async def _give_up_on(self, position: int, error: BaseException) -> bool:
        """A row failed on its own: count it; True once it is parked (the renderer goes past it)."""
        self._failed(error)
        attempts = self._attempts.get(position, 0) + 1
        self._attempts[position] = attempts
        if self.parking is None or attempts < self.park_after:
            log.warning(
                "archive PDFs: the form at %d failed (%s), attempt %d of %d",
                position,
                type(error).__name__,
                attempts,
                self.park_after,
            )
            return False
        await self.parking.park(NAME, position, type(error).__name__, attempts)
        del self._attempts[position]
        self._parked += 1
        log.error(
            "archive PDFs: the form at %d parked after %d failures (%s); the rest goes on "
            "(birthcert projections parked / retry)",
            position,
            attempts,
            type(error).__name__,
        )
        return True

    async def _retry_requested(self) -> None:
        """Render again the parked rows an operator asked to retry."""
        if self.parking is None:
            return
        now = self._clock()
        if now - self._retries_checked_at < self.retry_poll_seconds:
            return
        self._retries_checked_at = now
        try:
            parked = await self.parking.parked(NAME)
        except Exception:
            return
        self._parked = len(parked)
        for item in parked:
            if not item.retry_requested:
                continue
            try:
                await self.render_late([item.position])
            except Fenced:
                raise  # this process no longer leads: the row stays parked for the leader
            except Exception as error:
                await self.parking.park(NAME, item.position, type(error).__name__, item.attempts + 1)
                log.error(
                    "archive PDFs: retry of the form at %d failed (%s)", item.position, type(error).__name__
                )
                continue
            await self.parking.release(NAME, item.position)
            self._parked -= 1
            log.info("archive PDFs: parked form at %d rendered on retry", item.position)

    def _moved(self, position: int) -> None:
        self._position = position
        self._progress_at = self._clock()
        self._failing_since, self._last_error = None, None

    def _caught_up(self) -> None:
        self._progress_at = self._clock()
        self._failing_since, self._last_error = None, None

    async def _run(self, executor: Executor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


def _render_job(doc: dict[str, Any], signature_png: bytes | None) -> partial[bytes]:
    """What the render executor runs for one document: picklable (a process pool sends it to a worker)."""
    kind = str(doc.get("kind"))
    issued = kind != "signed"
    return partial(
        render_form_pdf,
        doc.get("form") or {},
        kind=kind,
        form_sha256=str(doc.get("form_sha256")),
        signature_png=signature_png,
        issuer_name=doc.get("issuer_name") if issued else None,
        sealer_name=doc.get("sealer_name") if issued else None,
        certificate_number=doc.get("certificate_number"),
        signed_at=doc.get("signed_at"),
        issued_at=doc.get("issued_at"),
        voided_certificate_number=doc.get("voided_certificate_number"),
        licence_id=doc.get("licence_id") if issued else None,
        verify_url=doc.get("verify_url") if issued else None,
    )


def render_worker_init(parent: int, every: float = 1.0) -> None:
    """A render worker's initializer: the worker runs at a lower CPU priority (``WORKER_NICENESS``) and exits
    once ``parent`` (the serving process) is gone.

    Drawing PDFs is behind the requests by design (decision 0028): on a host whose cores are busy, the
    requests come first and the renderer catches up when they leave room. A pool's worker waits on a queue
    whose write end it also holds, so it never sees its parent die: after a ``kill -9`` of the service it
    would wait for ever. A daemon thread watches for the parent instead.
    """
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _failed_future(loop: asyncio.AbstractEventLoop, error: BaseException) -> asyncio.Future[bytes]:
    future: asyncio.Future[bytes] = loop.create_future()
    future.set_exception(error)
    return future


__all__ = ["NAME", "PdfRenderer", "render_worker_init"]
