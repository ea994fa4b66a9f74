"""The encrypted blob store, and the image cleaning every upload goes through before it is stored."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from backend.storage import BlobCorrupted, BlobNotFound, BlobRef, BlobStore
from backend.uploads import (
    MAX_PIXELS,
    FileTooLarge,
    ImageTooLarge,
    InvalidUpload,
    MalformedUpload,
    UnsupportedFileType,
    clean_image,
    sniff_content_type,
)

KEY = bytes(range(32))
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def two_colour_photo(fmt: str = "JPEG", **save_params: object) -> bytes:
    """A 40×20 image: red on the left half, blue on the right."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    out = io.BytesIO()
    image.save(out, format=fmt, **save_params)
    return out.getvalue()


def photo_with_gps_and_rotation() -> bytes:
    """A phone photo's JPEG: orientation 6 (turn 90° clockwise to view), GPS position, camera, ICC, XMP."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 15"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (23.0, 7.0, 30.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (113.0, 15.0, 45.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return two_colour_photo(
        "JPEG",
        exif=exif,
        icc_profile=icc,
        comment=b"secret comment",
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret xmp</x:xmpmeta>',
    )


# --- the blob store ---------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", KEY)


def test_a_stored_blob_comes_back_with_its_content_type(store: BlobStore) -> None:
    data = two_colour_photo()

    ref = store.put(data, "image/jpeg")

    assert ref == BlobRef(sha256=hashlib.sha256(data).hexdigest(), size=len(data), content_type="image/jpeg")
    assert store.exists(ref.sha256)
    assert store.get(ref.sha256) == (data, "image/jpeg")


def test_the_file_lives_under_two_levels_of_hash_prefix(store: BlobStore) -> None:
    ref = store.put(b"some bytes", "image/png")

    assert blob_files(store.root) == [store.root / ref.sha256[:2] / ref.sha256[2:4] / ref.sha256]


def test_the_same_content_twice_is_one_file_written_once(store: BlobStore) -> None:
    data = two_colour_photo()
    first = store.put(data, "image/jpeg")
    [path] = blob_files(store.root)
    sealed, inode = path.read_bytes(), path.stat().st_ino

    second = store.put(data, "image/jpeg")

    assert second == first
    assert blob_files(store.root) == [path]
    # A rewrite would have a fresh nonce (different bytes) and a fresh inode (os.replace).
    assert path.read_bytes() == sealed
    assert path.stat().st_ino == inode


def test_nothing_readable_is_on_disk(store: BlobStore) -> None:
    data = photo_with_gps_and_rotation()

    ref = store.put(data, "image/jpeg")

    sealed = (store.root / ref.sha256[:2] / ref.sha256[2:4] / ref.sha256).read_bytes()
    assert data not in sealed
    assert data[:64] not in sealed
    assert not sealed.startswith(b"\xff\xd8")
    for marker in (b"JFIF", b"Exif", b"PhoneMaker", b"secret", b"xmpmeta"):
        assert marker not in sealed
    assert sniff_content_type(sealed) is None


def test_files_are_0600_and_directories_0700(store: BlobStore) -> None:
    ref = store.put(b"an id card", "image/jpeg")

    shard = store.root / ref.sha256[:2] / ref.sha256[2:4]
    assert mode_of(shard / ref.sha256) == 0o600
    assert mode_of(shard) == 0o700
    assert mode_of(shard.parent) == 0o700
    assert mode_of(store.root) == 0o700


def test_no_temporary_files_are_left_behind(store: BlobStore) -> None:
    for i in range(5):
        store.put(f"blob {i}".encode(), "image/png")

    assert not [p for p in blob_files(store.root) if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "position",
    [0, 3, 4, 6, 20, 40, -1],
    ids=["magic", "version", "type-length", "type", "nonce", "body", "tag"],
)
def test_one_tampered_byte_is_detected(store: BlobStore, position: int) -> None:
    ref = store.put(two_colour_photo(), "image/jpeg")
    [path] = blob_files(store.root)
    sealed = bytearray(path.read_bytes())
    sealed[position] ^= 0x01
    path.write_bytes(bytes(sealed))

    with pytest.raises(BlobCorrupted):
        store.get(ref.sha256)


def test_a_blob_moved_to_another_name_is_detected(store: BlobStore) -> None:
    genuine = store.put(b"the mother's id card", "image/jpeg")
    other = store.put(b"someone else's id card", "image/jpeg")
    [path_genuine] = [p for p in blob_files(store.root) if p.name == genuine.sha256]
    [path_other] = [p for p in blob_files(store.root) if p.name == other.sha256]
    path_genuine.write_bytes(path_other.read_bytes())

    with pytest.raises(BlobCorrupted):
        store.get(genuine.sha256)


def test_a_truncated_file_is_corrupted_not_a_crash(store: BlobStore) -> None:
    ref = store.put(b"x" * 100, "image/png")
    [path] = blob_files(store.root)
    path.write_bytes(path.read_bytes()[:10])

    with pytest.raises(BlobCorrupted):
        store.get(ref.sha256)


def test_put_heals_a_corrupted_copy(store: BlobStore) -> None:
    data = two_colour_photo()
    ref = store.put(data, "image/jpeg")
    [path] = blob_files(store.root)
    path.write_bytes(b"garbage")

    assert store.put(data, "image/jpeg") == ref
    assert store.get(ref.sha256) == (data, "image/jpeg")


def test_another_key_cannot_read_the_blobs(store: BlobStore) -> None:
    ref = store.put(b"an id card", "image/jpeg")

    with pytest.raises(BlobCorrupted):
        BlobStore(store.root, bytes(32)).get(ref.sha256)


def test_a_missing_blob_is_not_found(store: BlobStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()

    assert not store.exists(missing)
    with pytest.raises(BlobNotFound):
        store.get(missing)


@pytest.mark.parametrize("name", ["../../etc/passwd", "ABCDEF0123456789" * 4, "", "a" * 63])
def test_a_malformed_hash_is_not_found_and_never_becomes_a_path(store: BlobStore, name: str) -> None:
    assert not store.exists(name)
    with pytest.raises(BlobNotFound):
        store.get(name)


def test_a_short_key_is_refused_and_the_key_never_shows(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        BlobStore(tmp_path, b"short")
    assert KEY.hex() not in repr(BlobStore(tmp_path, KEY))
    assert repr(KEY) not in repr(BlobStore(tmp_path, KEY))


# --- sniffing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "application/pdf"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heic"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "image/avif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"PK\x03\x04\x14\x00\x00\x00", "application/zip"),
        (b"\x7fELF\x02\x01\x01\x00", "application/x-executable"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "application/vnd.microsoft.portable-executable"),
        (b"hello, world", None),
        (b"", None),
    ],
)
def test_the_type_comes_from_the_magic_bytes(head: bytes, expected: str | None) -> None:
    assert sniff_content_type(head + bytes(32)) == expected


# --- cleaning -------------------------------------------------------------------------------------------


def test_cleaning_strips_exif_and_gps_and_applies_the_rotation() -> None:
    original = photo_with_gps_and_rotation()
    with Image.open(io.BytesIO(original)) as before:
        assert before.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the fixture really carries a position
        assert before.size == (40, 20)

    cleaned, content_type = clean_image(original)

    assert content_type == "image/jpeg"
    with Image.open(io.BytesIO(cleaned)) as after:
        assert after.format == "JPEG"
        assert after.size == (20, 40)  # turned upright
        assert not after.getexif()
        assert not {"exif", "icc_profile", "xmp", "comment"} & set(after.info)
        # Orientation 6 means the camera's left edge is the top: red above, blue below.
        rgb = after.convert("RGB")
        assert _near(rgb.getpixel((10, 5)), RED)
        assert _near(rgb.getpixel((10, 35)), BLUE)
    for marker in (b"Exif", b"PhoneMaker", b"ICC_PROFILE", b"secret", b"xmpmeta", b"http://ns.adobe.com"):
        assert marker not in cleaned


def test_cleaning_removes_png_text_chunks_and_profiles() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret text")
    info.add_text("Author", "secret compressed", zip=True)
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret xmp</x:xmpmeta>")
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = two_colour_photo("PNG", pnginfo=info, exif=exif, icc_profile=icc)
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"):
        assert chunk in original

    cleaned, content_type = clean_image(original)

    assert content_type == "image/png"
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"secret", b"PhoneMaker"):
        assert chunk not in cleaned
    with Image.open(io.BytesIO(cleaned)) as after:
        assert after.size == (40, 20)
        assert after.convert("RGB").getpixel((5, 5)) == RED


def test_a_transparent_signature_keeps_its_transparency() -> None:
    signature = Image.new("RGBA", (30, 10), (0, 0, 0, 0))
    signature.paste((0, 0, 0, 255), (5, 3, 25, 7))
    out = io.BytesIO()
    signature.save(out, format="PNG")

    cleaned, _ = clean_image(out.getvalue())

    with Image.open(io.BytesIO(cleaned)) as after:
        assert after.mode == "RGBA"
        assert after.getpixel((0, 0)) == (0, 0, 0, 0)
        assert after.getpixel((10, 5)) == (0, 0, 0, 255)


def test_a_jpeg_with_something_appended_loses_it() -> None:
    polyglot = two_colour_photo() + b"PK\x03\x04 a zip archive riding along"

    cleaned, _ = clean_image(polyglot)

    assert b"PK\x03\x04" not in cleaned


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (4, 4)).save(out, format="GIF")
    return out.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF",
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(100),
        b"\x7fELF\x02\x01\x01" + bytes(100),
        _gif(),
        b"PK\x03\x04" + bytes(100),
        b"\x00\x00\x00\x18ftypheic" + bytes(100),
        b"just some text named photo.jpg",
    ],
    ids=["pdf", "exe", "elf", "gif", "zip", "heic", "text"],
)
def test_anything_but_jpeg_or_png_is_refused_whatever_its_name(data: bytes) -> None:
    with pytest.raises(UnsupportedFileType) as raised:
        clean_image(data)

    assert raised.value.code == "unsupported_file_type"
    assert raised.value.message == "仅支持 JPG 或 PNG 格式的图片"
    assert raised.value.http_status == 415


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_truncated_image_is_refused(fmt: str) -> None:
    whole = two_colour_photo(fmt)

    with pytest.raises(UnsupportedFileType) as raised:
        clean_image(whole[: len(whole) * 2 // 3])

    assert raised.value.code == "invalid_image"


def test_garbage_behind_a_jpeg_signature_is_refused() -> None:
    with pytest.raises(UnsupportedFileType) as raised:
        clean_image(b"\xff\xd8\xff\xe0" + os.urandom(2000))

    assert raised.value.code == "invalid_image"


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``×``height`` pixels."""
    out = io.BytesIO()
    Image.new("1", (1, 1)).save(out, format="PNG")
    png = bytearray(out.getvalue())
    # IHDR's data starts at byte 16 (8-byte signature, 4-byte length, 4-byte type); its CRC follows 13 bytes.
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def test_a_decompression_bomb_is_refused_before_it_is_decoded() -> None:
    # 48 megapixels of black compress to a few kilobytes.
    out = io.BytesIO()
    Image.new("1", (8000, 6000)).save(out, format="PNG")
    assert MAX_PIXELS < 8000 * 6000 and len(out.getvalue()) < 100_000

    with pytest.raises(ImageTooLarge) as raised:
        clean_image(out.getvalue())

    assert raised.value.code == "image_too_large"


@pytest.mark.parametrize(
    "size",
    [(6320, 6320), (4001, 4000), (65535, 65535)],
    ids=["the-reported-one", "just-above", "above-pillows"],
)
def test_a_header_claiming_too_many_pixels_is_refused(size: tuple[int, int]) -> None:
    with pytest.raises(ImageTooLarge) as raised:
        clean_image(_png_claiming(*size))

    assert raised.value.code == "image_too_large"
    assert raised.value.message == "图片分辨率过高，请上传不超过 1600万 像素的图片"


def test_upload_errors_carry_their_http_status_and_a_chinese_message() -> None:
    assert FileTooLarge(5 * 1024 * 1024).message == "文件过大，请上传不超过 5MB 的图片"
    assert FileTooLarge(2 * 1024 * 1024).message == "文件过大，请上传不超过 2MB 的图片"
    assert (FileTooLarge.http_status, UnsupportedFileType.http_status) == (413, 415)
    assert (InvalidUpload.http_status, MalformedUpload.http_status, ImageTooLarge.http_status) == (
        422,
        400,
        422,
    )
    missing = InvalidUpload("请选择要上传的图片", code="file_required", field="file")
    assert [(e.field, e.code) for e in missing.errors] == [("file", "file_required")]


def _near(pixel: object, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_the_pixel_cap_is_the_configured_one() -> None:
    def png(width: int, height: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (width, height)).save(out, format="PNG")
        return out.getvalue()

    assert clean_image(png(100, 100), max_pixels=10_000)[1] == "image/png"
    with pytest.raises(ImageTooLarge) as raised:
        clean_image(png(101, 100), max_pixels=10_000)
    assert raised.value.message == "图片分辨率过高，请上传不超过 1万 像素的图片"
