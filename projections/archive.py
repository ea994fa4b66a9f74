"""The permanent archive of the registration form (出生医学证明首次签发登记表，网上申办专用; 永久保存).

A ``View`` for ``LogFollower`` that writes one row into ``archive_forms`` for every version of the
form that matters:

- ``signed`` at every ``FormSigned``: the exact JSON the mother signed (from the event), its
  SHA-256, the reference (SHA-256) of her signature image;
- ``issued`` / ``reissued`` at every ``Issued`` / ``Reissued`` or ``CertificateReplaced``: the form as registered (the last
  form signed before it), its hash, the certificate number, the issuer's (打证人) and sealer's
  (盖章人) names and the time, and the print's e-licence identifier and verify URL (its stub's QR code; derived,
  ``projections.elicense.PrintedLicence``, when the archive is given one; decision 0038).

Each row holds a canonical JSON document (RFC 8785, UTF-8), written as soon as the event is read:
the form and its hash are archived at once. The rendered PDF (附件 3 with the signature image drawn at
申办人签名 and, for issued versions, the issuer's and sealer's names at their lines) follows behind, from
``projections.archive_pdf.PdfRenderer`` (decision 0028), into ``archive_pdfs``: the PDF sealed in the row,
or, when an object store is configured, sealed in the object store under a content-addressed key with
the row as the index (decision 0025). Rows and the tracking position are written in one transaction;
rows at or below the position already recorded are never written again, so a page applied twice adds
nothing. The tables are append-only, enforced by triggers in the database (``projections.sql``).

Both the document and the PDF are personal data (the parents' ID numbers, names and addresses, the
newborn's name and birth, the signature image), so they are stored sealed (decision 0003): AES-256-GCM
under HKDF-SHA256(the service's at-rest key, ``birthcert archive v1``), a random 12-byte nonce per
value, and as associated data the row's clear columns and which of the two it is — a sealed value
moved to another row, or to the other column or object, or a clear column edited, no longer decrypts.
Only ids, the kind, the times and the SHA-256 of the form and of the PDF stay in clear. Reading decrypts
and checks the document against its row and the PDF against its recorded hash; a row that fails is an
``ArchiveIntegrityError`` naming only the row.

Writing a page reads the events it needs and seals the documents on the store executor in one hop, and
draws nothing: no PDF is ever rendered on the event loop or on the executor that commands use.
Rows written before the PDFs were deferred (their PDF sealed in ``archive_forms.sealed_pdf``, its hash in
the document) are read as they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from uuid import UUID

import rfc8785
from cryptography.exceptions import InvalidTag

from backend.object_store import ObjectNotFound, ObjectStore
from backend.storage import derive_aead
from domain.application import BirthCertificateApplication, form_digest
from domain.service import Applications
from projections.elicense import PrintedLicence
from projections.runner import DomainEvent, Page
from projections.sql import Database

log = logging.getLogger(__name__)

NAME: Final = "archive"
FORMAT: Final = "birthcert-archived-form/1"
# Row ids are derived from (application, version): the same event always gives the same id.
ID_NAMESPACE: Final = uuid.UUID("6f1c3b1e-5a0d-4f6e-9a44-2b7d3c1e8a90")
JSON = dict[str, Any]
T = TypeVar("T")
# Sealed values: MAGIC, VERSION, a 12-byte nonce, AES-256-GCM ciphertext and tag.
HKDF_INFO: Final = b"birthcert archive v1"
SEALED_MAGIC: Final = b"BCA"
SEALED_VERSION: Final = 1
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_SEALED_HEADER: Final = SEALED_MAGIC + bytes([SEALED_VERSION])

Signed = BirthCertificateApplication.FormSigned
Issued = BirthCertificateApplication.Issued
Reissued = BirthCertificateApplication.Reissued
Replaced = BirthCertificateApplication.CertificateReplaced


def archive_id(application_id: UUID | str, version: int) -> str:
    """The id of the archived form written at ``version`` of ``application_id``."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{application_id}:{version}"))


def canonical(document: JSON) -> bytes:
    """RFC 8785 canonical JSON (UTF-8) of an archived document."""
    return bytes(rfc8785.dumps(document))


def _utc(stamp: datetime) -> str:
    return stamp.astimezone(UTC).isoformat()


class ArchiveIntegrityError(RuntimeError):
    """An archived row does not decrypt, or what it holds does not match the row: damaged or tampered with.

    The message names the row and the check that failed, never anything the row holds.
    """

    def __init__(self, form_id: str, reason: str) -> None:
        super().__init__(f"archived form {form_id}: {reason}")
        self.form_id = form_id
        self.reason = reason


@dataclass(frozen=True)
class RowIdentity:
    """The clear columns of a row: what its sealed values are bound to."""

    id: str
    application_id: str
    position: int
    version: int
    kind: str
    recorded_at: str
    form_sha256: str

    @classmethod
    def of(cls, row: Any) -> RowIdentity:
        """The clear columns of anything that carries them by name (an entry to write, a form read)."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    def aad(self, part: str) -> bytes:
        """The associated data of the row's ``document`` or ``pdf``: RFC 8785 JSON of the clear columns."""
        return canonical({"format": FORMAT, "part": part, **asdict(self)})


class ArchiveCipher:
    """Seals and opens archived values under the archive's own key (derived from the at-rest key)."""

    def __init__(self, key: bytes) -> None:
        self._aead = derive_aead(key, HKDF_INFO)

    def __repr__(self) -> str:
        return "ArchiveCipher()"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``plaintext`` encrypted under a fresh random nonce, bound to ``aad``."""
        nonce = os.urandom(NONCE_BYTES)
        return _SEALED_HEADER + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or None when ``sealed`` is not ours, damaged, or bound to other data."""
        start = len(_SEALED_HEADER)
        if len(sealed) < start + NONCE_BYTES + TAG_BYTES or sealed[:start] != _SEALED_HEADER:
            return None
        try:
            return self._aead.decrypt(sealed[start : start + NONCE_BYTES], sealed[start + NONCE_BYTES :], aad)
        except InvalidTag:
            return None


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
    licence_id: str | None = None
    verify_url: str | None = None

    def identity(self) -> RowIdentity:
        return RowIdentity(
            id=archive_id(self.application_id, self.version),
            application_id=self.application_id,
            position=self.position,
            version=self.version,
            kind=self.kind,
            recorded_at=self.recorded_at,
            form_sha256=self.form_sha256,
        )

    def document(self) -> JSON:
        """The archived document: the form as signed, its hash, and who issued it (the PDF follows apart)."""
        digest_ok = form_digest(self.form) == self.form_sha256
        if not digest_ok:
            log.error(
                "archive: %s v%d: the form does not hash to its signed digest",
                self.application_id,
                self.version,
            )
        return {
            "format": FORMAT,
            "id": archive_id(self.application_id, self.version),
            "application_id": self.application_id,
            "version": self.version,
            "position": self.position,
            "kind": self.kind,
            "recorded_at": self.recorded_at,
            "form": self.form,
            "form_sha256": self.form_sha256,
            "form_sha256_verified": digest_ok,
            "signed_version": self.signed_version,
            "signed_at": self.signed_at,
            "signature": {"document_id": self.signature_document_id, "sha256": self.signature_sha256},
            "certificate_number": self.certificate_number,
            "voided_certificate_number": self.voided_certificate_number,
            "issuer_name": self.issuer_name,
            "sealer_name": self.sealer_name,
            "issued_at": self.issued_at,
            "licence_id": self.licence_id,
            "verify_url": self.verify_url,
        }


@dataclass(frozen=True)
class PdfRecord:
    """A row of ``archive_pdfs``: where a form's PDF is (sealed in the row, or an object's key) and its hash.

    ``signature_image`` says what became of the signature image when the PDF was drawn: ``drawn``,
    ``missing`` or ``corrupted`` (a content-addressed blob does not come back), ``unavailable`` (no store).
    """

    form_id: str
    position: int
    pdf_sha256: str
    signature_image: str
    rendered_at: str
    object_key: str | None
    sealed_pdf: bytes | None


def pdf_object_key(form_id: str, pdf_sha256: str) -> str:
    """The object that holds a form's sealed PDF: named by the row and the PDF's own hash."""
    return f"{form_id}/{pdf_sha256}"


@dataclass(frozen=True)
class ArchivedForm:
    """A stored row, decrypted and checked: the canonical document (bytes, exactly as archived) and the PDF.

    ``pdf`` is None until it is loaded (``FormArchive.load_pdf``) or while it is not yet rendered
    (``pdf_record`` None: ``pdf_pending``).
    """

    id: str
    application_id: str
    position: int
    version: int
    kind: str
    recorded_at: str
    form_sha256: str
    document: bytes
    pdf: bytes | None
    pdf_record: PdfRecord | None = None

    @property
    def pdf_pending(self) -> bool:
        """The PDF has not been rendered yet (it follows the form: decision 0028)."""
        return self.pdf is None and self.pdf_record is None

    def identity(self) -> RowIdentity:
        """The row's clear columns."""
        return RowIdentity.of(self)

    def summary(self) -> JSON:
        """What a list shows: ids, kind, hashes, the certificate number and the staff names (no form data)."""
        doc = json.loads(self.document)
        record = self.pdf_record
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
            "pdf_sha256": record.pdf_sha256 if record else doc.get("pdf_sha256"),
            "pdf_pending": self.pdf_pending,
        }


class FormArchive:
    """The archive of signed and issued registration forms: a ``View`` plus its queries.

    ``objects``: where the renderer puts the sealed PDFs (None: in the ``archive_pdfs`` row); read here too.
    """

    def __init__(
        self,
        db: Database,
        applications: Applications,
        executor: Executor,
        *,
        key: bytes,
        objects: ObjectStore | None = None,
        licences: PrintedLicence | None = None,
    ) -> None:
        """``key``: the service's at-rest key (``backend.storage.at_rest_key``); the archive derives its own.
        ``licences``: how a print names its e-licence (None: printed forms carry no QR code)."""
        self.db = db
        self.licences = licences
        self.applications = applications
        self.executor = executor
        self.cipher = ArchiveCipher(key)
        self.objects = objects
        # Told (e.g. the PDF renderer) when rows were written: all at the end of a page; late, a parked one.
        self.on_written: Callable[[], None] | None = None
        self.on_late_rows: Callable[[list[int]], Awaitable[None]] | None = None

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id the archive has applied."""
        return await self._run(self.db.position, NAME)

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Archive the page's signed and issued forms and record its end, in one transaction, if the
        archive stands at ``start`` (False otherwise)."""
        if end is None:
            end = page[-1][0] if page else start
        applied, written = await self._run(self._archive_page, page, start, end)
        if written and self.on_written is not None:
            self.on_written()
        return applied

    async def redo(self, position: int, event: DomainEvent) -> None:
        """A parked form archived now: its row is written if missing, the position untouched; its PDF
        is rendered late (``on_late_rows``)."""
        written = await self._run(self._redo, position, event)
        if written and self.on_late_rows is not None:
            await self.on_late_rows(written)

    async def reset(self) -> None:
        """The archive is kept permanently: it is never emptied."""
        msg = "the form archive is append-only and cannot be rebuilt in place"
        raise RuntimeError(msg)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # ------------------------------------------------------------------ writing (store executor)

    def _archive_page(self, page: Page, start: int, end: int) -> tuple[bool, int]:
        """The page's form versions, sealed, and the new position, all or nothing, if the archive stands
        at ``start``: (applied, how many rows)."""
        entries = self._collect(page, start) if page else []
        sealed = [(entry, self._seal_document(entry)) for entry in entries]
        with self.db.transaction():
            if not self.db.move(NAME, start, end):
                return False, 0  # applied already (another follower, or a replay)
            for entry, document in sealed:
                self._insert(entry, document)
        return True, len(sealed)

    def _redo(self, position: int, event: DomainEvent) -> list[int]:
        """The rows of a retried event that are not there yet; their positions. Written under the
        connection's fence, like every row: ``Fenced`` (nothing written) once this process lost the lease."""
        written = []
        entries = self._collect([(position, event)], position - 1)
        with self.db.fenced_transaction(self.db.fence):
            for entry in entries:
                found = self.db.fetchone("SELECT 1 FROM archive_forms WHERE position = ?", (entry.position,))
                if found is None:
                    self._insert(entry, self._seal_document(entry))
                    written.append(entry.position)
        return written

    def _seal_document(self, entry: _Entry) -> bytes:
        return self.cipher.seal(canonical(entry.document()), entry.identity().aad("document"))

    def _collect(self, page: Page, after: int) -> list[_Entry]:
        """The page's form versions beyond ``after``, with their forms."""
        entries: list[_Entry] = []
        last_signed: dict[str, _Entry] = {}
        for position, event in page:
            if position <= after or not isinstance(event, (Signed, Issued, Reissued, Replaced)):
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
            licence_id, url = self._licence(event.originator_id, version)
            entries.append(
                _Entry(
                    position=position,
                    application_id=app_id,
                    version=version,
                    # A replacement is printed again too (重新签发): archived as a reissued version.
                    kind="reissued" if isinstance(event, (Reissued, Replaced)) else "issued",
                    recorded_at=recorded_at,
                    form=signed.form,
                    form_sha256=signed.form_sha256,
                    signature_document_id=signed.signature_document_id,
                    signature_sha256=signed.signature_sha256,
                    signed_version=signed.signed_version,
                    signed_at=signed.signed_at,
                    certificate_number=event.certificate_number,
                    voided_certificate_number=(
                        event.voided_certificate_number if isinstance(event, (Reissued, Replaced)) else None
                    ),
                    issuer_name=event.issuer_name,
                    sealer_name=event.sealer_name,
                    issued_at=recorded_at,
                    licence_id=licence_id,
                    verify_url=url,
                )
            )
        return entries

    def _licence(self, app_id: UUID, version: int) -> tuple[str | None, str | None]:
        """The e-licence of the print at ``version``: its identifier and verify URL (None without ``licences``)."""
        if self.licences is None:
            return None, None
        app: object = self.applications.repository.get(app_id, version=version)
        if not isinstance(app, BirthCertificateApplication):
            raise TypeError("a print of something that is not an application")
        return self.licences.of(app, version)

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

    def _insert(self, entry: _Entry, sealed_document: bytes) -> None:
        row = entry.identity()
        self.db.execute(
            "INSERT INTO archive_forms (id, application_id, position, version, kind, recorded_at, "
            "form_sha256, sealed_document) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.application_id,
                row.position,
                row.version,
                row.kind,
                row.recorded_at,
                row.form_sha256,
                sealed_document,
            ),
        )

    # ------------------------------------------------------------------ queries (blocking)

    # Every column of a row and its PDF's record; ``_ROW`` leaves out a PDF sealed in the record (lists and the
    # renderer do not read PDFs: ~50 KB a row).
    _COLUMNS: Final = (
        "f.id, f.application_id, f.position, f.version, f.kind, f.recorded_at, f.form_sha256, "
        "f.sealed_document, f.sealed_pdf, p.form_id, p.position, p.pdf_sha256, p.signature_image, "
        "p.rendered_at, p.object_key, p.sealed_pdf"
    )
    _ROW: Final = _COLUMNS.replace("p.sealed_pdf", "NULL")
    _FROM: Final = "archive_forms f LEFT JOIN archive_pdfs p ON p.form_id = f.id"

    def forms_of(self, application_id: UUID | str) -> list[ArchivedForm]:
        """Every archived version of one application's form, oldest first (without the PDFs).

        ``ArchiveIntegrityError`` when any of them does not decrypt or check.
        """
        rows = self.db.fetchall(
            f"SELECT {self._ROW} FROM {self._FROM} WHERE f.application_id = ? ORDER BY f.version",
            (str(application_id),),
        )
        return [self.form_of_row(row) for row in rows]

    def get(self, form_id: str, *, pdf: bool = True) -> ArchivedForm | None:
        """One archived version, or None; with its PDF when ``pdf`` and rendered (``load_pdf``, which may
        read the object store: a caller on the store executor passes ``pdf=False`` and loads it elsewhere).

        ``ArchiveIntegrityError`` when it does not check.
        """
        row = self.db.fetchone(f"SELECT {self._COLUMNS} FROM {self._FROM} WHERE f.id = ?", (form_id,))
        if row is None:
            return None
        form = self.form_of_row(row)
        return self.load_pdf(form) if pdf else form

    def rows_after(self, db: Database, after: int, upto: int, limit: int) -> list[tuple[Any, ...]]:
        """The rows after position ``after`` up to ``upto``, oldest first, read through ``db`` (the
        renderer's own connection: a connection is used by one thread only)."""
        return db.fetchall(
            f"SELECT {self._ROW} FROM {self._FROM} WHERE f.position > ? AND f.position <= ? "
            "ORDER BY f.position LIMIT ?",
            (after, upto, limit),
        )

    def rows_at(self, db: Database, positions: list[int]) -> list[tuple[Any, ...]]:
        """The rows at these positions, read through ``db`` (for rendering late rows)."""
        marks = ", ".join("?" for _ in positions)
        return db.fetchall(
            f"SELECT {self._ROW} FROM {self._FROM} WHERE f.position IN ({marks}) ORDER BY f.position",
            positions,
        )

    def application_of(self, form_id: str) -> str:
        """The application a row names in clear (unchecked: to decide who may hear that it failed to check)."""
        row = self.db.fetchone("SELECT application_id FROM archive_forms WHERE id = ?", (form_id,))
        return "" if row is None else str(row[0])

    def form_of_row(self, row: tuple[Any, ...]) -> ArchivedForm:
        """Decrypt a row and check it: the document against the row, the form against its hash; a PDF
        sealed in the row itself (rows written before the PDFs were deferred) against the document."""
        identity = RowIdentity(
            id=str(row[0]),
            application_id=str(row[1]),
            position=int(row[2]),
            version=int(row[3]),
            kind=str(row[4]),
            recorded_at=str(row[5]),
            form_sha256=str(row[6]),
        )
        document = self.cipher.open(bytes(row[7]), identity.aad("document"))
        if document is None:
            raise ArchiveIntegrityError(identity.id, "the document does not decrypt for this row")
        doc = _checked_document(identity, document)
        pdf: bytes | None = None
        if row[8] is not None:
            pdf = self._opened_pdf(identity, bytes(row[8]), doc.get("pdf_sha256"))
        record = None
        if row[9] is not None:
            record = PdfRecord(
                form_id=str(row[9]),
                position=int(row[10]),
                pdf_sha256=str(row[11]),
                signature_image=str(row[12]),
                rendered_at=str(row[13]),
                object_key=None if row[14] is None else str(row[14]),
                sealed_pdf=None if row[15] is None else bytes(row[15]),
            )
        return ArchivedForm(**asdict(identity), document=document, pdf=pdf, pdf_record=record)

    def load_pdf(self, form: ArchivedForm) -> ArchivedForm:
        """``form`` (as ``get`` read it) with its PDF read (from its row or the object store), decrypted and checked.

        ``ObjectStoreUnavailable`` while the object store does not answer; ``ArchiveIntegrityError`` when
        the PDF is missing, does not decrypt for this row, or does not hash to its record.
        """
        record = form.pdf_record
        if form.pdf is not None or record is None:
            return form
        identity = form.identity()
        if record.position != form.position:
            raise ArchiveIntegrityError(form.id, "the PDF's record names another position")
        sealed = record.sealed_pdf
        if record.object_key is not None:
            if self.objects is None:
                raise ArchiveIntegrityError(form.id, "the PDF is in an object store that is not configured")
            if record.object_key != pdf_object_key(form.id, record.pdf_sha256):
                raise ArchiveIntegrityError(form.id, "the PDF's object key does not name this row and hash")
            try:
                sealed = self.objects.get(record.object_key)
            except ObjectNotFound:
                raise ArchiveIntegrityError(form.id, "the PDF is missing from the object store") from None
        if sealed is None:
            raise ArchiveIntegrityError(form.id, "the PDF's record holds no PDF")
        pdf = self._opened_pdf(identity, sealed, record.pdf_sha256)
        return ArchivedForm(
            **{**asdict(identity), "document": form.document, "pdf": pdf, "pdf_record": record}
        )

    def _opened_pdf(self, identity: RowIdentity, sealed: bytes, sha256: object) -> bytes:
        pdf = self.cipher.open(sealed, identity.aad("pdf"))
        if pdf is None:
            raise ArchiveIntegrityError(identity.id, "the PDF does not decrypt for this row")
        if hashlib.sha256(pdf).hexdigest() != sha256:
            raise ArchiveIntegrityError(identity.id, "the PDF does not match its recorded pdf_sha256")
        return pdf


def _checked_document(identity: RowIdentity, document: bytes) -> JSON:
    """The decrypted document, checked: canonical, about its own row, its form hashing to ``form_sha256``.

    A form archived with ``form_sha256_verified: false`` (it did not hash to its signed digest when it
    was archived, which issuing rules out) is served as the evidence it is: the flag is inside the
    authenticated document, so it cannot be set after the fact without the key.
    """
    doc: Any = None
    try:
        doc = json.loads(document)
        ok = isinstance(doc, dict) and canonical(doc) == document
    except ValueError:  # not UTF-8, not JSON, or not canonicalisable (rfc8785's errors are ValueErrors)
        ok = False
    if not ok:
        raise ArchiveIntegrityError(identity.id, "the document is not canonical JSON")
    for field in ("id", "application_id", "version", "position", "kind", "recorded_at", "form_sha256"):
        if doc.get(field) != getattr(identity, field):
            raise ArchiveIntegrityError(identity.id, f"the document's {field} differs from its row's")
    form = doc.get("form")
    if doc.get("form_sha256_verified") is not False and (
        not isinstance(form, dict) or form_digest(form) != identity.form_sha256
    ):
        raise ArchiveIntegrityError(identity.id, "the form does not hash to the row's form_sha256")
    checked: JSON = doc
    return checked


__all__ = [
    "NAME",
    "ArchiveCipher",
    "ArchiveIntegrityError",
    "ArchivedForm",
    "FormArchive",
    "PdfRecord",
    "RowIdentity",
    "archive_id",
    "canonical",
    "pdf_object_key",
]
