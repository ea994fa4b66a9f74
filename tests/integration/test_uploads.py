"""Uploads over real HTTP: a small app whose handler reads, cleans and stores an image as the routes will.

The oversize cases check *when* the server decides, not only what it answers: the client streams 50 MB
from a generator that stops to wait for the server's verdict part-way through, so a server that read
the whole body before refusing it would never answer and the test would fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import MultipartReader, web
from aiohttp.test_utils import TestClient
from PIL import ExifTags, Image

from backend.storage import BlobStore
from backend.uploads import CHUNK_BYTES, UploadError, clean_image, read_multipart

MAX_BYTES = 1024 * 1024
BODY_BYTES = 50 * 1024 * 1024
# The client waits for the verdict once it has sent this much: far past the limit, far short of the body.
PAUSE_AFTER = 8 * 1024 * 1024
BOUNDARY = "----birthcert-test-boundary"

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


@dataclass
class Observed:
    """What the handler saw when it refused an upload."""

    answered: asyncio.Event = field(default_factory=asyncio.Event)
    body_opened: bool = False
    consumed: int = 0
    received: int = 0
    answers: int = 0


BLOBS = web.AppKey("blobs", BlobStore)
OBSERVED = web.AppKey("observed", Observed)


class CountingStream:
    """The request body stream, counting the bytes the multipart reader takes out of it."""

    def __init__(self, stream: aiohttp.StreamReader) -> None:
        self._stream = stream
        self.consumed = 0

    async def read(self, n: int = -1) -> bytes:
        data = await self._stream.read(n)
        self.consumed += len(data)
        return data

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        line = await self._stream.readline(max_line_length=max_line_length)
        self.consumed += len(line)
        return line

    def unread_data(self, data: bytes) -> None:
        self.consumed -= len(data)
        self._stream.unread_data(data)

    def at_eof(self) -> bool:
        return self._stream.at_eof()


class ProbedRequest:
    """The request as ``read_multipart`` sees it, recording whether and how far it read the body."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.stream: CountingStream | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    async def multipart(self) -> MultipartReader:
        self.stream = CountingStream(self._request.content)
        return MultipartReader(self._request.headers, cast(aiohttp.StreamReader, self.stream))


@web.middleware
async def problems(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except UploadError as e:
        errors = [{"field": x.field, "code": x.code, "message": x.message} for x in getattr(e, "errors", [])]
        return web.json_response(
            {"status": e.http_status, "code": e.code, "detail": e.message, "errors": errors},
            status=e.http_status,
            content_type="application/problem+json",
        )


async def upload_document(request: web.Request) -> web.Response:
    observed = request.app[OBSERVED]
    probe = ProbedRequest(request)
    try:
        upload = await read_multipart(
            cast(web.Request, probe), max_bytes=MAX_BYTES, text_fields={"kind", "form_sha256"}
        )
    except UploadError:
        observed.body_opened = probe.stream is not None
        observed.consumed = probe.stream.consumed if probe.stream else 0
        observed.received = request.content.total_bytes
        observed.answers += 1
        observed.answered.set()
        raise
    data, content_type = await asyncio.to_thread(clean_image, upload.file)
    ref = await asyncio.to_thread(request.app[BLOBS].put, data, content_type)
    return web.json_response(
        {"document_id": ref.sha256, "sha256": ref.sha256, "kind": upload.fields.get("kind")}, status=201
    )


@pytest.fixture
async def client(aiohttp_client: ClientFactory, tmp_path: Path) -> TestClient[web.Request, web.Application]:
    app = web.Application(middlewares=[problems])
    app[BLOBS] = BlobStore(tmp_path / "blobs", bytes(range(32)))
    app[OBSERVED] = Observed()
    app.router.add_post("/documents", upload_document)
    return await aiohttp_client(app)


def phone_photo() -> bytes:
    image = Image.new("RGB", (64, 48), (200, 180, 160))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 8
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] = "N"
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def form(file: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg") -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("kind", "mother_id_front")
    data.add_field("file", file, filename=filename, content_type=content_type)
    return data


@dataclass
class Sender:
    """Streams ``total`` bytes of file after a multipart preamble; waits for ``answered`` part-way."""

    answered: asyncio.Event
    total: int = BODY_BYTES
    preamble: bytes = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    sent: int = 0
    waited_for_answer: bool = False

    async def body(self) -> AsyncIterator[bytes]:
        yield self.preamble
        chunk = b"\xff" * CHUNK_BYTES
        while self.sent < self.total:
            if self.sent >= PAUSE_AFTER and not self.waited_for_answer:
                # A server that wanted the whole body first would leave us waiting here for ever.
                await asyncio.wait_for(self.answered.wait(), timeout=10)
                self.waited_for_answer = True
            yield chunk
            self.sent += len(chunk)

    @property
    def content_length(self) -> int:
        return len(self.preamble) + self.total


async def test_a_normal_upload_is_cleaned_and_stored(
    client: TestClient[web.Request, web.Application],
) -> None:
    photo = phone_photo()

    response = await client.post("/documents", data=form(photo))

    assert response.status == 201, await response.text()
    answer = await response.json()
    assert answer["kind"] == "mother_id_front"
    stored, content_type = client.app[BLOBS].get(answer["sha256"])
    assert content_type == "image/jpeg"
    assert answer["sha256"] == hashlib.sha256(stored).hexdigest()
    assert b"Exif" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert image.size == (48, 64)  # orientation 8 applied


async def test_an_oversize_declared_length_is_refused_before_the_body_is_read(
    client: TestClient[web.Request, web.Application],
) -> None:
    observed = client.app[OBSERVED]
    sender = Sender(observed.answered)

    async with client.post(
        "/documents",
        data=sender.body(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(sender.content_length),
        },
    ) as response:
        assert response.status == 413
        problem = await response.json()

    assert problem["code"] == "file_too_large"
    assert problem["detail"] == "文件过大，请上传不超过 1MB 的图片"
    assert not observed.body_opened  # the handler never touched the body
    assert observed.received < PAUSE_AFTER
    assert sender.sent < sender.total  # the client was stopped, not allowed to finish


async def test_an_oversize_chunked_upload_is_refused_once_the_limit_is_passed(
    client: TestClient[web.Request, web.Application],
) -> None:
    observed = client.app[OBSERVED]
    sender = Sender(observed.answered)

    async with client.post(
        "/documents",
        data=sender.body(),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    ) as response:
        assert response.status == 413
        assert (await response.json())["code"] == "file_too_large"

    assert observed.body_opened
    # Taken from the stream: the limit, plus our last chunk, plus the one chunk aiohttp's part reader
    # reads ahead to find the boundary, plus the part's headers.
    assert MAX_BYTES < observed.consumed <= MAX_BYTES + 2 * CHUNK_BYTES + 1024
    # Received off the socket: no more than that plus aiohttp's read buffers.
    assert observed.received <= MAX_BYTES + 1024 * 1024
    assert sender.sent < sender.total


async def test_a_program_named_photo_jpg_is_refused(client: TestClient[web.Request, web.Application]) -> None:
    program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(4000)

    response = await client.post("/documents", data=form(program, "photo.jpg", "image/jpeg"))

    assert response.status == 415
    problem = await response.json()
    assert problem["code"] == "unsupported_file_type"
    assert problem["detail"] == "仅支持 JPG 或 PNG 格式的图片"
    assert not list((client.app[BLOBS].root).rglob("*"))


async def test_a_form_without_its_file_is_refused(client: TestClient[web.Request, web.Application]) -> None:
    data = aiohttp.FormData()
    data.add_field("kind", "mother_id_front")
    data.add_field("other", b"x", filename="x.bin")  # not the file field: ignored

    response = await client.post("/documents", data=data)

    assert response.status == 422
    problem = await response.json()
    assert problem["code"] == "file_required"
    assert problem["errors"] == [{"field": "file", "code": "file_required", "message": "请选择要上传的图片"}]


async def test_json_is_not_an_upload(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.post("/documents", json={"file": "aGVsbG8="})

    assert response.status == 400
    assert (await response.json())["code"] == "not_multipart"


async def test_a_broken_multipart_body_is_a_bad_request(
    client: TestClient[web.Request, web.Application],
) -> None:
    body = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\nno closing boundary'.encode()

    response = await client.post(
        "/documents", data=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    )

    assert response.status == 400
    assert (await response.json())["code"] == "invalid_multipart"


async def test_a_long_text_field_is_refused(client: TestClient[web.Request, web.Application]) -> None:
    data = aiohttp.FormData()
    data.add_field("kind", "x" * 5000)
    data.add_field("file", phone_photo(), filename="photo.jpg", content_type="image/jpeg")

    response = await client.post("/documents", data=data)

    assert response.status == 422
    assert (await response.json())["code"] == "field_too_long"


async def test_large_unknown_parts_cannot_stream_forever(
    client: TestClient[web.Request, web.Application],
) -> None:
    data = aiohttp.FormData()
    data.add_field("padding", b"x" * (200 * 1024), filename="padding.bin")
    data.add_field("file", phone_photo(), filename="photo.jpg", content_type="image/jpeg")

    response = await client.post("/documents", data=data)

    assert response.status == 413
