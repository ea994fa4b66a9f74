"""The permanent archive of the registration form (出生医学证明首次签发登记表，网上申办专用; 永久保存).

A ``View`` for ``LogFollower`` that writes one row into ``archive_forms`` for every version of the
form that matters:

- ``signed`` at every ``FormSigned``: the exact JSON the mother signed (from the event), its
  SHA-256, the reference (SHA-256) of her signature image;
- ``issued`` / ``reissued`` at every ``Issued`` / ``Reissued``: the form as registered (the last
  form signed before it), its hash, the certificate number, the issuer's (打证人) and sealer's
  (盖章人) names and the time.

Each row holds a canonical JSON document (RFC 8785, UTF-8) and the rendered PDF (附件 3 with the
signature image drawn at 申办人签名 and, for issued versions, the issuer's and sealer's names at
their lines). Rows and the tracking position are written in one transaction; rows at or below the
position already recorded are never written again, so a page applied twice adds nothing. The
table is append-only, enforced by triggers in the database (``projections.sql``).

The work of a page is done in three steps: read what is needed (store executor), fetch the
signature images and render the PDFs (``render_executor``, the store executor unless given), write
(store executor) — so the SQLite write lock is never held while a PDF is drawn.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from uuid import UUID

import rfc8785

from backend.form_pdf import render_form_pdf
from backend.storage import BlobCorrupted, BlobNotFound, BlobStore
from domain.application import BirthCertificateApplication, form_digest
from domain.service import Applications
from projections.runner import Page
from projections.sql import Database

log = logging.getLogger(__name__)

NAME: Final = "archive"
FORMAT: Final = "birthcert-archived-form/1"
# Row ids are derived from (application, version): the same event always gives the same id.
ID_NAMESPACE: Final = uuid.UUID("6f1c3b1e-5a0d-4f6e-9a44-2b7d3c1e8a90")
JSON = dict[str, Any]
T = TypeVar("T")

Signed = BirthCertificateApplication.FormSigned
Issued = BirthCertificateApplication.Issued
Reissued = BirthCertificateApplication.Reissued


def archive_id(application_id: UUID | str, version: int) -> str:
    """The id of the archived form written at ``version`` of ``application_id``."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{application_id}:{version}"))


def canonical(document: JSON) -> bytes:
    """RFC 8785 canonical JSON (UTF-8) of an archived document."""
    return bytes(rfc8785.dumps(document))


def _utc(stamp: datetime) -> str:
    return stamp.astimezone(UTC).isoformat()


@dataclass
class _Entry:
    """One form version to archive, on its way from the event to the row."""

    position: int
    application_id: str
    version: int
    kind: str
    recorded_at: str
    form: JSON
    form_sha256: str
    signature_document_id: str
    signature_sha256: str
    signed_version: int
    signed_at: str
    certificate_number: str | None = None
    voided_certificate_number: str | None = None
    issuer_name: str | None = None
    sealer_name: str | None = None
    issued_at: str | None = None
    document: bytes = b""
    pdf: bytes = b""


@dataclass(frozen=True)
class ArchivedForm:
    """A stored row: the canonical document (bytes, exactly as archived) and the PDF."""

    id: str
    application_id: str
    position: int
    version: int
    kind: str
    recorded_at: str
    form_sha256: str
    document: bytes
    pdf: bytes | None

    def summary(self) -> JSON:
        """What a list shows: ids, kind, hashes, the certificate number and the staff names (no form data)."""
        doc = json.loads(self.document)
        return {
            "id": self.id,
            "application_id": self.application_id,
            "kind": self.kind,
            "version": self.version,
            "position": self.position,
            "recorded_at": self.recorded_at,
            "form_sha256": self.form_sha256,
            "signature_sha256": (doc.get("signature") or {}).get("sha256"),
            "signed_at": doc.get("signed_at"),
            "certificate_number": doc.get("certificate_number"),
            "voided_certificate_number": doc.get("voided_certificate_number"),
            "issuer_name": doc.get("issuer_name"),
            "sealer_name": doc.get("sealer_name"),
            "issued_at": doc.get("issued_at"),
            "document_sha256": hashlib.sha256(self.document).hexdigest(),
            "pdf_sha256": doc.get("pdf_sha256"),
        }


class FormArchive:
    """The archive of signed and issued registration forms: a ``View`` plus its queries."""

    def __init__(
        self,
        db: Database,
        applications: Applications,
        executor: Executor,
        blobs: BlobStore | None,
        *,
        render_executor: Executor | None = None,
    ) -> None:
        self.db = db
        self.applications = applications
        self.executor = executor
        self.blobs = blobs
        self.render_executor = render_executor or executor

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id the archive has applied."""
        return await self._run(self.executor, self.db.position, NAME)

    async def apply(self, page: Page) -> None:
        """Archive the page's signed and issued forms and record its last position, in one transaction."""
        if not page:
            return
        entries = await self._run(self.executor, self._collect, page)
        if entries:
            await self._run(self.render_executor, self._render_all, entries)
        await self._run(self.executor, self._write, page[-1][0], entries)

    async def reset(self) -> None:
        """The archive is kept permanently: it is never emptied."""
        msg = "the form archive is append-only and cannot be rebuilt in place"
        raise RuntimeError(msg)

    async def _run(self, executor: Executor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    # ------------------------------------------------------------------ the three steps

    def _collect(self, page: Page) -> list[_Entry]:
        """Store executor: the page's form versions beyond the recorded position, with their forms."""
        after = self.db.position(NAME)
        entries: list[_Entry] = []
        last_signed: dict[str, _Entry] = {}
        for position, event in page:
            if position <= after or not isinstance(event, (Signed, Issued, Reissued)):
                continue
            app_id = str(event.originator_id)
            version = int(event.originator_version)
            recorded_at = _utc(event.timestamp)
            if isinstance(event, Signed):
                entry = _Entry(
                    position=position,
                    application_id=app_id,
                    version=version,
                    kind="signed",
                    recorded_at=recorded_at,
                    form=dict(event.form),
                    form_sha256=event.form_sha256,
                    signature_document_id=event.signature_document_id,
                    signature_sha256=event.signature_sha256,
                    signed_version=version,
                    signed_at=recorded_at,
                )
                last_signed[app_id] = entry
                entries.append(entry)
                continue
            signed = last_signed.get(app_id) or self._last_signed(event.originator_id, version)
            if signed is None:
                # Issuing needs a valid signature, so this cannot happen; say so rather than guess.
                log.error("archive: %s v%d was issued without a signed form", app_id, version)
                continue
            entries.append(
                _Entry(
                    position=position,
                    application_id=app_id,
                    version=version,
                    kind="reissued" if isinstance(event, Reissued) else "issued",
                    recorded_at=recorded_at,
                    form=signed.form,
                    form_sha256=signed.form_sha256,
                    signature_document_id=signed.signature_document_id,
                    signature_sha256=signed.signature_sha256,
                    signed_version=signed.signed_version,
                    signed_at=signed.signed_at,
                    certificate_number=event.certificate_number,
                    voided_certificate_number=(
                        event.voided_certificate_number if isinstance(event, Reissued) else None
                    ),
                    issuer_name=event.issuer_name,
                    sealer_name=event.sealer_name,
                    issued_at=recorded_at,
                )
            )
        return entries

    def _last_signed(self, app_id: UUID, before: int) -> _Entry | None:
        """The last ``FormSigned`` of the application before version ``before``, from the event store."""
        found: _Entry | None = None
        for event in self.applications.events.get(app_id, lte=before):
            if isinstance(event, Signed):
                found = _Entry(
                    position=0,
                    application_id=str(app_id),
                    version=int(event.originator_version),
                    kind="signed",
                    recorded_at=_utc(event.timestamp),
                    form=dict(event.form),
                    form_sha256=event.form_sha256,
                    signature_document_id=event.signature_document_id,
                    signature_sha256=event.signature_sha256,
                    signed_version=int(event.originator_version),
                    signed_at=_utc(event.timestamp),
                )
        return found

    def _render_all(self, entries: list[_Entry]) -> None:
        """Render executor: fetch each signature image once, render each PDF, build each document."""
        images: dict[str, tuple[bytes | None, str]] = {}
        for entry in entries:
            ref = entry.signature_document_id
            if ref not in images:
                images[ref] = self._signature(ref)
            png, image_state = images[ref]
            issued = entry.kind != "signed"
            entry.pdf = render_form_pdf(
                entry.form,
                kind=entry.kind,
                form_sha256=entry.form_sha256,
                signature_png=png,
                issuer_name=entry.issuer_name if issued else None,
                sealer_name=entry.sealer_name if issued else None,
                certificate_number=entry.certificate_number,
                signed_at=entry.signed_at,
                issued_at=entry.issued_at,
                voided_certificate_number=entry.voided_certificate_number,
            )
            digest_ok = form_digest(entry.form) == entry.form_sha256
            if not digest_ok:
                log.error(
                    "archive: %s v%d: the form does not hash to its signed digest",
                    entry.application_id,
                    entry.version,
                )
            document: JSON = {
                "format": FORMAT,
                "id": archive_id(entry.application_id, entry.version),
                "application_id": entry.application_id,
                "version": entry.version,
                "position": entry.position,
                "kind": entry.kind,
                "recorded_at": entry.recorded_at,
                "form": entry.form,
                "form_sha256": entry.form_sha256,
                "form_sha256_verified": digest_ok,
                "signed_version": entry.signed_version,
                "signed_at": entry.signed_at,
                "signature": {
                    "document_id": entry.signature_document_id,
                    "sha256": entry.signature_sha256,
                    "image": image_state,
                },
                "certificate_number": entry.certificate_number,
                "voided_certificate_number": entry.voided_certificate_number,
                "issuer_name": entry.issuer_name,
                "sealer_name": entry.sealer_name,
                "issued_at": entry.issued_at,
                "pdf_sha256": hashlib.sha256(entry.pdf).hexdigest(),
            }
            entry.document = canonical(document)

    def _signature(self, document_id: str) -> tuple[bytes | None, str]:
        """The decrypted signature image and what became of it: ``drawn``, ``missing``, ``corrupted``, ``unavailable``.

        A missing or damaged blob is archived as such (a content-addressed file does not come back);
        any other I/O error propagates, so the page is retried rather than archived without it.
        """
        if self.blobs is None:
            return None, "unavailable"
        try:
            data, _content_type = self.blobs.get(document_id)
        except BlobNotFound:
            log.error("archive: signature image %s is missing from the blob store", document_id)
            return None, "missing"
        except BlobCorrupted:
            log.error("archive: signature image %s does not decrypt or verify", document_id)
            return None, "corrupted"
        return data, "drawn"

    def _write(self, last: int, entries: list[_Entry]) -> None:
        """Store executor: the rows beyond the recorded position and the new position, all or nothing."""
        with self.db.transaction():
            before = self.db.position(NAME)
            if not self.db.advance(NAME, last):
                return  # applied already (another follower, or a replay)
            for entry in entries:
                if entry.position <= before:
                    continue
                self.db.execute(
                    "INSERT INTO archive_forms (id, application_id, position, version, kind, recorded_at, "
                    "form_sha256, document, pdf) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        archive_id(entry.application_id, entry.version),
                        entry.application_id,
                        entry.position,
                        entry.version,
                        entry.kind,
                        entry.recorded_at,
                        entry.form_sha256,
                        entry.document,
                        entry.pdf,
                    ),
                )

    # ------------------------------------------------------------------ queries (store executor)

    _COLUMNS: Final = "id, application_id, position, version, kind, recorded_at, form_sha256, document"

    def forms_of(self, application_id: UUID | str) -> list[ArchivedForm]:
        """Every archived version of one application's form, oldest first (without the PDFs)."""
        rows = self.db.fetchall(
            f"SELECT {self._COLUMNS} FROM archive_forms WHERE application_id = ? ORDER BY version",
            (str(application_id),),
        )
        return [self._form(row, None) for row in rows]

    def get(self, form_id: str) -> ArchivedForm | None:
        """One archived version with its PDF, or None."""
        row = self.db.fetchone(f"SELECT {self._COLUMNS}, pdf FROM archive_forms WHERE id = ?", (form_id,))
        if row is None:
            return None
        return self._form(row[:-1], None if row[-1] is None else bytes(row[-1]))

    @staticmethod
    def _form(row: tuple[Any, ...], pdf: bytes | None) -> ArchivedForm:
        return ArchivedForm(
            id=str(row[0]),
            application_id=str(row[1]),
            position=int(row[2]),
            version=int(row[3]),
            kind=str(row[4]),
            recorded_at=str(row[5]),
            form_sha256=str(row[6]),
            document=bytes(row[7]),
            pdf=pdf,
        )


__all__ = ["NAME", "ArchivedForm", "FormArchive", "archive_id", "canonical"]
