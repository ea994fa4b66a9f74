"""Build backend/fonts/NotoSansSC-Regular.ttf, the CJK font every PDF embeds (run by hand, never at run time).

reportlab embeds TrueType (glyf) outlines only, and Noto Sans SC is published with PostScript (CFF)
outlines. This script takes the published OTF, keeps its characters (the whole Han coverage of Noto
Sans SC 2.004: GB 18030's CJK Unified block, Extension A and the supplementary-plane characters it
has, so a rare name character never prints as an empty box), converts the cubic outlines to
quadratic ones (fontTools' cu2qu, at most 1 unit of 1000 off), drops what reportlab does not use
(hinting, OpenType layout, vertical metrics) and writes a TrueType font. Needs ``fonttools`` only:

    python3 -m venv /tmp/ft && /tmp/ft/bin/pip install 'fonttools>=4.50'
    /tmp/ft/bin/pip download --no-deps -d /tmp/noto pylopdf-fonts-zh-cn==0.1.1   # Noto Sans SC, OFL 1.1
    unzip -o /tmp/noto/pylopdf_fonts_zh_cn-0.1.1-py3-none-any.whl -d /tmp/noto
    /tmp/ft/bin/python tools/build_cjk_font.py /tmp/noto/pylopdf_fonts_zh_cn/NotoSansSC-Regular.otf

The source file is checked against the SHA-256 of notofonts/noto-cjk's Sans/SubsetOTF/SC release
(what that package ships); the output is deterministic for a given fontTools version.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

SOURCE_SHA256 = "faa6c9df652116dde789d351359f3d7e5d2285a2b2a1f04a2d7244df706d5ea9"
OUTPUT = Path(__file__).resolve().parents[1] / "backend" / "fonts" / "NotoSansSC-Regular.ttf"
MAX_ERROR = 1.0  # font units (of 1000 per em) between the cubic and the quadratic curve


def build(source: Path, output: Path) -> int:
    """Convert and subset; returns the number of characters mapped."""
    from fontTools import subset
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import TTFont, newTable

    font = TTFont(source)
    options = subset.Options()
    options.layout_features = []
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.hinting = False
    options.drop_tables += ["VORG", "vhea", "vmtx", "BASE", "DSIG", "GPOS", "GSUB", "GDEF"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=set(font.getBestCmap()))
    subsetter.subset(font)

    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(None)
        glyphs[name].draw(Cu2QuPen(pen, MAX_ERROR, reverse_direction=True))
        glyf[name] = pen.glyph()
    del font["CFF "]
    font["loca"] = newTable("loca")
    font["glyf"] = glyf
    maxp = font["maxp"] = newTable("maxp")
    maxp.tableVersion = 0x00010000
    maxp.numGlyphs = len(order)
    for field in (
        "maxZones",
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, field, 1 if field == "maxZones" else 0)
    font["head"].glyphDataFormat = 0
    font["post"].formatType = 3.0  # no glyph names: reportlab does not need them
    font.sfntVersion = "\x00\x01\x00\x00"
    name = font["name"]
    name.setName(
        "Noto Sans SC 2.004 with TrueType outlines (fontTools cu2qu) and without hinting or "
        "OpenType layout, for embedding by reportlab; built by birthcert's tools/build_cjk_font.py",
        10,
        3,
        1,
        0x409,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    font.save(output)
    return len(font.getBestCmap())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="NotoSansSC-Regular.otf (Sans/SubsetOTF/SC, 2.004)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    digest = hashlib.sha256(args.source.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        print(f"{args.source}: SHA-256 {digest}, expected {SOURCE_SHA256}", file=sys.stderr)
        return 1
    count = build(args.source, args.output)
    print(f"{args.output}: {count} characters, {args.output.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
