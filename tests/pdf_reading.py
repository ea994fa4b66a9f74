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


def render_first_page(pdf: bytes, name: str) -> Path:
    """test-artifacts/NAME.png: the first page at 80 dpi, to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    source = ARTIFACTS / f"{name}.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "80", "-singlefile", str(source), str(ARTIFACTS / name)], check=True
    )
    return ARTIFACTS / f"{name}.png"
