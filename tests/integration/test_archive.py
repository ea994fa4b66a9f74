"""The permanent archive of the registration form, on SQLite and PostgreSQL.

A family signs, is sent back, re-signs and is issued (then loses the certificate and gets it
reissued): the archive holds each signed version with its exact JSON and hash, and each issued
version with the form as registered, the certificate number and the issuer's and sealer's names.
A page applied twice adds nothing; the database itself refuses UPDATE and DELETE; nothing
personal is in the database file, its WAL or the PostgreSQL rows in clear (the document and the PDF
are sealed), and a sealed value moved to another row or a clear column edited (with the trigger
dropped, as an intruder would) fails as an integrity error; a table of the old plaintext layout
stops the start. The PDF reads as the form and embeds its fonts (pypdf: Python alone), and, where
poppler is installed, a rendered page is kept in test-artifacts/archive-form.png to look at.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image, ImageDraw

from backend.object_store import ObjectStore
from backend.routes.archive import wants_pdf
from backend.storage import BlobStore, at_rest_key
from domain.application import BirthCertificateApplication, form_digest
from domain.service import Applications
from domain.values import CertificateNumber
from miniprogram_stub.client import signature_png
from projections.archive import (
    NAME,
    ArchivedForm,
    ArchiveIntegrityError,
    FormArchive,
    RowIdentity,
    archive_id,
    canonical,
)
from projections.archive_pdf import PdfRenderer
from projections.elicense import PrintedLicence, licence_id_for
from projections.runner import Fenced, LogFollower
from projections.sql import Database, SchemaError
from tests.builders import EMS, NOW, TEST_ID_NUMBERS, Walk
from tests.integration.following import Term, log_page, taken_over
from tests.integration.test_store import PERSONAL_TEXTS, assert_nothing_in_clear, stored_bytes
from tests.pdf_reading import (
    pdf_fonts,
    pdf_pages,
    pdf_text,
    render_first_page,
    rendering_unavailable,
    scan_qr_codes,
)


def second_signature() -> bytes:
    """Another signature stroke (the re-signed form carries its own image)."""
    image = Image.new("RGBA", (400, 160), (255, 255, 255, 0))
    ImageDraw.Draw(image).line([(30, 100), (120, 50), (200, 120), (370, 40)], fill=(10, 10, 60, 255), width=7)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@dataclass
class Bench:
    env: dict[str, str]
    applications: Applications
    blobs: BlobStore
    executor: ThreadPoolExecutor
    archives: list[FormArchive]
    # Threads stand in for the service's process pool here (test_object_storage runs the pool itself).
    render: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=2))
    renderers: dict[int, PdfRenderer] = field(default_factory=dict)

    def archive(
        self,
        blobs: BlobStore | None = None,
        key: bytes | None = None,
        objects: ObjectStore | None = None,
        licences: PrintedLicence | None = None,
    ) -> FormArchive:
        """A fresh view over its own connection (as another process would open it), keyed as the service
        does, with its PDF renderer (its own connection too)."""
        archive = FormArchive(
            Database.open(self.env),
            self.applications,
            self.executor,
            key=key or at_rest_key(self.env["CIPHER_KEY"], b""),
            objects=objects,
            licences=licences,
        )
        self.archives.append(archive)
        renderer = PdfRenderer(
            archive,
            Database.open(self.env),
            self.executor,
            render_executor=self.render,
            io_executor=self.executor,
            blobs=blobs or self.blobs,
            objects=objects,
        )
        archive.on_late_rows = renderer.render_late
        self.renderers[id(archive)] = renderer
        return archive

    def renderer(self, archive: FormArchive) -> PdfRenderer:
        return self.renderers[id(archive)]

    async def follow(self, archive: FormArchive, page_size: int = 500, pdfs: bool = True) -> int:
        """The archive caught up with the log, and (unless ``pdfs`` is False) its PDFs with the archive."""
        follower = LogFollower(self.applications, archive, executor=self.executor, page_size=page_size)
        position = await follower.catch_up()
        if pdfs:
            assert await self.renderer(archive).catch_up() == position
        return position

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))


@pytest.fixture
async def bench(store_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Bench]:
    executor = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    applications = await loop.run_in_executor(
        executor, lambda: Applications(env=store_env, clock=lambda: NOW)
    )
    b = Bench(store_env, applications, BlobStore(tmp_path / "blobs", b"k" * 32), executor, [])
    yield b
    for archive in b.archives:
        await loop.run_in_executor(executor, archive.db.close)
        await loop.run_in_executor(executor, b.renderer(archive).db.close)
    b.render.shutdown(wait=True)
    await loop.run_in_executor(executor, applications.close)
    executor.shutdown(wait=True)


def sign(walk: Walk, blobs: BlobStore, png: bytes) -> str:
    """The mother signs the form as it is now with a real image in the blob store; its hash."""
    ref = blobs.put(png, "image/png")
    current = walk.app.get_application(walk.parent, walk.id).form_sha256()
    walk.app.sign_form(
        walk.parent,
        walk.id,
        form_sha256=current or "",
        signature_document_id=ref.sha256,
        signature_sha256=ref.sha256,
    )
    return ref.sha256


@dataclass
class Journey:
    walk: Walk
    signatures: list[str]


def journey(service: Applications, blobs: BlobStore) -> Journey:
    """Signed, sent back (the newborn's name), re-signed with a new name, issued."""
    w = Walk(service)
    w.record_delivery()
    w.start()
    w.verify("mother")
    w.confirm()
    w.details()
    w.verify("father")
    w.upload_all()
    first = sign(w, blobs, signature_png())
    w.choose_ems()
    w.submit()
    w.reject(fields=["newborn_name"])
    w.details(newborn="张小草")
    second = sign(w, blobs, second_signature())
    w.submit()
    w.issue("X440100001", sealer="赵盖章")
    return Journey(w, [first, second])


def signed_events(service: Applications, walk: Walk) -> list[Any]:
    return [e for e in service.events.get(walk.id) if isinstance(e, BirthCertificateApplication.FormSigned)]


def count(archive: FormArchive) -> int:
    row = archive.db.fetchone("SELECT COUNT(*) FROM archive_forms")
    return int(row[0]) if row else 0


def pdf_count(archive: FormArchive) -> int:
    row = archive.db.fetchone("SELECT COUNT(*) FROM archive_pdfs")
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------- the versions


async def test_signed_signed_issued_with_the_exact_forms_hashes_and_names(bench: Bench) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    await bench.follow(archive, page_size=7)  # a journey spread over several pages
    forms = await bench.run(archive.forms_of, j.walk.id)
    assert [f.kind for f in forms] == ["signed", "signed", "issued"]
    events = await bench.run(signed_events, bench.applications, j.walk)
    assert [f.version for f in forms[:2]] == [e.originator_version for e in events]
    for form, event, signature in zip(forms[:2], events, j.signatures, strict=True):
        doc = json.loads(form.document)
        assert form.document == canonical(doc)  # stored canonical (RFC 8785, UTF-8)
        assert doc["form"] == event.form  # the exact JSON that was signed
        assert form.form_sha256 == doc["form_sha256"] == event.form_sha256 == form_digest(event.form)
        assert doc["form_sha256_verified"] is True
        assert doc["signature"] == {"document_id": signature, "sha256": signature}
        assert form.pdf_record is not None and form.pdf_record.signature_image == "drawn"
        assert (doc["certificate_number"], doc["issuer_name"], doc["sealer_name"]) == (None, None, None)
        assert form.id == archive_id(j.walk.id, form.version)
    assert [json.loads(f.document)["form"]["newborn"]["name"] for f in forms] == [
        "张小花",
        "张小草",
        "张小草",
    ]
    assert forms[0].form_sha256 != forms[1].form_sha256
    issued = forms[2]
    summary = issued.summary()
    # The form as registered is the last one signed, with its signature.
    assert issued.form_sha256 == forms[1].form_sha256
    assert json.loads(issued.document)["form"] == json.loads(forms[1].document)["form"]
    assert summary["signature_sha256"] == j.signatures[1]
    assert (summary["certificate_number"], summary["issuer_name"], summary["sealer_name"]) == (
        "X440100001",
        "李签发",
        "赵盖章",
    )
    assert summary["issued_at"] == issued.recorded_at
    assert summary["signed_at"] == forms[1].recorded_at
    stored = await bench.run(archive.get, issued.id)
    assert stored is not None and stored.pdf is not None and stored.pdf.startswith(b"%PDF-")
    assert summary["pdf_sha256"] is not None


async def test_a_page_applied_twice_adds_nothing_and_a_reissue_is_added_once(bench: Bench) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    end = await bench.follow(archive)
    assert await bench.run(count, archive) == 3
    follower = LogFollower(bench.applications, archive, executor=bench.executor)
    whole = await bench.run(follower._read_page, 0)
    assert not await archive.apply(whole, 0)  # the same page again
    assert not await archive.apply(whole[:5], 0)  # an older one
    assert await bench.run(count, archive) == 3
    assert await archive.position() == end
    # Another process's archive on the same database converges without writing anything.
    other = await bench.run(bench.archive)
    assert await bench.follow(other) == end
    assert await bench.run(count, other) == 3
    # Lost in the post, reissued: one more row, even from a page overlapping what was applied.
    service, walk = bench.applications, j.walk
    await bench.run(service.dispatch, EMS, walk.id, tracking_number="EA123456789CN")
    await bench.run(service.report_loss, EMS, walk.id, reason="邮件丢失")
    await bench.run(
        service.reissue,
        walk.issuer,
        walk.id,
        certificate_number=CertificateNumber("X440100002"),
        sealer_name="钱盖章",
    )
    overlapping = await bench.run(follower._read_page, 0)
    assert overlapping[-1][0] > end
    assert await archive.apply(overlapping, end)
    assert not await archive.apply(overlapping, end)
    await bench.follow(other)
    forms = await bench.run(archive.forms_of, walk.id)
    assert [f.kind for f in forms] == ["signed", "signed", "issued", "reissued"]
    reissued = forms[-1].summary()
    assert (reissued["certificate_number"], reissued["voided_certificate_number"]) == (
        "X440100002",
        "X440100001",
    )
    assert (reissued["issuer_name"], reissued["sealer_name"]) == ("李签发", "钱盖章")
    assert forms[-1].form_sha256 == forms[2].form_sha256  # the registered data is unchanged
    positions = await bench.run(archive.db.fetchall, "SELECT position FROM archive_forms ORDER BY position")
    assert len(positions) == len({p[0] for p in positions}) == 4
    assert await archive.position() == await bench.run(bench.applications.recorder.max_notification_id)
    assert await bench.run(bench.archive().db.position, NAME) == await archive.position()


# ---------------------------------------------------------------------- the database refuses changes


async def test_a_paused_old_leader_writes_no_late_row_and_no_late_pdf(bench: Bench) -> None:
    walk = journey(bench.applications, bench.blobs).walk
    archive = bench.archive()
    renderer = bench.renderer(archive)
    [(position, event), *_] = [
        (p, e)
        for p, e in log_page(bench.applications)
        if isinstance(e, BirthCertificateApplication.FormSigned)
    ]
    assert event.originator_id == walk.id
    old, new = taken_over(bench.env)  # the leader paused while another process took its lease

    # A parked form retried by the old leader: refused, nothing written.
    archive.db.fence = renderer.db.fence = Term(old)
    with pytest.raises(Fenced):
        await archive.redo(position, event)
    assert count(archive) == 0
    # The row written by the new leader; its PDF drawn late by the old one's renderer: refused.
    archive.db.fence = Term(new)
    with pytest.raises(Fenced):
        await archive.redo(position, event)
    assert (count(archive), pdf_count(archive)) == (1, 0)
    renderer.db.fence = Term(new)
    await renderer.render_late([position])
    assert pdf_count(archive) == 1


def raw_connection(env: dict[str, str]) -> Any:
    """A plain driver connection to the store's database, as a DBA (or an intruder) would open it."""
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
        conn = psycopg.connect(
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            dbname=env["POSTGRES_DBNAME"],
            user=env["POSTGRES_USER"],
            password=env.get("POSTGRES_PASSWORD") or None,
            autocommit=True,
        )
        conn.execute(f'SET search_path TO "{env["POSTGRES_SCHEMA"]}"')
        return conn
    return sqlite3.connect(env["SQLITE_DBNAME"], isolation_level=None)


async def test_update_and_delete_are_refused_by_the_database(bench: Bench) -> None:
    await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    await bench.follow(archive)
    query = "SELECT id, kind, form_sha256, sealed_document, sealed_pdf FROM archive_forms ORDER BY position"
    before = await bench.run(archive.db.fetchall, query)
    assert len(before) == 3
    postgres = bench.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"
    refused = (psycopg.Error,) if postgres else (sqlite3.DatabaseError,)
    statements = [
        "UPDATE archive_forms SET form_sha256 = 'forged'",
        "UPDATE archive_forms SET sealed_pdf = NULL WHERE kind = 'issued'",
        "DELETE FROM archive_forms",
        "DELETE FROM archive_forms WHERE kind = 'signed'",
        "UPDATE archive_pdfs SET pdf_sha256 = 'forged'",
        "UPDATE archive_pdfs SET sealed_pdf = NULL",
        "DELETE FROM archive_pdfs",
    ]
    if postgres:
        statements += ["TRUNCATE archive_forms", "TRUNCATE archive_pdfs"]
    pdfs = "SELECT form_id, pdf_sha256, sealed_pdf FROM archive_pdfs ORDER BY position"
    pdfs_before = await bench.run(archive.db.fetchall, pdfs)
    assert len(pdfs_before) == 3
    conn = raw_connection(bench.env)
    try:
        for statement in statements:
            with pytest.raises(refused) as error:
                conn.execute(statement)
            table = next(word for word in statement.split() if word.startswith("archive_"))
            assert f"{table} is append-only" in str(error.value), statement
    finally:
        conn.close()
    assert await bench.run(archive.db.fetchall, query) == before
    assert await bench.run(archive.db.fetchall, pdfs) == pdfs_before


@pytest.mark.parametrize("with_pdf", [False, True])
async def test_a_table_of_the_old_plaintext_layout_stops_the_start(
    store_env: dict[str, str], with_pdf: bool
) -> None:
    blob = "BYTEA" if store_env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres" else "BLOB"
    # A store from before the archive was encrypted, being migrated (`birthcert db migrate` creates tables).
    store_env = {**store_env, "CREATE_TABLE": "y"}
    conn = raw_connection(store_env)
    try:
        conn.execute("DROP TABLE IF EXISTS archive_forms")
        conn.execute("DROP TABLE IF EXISTS projection_positions")
        conn.execute(
            "CREATE TABLE archive_forms (id TEXT PRIMARY KEY, application_id TEXT NOT NULL, "
            "position BIGINT NOT NULL UNIQUE, version BIGINT NOT NULL, kind TEXT NOT NULL, recorded_at TEXT NOT NULL, "
            f"form_sha256 TEXT NOT NULL, document {blob} NOT NULL{f', pdf {blob}' if with_pdf else ''})"
        )
        conn.execute("CREATE TABLE projection_positions (name TEXT PRIMARY KEY, position BIGINT NOT NULL)")
        conn.execute("INSERT INTO projection_positions VALUES ('archive', 9)")
        with pytest.raises(SchemaError) as error:
            Database.open(store_env)
        message = str(error.value)
        assert "archive_forms has the old plaintext layout" in message
        assert "will not mix" in message and "DROP TABLE archive_forms" in message
        # Nothing was added to the old table: the start stopped before touching it.
        assert conn.execute("SELECT COUNT(*) FROM projection_positions").fetchone()[0] == 1
        # What the message says to do (a development database) lets the next start write the new table.
        conn.execute("DROP TABLE archive_forms")
        conn.execute("DELETE FROM projection_positions WHERE name = 'archive'")
    finally:
        conn.close()
    db = Database.open(store_env)
    try:
        assert db.position(NAME) == 0
        assert db.fetchone("SELECT COUNT(*) FROM archive_forms") == (0,)
    finally:
        db.close()


# ---------------------------------------------------------------------- encrypted at rest

CERTIFICATE_NUMBERS = ("X440100001", "X440100002")


def reissued_journey(service: Applications, blobs: BlobStore) -> Journey:
    """The journey, then lost in the post and reissued: four archived versions."""
    j = journey(service, blobs)
    service.dispatch(EMS, j.walk.id, tracking_number="EA123456789CN")
    service.report_loss(EMS, j.walk.id, reason="邮件丢失")
    service.reissue(
        j.walk.issuer, j.walk.id, certificate_number=CertificateNumber("X440100002"), sealer_name="钱盖章"
    )
    return j


async def test_nothing_personal_is_stored_in_clear(bench: Bench) -> None:
    j = await bench.run(reissued_journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    await bench.follow(archive, page_size=7)
    forms = await bench.run(archive.forms_of, j.walk.id)
    assert [f.kind for f in forms] == ["signed", "signed", "issued", "reissued"]
    # Read back whole (decrypted and checked): the personal data is there for those who may read it.
    full = [await bench.run(archive.get, f.id) for f in forms]
    assert all(f is not None and f.pdf and f.pdf.startswith(b"%PDF-") for f in full)
    docs = [json.loads(f.document) for f in forms]
    assert docs[0]["form"]["mother"]["name"] == "王芳" and docs[-1]["certificate_number"] == "X440100002"
    texts = (*TEST_ID_NUMBERS, *PERSONAL_TEXTS, "钱盖章", "EA123456789CN", *CERTIFICATE_NUMBERS)
    mother = docs[0]["form"]["mother"].values()
    assert any(number in mother for number in TEST_ID_NUMBERS)  # the scan looks for what the form holds
    everything = b"\n".join(
        await bench.run(stored_bytes, bench.env, ("archive_forms", "archive_pdfs"), snapshots=False)
    )
    # The scan reads the archive's rows: their clear columns are there…
    for form in forms:
        assert form.id.encode() in everything and form.form_sha256.encode() in everything
    # …but not the document, the PDF or anything they hold.
    assert_nothing_in_clear(everything, texts)
    for marker in (b"%PDF-", b'"form_sha256_verified"', b"birthcert-archived-form/1", b"FlateDecode"):
        assert marker not in everything, marker
    # The signature images (in the blob store, encrypted) are not in the archive's rows either.
    for signature in j.signatures:
        png, _ = await bench.run(bench.blobs.get, signature)
        assert png[8:64] not in everything


def tamper(env: dict[str, str], *statements: tuple[str, tuple[Any, ...]]) -> None:
    """As someone holding the database would: the row triggers dropped, then the statements run."""
    postgres = env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"
    conn = raw_connection(env)
    try:
        for table in ("archive_forms", "archive_pdfs"):
            conn.execute(
                f"DROP TRIGGER {table}_append_only_rows ON {table}"
                if postgres
                else f"DROP TRIGGER {table}_no_update"
            )
        for statement, params in statements:
            conn.execute(statement.replace("?", "%s") if postgres else statement, params)
    finally:
        conn.close()


Sealed = dict[str, tuple[bytes, bytes]]
Statements = list[tuple[str, tuple[Any, ...]]]


def swap(column: str, sealed: Sealed, first: str, second: str) -> Statements:
    """Exchange the sealed ``document`` (in ``archive_forms``) or ``pdf`` (in ``archive_pdfs``) of two rows."""
    part = 0 if column == "sealed_document" else 1
    statement = (
        "UPDATE archive_forms SET sealed_document = ? WHERE id = ?"
        if part == 0
        else "UPDATE archive_pdfs SET sealed_pdf = ? WHERE form_id = ?"
    )
    return [(statement, (sealed[second][part], first)), (statement, (sealed[first][part], second))]


# ids: the signed, the re-signed and the issued row. The issued form and the re-signed one share their
# form_sha256: only the row's id, kind, version and position tell their sealed values apart.
TAMPERINGS: dict[str, Callable[[Sealed, list[str]], Statements]] = {
    "documents swapped": lambda sealed, ids: swap("sealed_document", sealed, ids[1], ids[2]),
    "pdfs swapped": lambda sealed, ids: swap("sealed_pdf", sealed, ids[1], ids[2]),
    "the document put in the PDF's place": lambda sealed, ids: [
        ("UPDATE archive_pdfs SET sealed_pdf = ? WHERE form_id = ?", (sealed[ids[2]][0], ids[2]))
    ],
    "the PDF's record moved to another row": lambda sealed, ids: [
        ("UPDATE archive_pdfs SET form_id = 'moved' WHERE form_id = ?", (ids[2],)),
        ("UPDATE archive_pdfs SET form_id = ? WHERE form_id = ?", (ids[2], ids[1])),
    ],
    "a clear column edited": lambda sealed, ids: [
        ("UPDATE archive_forms SET recorded_at = ? WHERE id = ?", ("2026-01-01T00:00:00+00:00", ids[2]))
    ],
}


def sealed_values(archive: FormArchive) -> Sealed:
    """Each row's sealed document and sealed PDF (PDFs kept in the database), by row id."""
    rows = archive.db.fetchall(
        "SELECT f.id, f.sealed_document, p.sealed_pdf FROM archive_forms f JOIN archive_pdfs p ON p.form_id = f.id"
    )
    return {str(r[0]): (bytes(r[1]), bytes(r[2])) for r in rows}


@pytest.mark.parametrize("how", list(TAMPERINGS))
async def test_a_tampered_row_fails_as_an_integrity_error(bench: Bench, how: str) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    await bench.follow(archive)
    ids = [f.id for f in await bench.run(archive.forms_of, j.walk.id)]
    assert (await bench.run(archive.get, ids[2])) is not None
    sealed = await bench.run(sealed_values, archive)
    await bench.run(tamper, bench.env, *TAMPERINGS[how](sealed, ids))
    with pytest.raises(ArchiveIntegrityError) as error:
        await bench.run(archive.get, ids[2])
    assert error.value.form_id == ids[2]
    assert "decrypt" in error.value.reason or "position" in error.value.reason
    assert_nothing_in_clear(str(error.value).encode(), (*TEST_ID_NUMBERS, *PERSONAL_TEXTS))
    if how in ("documents swapped", "a clear column edited"):  # the list reads the documents, not the PDFs
        with pytest.raises(ArchiveIntegrityError):
            await bench.run(archive.forms_of, j.walk.id)
    assert (await bench.run(archive.get, ids[0])) is not None  # the untouched row still reads


async def test_a_document_sealed_for_its_row_must_still_hash_to_its_form_sha256(bench: Bench) -> None:
    """Someone holding the key re-seals an edited form for the issued row: the hash check catches it."""
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    await bench.follow(archive)
    issued = (await bench.run(archive.forms_of, j.walk.id))[2]
    doc = json.loads(issued.document)
    doc["form"]["newborn"]["name"] = "张大草"
    identity = RowIdentity(
        issued.id,
        issued.application_id,
        issued.position,
        issued.version,
        issued.kind,
        issued.recorded_at,
        issued.form_sha256,
    )
    forged = archive.cipher.seal(canonical(doc), identity.aad("document"))
    await bench.run(
        tamper, bench.env, ("UPDATE archive_forms SET sealed_document = ? WHERE id = ?", (forged, issued.id))
    )
    with pytest.raises(ArchiveIntegrityError, match="does not hash to the row's form_sha256"):
        await bench.run(archive.get, issued.id)


async def test_another_key_reads_nothing(bench: Bench) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    await bench.follow(archive)
    form_id = (await bench.run(archive.forms_of, j.walk.id))[0].id
    other = await bench.run(bench.archive, None, b"o" * 32)
    with pytest.raises(ArchiveIntegrityError, match="does not decrypt"):
        await bench.run(other.get, form_id)


# ---------------------------------------------------------------------- without the signature image


async def test_a_missing_signature_image_is_archived_as_missing(bench: Bench, tmp_path: Path) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    empty = BlobStore(tmp_path / "elsewhere", b"k" * 32)
    archive = await bench.run(bench.archive, empty)
    await bench.follow(archive)
    forms = await bench.run(archive.forms_of, j.walk.id)
    assert [f.pdf_record.signature_image if f.pdf_record else None for f in forms] == ["missing"] * 3
    assert [f.kind for f in forms] == ["signed", "signed", "issued"]


# ---------------------------------------------------------------------- the PDF as a reader sees it


async def issued_journey_forms(bench: Bench) -> tuple[ArchivedForm, ArchivedForm]:
    """The signed (re-signed) and the issued form of one journey, each with its PDF."""
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    await bench.follow(archive)
    forms = await bench.run(archive.forms_of, j.walk.id)
    signed = await bench.run(archive.get, forms[1].id)
    issued = await bench.run(archive.get, forms[2].id)
    assert signed is not None and signed.pdf and issued is not None and issued.pdf
    return signed, issued


async def test_the_pdf_reads_as_the_form_with_its_fonts_embedded(bench: Bench) -> None:
    signed, issued = await issued_journey_forms(bench)
    flat = "".join(pdf_text(issued.pdf).split())
    for expected in (
        "出生医学证明首次签发登记表",
        "网上申办专用",
        "分娩信息",
        "新生儿姓名及其父母相关信息",
        "知情告知",
        "母亲信息",
        "父亲信息",
        "王芳",
        "张伟",
        "张小草",
        "汉族",
        "中国",
        "女",
        "居民身份证",
        "2026年11月18日08时30分",
        "X440100001",
        "李签发",
        "赵盖章",
        "申办人签名",
        "领证人签名",
        "经办人(打证人)签名",
        "盖章人签名",
        "存根粘贴位置",
        "住址请填写居民身份证或户口簿上的住址",
        f"电子登记表摘要SHA-256:{issued.form_sha256}",
    ):
        assert expected in flat, expected
    assert "张小花" not in flat  # the form as registered is the re-signed one
    fonts = pdf_fonts(issued.pdf)
    assert fonts and all(font.embedded for font in fonts), fonts
    assert any("NotoSansSC" in font.name for font in fonts), fonts  # the bundled font (backend/fonts/)
    assert pdf_pages(issued.pdf) == 1  # one A4 page
    signed_flat = "".join(pdf_text(signed.pdf).split())
    assert "张小草" in signed_flat and "出生医学证明首次签发登记表" in signed_flat
    # Signed, not yet issued: the issuer's and sealer's lines stay blank.
    assert "李签发" not in signed_flat and "赵盖章" not in signed_flat and "X440100001" not in signed_flat


async def test_the_pdf_renders_as_an_image(bench: Bench) -> None:
    """test-artifacts/archive-form.png, to look at (the Chinese drawn with the embedded font)."""
    reason = rendering_unavailable()
    if reason:
        pytest.skip(reason)
    _, issued = await issued_journey_forms(bench)
    assert render_first_page(issued.pdf, "archive-form").stat().st_size > 10_000


async def test_each_print_carries_the_qr_code_of_its_own_e_licence_in_the_stub_box(bench: Bench) -> None:
    """Issued, then lost and reissued: each print's stub box holds the QR code of its own e-licence's verify URL
    (read from an image of the page as from a phone photo) with the identifier beneath it; the form as signed has
    none. test-artifacts/stub-qr-issued.png and stub-qr-reissued.png, to look at."""
    reason = rendering_unavailable()
    if reason:
        pytest.skip(reason)
    licences = PrintedLicence(b"i" * 32, "https://birthcert.example.gov.cn/", "C0134")
    j = await bench.run(journey, bench.applications, bench.blobs)
    service, walk = bench.applications, j.walk
    await bench.run(service.dispatch, EMS, walk.id, tracking_number="EA123456789CN")
    await bench.run(service.report_loss, EMS, walk.id, reason="邮件丢失")
    await bench.run(
        service.reissue,
        walk.issuer,
        walk.id,
        certificate_number=CertificateNumber("X440100002"),
        sealer_name="钱盖章",
    )
    archive = await bench.run(bench.archive, None, None, None, licences)
    await bench.follow(archive)
    forms = [await bench.run(archive.get, f.id) for f in await bench.run(archive.forms_of, walk.id)]
    assert [f.kind for f in forms if f] == ["signed", "signed", "issued", "reissued"]
    signed, issued, reissued = forms[1], forms[2], forms[3]
    assert signed and signed.pdf and issued and issued.pdf and reissued and reissued.pdf
    assert scan_qr_codes(signed.pdf, "stub-qr-signed") == []  # not printed on a blank: no e-licence
    seen = []
    for form in (issued, reissued):
        assert form.pdf
        licence = licence_id_for(b"i" * 32, "GZFY01", walk.id, form.version, "C0134")
        url = f"https://birthcert.example.gov.cn/verify/#{licence}"
        doc = json.loads(form.document)
        assert (doc["licence_id"], doc["verify_url"]) == (licence, url)
        [code] = scan_qr_codes(form.pdf, f"stub-qr-{form.kind}")
        assert (code.text, code.ec_level) == (url, "Q")
        assert code.quiet_zone_clear  # nothing drawn over it
        # At least 20 mm with its quiet zone; in the stub's box, at the page's right, under the table.
        assert code.printed_mm >= 20, code
        assert code.left_mm > 140 and 215 < code.top_mm < 265, code
        assert licence in "".join(pdf_text(form.pdf).replace("电子证照", "").split())
        assert pdf_pages(form.pdf) == 1
        seen.append(licence)
    assert seen[0] != seen[1]  # the reissued print names its own, new e-licence


# ---------------------------------------------------------------------- content negotiation


@pytest.mark.parametrize(
    ("accept", "pdf"),
    [
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("application/pdf", True),
        ("application/pdf, */*;q=0.1", True),
        ("application/json, application/pdf", False),
        ("application/pdf, application/json", True),
        ("application/json;q=0.5, application/pdf", True),
        ("application/pdf;q=0", False),
        ("text/html, */*", False),
    ],
)
def test_accept_chooses_pdf_only_when_preferred(accept: str, pdf: bool) -> None:
    assert wants_pdf(accept) is pdf
