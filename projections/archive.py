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

Both the document and the PDF are personal data (the parents' ID numbers, names and addresses, the
newborn's name and birth, the signature image), so they are stored sealed (decision 0003): AES-256-GCM
under HKDF-SHA256(the service's at-rest key, ``birthcert archive v1``), a random 12-byte nonce per
value, and as associated data the row's clear columns and which of the two it is — a sealed value
moved to another row, or to the other column, or a clear column edited, no longer decrypts. Only
ids, the kind, the times and the form's SHA-256 (of the plaintext form, what the mother signed) stay
in clear. Reading decrypts and checks the document against its row and the PDF against the
document; a row that fails is an ``ArchiveIntegrityError`` naming only the row.

The work of a page is done in three steps: read what is needed (store executor), fetch the
signature images and render the PDFs (``render_executor``, the store executor unless given), write
(store executor) — so the SQLite write lock is never held while a PDF is drawn.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from uuid import UUID

import rfc8785
from cryptography.exceptions import InvalidTag

from backend.form_pdf import render_form_pdf
from backend.storage import BlobCorrupted, BlobNotFound, BlobStore, derive_aead
from domain.application import BirthCertificateApplication, form_digest
from domain.service import Applications
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
    sealed_document: bytes = b""
    sealed_pdf: bytes = b""

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


@dataclass(frozen=True)
class ArchivedForm:
    """A stored row, decrypted and checked: the canonical document (bytes, exactly as archived) and the PDF."""

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
        key: bytes,
        render_executor: Executor | None = None,
    ) -> None:
        """``key``: the service's at-rest key (``backend.storage.at_rest_key``); the archive derives its own."""
        self.db = db
        self.applications = applications
        self.executor = executor
        self.blobs = blobs
        self.cipher = ArchiveCipher(key)
        self.render_executor = render_executor or executor

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id the archive has applied."""
        return await self._run(self.executor, self.db.position, NAME)

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Archive the page's signed and issued forms and record its end, in one transaction, if the
        archive stands at ``start`` (False otherwise)."""
        if end is None:
            end = page[-1][0] if page else start
        entries = await self._run(self.executor, self._collect, page, start) if page else []
        if entries:
            await self._run(self.render_executor, self._render_all, entries)
        applied: bool = await self._run(self.executor, self._write, start, end, entries)
        return applied

    async def redo(self, position: int, event: DomainEvent) -> None:
        """A parked form archived now: its row is written if missing, the position untouched."""
        entries = await self._run(self.executor, self._collect, [(position, event)], position - 1)
        if entries:
            await self._run(self.render_executor, self._render_all, entries)
            await self._run(self.executor, self._insert_missing, entries)

    async def reset(self) -> None:
        """The archive is kept permanently: it is never emptied."""
        msg = "the form archive is append-only and cannot be rebuilt in place"
        raise RuntimeError(msg)

    async def _run(self, executor: Executor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    # ------------------------------------------------------------------ the three steps

    def _collect(self, page: Page, after: int) -> list[_Entry]:
        """Store executor: the page's form versions beyond ``after``, with their forms."""
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
        """Render executor: fetch each signature image once, render each PDF, build and seal each document."""
        images: dict[str, tuple[bytes | None, str]] = {}
        for entry in entries:
            ref = entry.signature_document_id
            if ref not in images:
                images[ref] = self._signature(ref)
            png, image_state = images[ref]
            issued = entry.kind != "signed"
            pdf = render_form_pdf(
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
                "pdf_sha256": hashlib.sha256(pdf).hexdigest(),
            }
            identity = entry.identity()
            entry.sealed_document = self.cipher.seal(canonical(document), identity.aad("document"))
            entry.sealed_pdf = self.cipher.seal(pdf, identity.aad("pdf"))

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

    def _write(self, start: int, end: int, entries: list[_Entry]) -> bool:
        """Store executor: the rows and the new position, all or nothing, if the archive stands at ``start``."""
        with self.db.transaction():
            if not self.db.move(NAME, start, end):
                return False  # applied already (another follower, or a replay)
            for entry in entries:
                self._insert(entry)
        return True

    def _insert_missing(self, entries: list[_Entry]) -> None:
        """Store executor: the rows of a retried event that are not there yet."""
        with self.db.transaction():
            for entry in entries:
                found = self.db.fetchone("SELECT 1 FROM archive_forms WHERE position = ?", (entry.position,))
                if found is None:
                    self._insert(entry)

    def _insert(self, entry: _Entry) -> None:
        row = entry.identity()
        self.db.execute(
            "INSERT INTO archive_forms (id, application_id, position, version, kind, recorded_at, "
            "form_sha256, sealed_document, sealed_pdf) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.application_id,
                row.position,
                row.version,
                row.kind,
                row.recorded_at,
                row.form_sha256,
                entry.sealed_document,
                entry.sealed_pdf,
            ),
        )

    # ------------------------------------------------------------------ queries (store executor)

    _COLUMNS: Final = "id, application_id, position, version, kind, recorded_at, form_sha256, sealed_document"

    def forms_of(self, application_id: UUID | str) -> list[ArchivedForm]:
        """Every archived version of one application's form, oldest first (without the PDFs).

        ``ArchiveIntegrityError`` when any of them does not decrypt or check.
        """
        rows = self.db.fetchall(
            f"SELECT {self._COLUMNS} FROM archive_forms WHERE application_id = ? ORDER BY version",
            (str(application_id),),
        )
        return [self._form(row, None) for row in rows]

    def get(self, form_id: str) -> ArchivedForm | None:
        """One archived version with its PDF, or None; ``ArchiveIntegrityError`` when it does not check."""
        row = self.db.fetchone(
            f"SELECT {self._COLUMNS}, sealed_pdf FROM archive_forms WHERE id = ?", (form_id,)
        )
        if row is None:
            return None
        return self._form(row[:-1], None if row[-1] is None else bytes(row[-1]))

    def application_of(self, form_id: str) -> str:
        """The application a row names in clear (unchecked: to decide who may hear that it failed to check)."""
        row = self.db.fetchone("SELECT application_id FROM archive_forms WHERE id = ?", (form_id,))
        return "" if row is None else str(row[0])

    def _form(self, row: tuple[Any, ...], sealed_pdf: bytes | None) -> ArchivedForm:
        """Decrypt a row and check it: the document against the row, the form against its hash, the PDF."""
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
        if sealed_pdf is not None:
            pdf = self.cipher.open(sealed_pdf, identity.aad("pdf"))
            if pdf is None:
                raise ArchiveIntegrityError(identity.id, "the PDF does not decrypt for this row")
            if hashlib.sha256(pdf).hexdigest() != doc.get("pdf_sha256"):
                raise ArchiveIntegrityError(identity.id, "the PDF does not match the document's pdf_sha256")
        return ArchivedForm(**asdict(identity), document=document, pdf=pdf)


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
    "RowIdentity",
    "archive_id",
    "canonical",
]
