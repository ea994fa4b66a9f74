"""The service with an S3-compatible object store (moto's server over real HTTP, started here).

A family's ID photos go to the bucket, encrypted; while the store is away an upload answers 503 with
Retry-After and the application takes nothing (the version does not move), and once it is back the same
upload goes through. Another host (a second service on the same bucket) reads the same photo.
"""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import pytest

from backend.components import BLOBS, CONFIG
from miniprogram_stub.client import id_photo
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack, running_stack
from tests.object_server import S3Bucket, s3_server
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


async def upload(
    stack: Stack, token: str, app_id: str, kind: str, photo: bytes
) -> tuple[int, dict[str, str]]:
    """One upload as the mini-program sends it: the status and headers of the answer."""
    form = aiohttp.FormData()
    form.add_field("kind", kind)
    form.add_field("file", photo, filename="photo.jpg", content_type="image/jpeg")
    async with stack.session.post(
        f"{stack.api}/api/v1/applications/{app_id}/documents",
        data=form,
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        body = await r.json(content_type=None)
        stack.check("POST", f"/api/v1/applications/{app_id}/documents", r.status, r.content_type, body)
        return r.status, {**dict(r.headers), **{"code": str(body.get("code", ""))}}


async def test_uploads_go_to_the_bucket_and_an_outage_is_a_503_that_takes_nothing(
    tmp_path: Path, redis_url: str, family: Family
) -> None:
    with s3_server() as server:
        bucket = server.bucket()
        # The client below retries at once until the store's pause is over: not counted against the limit.
        environ = {**bucket.environ(), "BIRTHCERT_RATE_UPLOAD": "100000 per minute"}
        async with running_stack(tmp_path / "var", redis_url, environ) as stack:
            await stack.record_delivery(family)
            mp = stack.mini_program(family)
            await mp.login()
            await mp.start()
            await mp.verify_face("mother")
            await mp.confirm_delivery()
            await mp.provide_details()
            front = id_photo("mother_id_front")
            await mp.upload("mother_id_front", front)
            assert stack.app[BLOBS].root is None and not (tmp_path / "var" / "blobs").exists()
            assert_encrypted(bucket, [front], count=1)
            version = (await mp.status())["version"]
            assert mp.token is not None and mp.app_id is not None

            server.stop()
            back = id_photo("mother_id_back")
            status, headers = await upload(stack, mp.token, mp.app_id, "mother_id_back", back)
            assert (status, headers["code"], headers.get("Retry-After")) == (
                503,
                "temporarily_unavailable",
                "5",
            )
            assert (await mp.status())["version"] == version  # nothing acknowledged, nothing taken

            server.start()

            async def taken() -> bool:
                status, _ = await upload(stack, mp.token or "", mp.app_id or "", "mother_id_back", back)
                return status == 201

            await eventually(taken, "the upload goes through once the store is back")
            assert (await mp.status())["version"] == version + 1
            assert_encrypted(bucket, [front, back], count=2)

            # Another host on the same bucket and keys (its own data directory and client) reads them.
            config = stack.app[CONFIG]
            keys = {
                "CIPHER_KEY": config.cipher_key,
                "BIRTHCERT_INDEX_KEY": base64.b64encode(config.index_key).decode(),
            }
            async with running_stack(
                tmp_path / "other-host", redis_url, {**bucket.environ(), **keys}
            ) as other:
                photos = {other.app[BLOBS].get(key.rsplit("/", 1)[1])[0] for key in bucket.objects()}
                assert len(photos) == 2


def assert_encrypted(bucket: S3Bucket, photos: list[bytes], count: int) -> None:
    """The bucket holds ``count`` sealed blobs and no run of any photo's bytes."""
    stored = bucket.objects()
    assert len(stored) == count and all(key.startswith("blobs/") for key in stored)
    for sealed in stored.values():
        assert sealed.startswith(b"BCB\x01")
        for photo in photos:
            assert photo[200:232] not in sealed
