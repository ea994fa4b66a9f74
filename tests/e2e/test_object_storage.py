"""The service with an S3-compatible object store (moto's server over real HTTP, started here).

A family's ID photos go to the bucket, encrypted; while the store is away an upload answers 503 with
Retry-After and the application takes nothing (the version does not move), and once it is back the same
upload goes through. Once she signs, the archived form's PDF, drawn by the worker processes, is in the
bucket sealed (no byte of it or of the family in clear) and reads back over HTTP. Another host (a second
service on the same bucket and keys) reads the same photos.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend.components import BLOBS, CONFIG
from miniprogram_stub.client import id_photo
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.test_archive_http import family_texts, get, login, rendered
from tests.integration.test_store import assert_nothing_in_clear
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

            # Signed: the form archived at once, its PDF drawn by the worker processes into the bucket, sealed.
            if family.father is not None:
                await mp.verify_face("father")
                await mp.upload("father_id_front")
                await mp.upload("father_id_back")
            await mp.sign()
            auditor = await login(stack, "auditor1")
            _, _, body = await rendered(stack, auditor.token, mp.app_id)
            [signed] = json.loads(body)["forms"]
            status, _, pdf = await get(stack, auditor.token, signed["url"], accept="application/pdf")
            assert status == 200 and pdf.startswith(b"%PDF-")
            assert hashlib.sha256(pdf).hexdigest() == signed["pdf_sha256"]
            pdfs = {k: v for k, v in bucket.objects().items() if k.startswith("archive/")}
            assert list(pdfs) == [f"archive/{signed['id']}/{signed['pdf_sha256']}"]
            [sealed] = pdfs.values()
            assert sealed.startswith(b"BCA\x01") and pdf[:512] not in sealed and b"%PDF-" not in sealed
            assert_nothing_in_clear(b"\n".join(bucket.objects().values()), family_texts(family))

            # Another host on the same bucket and keys (its own data directory and client) reads them.
            config = stack.app[CONFIG]
            keys = {
                "CIPHER_KEY": config.cipher_key,
                "BIRTHCERT_INDEX_KEY": base64.b64encode(config.index_key).decode(),
            }
            async with running_stack(
                tmp_path / "other-host", redis_url, {**bucket.environ(), **keys}
            ) as other:
                blobs = [key.rsplit("/", 1)[1] for key in bucket.objects() if key.startswith("blobs/")]
                # Each read is decrypted and checked against its hash (the photos were cleaned of EXIF).
                assert {other.app[BLOBS].get(sha256)[1] for sha256 in blobs} == {"image/jpeg", "image/png"}


async def health(stack: Stack) -> tuple[int, dict[str, Any], str]:
    """``/readyz``'s status and body, and the ``birthcert_object_store_up`` line of ``/metrics``."""
    async with stack.session.get(f"{stack.api}/readyz") as r:
        status, body = r.status, await r.json()
    async with stack.session.get(f"{stack.api}/metrics") as r:
        lines = (await r.text()).splitlines()
    [gauge] = [line for line in lines if line.startswith("birthcert_object_store_up ")]
    return status, body, gauge


async def test_readyz_says_the_object_store_is_away_and_stays_ready_for_reads(
    tmp_path: Path, redis_url: str, family: Family
) -> None:
    with s3_server() as server:
        async with running_stack(tmp_path / "var", redis_url, server.bucket().environ()) as stack:
            status, body, gauge = await health(stack)
            assert (status, body["status"], body["object_store"]) == (
                200,
                "ready",
                {"configured": True, "up": True},
            )
            assert gauge == "birthcert_object_store_up 1.0"

            server.stop()
            status, body, gauge = await health(stack)
            # Still in the load balancer's rotation: reads never need the object store, and every host reaches
            # the same one; uploads answer 503 with Retry-After meanwhile.
            assert (status, body["status"], body["reasons"], body["degraded"], body["object_store"]) == (
                200,
                "degraded",
                [],
                ["object_store_unavailable"],
                {"configured": True, "up": False},
            )
            assert gauge == "birthcert_object_store_up 0.0"
            await stack.record_delivery(family)
            mp = stack.mini_program(family)
            await mp.login()
            await mp.start()  # a command and a read, with the object store away
            assert (await mp.status())["version"] >= 1

            server.start()

            async def back() -> bool:
                status, body, gauge = await health(stack)
                return status == 200 and body["status"] == "ready" and gauge.endswith(" 1.0")

            await eventually(back, "ready again once the object store answers")


def assert_encrypted(bucket: S3Bucket, photos: list[bytes], count: int) -> None:
    """The bucket holds ``count`` sealed blobs and no run of any photo's bytes."""
    stored = {k: v for k, v in bucket.objects().items() if k.startswith("blobs/")}
    assert len(stored) == count and all(key.startswith("blobs/") for key in stored)
    for sealed in stored.values():
        assert sealed.startswith(b"BCB\x01")
        for photo in photos:
            assert photo[200:232] not in sealed
