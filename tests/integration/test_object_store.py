"""Blobs and archived PDFs in an S3-compatible object store (moto's server over real HTTP): the same
encrypted blobs as on disk, reachable from every host, tamper-evident, and an outage said as such (never
taken for "missing"); the archive's PDFs in the bucket, sealed for their rows, the rows their index, and an
outage of the bucket holding the PDFs back without parking a row."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

from backend.object_store import (
    LocalObjects,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    S3Objects,
    checked_key,
    open_objects,
)
from backend.storage import BlobCorrupted, BlobNotFound, BlobStore, blob_key
from miniprogram_stub.client import id_photo
from projections.archive import ArchiveIntegrityError
from projections.sql import SqlParkingLot
from tests.builders import TEST_ID_NUMBERS
from tests.integration.test_archive import Bench, journey
from tests.integration.test_archive import bench as bench
from tests.integration.test_parking import lot as lot
from tests.integration.test_store import PERSONAL_TEXTS, assert_nothing_in_clear
from tests.object_server import S3Bucket, s3_server
from tests.waiting import eventually

KEY = bytes(range(32))


def s3_blobs(bucket: S3Bucket, **settings: float) -> BlobStore:
    """A blob store as the service opens one for this bucket (its own client, as another host would)."""
    objects = open_objects(bucket.settings(**settings), "blobs", None)
    assert objects is not None
    return BlobStore(objects, KEY)


def test_a_blob_goes_to_the_bucket_encrypted_and_comes_back(s3_bucket: S3Bucket) -> None:
    blobs = s3_blobs(s3_bucket)
    photo = id_photo("mother_id_front")
    ref = blobs.put(photo, "image/jpeg")

    assert blobs.get(ref.sha256) == (photo, "image/jpeg")
    assert blobs.exists(ref.sha256) and blobs.root is None
    stored = s3_bucket.objects()
    assert list(stored) == [f"blobs/{blob_key(ref.sha256)}"]
    sealed = stored[f"blobs/{blob_key(ref.sha256)}"]
    assert sealed.startswith(b"BCB\x01") and photo not in sealed and photo[100:132] not in sealed
    # The same content again is the same object, not another one.
    assert blobs.put(photo, "image/jpeg") == ref
    assert len(s3_bucket.objects()) == 1


def test_another_host_with_the_same_configuration_reads_the_same_blob(s3_bucket: S3Bucket) -> None:
    ref = s3_blobs(s3_bucket).put(b"\x89PNG signature", "image/png")
    elsewhere = s3_blobs(s3_bucket)  # a second process: its own client, the same bucket and key
    assert elsewhere.get(ref.sha256) == (b"\x89PNG signature", "image/png")


def test_an_object_replaced_in_the_bucket_is_corrupted_not_served(s3_bucket: S3Bucket) -> None:
    blobs = s3_blobs(s3_bucket)
    genuine = blobs.put(b"the genuine signature", "image/png")
    other = blobs.put(b"another family's photo", "image/jpeg")
    objects = s3_bucket.objects()
    genuine_key, other_key = (f"blobs/{blob_key(r.sha256)}" for r in (genuine, other))

    s3_bucket.replace(genuine_key, objects[other_key])  # a valid object, moved to another name
    with pytest.raises(BlobCorrupted):
        blobs.get(genuine.sha256)
    flipped = bytearray(objects[other_key])
    flipped[-1] ^= 1
    s3_bucket.replace(other_key, bytes(flipped))  # one byte changed
    with pytest.raises(BlobCorrupted):
        blobs.get(other.sha256)
    # Storing the content again heals the damaged copy.
    blobs.put(b"the genuine signature", "image/png")
    assert blobs.get(genuine.sha256) == (b"the genuine signature", "image/png")


def test_a_missing_object_is_not_found(s3_bucket: S3Bucket) -> None:
    blobs = s3_blobs(s3_bucket)
    with pytest.raises(BlobNotFound):
        blobs.get(hashlib.sha256(b"never stored").hexdigest())
    assert not blobs.exists(hashlib.sha256(b"never stored").hexdigest())


def test_a_store_that_is_away_is_unavailable_and_refused_at_once_for_a_moment() -> None:
    with s3_server() as server:
        bucket = server.bucket()
        blobs = s3_blobs(bucket, pause_seconds=30.0, connect_timeout=0.5, max_attempts=1)
        ref = blobs.put(b"kept before the outage", "image/png")
        server.stop()
        with pytest.raises(ObjectStoreUnavailable):
            blobs.put(b"during the outage", "image/png")
        started = time.monotonic()
        with pytest.raises(ObjectStoreUnavailable):  # not BlobNotFound: an outage is not an absence
            blobs.get(ref.sha256)
        assert time.monotonic() - started < 0.1  # refused at once, without waiting on the network again
        server.start()
        again = s3_blobs(bucket)
        assert again.get(ref.sha256) == (b"kept before the outage", "image/png")


def test_a_refusing_store_is_unavailable(s3_bucket: S3Bucket) -> None:
    """A bucket that is not there (a configuration fault) is an outage to callers, not a missing blob."""
    objects = S3Objects(s3_bucket.server.client(), "no-such-bucket-here", "blobs/")
    with pytest.raises(ObjectStoreUnavailable):
        objects.get("ab/cd/ef")


def test_keys_are_ours_only(tmp_path: object) -> None:
    for bad in ("../etc/passwd", "/abs", "a/../b", "UPPER", "", "a//b"):
        with pytest.raises(ValueError):
            checked_key(bad)
    local = LocalObjects(tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ObjectNotFound):
        local.get("ab/cd/nothing")


# ---------------------------------------------------------------------- the archive's PDFs in the bucket


def s3_archive_objects(bucket: S3Bucket, **settings: float) -> ObjectStore:
    objects = open_objects(bucket.settings(**settings), "archive", None)
    assert objects is not None
    return objects


async def test_archived_pdfs_go_to_the_bucket_sealed_with_the_row_as_their_index(
    bench: Bench, s3_bucket: S3Bucket
) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive, None, None, s3_archive_objects(s3_bucket))
    await bench.follow(archive)
    forms = await bench.run(archive.forms_of, j.walk.id)
    assert [f.kind for f in forms] == ["signed", "signed", "issued"]
    records = [f.pdf_record for f in forms]
    assert all(r is not None and r.object_key and r.sealed_pdf is None for r in records)
    stored = s3_bucket.objects()
    assert sorted(stored) == sorted(f"archive/{r.object_key}" for r in records if r)
    everything = b"\n".join(stored.values())
    assert b"%PDF-" not in everything and b"FlateDecode" not in everything
    assert_nothing_in_clear(everything, (*TEST_ID_NUMBERS, *PERSONAL_TEXTS, "X440100001", "李签发", "赵盖章"))
    # Read back through the row: decrypted, hashed, the PDF the row records.
    issued = await bench.run(archive.get, forms[2].id)
    assert issued is not None and issued.pdf is not None and issued.pdf.startswith(b"%PDF-")
    assert hashlib.sha256(issued.pdf).hexdigest() == issued.summary()["pdf_sha256"]
    # Nothing of the PDFs is in the database.
    rows = await bench.run(archive.db.fetchall, "SELECT sealed_pdf FROM archive_pdfs")
    assert rows == [(None,)] * 3


async def test_an_archived_pdf_replaced_in_the_bucket_is_an_integrity_error(
    bench: Bench, s3_bucket: S3Bucket
) -> None:
    j = await bench.run(journey, bench.applications, bench.blobs)
    archive = await bench.run(bench.archive, None, None, s3_archive_objects(s3_bucket))
    await bench.follow(archive)
    signed, _, issued = await bench.run(archive.forms_of, j.walk.id)
    assert signed.pdf_record and issued.pdf_record
    # The signed row's sealed PDF put in the issued row's place: a genuine object, for another row.
    objects = s3_bucket.objects()
    s3_bucket.replace(
        f"archive/{issued.pdf_record.object_key}", objects[f"archive/{signed.pdf_record.object_key}"]
    )
    with pytest.raises(ArchiveIntegrityError, match="does not decrypt"):
        await bench.run(archive.get, issued.id)
    assert (await bench.run(archive.get, signed.id)) is not None
    # Gone from the bucket: the row says what it misses, not an empty PDF.
    s3_bucket.server.client().delete_object(
        Bucket=s3_bucket.name, Key=f"archive/{signed.pdf_record.object_key}"
    )
    with pytest.raises(ArchiveIntegrityError, match="missing from the object store"):
        await bench.run(archive.get, signed.id)


async def test_an_object_store_outage_holds_the_pdfs_back_and_parks_nothing(
    bench: Bench, lot: SqlParkingLot
) -> None:
    with s3_server() as server:
        bucket = server.bucket()
        j = await bench.run(journey, bench.applications, bench.blobs)
        objects = s3_archive_objects(bucket, pause_seconds=0.05, connect_timeout=0.2, max_attempts=1)
        archive = await bench.run(bench.archive, None, None, objects)
        end = await bench.follow(archive, pdfs=False)
        renderer = bench.renderer(archive)
        renderer.parking, renderer.park_after, renderer.poll_interval = lot, 2, 0.01
        server.stop()
        task = asyncio.create_task(renderer.run())
        try:
            await eventually(lambda: renderer.health().failing_for > 0.5, "the renderer meets the outage")
            assert renderer.health().last_error == "_Outage"
            assert renderer.position < end and await lot.parked() == []  # healthy rows are never parked
            # The forms themselves are archived and readable meanwhile.
            forms = await bench.run(archive.forms_of, j.walk.id)
            assert [f.pdf_pending for f in forms] == [True] * 3
            server.start()
            renderer.wake()
            await eventually(lambda: renderer.position == end, "the PDFs drawn once the store is back")
        finally:
            renderer.stop()
            await task
        assert await lot.parked() == []
        forms = await bench.run(archive.forms_of, j.walk.id)
        assert [f.pdf_pending for f in forms] == [False] * 3
        assert len(bucket.objects()) == 3
