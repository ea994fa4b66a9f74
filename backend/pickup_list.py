"""The EMS pickup list (邮政速递揽件签收登记表, 附件 2) of one institution and day: JSON, CSV and PDF.

The list the issuer prints in two copies and signs with the courier when EMS picks the day's
certificates up: row number, certificate number, the EMS waybill number (邮件号: the courier matches
each envelope to its row), mother's name and ID number, newborn's name, birth
date, recipient's name and phone — full values, since this is the signed paper record (callers mark
the answer ``Cache-Control: no-store``) — the count, and the two signature lines.

Everything here is synchronous: ``load_pickup_list`` reads the event store (run it on the store
executor), ``render_pdf`` draws with reportlab (run it on the I/O executor). The PDF embeds a CJK
TrueType font (``find_cjk_font``: the one bundled in backend/fonts/), so the printed form never depends on the
reader's fonts.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo

from domain.application import BirthCertificateApplication
from domain.errors import DomainError, NotFound
from domain.policy import get_profile
from domain.service import Applications
from domain.values import Actor

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
TITLE_SUFFIX: Final = "出生医学证明邮政速递揽件签收登记表"
COLUMNS: Final = (
    ("no", "序号"),
    ("certificate_number", "出生医学证明编号"),
    ("tracking_number", "EMS邮件号"),
    ("mother_name", "新生儿母亲姓名"),
    ("mother_id_number", "新生儿母亲身份证号"),
    ("newborn_name", "新生儿姓名"),
    ("birth_date", "出生日期"),
    ("recipient_name", "收件人姓名"),
    ("recipient_phone", "收件人联系电话"),
)
SIGNATURES: Final = (
    ("issuer", "签发经办人签名"),
    ("courier", "邮政揽件人签名"),
)
# Excel turns long digit strings into numbers (an 18-digit ID number loses its last digits): a leading
# tab keeps these columns text when the CSV is opened in Excel or WPS.
CSV_TEXT_COLUMNS: Final = frozenset({"certificate_number", "mother_id_number", "recipient_phone"})
FONT_ENV: Final = "BIRTHCERT_PDF_FONT"
# The TrueType CJK font that comes with the package (backend/fonts/README.md: Noto Sans SC with TrueType
# outlines, SIL OFL 1.1), so PDFs render the same on any machine with Python alone.
BUNDLED_FONT: Final = Path(__file__).resolve().parent / "fonts" / "NotoSansSC-Regular.ttf"


class PdfFontMissing(DomainError):
    """No CJK TrueType font to embed: the PDF cannot be drawn (a deployment problem)."""

    code = "pdf_font_missing"
    message = "服务器缺少中文字体，暂时无法生成 PDF，请下载 CSV 或联系管理员"
    http_status = 503


@dataclass(frozen=True)
class PickupRow:
    """One certificate handed to the courier."""

    no: int
    certificate_number: str
    tracking_number: str
    mother_name: str
    mother_id_number: str
    newborn_name: str
    birth_date: str  # YYYY-MM-DD
    recipient_name: str
    recipient_phone: str
    # Not on the paper form; handy in the JSON.
    application_id: str
    dispatched_at: str

    def cells(self) -> list[str]:
        """The columns of the form, in order."""
        return [str(getattr(self, key)) for key, _ in COLUMNS]


@dataclass(frozen=True)
class PickupList:
    """One institution's pickup list for one day."""

    institution_code: str
    institution_name: str
    province_name: str
    day: date
    rows: tuple[PickupRow, ...]

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def title(self) -> str:
        """``广东省出生医学证明邮政速递揽件签收登记表`` (the institution's province)."""
        return f"{self.province_name}{TITLE_SUFFIX}"

    @property
    def count_sentence(self) -> str:
        return f"本次揽件共 {self.count} 枚出生医学证明，请打印一式两份，各执一份。"

    @property
    def day_text(self) -> str:
        return f"{self.day.year}年{self.day.month}月{self.day.day}日"

    @property
    def filename_stem(self) -> str:
        return f"pickup-list-{self.institution_code}-{self.day.isoformat()}"


# ---------------------------------------------------------------- building (store executor)


def _birth_date(born_at: object) -> str:
    if not isinstance(born_at, str):
        return ""
    moment = datetime.fromisoformat(born_at)
    if moment.tzinfo is not None:
        moment = moment.astimezone(SHANGHAI)
    return moment.date().isoformat()


def _row(no: int, app: BirthCertificateApplication, dispatched_at: datetime | None) -> PickupRow:
    form = app.form() or {}
    mother = form.get("mother") or {}
    method = app.delivery_method or {}
    recipient = method.get("recipient") or {}
    return PickupRow(
        no=no,
        certificate_number=app.certificate_number or "",
        tracking_number=app.tracking_number or "",
        mother_name=str(mother.get("name", "")),
        mother_id_number=str(mother.get("id_number", "")),
        newborn_name=str((form.get("newborn") or {}).get("name", "")),
        birth_date=_birth_date((form.get("delivery") or {}).get("born_at")),
        recipient_name=str(recipient.get("name", "")),
        recipient_phone=str(recipient.get("phone", "")),
        application_id=str(app.id),
        dispatched_at=dispatched_at.astimezone(SHANGHAI).isoformat(timespec="seconds")
        if dispatched_at
        else "",
    )


def load_pickup_list(
    applications: Applications,
    actor: Actor,
    institution_code: str,
    day: date,
    dispatched: Iterable[tuple[UUID, int]],
) -> PickupList:
    """On the store executor: the list from the daily index's ``(application id, Dispatched version)``.

    Each row is the application as it was when dispatched (a later reissue has its own row on its own
    day). An auditor reading the full values is recorded, as for any full view of personal data.
    """
    code = institution_code.strip().upper()
    if actor.role == "issuer" and actor.institution != code:
        raise NotFound()  # another institution's list: nothing tells the caller it exists
    apps: list[tuple[BirthCertificateApplication, datetime | None]] = []
    for app_id, version in dispatched:
        agg: object = applications.repository.get(app_id, version=version)
        if not isinstance(agg, BirthCertificateApplication) or agg.institution != code:
            continue
        apps.append((agg, getattr(agg, "modified_on", None)))
    name, province = _institution(applications, code, [a for a, _ in apps])
    if actor.role == "auditor":
        for agg, _ in apps:
            applications.record_personal_data_viewed(actor, agg.id, what="ems_pickup_list")
    rows = tuple(_row(i, agg, moment) for i, (agg, moment) in enumerate(apps, start=1))
    return PickupList(
        institution_code=code, institution_name=name, province_name=province, day=day, rows=rows
    )


def _institution(
    applications: Applications, code: str, apps: Sequence[BirthCertificateApplication]
) -> tuple[str, str]:
    """The institution's name and province name: its registration, else its applications' records."""
    try:
        institution = applications.get_institution(code)
        return institution.name, get_profile(institution.province).name
    except DomainError:
        pass
    for app in apps:
        record = app.record or {}
        if record.get("institution_name"):
            return str(record["institution_name"]), app.profile.name
    return code, ""


# ---------------------------------------------------------------- JSON and CSV


def to_json(pickup: PickupList) -> dict[str, Any]:
    """The list as JSON: the form's fields, the count and the signature lines (blank, to be signed)."""
    return {
        "title": pickup.title,
        "institution": {"code": pickup.institution_code, "name": pickup.institution_name},
        "province": pickup.province_name,
        "date": pickup.day.isoformat(),
        "columns": [{"key": key, "label": label} for key, label in COLUMNS],
        "rows": [
            {
                "no": r.no,
                "certificate_number": r.certificate_number,
                "mother_name": r.mother_name,
                "mother_id_number": r.mother_id_number,
                "newborn_name": r.newborn_name,
                "birth_date": r.birth_date,
                "recipient_name": r.recipient_name,
                "recipient_phone": r.recipient_phone,
                "application_id": r.application_id,
                "tracking_number": r.tracking_number,
                "dispatched_at": r.dispatched_at,
            }
            for r in pickup.rows
        ],
        "count": pickup.count,
        "count_sentence": pickup.count_sentence,
        "signatures": [
            {"role": role, "label": label, "name": None, "date": None} for role, label in SIGNATURES
        ],
    }


def _csv_cell(key: str, value: str) -> str:
    if key in CSV_TEXT_COLUMNS and value:
        return "\t" + value
    # No cell may start a formula (CSV injection): names and numbers never do, but be sure.
    if value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def to_csv(pickup: PickupList) -> bytes:
    """UTF-8 with a BOM (Excel in China opens it as UTF-8), a Chinese header, CRLF line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([label for _, label in COLUMNS])
    for row in pickup.rows:
        writer.writerow([_csv_cell(key, cell) for (key, _), cell in zip(COLUMNS, row.cells(), strict=True)])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


# ---------------------------------------------------------------- PDF (I/O executor)

_FONT_LOCK = threading.Lock()
_REGISTERED: dict[str, str] = {}  # font path → reportlab font name


def find_cjk_font(environ: Mapping[str, str] | None = None) -> str:
    """The name of a registered, embeddable CJK font (``BIRTHCERT_PDF_FONT``, else the bundled one)."""
    from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped,unused-ignore]
    from reportlab.pdfbase.ttfonts import TTFError, TTFont  # type: ignore[import-untyped,unused-ignore]

    env = os.environ if environ is None else environ
    candidates = [env[FONT_ENV]] if env.get(FONT_ENV) else [str(BUNDLED_FONT)]
    tried: list[str] = []
    with _FONT_LOCK:
        for path in candidates:
            if path in _REGISTERED:
                return _REGISTERED[path]
            if not Path(path).is_file():
                continue
            name = f"BirthcertCJK{len(_REGISTERED)}"
            try:
                pdfmetrics.registerFont(TTFont(name, path, subfontIndex=0))
            except (TTFError, OSError) as error:
                tried.append(f"{path} ({type(error).__name__}: {error})")
                continue
            _REGISTERED[path] = name
            return name
    detail = "; ".join(tried) if tried else "none of them exists"
    raise PdfFontMissing(
        f"找不到可嵌入的中文 TrueType 字体，无法生成 PDF（已查找 {', '.join(candidates)}：{detail}）。"
        f"请重新安装 birthcert（随包附带 {BUNDLED_FONT.name}），或将 {FONT_ENV} 指向一个 TrueType 轮廓的 .ttf/.ttc 字体文件"
    )


def render_pdf(
    pickup: PickupList, *, font: str | None = None, environ: Mapping[str, str] | None = None
) -> bytes:
    """The form as a PDF: A4 landscape, the font embedded, the header row repeated on every page."""
    from reportlab.lib import colors  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib.enums import TA_CENTER, TA_LEFT  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib.pagesizes import A4, landscape  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped,unused-ignore]
    from reportlab.lib.units import mm  # type: ignore[import-untyped,unused-ignore]
    from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped,unused-ignore]
    from reportlab.platypus import (  # type: ignore[import-untyped,unused-ignore]
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    font = font or find_cjk_font(environ)
    page = landscape(A4)
    margin = 15 * mm
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=page,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=14 * mm,
        bottomMargin=16 * mm,
        title=pickup.title,
        author=pickup.institution_name,
        subject=f"{pickup.institution_name} {pickup.day.isoformat()}",
        creator="birthcert",
        # Otherwise each page starts on Helvetica: a font nobody uses, yet referenced and not embedded.
        initialFontName=font,
        initialFontSize=10.5,
    )
    title = ParagraphStyle("title", fontName=font, fontSize=18, leading=24, alignment=TA_CENTER)
    info = ParagraphStyle("info", fontName=font, fontSize=11, leading=16, alignment=TA_LEFT)
    head = ParagraphStyle("head", fontName=font, fontSize=10.5, leading=13, alignment=TA_CENTER)
    cell = ParagraphStyle(
        "cell", fontName=font, fontSize=10.5, leading=13, alignment=TA_CENTER, wordWrap="CJK"
    )
    footer = ParagraphStyle("footer", fontName=font, fontSize=11.5, leading=18, alignment=TA_LEFT)

    width = doc.width - 12  # the frame keeps 6 pt of padding on each side
    # no, certificate, waybill, mother, her ID number, newborn, birth date, recipient, phone
    shares = (0.045, 0.135, 0.13, 0.115, 0.175, 0.09, 0.095, 0.09, 0.125)
    col_widths = [width * s for s in shares]
    data: list[list[Any]] = [[Paragraph(label, head) for _, label in COLUMNS]]
    data += [[Paragraph(_escape(text), cell) for text in row.cells()] for row in pickup.rows]
    if not pickup.rows:
        data.append([Paragraph("（当日无邮寄揽件）", cell)] + [""] * (len(COLUMNS) - 1))
    table = Table(data, colWidths=col_widths, repeatRows=1)
    style = [
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("GRID", (0, 0), (-1, -1), 0.6, colors.black),
        ("BOX", (0, 0), (-1, -1), 1.2, colors.black),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EDEDED")),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 6),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
        ("TOPPADDING", (0, 0), (-1, 0), 8),
        ("BOTTOMPADDING", (0, 0), (-1, 0), 8),
    ]
    if not pickup.rows:
        style.append(("SPAN", (0, 1), (-1, 1)))
    table.setStyle(TableStyle(style))

    blank = "_" * 18
    date_blank = "_______年_____月_____日"
    signatures = Table(
        [
            [Paragraph(f"{label}：{blank}", footer), Paragraph(f"日期：{date_blank}", footer)]
            for _, label in SIGNATURES
        ],
        colWidths=[width * 0.36, width * 0.64],
        rowHeights=[14 * mm] * len(SIGNATURES),
        style=TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), font),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("VALIGN", (0, 0), (-1, -1), "BOTTOM"),
            ]
        ),
        hAlign="LEFT",
    )
    story = [
        Paragraph(_escape(pickup.title), title),
        Spacer(1, 5 * mm),
        Table(
            [
                [
                    Paragraph(
                        f"签发机构：{_escape(pickup.institution_name)}（机构代码 {_escape(pickup.institution_code)}）",
                        info,
                    ),
                    Paragraph(
                        f"揽件日期：{pickup.day_text}", ParagraphStyle("right", parent=info, alignment=2)
                    ),
                ]
            ],
            colWidths=[width * 0.65, width * 0.35],
            style=TableStyle(
                [
                    ("FONTNAME", (0, 0), (-1, -1), font),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ]
            ),
        ),
        Spacer(1, 2 * mm),
        table,
        Spacer(1, 6 * mm),
        KeepTogether(
            [
                Paragraph(
                    pickup.count_sentence.replace(
                        f"共 {pickup.count} 枚", f"共 <u>&nbsp;{pickup.count}&nbsp;</u> 枚"
                    ),
                    footer,
                ),
                Spacer(1, 2 * mm),
                signatures,
            ]
        ),
    ]

    footer_text = f"{pickup.institution_code} · {pickup.day.isoformat()}"

    class NumberedCanvas(Canvas):
        """Holds the pages back until the end, to print "第 x 页 共 y 页" on each (a missing page shows)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._held: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._held.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._held)
            for number, state in enumerate(self._held, start=1):
                self.__dict__.update(state)
                self.saveState()
                self.setFont(font, 9)
                self.drawCentredString(page[0] / 2, 9 * mm, f"第 {number} 页  共 {total} 页")
                self.drawRightString(page[0] - margin - 6, 9 * mm, footer_text)
                self.restoreState()
                super().showPage()
            super().save()

    doc.build(story, canvasmaker=NumberedCanvas)
    return buffer.getvalue()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = [
    "COLUMNS",
    "PdfFontMissing",
    "PickupList",
    "PickupRow",
    "find_cjk_font",
    "load_pickup_list",
    "render_pdf",
    "to_csv",
    "to_json",
]
