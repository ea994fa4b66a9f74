"""Validated value objects: strings from the edge become these before the domain sees them.

Every constructor raises ``InvalidValue`` with a stable code and a Chinese message. The types that hold
personal information (PIPL) print masked, so an accidental ``log.info("%s", id_number)`` leaks nothing.
"""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import KW_ONLY, InitVar, dataclass
from datetime import date, datetime
from importlib.resources import files
from types import MappingProxyType
from typing import Any, Literal, get_args

import pycountry
from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from domain.errors import InvalidValue

__all__ = [
    "ETHNIC_GROUPS",
    "ID_TYPES",
    "ID_TYPE_LABELS",
    "Actor",
    "Address",
    "BirthData",
    "Birthplace",
    "CertificateNumber",
    "CounterDetails",
    "EthnicGroup",
    "IdDocument",
    "IdNumber",
    "IdType",
    "MobileNumber",
    "Nationality",
    "PersonName",
    "Residency",
    "Role",
    "Sex",
    "as_id_document",
    "completed_years",
    "id_type_of",
    "mask_id_number",
    "parse_id_type",
    "parse_residency",
    "parse_sex",
]

# Basic plane, Ext A, Ext B–H: rare name characters live in the extensions and police records carry them.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002ebef\U00030000-\U000323af"
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_HAN_NAME = re.compile(rf"[{_HAN}]+(?:·[{_HAN}]+)*")
_LATIN_NAME = re.compile(rf"[{_LATIN}]+(?:[ '\-][{_LATIN}]+)*")
_HAN_ONLY = re.compile(rf"[{_HAN}]+")
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9X]")  # ASCII only: \d would also take other scripts' digits
_MOBILE = re.compile(r"1[3-9]\d{9}")
_CERTIFICATE = re.compile(r"[A-Z]\d{9}")
# Look-alikes that input methods and OCR produce: of the middle dot in minority and transliterated names,
# and of the apostrophe in foreign ones.
_DOT_LOOKALIKES = str.maketrans({"•": "·", "・": "·", "‧": "·", "∙": "·", "’": "'"})

_COMPOUND_SURNAMES: frozenset[str] = frozenset(
    """
    欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 令狐 长孙 宇文 司徒 夏侯 轩辕 端木 独孤 南宫 西门 百里
    呼延 闻人 万俟 申屠 太史 澹台 公冶 濮阳 单于 钟离 宗政 仲孙 赫连 亓官 司空 淳于 拓跋 第五 東方 歐陽
    司寇 巫马 公西 漆雕 乐正 壤驷 公良 夹谷 宰父 谷梁 段干 东郭 南门 羊舌 微生 梁丘 左丘 东门 公羊 鲜于
    闾丘 子车 颛孙 况后 有琴 呼衍 纳兰 爱新觉罗 叶赫那拉
    """.split()
)


def has_control(text: str) -> bool:
    """Control, format (bidi overrides, zero-width), private-use or unassigned characters: never in our texts."""
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _mask_keep(text: str, head: int, tail: int) -> str:
    hidden = len(text) - head - tail
    return text[:head] + "*" * max(hidden, 0) + (text[-tail:] if tail else "")


@functools.lru_cache(maxsize=8192)
def _county_code_known(code: str) -> bool:
    """Whether a 6-digit region code ever named a county (stdnum's table; ~3,500 codes, so remembered: a rebuild
    validates every ID number of every form again, and the table lookup was most of its time)."""
    return any(props.get("county") for _, props in numdb.get("cn/loc").info(code))


def _check_gb11643(number: str, field: str, message: str, what: str) -> None:
    """The parts of GB 11643-1999 every 18-character 公民身份号码 obeys, whoever issued it (a resident ID, or
    a Hong Kong, Macao or Taiwan resident's residence permit): the ISO 7064 MOD 11-2 check character and a
    real birth date. ``number`` already has the shape (17 digits and a digit or X)."""
    if number[-1] != ric.calc_check_digit(number):
        raise InvalidValue(field, "invalid_id_number", message)
    try:
        born = ric.get_birth_date(number)
    except ValidationError:
        raise InvalidValue(field, "invalid_id_number", f"{what}中的出生日期不存在") from None
    if born.year < 1800:
        raise InvalidValue(field, "invalid_id_number", f"{what}中的出生日期不正确")


def completed_years(born: date, day: date) -> int:
    """Completed years of age on ``day`` of someone born on ``born``."""
    if day < born:
        raise InvalidValue("id_number", "date_before_birth", "日期早于证件上的出生日期")
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def mask_id_number(number: str) -> str:
    """Any identity document's number masked for display: an 18-character one as ``4401**********123X``,
    a travel permit's as ``H******78``."""
    return _mask_keep(number, 4, 4) if len(number) >= 15 else _mask_keep(number, 1, 2)


@dataclass(frozen=True, slots=True, repr=False)
class IdNumber:
    """An 18-character mainland resident ID number (GB 11643-1999): check char, real date, known region."""

    value: str
    _: KW_ONLY
    field: InitVar[str] = "id_number"

    def __post_init__(self, field: str) -> None:
        raw = self.value if isinstance(self.value, str) else ""
        # Full-width digits and Ｘ from a Chinese input method are the same number (NFKC).
        number = unicodedata.normalize("NFKC", raw).strip().upper()
        message = "身份证号码不正确，请核对18位居民身份证号码"
        if len(number) == 15 and number.isdigit():
            raise InvalidValue(field, "invalid_id_number", "不支持15位旧身份证号码，请填写18位居民身份证号码")
        if not _ID_SHAPE.fullmatch(number):
            raise InvalidValue(field, "invalid_id_number", message)
        if number[:2] in {"81", "82", "83"}:
            raise InvalidValue(field, "invalid_id_number", "港澳台居民居住证号码不是居民身份证号码")
        _check_gb11643(number, field, message, "身份证号码")
        # stdnum's get_birth_place also demands that the county existed in the birth year; the code is the one
        # in force when the number was issued (GB 11643), so a 1990 birth in 盐田区 (created 1997) is genuine.
        # Any county the code ever named is therefore accepted.
        if not _county_code_known(number[:6]):
            raise InvalidValue(field, "invalid_id_number", "身份证号码中的地区代码不存在")
        object.__setattr__(self, "value", number)

    @property
    def birth_date(self) -> date:
        """The birth date encoded in positions 7–14."""
        return date(int(self.value[6:10]), int(self.value[10:12]), int(self.value[12:14]))

    @property
    def sex(self) -> Literal["M", "F"]:
        """The sex encoded by the parity of the sequence number (odd = male)."""
        return "M" if int(self.value[16]) % 2 else "F"

    @property
    def region_code(self) -> str:
        """The six-digit GB/T 2260 address code of the issuing county."""
        return self.value[:6]

    def age_on(self, day: date) -> int:
        """Completed years of age on ``day``."""
        return completed_years(self.birth_date, day)

    def masked(self) -> str:
        """First 4 and last 4 characters, the rest starred: ``4401**********123X``."""
        return _mask_keep(self.value, 4, 4)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"IdNumber({self.masked()!r})"


@dataclass(frozen=True, slots=True, repr=False)
class MobileNumber:
    """A mainland mobile number, 11 digits, without country code."""

    value: str
    _: KW_ONLY
    field: InitVar[str] = "mobile"

    def __post_init__(self, field: str) -> None:
        raw = self.value if isinstance(self.value, str) else ""
        number = "".join(raw.split()).replace("-", "")
        if number.startswith("+86"):
            number = number[3:]
        elif number.startswith("86") and len(number) == 13:
            number = number[2:]
        if not _MOBILE.fullmatch(number):
            raise InvalidValue(field, "invalid_mobile", "手机号码不正确，请填写11位中国大陆手机号码")
        object.__setattr__(self, "value", number)

    def masked(self) -> str:
        """First 3 and last 4 digits: ``138****5678``."""
        return _mask_keep(self.value, 3, 4)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"MobileNumber({self.masked()!r})"


@dataclass(frozen=True, slots=True, repr=False)
class PersonName:
    """A person's name as on the ID card: Chinese (with ``·`` for minority names) or Latin letters.

    ``surname``: for a Chinese name, a listed compound surname (欧阳) when the name has three or more
    characters, else the first character. For a name with ``·`` (维吾尔族 and transliterated names) the
    part before the first ``·``. For a Latin name the first word, because Chinese forms copy foreign names
    in passport order (surname first). ``is_han`` tells the first kind apart: only it follows the
    surname + given name pattern.
    """

    value: str
    _: KW_ONLY
    field: InitVar[str] = "name"

    def __post_init__(self, field: str) -> None:
        raw = self.value if isinstance(self.value, str) else ""
        # NFKC folds full-width letters and CJK compatibility ideographs onto the forms police records use.
        name = unicodedata.normalize("NFKC", raw).translate(_DOT_LOOKALIKES)
        name = " ".join(name.split())
        if not 1 <= len(name) <= 30:
            raise InvalidValue(field, "invalid_name", "姓名应为1至30个字")
        if has_control(name) or not (_HAN_NAME.fullmatch(name) or _LATIN_NAME.fullmatch(name)):
            raise InvalidValue(
                field,
                "invalid_name",
                "姓名只能包含汉字、间隔号“·”，或外文字母、空格、连字符和撇号，不能含数字",
            )
        object.__setattr__(self, "value", name)

    @property
    def is_han(self) -> bool:
        """True for a Chinese name without ``·`` (surname + given name)."""
        return "·" not in self.value and _HAN_ONLY.fullmatch(self.value) is not None

    @property
    def surname(self) -> str:
        """The surname; see the class docstring for how each kind of name is split."""
        if "·" in self.value:
            return self.value.split("·", 1)[0]
        if not self.is_han:
            return self.value.split(" ", 1)[0]
        for length in (4, 2):
            if len(self.value) > length and self.value[:length] in _COMPOUND_SURNAMES:
                return self.value[:length]
        return self.value[0]

    def masked(self) -> str:
        """The first character, the rest starred (张三 → 张*); a one-character name is starred whole."""
        if len(self.value) == 1:
            return "*"
        return _mask_keep(self.value, 1, 0)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"PersonName({self.masked()!r})"


@dataclass(frozen=True, slots=True, repr=False)
class Address:
    """An address as on the ID card or household register, whitespace collapsed."""

    value: str
    _: KW_ONLY
    field: InitVar[str] = "address"

    def __post_init__(self, field: str) -> None:
        raw = self.value if isinstance(self.value, str) else ""
        address = " ".join(raw.split())
        if has_control(address):
            raise InvalidValue(field, "invalid_address", "地址不能包含控制字符")
        if not 5 <= len(address) <= 120:
            raise InvalidValue(field, "invalid_address", "地址应为5至120个字")
        object.__setattr__(self, "value", address)

    def masked(self) -> str:
        """The first 6 characters, then ``****``."""
        return self.value[:6] + "****"

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"Address({self.masked()!r})"


@dataclass(frozen=True, slots=True)
class CertificateNumber:
    """The number printed on a Birth Medical Certificate blank: one letter and nine digits."""

    value: str
    _: KW_ONLY
    field: InitVar[str] = "certificate_number"

    def __post_init__(self, field: str) -> None:
        raw = self.value if isinstance(self.value, str) else ""
        number = raw.strip().upper()
        if not _CERTIFICATE.fullmatch(number):
            raise InvalidValue(
                field, "invalid_certificate_number", "出生医学证明编号应为1个大写字母加9位数字，如 X320101001"
            )
        object.__setattr__(self, "value", number)

    def __str__(self) -> str:
        return self.value


def _load_ethnic_groups() -> Mapping[str, str]:
    text = files("domain").joinpath("data", "ethnic_groups.json").read_text(encoding="utf-8")
    table: dict[str, str] = json.loads(text)
    return MappingProxyType(table)


ETHNIC_GROUPS: Mapping[str, str] = _load_ethnic_groups()


@dataclass(frozen=True, slots=True)
class EthnicGroup:
    """An ethnic group by its two-digit GB/T 3304 code."""

    code: str
    _: KW_ONLY
    field: InitVar[str] = "ethnicity"

    def __post_init__(self, field: str) -> None:
        code = self.code.strip() if isinstance(self.code, str) else ""
        if code not in ETHNIC_GROUPS:
            raise InvalidValue(field, "invalid_ethnicity", "民族代码不正确，请从列表中选择")
        object.__setattr__(self, "code", code)

    @property
    def name(self) -> str:
        """The Chinese name, e.g. 汉族."""
        return ETHNIC_GROUPS[self.code]


@dataclass(frozen=True, slots=True)
class Nationality:
    """A nationality as an ISO 3166-1 alpha-3 code (CHN for China)."""

    code: str
    _: KW_ONLY
    field: InitVar[str] = "nationality"

    def __post_init__(self, field: str) -> None:
        code = self.code.strip().upper() if isinstance(self.code, str) else ""
        if len(code) != 3 or pycountry.countries.get(alpha_3=code) is None:
            raise InvalidValue(field, "invalid_nationality", "国籍代码不正确，请从列表中选择")
        object.__setattr__(self, "code", code)

    @property
    def is_chinese(self) -> bool:
        """True for CHN; Hong Kong, Macao and Taiwan residence is expressed by ``Residency``, not here."""
        return self.code == "CHN"


Sex = Literal["M", "F"]
_SEX_WORDS: Mapping[str, Sex] = MappingProxyType(
    # GB/T 2261.1 codes 1 and 2 arrive from hospital systems; 男/女 from forms.
    {"M": "M", "MALE": "M", "男": "M", "1": "M", "F": "F", "FEMALE": "F", "女": "F", "2": "F"}
)


def parse_sex(text: str, *, field: str = "sex") -> Sex:
    """Turn M/F, male/female, 男/女 or GB/T 2261.1 1/2 into ``"M"`` or ``"F"``."""
    sex = _SEX_WORDS.get(text.strip().upper()) if isinstance(text, str) else None
    if sex is None:
        raise InvalidValue(field, "invalid_sex", "性别不正确，请选择男或女")
    return sex


@dataclass(frozen=True, slots=True)
class BirthData:
    """The newborn's birth facts from the delivery record, within plausible bounds."""

    sex: Sex
    born_at: datetime
    gestational_weeks: int
    weight_g: int
    length_cm: int | float
    _: KW_ONLY
    field: InitVar[str] = "delivery"

    def __post_init__(self, field: str) -> None:
        object.__setattr__(self, "sex", parse_sex(self.sex, field=f"{field}.sex"))
        born = self.born_at
        if not isinstance(born, datetime) or born.tzinfo is None or born.utcoffset() is None:
            raise InvalidValue(f"{field}.born_at", "invalid_birth_time", "出生时间不正确，须包含时区")
        # The form records the birth to the minute; seconds would make equal records compare unequal.
        object.__setattr__(self, "born_at", born.replace(second=0, microsecond=0))
        if not _is_int(self.gestational_weeks) or not 20 <= self.gestational_weeks <= 45:
            raise InvalidValue(
                f"{field}.gestational_weeks", "implausible_gestational_weeks", "出生孕周应为20至45周的整数"
            )
        if not _is_int(self.weight_g) or not 300 <= self.weight_g <= 7000:
            raise InvalidValue(f"{field}.weight_g", "implausible_weight", "出生体重应为300至7000克的整数")
        length = self.length_cm
        if not (_is_int(length) or (isinstance(length, float) and math.isfinite(length))) or not (
            20 <= length <= 65
        ):
            raise InvalidValue(f"{field}.length_cm", "implausible_length", "出生身长应为20至65厘米")


def _is_int(value: object) -> bool:
    # bool is an int subclass; True weeks is a bug upstream, not a value.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Birthplace:
    """Where the birth took place: province, city and county names in Chinese."""

    province: str
    city: str
    county: str
    _: KW_ONLY
    field: InitVar[str] = "birthplace"

    def __post_init__(self, field: str) -> None:
        for part in ("province", "city", "county"):
            raw = getattr(self, part)
            text = raw.strip() if isinstance(raw, str) else ""
            if not (2 <= len(text) <= 20 and _HAN_ONLY.fullmatch(text)):
                raise InvalidValue(f"{field}.{part}", "invalid_birthplace", "出生地点应为2至20个汉字的地名")
            object.__setattr__(self, part, text)


Residency = Literal["mainland", "hk_macao", "taiwan", "overseas_chinese", "foreign"]
_RESIDENCIES: tuple[Residency, ...] = get_args(Residency)
_RESIDENCY_WORDS: Mapping[str, Residency] = MappingProxyType(
    {
        "内地": "mainland",
        "大陆": "mainland",
        "港澳": "hk_macao",
        "台湾": "taiwan",
        "华侨": "overseas_chinese",
        "外籍": "foreign",
    }
)


def parse_residency(text: str, *, field: str = "residency") -> Residency:
    """Turn a residency code (or its Chinese label: 内地 港澳 台湾 华侨 外籍) into a ``Residency``."""
    key = text.strip() if isinstance(text, str) else ""
    for residency in _RESIDENCIES:
        if key.lower() == residency:
            return residency
    if key in _RESIDENCY_WORDS:
        return _RESIDENCY_WORDS[key]
    raise InvalidValue(
        field, "invalid_residency", "身份类别不正确，请选择内地居民、港澳居民、台湾居民、华侨或外籍"
    )


# A parent's identity document (有效身份证件类别 on the form). A Hong Kong, Macao or Taiwan resident living in the
# mainland may hold a residence permit (港澳居民居住证 / 台湾居民居住证, since 2018): its number is an 18-character
# 公民身份号码 by GB 11643 whose address code is 810000 (Hong Kong), 820000 (Macao) or 830000 (Taiwan). Every such
# resident holds a travel permit: 港澳居民来往内地通行证 (H or M and an 8-digit lifelong number, then 2 digits counting
# the renewals on the older cards) or 台湾居民来往大陆通行证 (an 8-digit lifelong number since 2008-09-25).
IdType = Literal[
    "resident_id", "hk_macao_residence_permit", "taiwan_residence_permit", "hk_macao_permit", "taiwan_permit"
]
ID_TYPES: tuple[IdType, ...] = get_args(IdType)
ID_TYPE_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "resident_id": "居民身份证",
        "hk_macao_residence_permit": "港澳居民居住证",
        "taiwan_residence_permit": "台湾居民居住证",
        "hk_macao_permit": "港澳居民来往内地通行证",
        "taiwan_permit": "台湾居民来往大陆通行证",
    }
)
_RESIDENCE_PERMIT_REGIONS: Mapping[str, IdType] = MappingProxyType(
    {
        "810000": "hk_macao_residence_permit",
        "820000": "hk_macao_residence_permit",
        "830000": "taiwan_residence_permit",
    }
)
_RESIDENCY_OF: Mapping[IdType, Residency] = MappingProxyType(
    {
        "resident_id": "mainland",
        "hk_macao_residence_permit": "hk_macao",
        "taiwan_residence_permit": "taiwan",
        "hk_macao_permit": "hk_macao",
        "taiwan_permit": "taiwan",
    }
)
_HK_MACAO_PERMIT = re.compile(r"[HM][0-9]{8}(?:[0-9]{2})?")
_TAIWAN_PERMIT = re.compile(r"[0-9]{8}")


def parse_id_type(text: str, *, field: str = "id_type") -> IdType:
    """An identity document's kind by its code (``resident_id``, ``hk_macao_residence_permit``, …)."""
    key = text.strip().lower() if isinstance(text, str) else ""
    for kind in ID_TYPES:
        if key == kind:
            return kind
    raise InvalidValue(
        field,
        "invalid_id_type",
        "证件类型不正确，请选择居民身份证、港澳居民居住证、台湾居民居住证、港澳居民来往内地通行证或台湾居民来往大陆通行证",
    )


@dataclass(frozen=True, slots=True, repr=False)
class IdDocument:
    """A parent's identity document: its kind and its number, checked as that kind prescribes.

    Without ``kind`` the number's shape says which: 18 characters are a 公民身份号码 (a residence permit when its
    address code is 810000, 820000 or 830000, else a resident ID), ``H``/``M`` and digits an HK/Macao travel
    permit. A Taiwan travel permit's eight plain digits must be named. Prints masked, like ``IdNumber``.
    """

    value: str
    kind: IdType | None = None
    _: KW_ONLY
    field: InitVar[str] = "id_number"

    def __post_init__(self, field: str) -> None:
        raw = self.value if isinstance(self.value, str) else ""
        number = "".join(unicodedata.normalize("NFKC", raw).split()).upper()
        kind = self.kind if self.kind is not None else _infer_id_type(number)
        if kind == "resident_id":
            number = IdNumber(number, field=field).value
        elif kind in ("hk_macao_residence_permit", "taiwan_residence_permit"):
            _check_residence_permit(number, kind, field)
        elif kind == "hk_macao_permit":
            if not _HK_MACAO_PERMIT.fullmatch(number):
                raise InvalidValue(
                    field,
                    "invalid_id_number",
                    "港澳居民来往内地通行证号码应为H或M开头加8位数字（旧版证件另有2位换证次数）",
                )
        elif kind == "taiwan_permit":
            if not _TAIWAN_PERMIT.fullmatch(number):
                raise InvalidValue(field, "invalid_id_number", "台湾居民来往大陆通行证号码应为8位数字")
        else:
            parse_id_type(str(kind), field=field)  # not a kind we know: refused with the kinds we do
        object.__setattr__(self, "value", number)
        object.__setattr__(self, "kind", kind)

    @property
    def id_type(self) -> IdType:
        """The kind, as the form records it (``有效身份证件类别``)."""
        return self.kind or "resident_id"

    @property
    def label(self) -> str:
        """The document's name in Chinese, e.g. 港澳居民居住证."""
        return ID_TYPE_LABELS[self.id_type]

    @property
    def residency(self) -> Residency:
        """Where its holder is a resident: a resident ID's holder is a mainland resident."""
        return _RESIDENCY_OF[self.id_type]

    @property
    def birth_date(self) -> date | None:
        """The birth date in an 18-character number; None for a travel permit, whose number has none."""
        if len(self.value) != 18:
            return None
        return date(int(self.value[6:10]), int(self.value[10:12]), int(self.value[12:14]))

    @property
    def sex(self) -> Literal["M", "F"] | None:
        """The sex an 18-character number encodes (odd 17th digit: male); None for a travel permit."""
        if len(self.value) != 18:
            return None
        return "M" if int(self.value[16]) % 2 else "F"

    def age_on(self, day: date, born: date | None = None) -> int:
        """Completed years on ``day``: from the number's birth date, or ``born`` (a travel permit's holder's)."""
        birth = self.birth_date or born
        if birth is None:
            raise InvalidValue("birth_date", "birth_date_required", "持通行证的，请填写出生日期")
        return completed_years(birth, day)

    def masked(self) -> str:
        """The number masked (``mask_id_number``)."""
        return mask_id_number(self.value)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"IdDocument({self.masked()!r}, {self.id_type!r})"


def id_type_of(number: str) -> IdType:
    """The kind of document a valid number is, by its shape alone (``IdDocument`` without a kind): a stored
    number needs no checking again. A Taiwan travel permit's 8 digits cannot be told apart: say it."""
    return _infer_id_type(number)


def _infer_id_type(number: str) -> IdType:
    if len(number) == 18 and number[:6] in _RESIDENCE_PERMIT_REGIONS:
        return _RESIDENCE_PERMIT_REGIONS[number[:6]]
    if len(number) == 18 and number[:2] in ("81", "82", "83"):
        return "hk_macao_residence_permit" if number[:2] != "83" else "taiwan_residence_permit"
    if number[:1] in ("H", "M") and number[1:].isascii() and number[1:].isdigit():
        return "hk_macao_permit"
    return "resident_id"


def _check_residence_permit(number: str, kind: IdType, field: str) -> None:
    """港澳台居民居住证: GB 11643's shape, check character (python-stdnum's) and birth date, with the address code
    the Ministry of Public Security gives Hong Kong (810000), Macao (820000) or Taiwan (830000) residents."""
    message = "居住证号码不正确，请核对18位港澳台居民居住证号码"
    if not _ID_SHAPE.fullmatch(number):
        raise InvalidValue(field, "invalid_id_number", message)
    region = _RESIDENCE_PERMIT_REGIONS.get(number[:6])
    if region is None:
        raise InvalidValue(
            field,
            "invalid_id_number",
            "港澳台居民居住证号码以810000（香港）、820000（澳门）或830000（台湾）开头",
        )
    if region != kind:
        raise InvalidValue(
            field,
            "id_type_mismatch",
            f"该号码是{ID_TYPE_LABELS[region]}号码，与所选证件类型（{ID_TYPE_LABELS[kind]}）不符",
        )
    _check_gb11643(number, field, message, "居住证号码")


def as_id_document(number: IdNumber | IdDocument | str) -> IdDocument:
    """The identity document of a validated resident ID number, document or stored 18-character number."""
    if isinstance(number, IdDocument):
        return number
    if isinstance(number, IdNumber):
        return IdDocument(number.value, "resident_id")
    return IdDocument(number)


_COUNTER_PHONE = re.compile(r"[0-9()（）\- 、/,，转]{5,60}")


@dataclass(frozen=True, slots=True)
class CounterDetails:
    """Where and when an institution receives families in person (现场办理): its counter's address, telephone
    and opening hours, as the institution publishes them (e.g. "周一至周五（节假日除外）8:30-12:00，14:30-17:30").

    Public information about an institution, never about a person.
    """

    address: str
    phone: str
    hours: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", Address(self.address, field="address").value)
        phone = " ".join(self.phone.split()) if isinstance(self.phone, str) else ""
        if not _COUNTER_PHONE.fullmatch(phone) or sum(ch.isdigit() for ch in phone) < 5:
            raise InvalidValue(
                "phone",
                "invalid_phone",
                "咨询电话应为电话号码（可含区号、连字符、分机“转”），多个号码用“、”分隔",
            )
        object.__setattr__(self, "phone", phone)
        hours = " ".join(self.hours.split()) if isinstance(self.hours, str) else ""
        if not 4 <= len(hours) <= 120 or has_control(hours):
            raise InvalidValue(
                "hours", "invalid_hours", "办公时间应为4至120个字，如：周一至周五（节假日除外）8:30-12:00"
            )
        object.__setattr__(self, "hours", hours)

    def to_dict(self) -> dict[str, str]:
        """The plain form stored in events."""
        return {"address": self.address, "phone": self.phone, "hours": self.hours}


Role = Literal["parent", "hospital", "issuer", "auditor", "admin", "system", "ems", "verifier", "manager"]
_ROLES: tuple[Role, ...] = get_args(Role)
_INSTITUTION_ROLES = frozenset({"hospital", "issuer", "verifier"})


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performed a command: recorded in every event for the audit trail."""

    id: str
    role: Role
    institution: str | None = None
    name: str | None = None
    # A manager's statistics scope, ``institution:<CODE>``, ``district:<county code>`` or ``province:<GD…>``
    # (domain.statistics.Scope); None for every other role.
    scope: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise InvalidValue("actor.id", "invalid_actor", "操作人标识不能为空")
        if self.role not in _ROLES:
            raise InvalidValue("actor.role", "invalid_role", "操作人角色不正确")
        if self.role in _INSTITUTION_ROLES and not self.institution:
            raise InvalidValue(
                "actor.institution", "institution_required", "助产机构、签发机构和核验单位人员须注明所属机构"
            )
        if (self.role == "manager") != bool(self.scope):
            raise InvalidValue(
                "actor.scope", "scope_required", "统计管理人员须注明统计范围，其他角色不设统计范围"
            )

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-ready dict, the shape stored in events (``scope`` only for a manager: other shapes unchanged)."""
        plain: dict[str, str | None] = {
            "id": self.id,
            "role": self.role,
            "institution": self.institution,
            "name": self.name,
        }
        if self.scope is not None:
            plain["scope"] = self.scope
        return plain

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Actor:
        """Rebuild from ``to_dict`` output; unknown keys are ignored."""
        return cls(
            id=data.get("id", ""),
            role=data.get("role", ""),
            institution=data.get("institution"),
            name=data.get("name"),
            scope=data.get("scope"),
        )
