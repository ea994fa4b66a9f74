"""Uploaded images at the edge: bounded multipart reading, type sniffing, and metadata stripping.

Nothing the client says about a file is trusted: its type comes from its first bytes, never from the
filename or the declared Content-Type, and every accepted image is decoded and re-encoded, which drops
EXIF (GPS, device), XMP, ICC and text chunks, and anything appended to the file.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import ClassVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from PIL import Image, ImageFile, ImageOps

from domain.errors import DomainError, FieldError

log = logging.getLogger(__name__)

JPEG = "image/jpeg"
PNG = "image/png"
ACCEPTED_TYPES = frozenset({JPEG, PNG})
# Enough for any phone camera's ID photo (12 MP); larger is refused from the header, before decoding.
MAX_PIXELS = 16_000_000
JPEG_QUALITY = 90
CHUNK_BYTES = 64 * 1024
# Room for the parts beside the file (boundaries, part headers, text fields): all of them together.
EXTRA_BYTES = 64 * 1024
MAX_TEXT_FIELD_BYTES = 4 * 1024
# Empty parts cost no budget; bound their number instead.
MAX_PARTS = 16

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


class UploadError(DomainError):
    """Base of the upload errors; ``http_status`` is the status the error middleware should answer."""

    http_status: ClassVar[int] = 400
    code = "invalid_upload"
    message = "上传的文件无法处理"


class FileTooLarge(UploadError):
    """The upload is larger than the limit (declared or counted while streaming)."""

    http_status: ClassVar[int] = 413
    code = "file_too_large"
    message = "文件过大，请上传不超过 5MB 的图片"

    def __init__(self, max_bytes: int, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or f"文件过大，请上传不超过 {_megabytes(max_bytes)} 的图片", code=code)
        self.max_bytes = max_bytes


class UnsupportedFileType(UploadError):
    """Not a JPEG or PNG by its content, or an image that does not decode."""

    http_status: ClassVar[int] = 415
    code = "unsupported_file_type"
    message = "仅支持 JPG 或 PNG 格式的图片"


class ImageTooLarge(UploadError):
    """More pixels than an ID photo needs (the header says so: nothing was decoded)."""

    http_status: ClassVar[int] = 422
    code = "image_too_large"
    message = "图片分辨率过高，请重新拍摄或选择较小的图片"

    def __init__(self, max_pixels: int) -> None:
        super().__init__(f"图片分辨率过高，请上传不超过 {_megapixels(max_pixels)} 像素的图片")
        self.max_pixels = max_pixels


class InvalidUpload(UploadError):
    """The form is incomplete or a field is unusable (``errors`` names the field)."""

    http_status: ClassVar[int] = 422
    code = "invalid_upload"
    message = "上传的内容不完整，请检查后重试"

    def __init__(
        self, message: str | None = None, *, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.errors = [FieldError(field=field, code=self.code, message=self.message)] if field else []


class MalformedUpload(InvalidUpload):
    """The request is not a readable multipart/form-data body at all."""

    http_status: ClassVar[int] = 400
    code = "invalid_multipart"
    message = "请求格式不正确，请以 multipart/form-data 方式上传"


@dataclass(frozen=True)
class Upload:
    """A read multipart form: the wanted text fields, the file's bytes and its (untrusted) filename."""

    fields: dict[str, str]
    file: bytes = field(repr=False)
    filename: str | None


def sniff_content_type(data: bytes) -> str | None:
    """The media type that ``data``'s magic bytes announce, or None when unrecognised."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        if head[8:12] in _AVIF_BRANDS:
            return "image/avif"
        if head[8:12] in _HEIF_BRANDS:
            return "image/heic"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "application/zip"
    if head.startswith(b"\x7fELF"):
        return "application/x-executable"
    if head.startswith(b"MZ"):
        return "application/vnd.microsoft.portable-executable"
    return None


def clean_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[bytes, str]:
    """Decode a JPEG or PNG of at most ``max_pixels``, apply its EXIF orientation, and re-encode it without
    any metadata. ``ImageTooLarge`` comes from the header alone (Pillow's ``open`` reads no pixels)."""
    content_type = sniff_content_type(data)
    if content_type not in ACCEPTED_TYPES:
        raise UnsupportedFileType()
    image_format = "JPEG" if content_type == JPEG else "PNG"
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide Pillow switch that would let half an ID card through as grey.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as opened:
            width, height = opened.size
            # The header alone gives the size: refuse a bomb before decoding a single pixel.
            if width * height > max_pixels:
                raise ImageTooLarge(max_pixels)
            opened.load()
            return _reencode(_upright(opened), image_format), content_type
    except Image.DecompressionBombError:
        # Pillow's own ceiling (MAX_IMAGE_PIXELS, process-wide), should ours ever be set above it.
        raise ImageTooLarge(max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        log.info("refused an undecodable %s upload: %s", image_format, type(e).__name__)
        raise UnsupportedFileType(
            "图片已损坏或无法识别，请重新拍摄或选择图片", code="invalid_image"
        ) from None


def check_content_length(request: web.BaseRequest, *, max_bytes: int) -> None:
    """Refuse a request whose declared Content-Length cannot fit ``max_bytes`` of file plus the form."""
    if request.content_length is not None and request.content_length > max_bytes + EXTRA_BYTES:
        raise FileTooLarge(max_bytes)


async def read_multipart(
    request: web.BaseRequest, *, max_bytes: int, file_field: str = "file", text_fields: set[str]
) -> Upload:
    """Stream a multipart/form-data body, keeping at most ``max_bytes`` of file and 4 KiB per text field."""
    check_content_length(request, max_bytes=max_bytes)
    if request.content_type != "multipart/form-data":
        raise MalformedUpload(code="not_multipart")
    fields: dict[str, str] = {}
    file: bytes | None = None
    filename: str | None = None
    # Everything but the file shares one small budget, so unknown parts cannot be used to stream forever.
    extra_budget = EXTRA_BYTES
    try:
        reader = await request.multipart()
        parts = 0
        while (part := await reader.next()) is not None:
            parts += 1
            if parts > MAX_PARTS or not isinstance(part, BodyPartReader):
                raise MalformedUpload()
            if part.name == file_field:
                if file is not None:
                    raise InvalidUpload("只能上传一个文件", code="duplicate_field", field=file_field)
                file = await _read_file(part, max_bytes)
                filename = part.filename
            elif part.name in text_fields:
                if part.name in fields:
                    raise InvalidUpload("同一字段只能填写一次", code="duplicate_field", field=part.name)
                raw = await _read_limited(part, MAX_TEXT_FIELD_BYTES)
                if raw is None:
                    raise InvalidUpload("填写的内容过长", code="field_too_long", field=part.name)
                try:
                    fields[part.name] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidUpload("填写的内容无法识别", code="invalid_field", field=part.name) from None
                extra_budget -= len(raw)
            else:
                extra_budget -= await _drain(part, extra_budget)
            if extra_budget < 0:
                raise FileTooLarge(max_bytes)
    except (ValueError, AssertionError, KeyError, HttpProcessingError):
        # aiohttp's multipart parser reports a broken body (bad boundary, bad headers) with these.
        raise MalformedUpload() from None
    if file is None:
        raise InvalidUpload("请选择要上传的图片", code="file_required", field=file_field)
    return Upload(fields=fields, file=file, filename=filename)


async def _read_file(part: BodyPartReader, max_bytes: int) -> bytes:
    """The part's bytes, counted as they arrive: ``FileTooLarge`` as soon as there are too many."""
    data = await _read_limited(part, max_bytes)
    if data is None:
        raise FileTooLarge(max_bytes)
    return data


async def _read_limited(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None as soon as there are more than ``limit`` (the rest is left unread).

    At most ``limit`` plus one chunk is ever held (aiohttp needs chunks longer than the boundary).
    """
    buffer = bytearray()
    while chunk := await part.read_chunk(CHUNK_BYTES):
        buffer += chunk
        if len(buffer) > limit:
            return None
    return bytes(buffer)


async def _drain(part: BodyPartReader, limit: int) -> int:
    """Read and discard a part, returning its size; stop as soon as it passes ``limit``."""
    size = 0
    while chunk := await part.read_chunk(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            break
    return size


def _megapixels(pixels: int) -> str:
    """1600万 for 16,000,000: how a Chinese camera spec says it."""
    return f"{pixels // 10_000}万" if pixels >= 10_000 else str(pixels)


def _megabytes(size: int) -> str:
    mb = size / (1024 * 1024)
    return f"{round(mb, 1):g}MB" if mb >= 1 else f"{size // 1024}KB"


def _reencode(image: Image.Image, image_format: str) -> bytes:
    """The pixels alone, encoded afresh as ``image_format``."""
    if image_format == "JPEG":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
    elif image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    # Savers copy some metadata (PNG's ICC profile, JPEG's comment) from ``info``: give them none.
    image.info = {}
    out = io.BytesIO()
    if image_format == "JPEG":
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; as it is when the EXIF block is unreadable."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        # A phone's broken EXIF is no reason to refuse the photo; it is discarded below anyway.
        log.info("ignored an unreadable EXIF orientation")
        return image.copy()
