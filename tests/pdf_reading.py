"""A PDF as a reader sees it, with Python alone: its text, its fonts, its pages (pypdf); an image of a page
when poppler's ``pdftoppm`` is there (``.ci/run`` installs it; without it the image checks skip and say so).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@dataclass(frozen=True)
class PdfFont:
    name: str
    embedded: bool


def pdf_text(pdf: bytes) -> str:
    """The text of every page, in reading order."""
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def pdf_fonts(pdf: bytes) -> list[PdfFont]:
    """Every font the pages use, and whether its program is in the file."""
    found: dict[str, PdfFont] = {}
    for page in PdfReader(io.BytesIO(pdf)).pages:
        resources = page.get("/Resources")
        fonts = resources.get_object().get("/Font") if resources is not None else None
        for ref in (fonts.get_object() if fonts is not None else {}).values():
            font = ref.get_object()
            described = font["/DescendantFonts"][0].get_object() if font["/Subtype"] == "/Type0" else font
            descriptor = described.get("/FontDescriptor")
            programs = descriptor.get_object().keys() if descriptor is not None else ()
            name = str(font["/BaseFont"]).lstrip("/")
            found[name] = PdfFont(name, any(p in programs for p in ("/FontFile", "/FontFile2", "/FontFile3")))
    return list(found.values())


def pdf_pages(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


def rendering_unavailable() -> str | None:
    """Why a page cannot be turned into an image here, or None."""
    if shutil.which("pdftoppm") is None:
        return "poppler-utils missing (pdftoppm): apt-get install -y poppler-utils"
    return None


def render_first_page(pdf: bytes, name: str, dpi: int = 80) -> Path:
    """test-artifacts/NAME.png: the first page at ``dpi`` (80: to look at), in grey levels."""
    ARTIFACTS.mkdir(exist_ok=True)
    source = ARTIFACTS / f"{name}.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", str(dpi), "-singlefile", str(source), str(ARTIFACTS / name)], check=True
    )
    return ARTIFACTS / f"{name}.png"


@dataclass(frozen=True)
class ScannedQr:
    """A QR code read from a page image: what it says, its level, and where it is on the paper."""

    text: str
    ec_level: str
    left_mm: float
    top_mm: float
    side_mm: float  # the symbol without its quiet zone
    modules: int  # a side, without the quiet zone
    quiet_zone_clear: bool  # four modules of white all round it

    @property
    def printed_mm(self) -> float:
        """Its side with the quiet zone: what the paper must give it."""
        return self.side_mm * (self.modules + 8) / self.modules


def scan_qr_codes(pdf: bytes, name: str, dpi: int = 150) -> list[ScannedQr]:
    """The QR codes of the first page as zxing-cpp reads them from an image at ``dpi`` (150: a phone photo of a
    printed A4 page is no sharper); test-artifacts/NAME.png is that image."""
    import zxingcpp
    from PIL import Image

    with Image.open(render_first_page(pdf, name, dpi)) as image:
        grey = image.convert("L")
    found = []
    for result in zxingcpp.read_barcodes(grey, formats=zxingcpp.BarcodeFormat.QRCode):
        corners = result.position
        xs = [p.x for p in (corners.top_left, corners.top_right, corners.bottom_left, corners.bottom_right)]
        ys = [p.y for p in (corners.top_left, corners.top_right, corners.bottom_left, corners.bottom_right)]
        side = max(max(xs) - min(xs), max(ys) - min(ys))
        modules = _modules(result.text, result.ec_level)
        margin = side / modules * 4
        # The ring from 2 px off the symbol to 1 px short of its quiet zone's edge: white, nothing drawn over it.
        outer = (min(xs) - margin + 1, min(ys) - margin + 1, max(xs) + margin - 1, max(ys) + margin - 1)
        inner = (min(xs) - 2, min(ys) - 2, max(xs) + 2, max(ys) + 2)
        clear = all(
            int(grey.getpixel((x, y))) > 200  # type: ignore[arg-type]
            for x in range(int(outer[0]), int(outer[2]) + 1)
            for y in range(int(outer[1]), int(outer[3]) + 1)
            if not (inner[0] <= x <= inner[2] and inner[1] <= y <= inner[3])
        )
        px_mm = dpi / 25.4
        found.append(
            ScannedQr(
                result.text, result.ec_level, min(xs) / px_mm, min(ys) / px_mm, side / px_mm, modules, clear
            )
        )
    return found


def _modules(text: str, ec_level: str) -> int:
    """Modules a side of the symbol that encodes ``text`` at ``ec_level`` (as backend.qr makes it)."""
    import segno

    return int(
        segno.make(text, error=ec_level.lower(), micro=False, boost_error=False).symbol_size(border=0)[0]
    )
