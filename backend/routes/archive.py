"""The permanently archived registration forms (出生医学证明首次签发登记表，网上申办专用).

- ``GET /api/v1/archive/forms?application_id=…``: the archived versions of one application's form
  (signed, issued, reissued) with their hashes, the certificate number and the issuer's and
  sealer's names — no personal data of the family.
- ``GET /api/v1/archive/forms/{form_id}``: one version: the archived canonical JSON document,
  byte for byte, or the PDF with ``Accept: application/pdf``.

Auditors see every institution's forms; issuers only their own institution's (another's answer
404, as if it did not exist). Reading a whole form is reading personal data: an auditor's reading
is recorded (``AccessRecord``, what ``archive_form``) before the answer is sent.

``archive_ctx`` opens the archive's own connection to the event store's database and follows the
event log into it (``LogFollower`` named ``archive``) on the elected leader only (decision 0024): each form's document and hash are there at once.
The PDFs follow behind (``PdfRenderer`` named ``archive_pdf``, decision 0028), drawn in a pool of
worker processes, kept in the object store when one is configured (decision 0025). A PDF asked for
before it is drawn answers 503 ``pdf_pending`` with Retry-After. The archive is stored encrypted and
decrypted here on reading (decision 0003); a row that does not decrypt or check answers 503
``integrity_failure`` naming nothing it holds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import multiprocessing
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from aiohttp import web

from backend.components import (
    APPLICATIONS,
    BLOBS,
    CONFIG,
    FOLLOWERS,
    IO_EXECUTOR,
    LEADERSHIP,
    PARKING,
    STORE_EXECUTOR,
    actor_of,
    caught_up,
    follow_on_leader,
    in_io,
    in_store,
    json_response,
)
from backend.config import Config
from backend.errors import RETRY_AFTER_SECONDS, BadRequest, problem
from backend.headers import content_disposition
from backend.object_store import ObjectStore, open_objects
from backend.openapi import PROBLEM as _PROBLEM
from backend.storage import at_rest_key
from domain.errors import NotFound
from projections.archive import ArchiveIntegrityError, FormArchive
from projections.archive_pdf import PdfRenderer, render_worker_init
from projections.elicense import PrintedLicence
from projections.runner import LogFollower
from projections.sql import Database

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

FORM_ARCHIVE = web.AppKey("form_archive", FormArchive)
ARCHIVE_FOLLOWER = web.AppKey("archive_follower", LogFollower)
PDF_RENDERER = web.AppKey("pdf_renderer", PdfRenderer)
# How long a read waits for the archive to reach the end of the log before answering with what it has.
CATCH_UP_SECONDS = 3.0


def open_form_archive(
    config: Config, applications: Any, executor: Any, objects: ObjectStore | None = None
) -> FormArchive:
    """The archive over the event store's database (blocking: call it on the store executor)."""
    return FormArchive(
        Database.open(config.event_store_env()),
        applications,
        executor,
        key=at_rest_key(config.cipher_key, config.index_key),
        objects=objects,
        licences=PrintedLicence(config.index_key, config.public_url, config.elicense_type_code),
    )


async def archive_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the archive and follow the event log into it (after the event store and the blob store);
    render its PDFs behind it, in worker processes, on a database connection and thread of their own."""
    loop = asyncio.get_running_loop()
    config, executor, io = app[CONFIG], app[STORE_EXECUTOR], app[IO_EXECUTOR]
    objects = await loop.run_in_executor(io, open_objects, config.object_store, "archive", None)
    archive = await loop.run_in_executor(
        executor, open_form_archive, config, app[APPLICATIONS], executor, objects
    )
    archive.db.fence = app[LEADERSHIP]  # its rows and position written under the leader's term only
    follower = LogFollower(
        app[APPLICATIONS], archive, executor=executor, name="archive", parking=app.get(PARKING)
    )

    # reportlab draws ~26 pages/s and holds the GIL while it does: in processes of its own ("spawn": the
    # serving process has threads, which a fork would copy mid-lock).
    def pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=config.pdf_workers,
            mp_context=multiprocessing.get_context("spawn"),
            # A worker leaves with the service, even after a kill -9 of it.
            initializer=render_worker_init,
            initargs=(os.getpid(),),
        )

    own = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-pdf")
    db = await loop.run_in_executor(own, Database.open, config.event_store_env())
    db.fence = app[LEADERSHIP]  # its PDFs and position written under the leader's term only
    renderer = PdfRenderer(
        archive,
        db,
        own,
        render_executor=pool(),
        io_executor=io,
        blobs=app.get(BLOBS),
        objects=objects,
        parking=app.get(PARKING),
        new_render_executor=pool,
    )
    archive.on_written, archive.on_late_rows = renderer.wake, renderer.render_late
    app[FORM_ARCHIVE], app[ARCHIVE_FOLLOWER], app[PDF_RENDERER] = archive, follower, renderer
    follow_on_leader(app, follower)
    follow_on_leader(app, renderer)
    yield
    await app[LEADERSHIP].close()  # (already done on shutdown) before the archive's connections close
    for running in (follower, renderer):
        with contextlib.suppress(ValueError):
            app[FOLLOWERS].remove(running)
    renderer.render_executor.shutdown(wait=True, cancel_futures=True)
    await loop.run_in_executor(own, db.close)
    own.shutdown(wait=True)
    await loop.run_in_executor(executor, archive.db.close)


async def _caught_up(request: web.Request) -> None:
    """Let the archive reach the end of the log (read-your-writes for a form just issued)."""
    position = await in_store(request, request.app[APPLICATIONS].recorder.max_notification_id)
    follower = request.app[ARCHIVE_FOLLOWER]
    if not await follower.wait_for(position, timeout=CATCH_UP_SECONDS):
        log.warning("archive behind", extra={"position": position})


def _uuid(text: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(text or "")
    except ValueError:
        raise NotFound() from None


def wants_pdf(accept: str) -> bool:
    """Whether ``Accept`` prefers ``application/pdf`` (named explicitly) to JSON."""
    pdf = json_q = 0.0
    for index, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == "application/pdf":
            pdf = max(pdf, q)
        elif media in ("application/json", "application/*", "*/*"):
            # A wildcard listed first still loses a tie to an explicit PDF; named JSON wins one.
            json_q = max(json_q, q + (0.0005 if media == "application/json" and index == 0 else 0.0))
    return pdf > 0 and pdf >= json_q


def _integrity_failure(error: ArchiveIntegrityError) -> web.Response:
    """503 ``integrity_failure``: an archived form does not decrypt or check (logged with its id only)."""
    log.error("archive integrity failure: %s", error, extra={"form_id": error.form_id})
    return problem(
        503,
        "integrity_failure",
        "数据完整性校验未通过",
        "归档登记表未通过完整性校验（无法解密或与记录不符），请联系系统管理员",
        form_id=error.form_id,
    )


def _repr_digest(body: bytes) -> str:
    """RFC 9530 ``Repr-Digest`` of a body."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


@routes.get("/api/v1/archive/forms")
async def list_forms(request: web.Request) -> web.Response:
    """The archived versions of one application's form (auditors; issuers of its institution)."""
    actor = actor_of(request, "auditor", "issuer")
    raw = request.query.get("application_id")
    if not raw:
        raise BadRequest("请提供参数 application_id", code="application_id_required")
    app_id = _uuid(raw)
    await in_store(request, request.app[APPLICATIONS].get_application, actor, app_id)
    await _caught_up(request)
    try:
        forms = await in_store(request, request.app[FORM_ARCHIVE].forms_of, app_id)
    except ArchiveIntegrityError as error:
        return _integrity_failure(error)
    items = []
    for form in forms:
        summary = form.summary()
        summary["url"] = f"/api/v1/archive/forms/{form.id}"
        items.append(summary)
    return json_response(
        {"application_id": str(app_id), "forms": items}, headers={"Cache-Control": "no-store"}
    )


@routes.get("/api/v1/archive/forms/{form_id}")
async def get_form(request: web.Request) -> web.Response:
    """One archived version: its canonical JSON document, or the PDF (``Accept: application/pdf``)."""
    actor = actor_of(request, "auditor", "issuer")
    form_id = str(_uuid(request.match_info["form_id"]))
    archive = request.app[FORM_ARCHIVE]
    service = request.app[APPLICATIONS]
    try:
        # The row on the store executor; its PDF (perhaps from the object store) on the I/O executor.
        form = await in_store(request, archive.get, form_id, pdf=False)
    except ArchiveIntegrityError as error:
        # Say so only to whoever may read the application the row claims (others: 404 as ever).
        owner = await in_store(request, archive.application_of, form_id)
        await in_store(request, service.get_application, actor, owner)
        return _integrity_failure(error)
    if form is None:
        raise NotFound()
    await in_store(request, service.get_application, actor, form.application_id)
    if actor.role == "auditor":
        outcome = await in_store(
            request, service.record_personal_data_viewed, actor, form.application_id, what="archive_form"
        )
        await caught_up(request, outcome.position)
    if wants_pdf(request.headers.get("Accept", "")):
        if form.pdf_pending:
            # Drawn behind the archive (decision 0028): the form and its hash are here, the PDF follows.
            return problem(
                503,
                "pdf_pending",
                "PDF 尚未生成",
                "该归档版本的 PDF 正在生成，请稍后重试，或先使用 JSON",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        try:
            form = await in_io(request, archive.load_pdf, form)
        except ArchiveIntegrityError as error:
            return _integrity_failure(error)
        if not form.pdf:
            return problem(406, "pdf_unavailable", "没有 PDF", "该归档版本没有 PDF，请改用 JSON")
        filename = f"registration-form-{form.application_id}-v{form.version}-{form.kind}.pdf"
        return web.Response(
            body=form.pdf,
            content_type="application/pdf",
            headers={
                "Content-Disposition": content_disposition("inline", filename),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Repr-Digest": _repr_digest(form.pdf),
                "Vary": "Accept",
            },
        )
    # The archived bytes themselves, so that their hash can be checked against the list.
    return web.Response(
        body=form.document,
        content_type="application/json",
        headers={
            "Cache-Control": "no-store",
            "Repr-Digest": _repr_digest(form.document),
            "Vary": "Accept",
        },
    )


_NULLABLE_TEXT = {"type": ["string", "null"]}
_SUMMARY = {
    "type": "object",
    "required": [
        "id",
        "application_id",
        "kind",
        "version",
        "position",
        "recorded_at",
        "form_sha256",
        "certificate_number",
        "issuer_name",
        "sealer_name",
        "document_sha256",
        "url",
    ],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "application_id": {"type": "string", "format": "uuid"},
        "kind": {"enum": ["signed", "issued", "reissued"]},
        "version": {"type": "integer"},
        "position": {"type": "integer"},
        "recorded_at": {"type": "string", "format": "date-time"},
        "form_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "signature_sha256": _NULLABLE_TEXT,
        "signed_at": _NULLABLE_TEXT,
        "certificate_number": _NULLABLE_TEXT,
        "voided_certificate_number": _NULLABLE_TEXT,
        "issuer_name": _NULLABLE_TEXT,
        "sealer_name": _NULLABLE_TEXT,
        "issued_at": _NULLABLE_TEXT,
        "document_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "pdf_sha256": _NULLABLE_TEXT,
        "pdf_pending": {"type": "boolean", "description": "the PDF is not drawn yet (it follows the form)"},
        "url": {"type": "string"},
    },
}
_DOCUMENT = {
    "type": "object",
    "description": "the archived canonical JSON (RFC 8785), byte for byte; Repr-Digest gives its SHA-256",
    "required": ["format", "id", "application_id", "version", "kind", "form", "form_sha256", "signature"],
    "properties": {
        "format": {"const": "birthcert-archived-form/1"},
        "kind": {"enum": ["signed", "issued", "reissued"]},
        "form": {"type": "object", "description": "the registration form exactly as signed"},
        "form_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "signature": {"type": "object", "required": ["document_id", "sha256"]},
    },
}
# For backend/openapi.py: ``PATHS.update(archive.OPENAPI_PATHS)``.
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/archive/forms": {
        "get": {
            "summary": "the archived versions of an application's registration form (auditors; issuers: own institution)",
            "security": [{"bearer": []}],
            "parameters": [
                {
                    "name": "application_id",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "responses": {
                "200": {
                    "description": "signed, issued and reissued versions, oldest first (no personal data)",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["application_id", "forms"],
                                "properties": {
                                    "application_id": {"type": "string", "format": "uuid"},
                                    "forms": {"type": "array", "items": _SUMMARY},
                                },
                            }
                        }
                    },
                },
                "default": _PROBLEM,
            },
        }
    },
    "/api/v1/archive/forms/{form_id}": {
        "parameters": [
            {
                "name": "form_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            }
        ],
        "get": {
            "summary": "one archived version: its JSON document, or the PDF with Accept: application/pdf "
            "(an auditor's reading is recorded)",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "the archived form",
                    "content": {"application/json": {"schema": _DOCUMENT}, "application/pdf": {}},
                },
                "default": _PROBLEM,
            },
        },
    },
}

__all__ = [
    "ARCHIVE_FOLLOWER",
    "FORM_ARCHIVE",
    "OPENAPI_PATHS",
    "PDF_RENDERER",
    "archive_ctx",
    "open_form_archive",
    "routes",
    "wants_pdf",
]
