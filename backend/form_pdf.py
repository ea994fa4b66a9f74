"""The registration form (出生医学证明首次签发登记表，网上申办专用; 附件 3) as an archival PDF.

``render_form_pdf`` draws exactly the form the mother signed (the JSON of ``FormSigned``) in the
layout of 附件 3: A4 portrait, one ruled table — 分娩信息, 新生儿姓名及其父母相关信息 (mother and
father side by side), 知情告知 with the signed notice text, the signature lines, the space for the
certificate's stub — and the footnotes. The mother's signature image is drawn at 申办人签名; for an
issued or reissued version the issuer (打证人) and the sealer (盖章人) are printed at their lines,
for the version as signed those lines stay blank. The certificate number and the form's SHA-256
are printed small at the bottom, so a paper copy can be matched to the archive.

A print on a numbered blank (issued, reissued, replaced) carries its e-licence: at the right of the stub's box,
apart from where the stub is pasted, the QR code of its verify URL (backend.qr, level Q, drawn as vectors,
``QR_MIN``–``QR_MAX`` a side with its quiet zone, so that a phone photo of the paper reads it) and the licence
identifier beneath it in small type (decision 0038).

The CJK font is found by ``backend.pickup_list.find_cjk_font`` and embedded (a subset); the PDF is
rendered with ``invariant`` on, so the same arguments give the same bytes. Synchronous: run it on
an executor, never on the event loop.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from backend.pickup_list import find_cjk_font
from backend.qr import dark_runs
from domain.values import ETHNIC_GROUPS, ID_TYPE_LABELS

Kind = Literal["signed", "issued", "reissued"]
SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
TITLE: Final = "出生医学证明首次签发登记表"
SUBTITLE: Final = "（网上申办专用）"
FOOTNOTE: Final = (
    "注：1.签发机构打印此表与存根一并归档保存，粘贴《出生医学证明》存根等材料。"
    "2.*住址请填写居民身份证或户口簿上的住址。"
)
SEXES: Final = {"F": "女", "M": "男"}
# The documents a parent's details can name (domain.values.ID_TYPE_LABELS), and others a form may print.
ID_TYPES: Final = {
    **ID_TYPE_LABELS,
    "household_register": "户口簿",
    "passport": "护照",
    "foreign_permanent_resident_id": "外国人永久居留身份证",
}
KIND_NAMES: Final = {"signed": "申办人签名版", "issued": "签发版", "reissued": "重新签发版"}
BLANK: Final = "&nbsp;" * 14  # an unfilled line on the paper form
SHORT_BLANK: Final = "&nbsp;" * 5
# The grid: 12 equal columns; each row lists (text, span) cells summing to 12.
COLUMNS: Final = 12
# The e-licence's QR code in the stub's box: its side with the quiet zone (points; 1 mm = 72 / 25.4 pt), the
# column it stands in, and the licence identifier's type beneath it.
MM: Final = 72 / 25.4
QR_MIN: Final = 20 * MM
QR_MAX: Final = 26 * MM
QR_COLUMN: Final = 46 * MM
QR_TOP: Final = 1.5 * MM
QR_GAP: Final = 0.5 * MM
QR_BOTTOM: Final = 1.5 * MM
ID_SIZE: Final = 6.0
ID_LEADING: Final = 7.0


def render_form_pdf(
    form: Mapping[str, Any],
    *,
    kind: Kind | str,
    form_sha256: str,
    signature_png: bytes | None,
    issuer_name: str | None,
    sealer_name: str | None,
    certificate_number: str | None,
    signed_at: datetime | str | None,
    issued_at: datetime | str | None,
    voided_certificate_number: str | None = None,
    licence_id: str | None = None,
    verify_url: str | None = None,
    font: str | None = None,
) -> bytes:
    """The form as an A4 PDF with the font embedded (see the module docstring); ``licence_id`` and
    ``verify_url``: the print's e-licence, its QR code drawn in the stub's box (an issued kind only)."""
    from reportlab.lib import colors  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib.enums import TA_CENTER, TA_JUSTIFY, TA_LEFT  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib.units import mm  # type: ignore[import-untyped,unused-ignore]
    from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped,unused-ignore]
    from reportlab.platypus import (  # type: ignore[import-untyped,unused-ignore]
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    font = font or find_cjk_font()
    issued = kind in ("issued", "reissued")
    delivery: Mapping[str, Any] = form.get("delivery") or {}
    mother: Mapping[str, Any] = form.get("mother") or {}
    father: Mapping[str, Any] | None = form.get("father")
    newborn: Mapping[str, Any] = form.get("newborn") or {}
    page_w, page_h = A4
    margin = 16 * mm
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=29 * mm,
        bottomMargin=17 * mm,
        title=f"{TITLE}{SUBTITLE}",
        subject=f"{KIND_NAMES.get(kind, kind)} SHA-256 {form_sha256}",
        author=str(delivery.get("institution_name") or ""),
        creator="birthcert",
        initialFontName=font,
        initialFontSize=10.5,
        invariant=1,
    )
    base = ParagraphStyle("cell", fontName=font, fontSize=10.5, leading=14, wordWrap="CJK", alignment=TA_LEFT)
    centred = ParagraphStyle("centred", parent=base, alignment=TA_CENTER)
    heading = ParagraphStyle("heading", parent=base, fontSize=12, leading=16, alignment=TA_CENTER)
    notice = ParagraphStyle(
        "notice", parent=base, fontSize=10, leading=15.5, alignment=TA_JUSTIFY, firstLineIndent=20
    )
    note = ParagraphStyle("note", parent=base, fontSize=9, leading=13)

    def p(text: str, style: Any = base) -> Any:
        return Paragraph(text, style)

    def field(label: str, value: object, suffix: str = "", blank: str = BLANK) -> Any:
        """``label：value suffix`` — the value underlined, or a blank line when there is none."""
        return p(f"{_esc(label)}{_filled(value, blank)}{_esc(suffix)}")

    def date_text(moment: date | None) -> str:
        if moment is None:
            return f"{_u(SHORT_BLANK * 2)}年{_u(SHORT_BLANK)}月{_u(SHORT_BLANK)}日"
        return f"{_u(str(moment.year))}年{_u(f'{moment.month:02d}')}月{_u(f'{moment.day:02d}')}日"

    born = _moment(delivery.get("born_at"))
    if born is None:
        born_text = f"{_u(SHORT_BLANK * 2)}年{_u(SHORT_BLANK)}月{_u(SHORT_BLANK)}日{_u(SHORT_BLANK)}时{_u(SHORT_BLANK)}分"
    else:
        born_text = (
            f"{_u(str(born.year))}年{_u(f'{born.month:02d}')}月{_u(f'{born.day:02d}')}日"
            f"{_u(f'{born.hour:02d}')}时{_u(f'{born.minute:02d}')}分"
        )
    place: Mapping[str, Any] = delivery.get("birthplace") or {}
    place_text = (
        f"{_filled(_strip(place.get('province'), '省'))}省"
        f"{_filled(_strip(place.get('city'), '市'))}市"
        f"{_filled(_strip(place.get('county'), '县', '区'))}县(区)"
    )
    signed_day = _day(signed_at)
    issued_day = _day(issued_at) if issued else None

    signature_cell: Any
    image = _signature_flowable(signature_png, max_w=50 * mm, max_h=13 * mm) if signature_png else None
    if image is not None:
        signature_cell = Table(
            [[p("申办人签名："), image]],
            colWidths=[24 * mm, None],
            style=TableStyle(
                [
                    ("FONTNAME", (0, 0), (-1, -1), font),
                    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                    ("TOPPADDING", (0, 0), (-1, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
                ]
            ),
            hAlign="LEFT",
        )
    else:
        signature_cell = field("申办人签名：", None)

    def parent_rows(person: Mapping[str, Any] | None) -> list[list[tuple[Any, int]]]:
        person = person or {}
        return [
            [
                (field("姓名：", person.get("name")), 4),
                (field("年龄：", person.get("age"), "岁", SHORT_BLANK), 2),
            ],
            [
                (field("国籍：", nationality_name(person.get("nationality"))), 3),
                (field("民族：", ethnicity_name(person.get("ethnicity"))), 3),
            ],
            [(field("有效身份证件类别：", _id_type(person) if person else None), 6)],
            [(field("有效身份证件号码：", person.get("id_number")), 6)],
            [(field("住址*：", person.get("address")), 6)],
        ]

    mother_rows, father_rows = parent_rows(mother), parent_rows(father)
    rows: list[list[tuple[Any, int]]] = [
        [(p("分娩信息", heading), 12)],
        [
            (p("产妇姓名", centred), 2),
            (p(_esc(delivery.get("mother_name"))), 4),
            (p("住院病历号", centred), 2),
            (p(_esc(delivery.get("inpatient_no"))), 4),
        ],
        [
            (p("新生儿性别", centred), 2),
            (p(_esc(SEXES.get(str(delivery.get("newborn_sex")), delivery.get("newborn_sex")))), 4),
            (p("出生时间", centred), 2),
            (p(born_text), 4),
        ],
        [
            (p("出生孕周", centred), 2),
            (p(f"{_filled(delivery.get('gestational_weeks'))}周"), 2),
            (p("出生体重", centred), 2),
            (p(f"{_filled(delivery.get('weight_g'))}克"), 2),
            (p("出生身长", centred), 2),
            (p(f"{_filled(delivery.get('length_cm'))}厘米"), 2),
        ],
        [
            (p("出生地点", centred), 2),
            (p(place_text), 4),
            (p("医疗机构名称", centred), 2),
            (p(_esc(delivery.get("institution_name"))), 4),
        ],
        [
            (field("接生人员姓名：", delivery.get("attendant")), 6),
            (p(f"录入日期：{date_text(_day(delivery.get('entered_on')))}"), 6),
        ],
        [(p("新生儿姓名及其父母相关信息", heading), 12)],
        [(p("新生儿姓名", centred), 2), (p(_esc(newborn.get("name"))), 10)],
        [(p("母亲信息", heading), 6), (p("父亲信息", heading), 6)],
        *[m + f for m, f in zip(mother_rows, father_rows, strict=True)],
        [(p("知情告知", heading), 12)],
        [(p(_esc(form.get("notice")), notice), 12)],
        [(signature_cell, 6), (p(f"日期：{date_text(signed_day)}"), 6)],
        [
            (field("领证人签名：", None), 4),
            (p(f"日期：{date_text(None)}"), 4),
            (field("与新生儿关系：", None), 4),
        ],
        [(field("有效身份证件类别：", None), 6), (field("有效身份证件号码：", None), 6)],
        [
            (field("经办人(打证人)签名：", issuer_name if issued else None), 6),
            (p(f"日期：{date_text(issued_day)}"), 6),
        ],
        [
            (field("盖章人签名：", sealer_name if issued else None), 6),
            (p(f"日期：{date_text(issued_day)}"), 6),
        ],
    ]

    width = doc.width - 12  # the frame keeps 6 pt of padding on each side
    data: list[list[Any]] = []
    style: list[tuple[Any, ...]] = [
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("GRID", (0, 0), (-1, -1), 0.6, colors.black),
        ("BOX", (0, 0), (-1, -1), 1.4, colors.black),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        # Heights come from the padding, so that a long address or name grows its row instead of spilling.
        ("TOPPADDING", (0, 0), (-1, -1), 4.2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4.2),
    ]
    for r, row in enumerate(rows):
        if sum(span for _, span in row) != COLUMNS:
            raise AssertionError(f"form row {r} spans {sum(span for _, span in row)} columns")
        cells: list[Any] = []
        c = 0
        for content, span in row:
            cells.append(content)
            cells.extend([""] * (span - 1))
            if span > 1:
                style.append(("SPAN", (c, r), (c + span - 1, r)))
            c += span
        data.append(cells)
    parents_first = 8
    parents_last = parents_first + len(mother_rows)
    notice_heading = parents_last + 1
    signature_row = notice_heading + 2
    for r in (0, 6, notice_heading):
        style.append(("BACKGROUND", (0, r), (-1, r), colors.HexColor("#EFEFEF")))
        style.append(("TOPPADDING", (0, r), (-1, r), 2.5))
        style.append(("BOTTOMPADDING", (0, r), (-1, r), 2.5))
    style.append(("BACKGROUND", (0, parents_first), (-1, parents_first), colors.HexColor("#F7F7F7")))
    for r in range(parents_first, parents_last + 1):
        style.append(("TOPPADDING", (0, r), (-1, r), 3.2))
        style.append(("BOTTOMPADDING", (0, r), (-1, r), 3.2))
    # The mother's and father's halves: a heavier line between the two.
    style.append(("LINEAFTER", (5, parents_first), (5, parents_last), 1.1, colors.black))
    style.append(("TOPPADDING", (0, notice_heading + 1), (-1, notice_heading + 1), 4))
    style.append(("BOTTOMPADDING", (0, notice_heading + 1), (-1, notice_heading + 1), 6))
    # The signature lines: room to sign by hand on the printout.
    style.append(("TOPPADDING", (0, signature_row), (-1, -1), 6.5))
    style.append(("BOTTOMPADDING", (0, signature_row), (-1, -1), 6.5))
    table = Table(data, colWidths=[width / COLUMNS] * COLUMNS, style=TableStyle(style))

    footnote = p(_esc(FOOTNOTE), note)
    # The stub's box takes what the page has left (at least 15 mm; with the e-licence's QR code, room for it and
    # its identifier beneath), under the table like its last row.
    frame_h = page_h - doc.topMargin - doc.bottomMargin - 12
    _, table_h = table.wrap(width, frame_h)
    _, note_h = footnote.wrap(width, frame_h)
    label = p("存根粘贴位置", ParagraphStyle("stub", parent=centred, textColor=colors.HexColor("#666666")))
    qr_url = verify_url if issued and verify_url and licence_id else None
    id_lines = _licence_lines(licence_id or "", font, QR_COLUMN - 4 * MM) if qr_url else []
    beneath = QR_GAP + len(id_lines) * ID_LEADING + QR_BOTTOM
    least = QR_TOP + QR_MIN + beneath if qr_url else 15 * mm
    stub_h = max(least, frame_h - table_h - note_h - 3 * mm - 6)
    stub_style: list[tuple[Any, ...]] = [
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("BOX", (0, 0), (-1, -1), 1.4, colors.black),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 8),
    ]
    if qr_url is None:
        stub = Table([[label]], colWidths=[width], rowHeights=[stub_h], style=TableStyle(stub_style))
    else:
        side = min(QR_MAX, stub_h - QR_TOP - beneath)
        code = _qr_drawing(qr_url, id_lines, font, width=QR_COLUMN, height=stub_h, side=side)
        stub_style += [
            # The QR code's column is set apart from where the stub is pasted: a light dashed line.
            ("LINEBEFORE", (1, 0), (1, 0), 0.5, colors.HexColor("#999999"), None, (2, 2)),
            ("LEFTPADDING", (1, 0), (1, 0), 0),
            ("RIGHTPADDING", (1, 0), (1, 0), 0),
            ("TOPPADDING", (1, 0), (1, 0), 0),
            ("BOTTOMPADDING", (1, 0), (1, 0), 0),
        ]
        stub = Table(
            [[label, code]],
            colWidths=[width - QR_COLUMN, QR_COLUMN],
            rowHeights=[stub_h],
            style=TableStyle(stub_style),
        )
    story = [table, stub, Spacer(1, 3 * mm), footnote]
    bundle = form.get("bundle")
    if bundle:  # 出生一件事's 表2, on its own page: covered by the same signature (decision 0044)
        story += _bundle_page(bundle, width, p, heading, colors, PageBreak, Table, TableStyle, font)

    small_lines = [
        f"出生医学证明编号：{certificate_number or '（未签发）'}"
        + (f"（原编号 {voided_certificate_number} 作废）" if voided_certificate_number else "")
        + f"　　归档版本：{KIND_NAMES.get(kind, kind)}",
        f"电子登记表摘要 SHA-256: {form_sha256}",
    ]

    def decorate(canvas: Canvas, _doc: Any) -> None:
        canvas.saveState()
        canvas.setTitle(f"{TITLE}{SUBTITLE}")
        # The title in a heavier weight: the font has no bold face, so fill and stroke the glyphs.
        text = canvas.beginText()
        text.setTextRenderMode(2)
        canvas.setLineWidth(0.45)
        text.setFont(font, 19)
        title_w = canvas.stringWidth(TITLE, font, 19)
        text.setTextOrigin((page_w - title_w) / 2, page_h - 17 * mm)
        text.textOut(TITLE)
        text.setTextRenderMode(0)
        canvas.drawText(text)
        canvas.setFont(font, 12)
        canvas.drawCentredString(page_w / 2, page_h - 24.5 * mm, SUBTITLE)
        canvas.setFont(font, 7.5)
        canvas.setFillColor(colors.HexColor("#333333"))
        for i, line in enumerate(small_lines):
            canvas.drawString(margin, 12 * mm - i * 3.6 * mm, line)
        canvas.drawRightString(page_w - margin, 12 * mm, "第 1 页 共 1 页")
        canvas.restoreState()

    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


# ---------------------------------------------------------------- values as the form prints them


def _bundle_page(
    bundle: Mapping[str, Any],
    width: float,
    p: Any,
    heading: Any,
    colors: Any,
    page_break: Any,
    table: Any,
    table_style: Any,
    font: str,
) -> list[Any]:
    """表2 of 出生一件事: the services, then every field by section (taken from the application or chosen)."""
    services = "、".join(str(s.get("name", "")) for s in bundle.get("services", []))
    rows: list[list[Any]] = [[p(f"<b>{_esc('申请一并办理的事项')}</b>"), p(_esc(services))]]
    rows.append([p(_esc("现行婚姻内生育")), p("是" if bundle.get("parents_married") else "否")])
    section = None
    items = [*bundle.get("derived", []), *bundle.get("fields", [])]
    order = {name: i for i, name in enumerate(dict.fromkeys(str(i.get("section", "")) for i in items))}
    for item in sorted(items, key=lambda i: order[str(i.get("section", ""))]):
        if item.get("section") != section:
            section = item.get("section")
            rows.append([p(f"<b>{_esc(section)}</b>"), ""])
        rows.append([p(_esc(item.get("label"))), p(_esc(item.get("value_label", item.get("value"))))])
    style = [
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]
    return [
        page_break(),
        p(_esc(bundle.get("title", "")), heading),
        table(rows, colWidths=[width * 0.32, width * 0.68], style=table_style(style)),
    ]


def ethnicity_name(code: object) -> str | None:
    """The GB/T 3304 name of an ethnicity code (``01`` → 汉族); an unknown code as it is."""
    if code is None or code == "":
        return None
    return ETHNIC_GROUPS.get(str(code), str(code))


@lru_cache(maxsize=1)
def _country_names() -> gettext.NullTranslations:
    import pycountry

    try:
        return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["zh_CN"])
    except OSError:
        return gettext.NullTranslations()


def nationality_name(code: object) -> str | None:
    """The Chinese name of an ISO 3166-1 alpha-3 code (``CHN`` → 中国)."""
    if code is None or code == "":
        return None
    text = str(code).upper()
    if text == "CHN":
        return "中国"
    import pycountry

    country = pycountry.countries.get(alpha_3=text)
    if country is None:
        return text
    return _country_names().gettext(country.name)


def _id_type(person: Mapping[str, Any]) -> str:
    kind = str(person.get("id_type") or "resident_id")
    return ID_TYPES.get(kind, kind)


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment.astimezone(SHANGHAI) if moment.tzinfo is not None else moment


def _day(value: object) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    moment = _moment(value)
    return None if moment is None else moment.date()


def _strip(value: object, *suffixes: str) -> str | None:
    """``广东省`` → ``广东`` where the form prints the 省 itself; other names unchanged."""
    if value is None or value == "":
        return None
    text = str(value)
    for suffix in suffixes:
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
    return text


def _esc(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _u(text: str) -> str:
    return f"<u>{text}</u>"


def _filled(value: object, blank: str = BLANK) -> str:
    """A value as written on the form's line (underlined), or the empty line."""
    if value is None or value == "":
        return _u(blank)
    return _u(f" {_esc(value)}") + " "


def _licence_lines(licence_id: str, font: str, width: float) -> list[str]:
    """The licence identifier as printed beneath its QR code: broken after its dots, each line within ``width``."""
    from reportlab.pdfbase.pdfmetrics import stringWidth  # type: ignore[import-untyped,unused-ignore]

    lines: list[str] = []
    line = "电子证照 "
    for part in (f"{piece}." for piece in licence_id.split(".")):
        if line and stringWidth(line + part, font, ID_SIZE) > width:
            lines.append(line)
            line = ""
        line += part
    lines.append(line[:-1])
    return lines


def _qr_drawing(url: str, lines: list[str], font: str, *, width: float, height: float, side: float) -> Any:
    """The QR code of ``url`` (``side`` with its quiet zone, one path of dark modules: no seams between them)
    centred at the top of a ``width`` × ``height`` cell, and ``lines`` of small type centred beneath it."""
    from reportlab.graphics.shapes import Drawing, Path, String  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib import colors  # type: ignore[import-untyped,unused-ignore]

    count, runs = dark_runs(url)
    module = side / count
    left, top = (width - side) / 2, height - QR_TOP
    path = Path(fillColor=colors.black, strokeColor=None, strokeWidth=0)
    for row, column, length in runs:
        x, y = left + column * module, top - (row + 1) * module
        path.moveTo(x, y)
        path.lineTo(x + length * module, y)
        path.lineTo(x + length * module, y + module)
        path.lineTo(x, y + module)
        path.closePath()
    drawing = Drawing(width, height)
    drawing.add(path)
    baseline = top - side - QR_GAP - ID_SIZE
    for i, line in enumerate(lines):
        drawing.add(
            String(
                width / 2,
                baseline - i * ID_LEADING,
                line,
                fontName=font,
                fontSize=ID_SIZE,
                textAnchor="middle",
            )
        )
    return drawing


def _signature_flowable(png: bytes, *, max_w: float, max_h: float) -> Any:
    """The signature image, flattened on white, scaled to fit; None when it is not a readable image."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError
    from reportlab.platypus import Image  # type: ignore[import-untyped,unused-ignore]

    try:
        with PILImage.open(io.BytesIO(png)) as source:
            source.load()
            rgba = source.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    flat = PILImage.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    w, h = flat.size
    scale = min(max_w / w, max_h / h)
    out = io.BytesIO()
    flat.save(out, "PNG")
    out.seek(0)
    return Image(out, width=w * scale, height=h * scale, hAlign="LEFT")


__all__ = ["Kind", "ethnicity_name", "nationality_name", "render_form_pdf"]
