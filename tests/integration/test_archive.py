"""The permanent archive of the registration form, on SQLite and PostgreSQL.

A family signs, is sent back, re-signs and is issued (then loses the certificate and gets it
reissued): the archive holds each signed version with its exact JSON and hash, and each issued
version with the form as registered, the certificate number and the issuer's and sealer's names.
A page applied twice adds nothing; the database itself refuses UPDATE and DELETE; the PDF reads
as the form (pdftotext), embeds its fonts (pdffonts), and a rendered page is kept in
test-artifacts/archive-form.png to look at.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image, ImageDraw

from backend.pickup_list import find_cjk_font
from backend.routes.archive import wants_pdf
from backend.storage import BlobStore
from domain.application import BirthCertificateApplication, form_digest
from domain.service import Applications
from domain.values import CertificateNumber
from miniprogram_stub.client import signature_png
from projections.archive import NAME, FormArchive, archive_id, canonical
from projections.runner import LogFollower
from projections.sql import Database
from tests.builders import EMS, NOW, Walk

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _pdf_tools_missing() -> str | None:
    """Why the PDF checks cannot run here, or None."""
    missing = [tool for tool in ("pdftotext", "pdffonts", "pdftoppm") if shutil.which(tool) is None]
    if missing:
        return f"poppler-utils missing ({', '.join(missing)}): apt-get install -y poppler-utils"
    try:
        find_cjk_font()
    except Exception as error:  # PdfFontMissing: its message says what to install
        return f"no CJK TrueType font: {error}"
    return None


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

    def archive(self, blobs: BlobStore | None = None) -> FormArchive:
        """A fresh view over its own connection (as another process would open it)."""
        archive = FormArchive(Database.open(self.env), self.applications, self.executor, blobs or self.blobs)
        self.archives.append(archive)
        return archive

    async def follow(self, archive: FormArchive, page_size: int = 500) -> int:
        follower = LogFollower(self.applications, archive, executor=self.executor, page_size=page_size)
        return await follower.catch_up()

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
        assert doc["signature"] == {"document_id": signature, "sha256": signature, "image": "drawn"}
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
    await archive.apply(whole)  # the same page again
    await archive.apply(whole[:5])  # an older one
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
    await archive.apply(overlapping)
    await archive.apply(overlapping)
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
    query = "SELECT id, kind, form_sha256, document, pdf FROM archive_forms ORDER BY position"
    before = await bench.run(archive.db.fetchall, query)
    assert len(before) == 3
    postgres = bench.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"
    refused = (psycopg.Error,) if postgres else (sqlite3.DatabaseError,)
    statements = [
        "UPDATE archive_forms SET form_sha256 = 'forged'",
        "UPDATE archive_forms SET pdf = NULL WHERE kind = 'issued'",
        "DELETE FROM archive_forms",
        "DELETE FROM archive_forms WHERE kind = 'signed'",
    ]
    if postgres:
        statements.append("TRUNCATE archive_forms")
    conn = raw_connection(bench.env)
    try:
        for statement in statements:
            with pytest.raises(refused) as error:
                conn.execute(statement)
            assert "archive_forms is append-only" in str(error.value), statement
    finally:
        conn.close()
    assert await bench.run(archive.db.fetchall, query) == before


async def test_an_older_table_gains_the_pdf_column_and_keeps_its_triggers(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE archive_forms (id TEXT PRIMARY KEY, application_id TEXT NOT NULL, position BIGINT NOT NULL UNIQUE, "
        "version BIGINT NOT NULL, kind TEXT NOT NULL, recorded_at TEXT NOT NULL, form_sha256 TEXT NOT NULL, "
        "document BLOB NOT NULL)"
    )
    conn.close()
    db = Database.open({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    try:
        columns = [row[1] for row in db.fetchall("PRAGMA table_info(archive_forms)")]
        assert columns[-1] == "pdf"
        db.execute(
            "INSERT INTO archive_forms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("x", "a", 1, 1, "signed", "t", "h", b"{}", b"%PDF"),
        )
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE archive_forms SET pdf = NULL")
        Database.open({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}).close()
    finally:
        db.close()


# ---------------------------------------------------------------------- without the signature image


async def test_a_missing_signature_image_is_archived_as_missing(bench: Bench, tmp_path: Path) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    empty = BlobStore(tmp_path / "elsewhere", b"k" * 32)
    archive = await bench.run(bench.archive, empty)
    await bench.follow(archive)
    forms = await bench.run(archive.forms_of, j.walk.id)
    assert [json.loads(f.document)["signature"]["image"] for f in forms] == ["missing"] * 3
    assert [f.kind for f in forms] == ["signed", "signed", "issued"]


# ---------------------------------------------------------------------- the PDF as a reader sees it


def pdf_text(pdf: bytes, tmp_path: Path, name: str) -> tuple[str, str]:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, text=True
    )
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, check=True, text=True)
    return text.stdout, fonts.stdout


async def test_the_pdf_reads_as_the_form_with_its_fonts_embedded(bench: Bench, tmp_path: Path) -> None:
    reason = _pdf_tools_missing()
    if reason:
        pytest.skip(reason)
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive)
    await bench.follow(archive)
    forms = await bench.run(archive.forms_of, j.walk.id)
    signed = await bench.run(archive.get, forms[1].id)
    issued = await bench.run(archive.get, forms[2].id)
    assert signed is not None and signed.pdf and issued is not None and issued.pdf
    text, fonts = pdf_text(issued.pdf, tmp_path, "issued")
    flat = "".join(text.split())
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
    rows = [line.split() for line in fonts.splitlines()[2:] if line.strip()]
    assert rows, fonts
    assert all(row[-5] == "yes" for row in rows), fonts  # the "emb" column: every font embedded
    assert any("WenQuanYi" in row[0] or "CJK" in row[0] or "Hei" in row[0] for row in rows), fonts
    signed_text, _ = pdf_text(signed.pdf, tmp_path, "signed")
    signed_flat = "".join(signed_text.split())
    assert "张小草" in signed_flat and "出生医学证明首次签发登记表" in signed_flat
    # Signed, not yet issued: the issuer's and sealer's lines stay blank.
    assert "李签发" not in signed_flat and "赵盖章" not in signed_flat and "X440100001" not in signed_flat
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "archive-form.pdf").write_bytes(issued.pdf)
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "80",
            "-singlefile",
            str(ARTIFACTS / "archive-form.pdf"),
            str(ARTIFACTS / "archive-form"),
        ],
        check=True,
    )
    assert (ARTIFACTS / "archive-form.png").stat().st_size > 10_000
    pages = subprocess.run(
        ["pdfinfo", str(tmp_path / "issued.pdf")], capture_output=True, text=True, check=True
    )
    assert re.search(r"^Pages:\s+1$", pages.stdout, re.MULTILINE), pages.stdout  # one A4 page


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
