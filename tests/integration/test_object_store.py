"""Blobs in an S3-compatible object store (moto's server over real HTTP): the same encrypted blobs as on
disk, reachable from every host, tamper-evident, and an outage said as such (never taken for "missing")."""

from __future__ import annotations

import hashlib
import time

import pytest

from backend.object_store import (
    LocalObjects,
    ObjectNotFound,
    ObjectStoreUnavailable,
    S3Objects,
    checked_key,
    open_objects,
)
from backend.storage import BlobCorrupted, BlobNotFound, BlobStore, blob_key
from miniprogram_stub.client import id_photo
from tests.object_server import S3Bucket, s3_server

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
