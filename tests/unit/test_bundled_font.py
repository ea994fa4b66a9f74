"""The CJK font that comes with the package draws every character our PDFs can hold.

backend/fonts/NotoSansSC-Regular.ttf is what reportlab embeds on a machine with Python alone: a
character it lacks would print as an empty box on a permanent record. Checked against the font's
own character map as reportlab reads it: GB 2312 in full, the GBK ideographs, the rare name
characters of the 通用规范汉字表 beyond the BMP, and every character of the forms' templates, the
provinces' and ethnic groups' data and the test data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reportlab.pdfbase.ttfonts import TTFontFile

from backend.pickup_list import BUNDLED_FONT, find_cjk_font

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (
    "backend/form_pdf.py",
    "backend/pickup_list.py",
    "domain/data/provinces.json",
    "domain/data/ethnic_groups.json",
    "tests/builders.py",
    "miniprogram_stub/client.py",
)
# Rare name characters: Extension A (䶮) and supplementary-plane characters of the 通用规范汉字表 (𫖯 𬌗 𬍛 𫘝 𬱖).
RARE_NAME_CHARACTERS = "䶮𫖯𬌗𬍛𫘝𬱖"


@pytest.fixture(scope="module")
def mapped() -> set[int]:
    return set(TTFontFile(str(BUNDLED_FONT)).charToGlyph)


def gb2312() -> set[int]:
    """Every character of GB 2312 (6,763 hanzi and 682 symbols)."""
    found = set()
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                found.add(ord(bytes([high, low]).decode("gb2312")))
            except UnicodeDecodeError:
                continue
    return found


def test_the_bundled_font_is_the_default_and_embeddable() -> None:
    assert BUNDLED_FONT.is_file() and (BUNDLED_FONT.parent / "OFL.txt").is_file()
    assert find_cjk_font({}) == find_cjk_font({})  # registered once, by name


def test_gb2312_in_full(mapped: set[int]) -> None:
    missing = sorted(gb2312() - mapped)
    assert not missing, "".join(map(chr, missing))


def test_the_gbk_ideographs(mapped: set[int]) -> None:
    gbk = {c for c in range(0x4E00, 0x9FA6)}  # GBK's CJK Unified Ideographs
    assert not gbk - mapped


def test_rare_name_characters(mapped: set[int]) -> None:
    assert {ord(c) for c in RARE_NAME_CHARACTERS} <= mapped


def test_every_character_of_templates_and_data(mapped: set[int]) -> None:
    text = "".join((ROOT / source).read_text(encoding="utf-8") for source in SOURCES)
    wanted = {ord(c) for c in text if ord(c) >= 0x2E80 and c not in "\ufeff"}
    missing = sorted(wanted - mapped)
    assert not missing, "".join(map(chr, missing))
