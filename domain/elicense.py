"""The electronic Birth Medical Certificate (出生医学证明电子证照): its identifier, its data items, when it is due.

Pure: no I/O, no clock, no keys (docs/decisions/0037-elicense-identifier-and-data-items.md).

- **The licence identifier** (电子证照标识, GB/T 36904-2018 as the national platform's identifiers show it):
  ``1.2.156.3005.2.<licence type code>.<issuing institution code>.<sequence>.<version>.<check character>`` —
  the e-licence root OID, the type code of the catalogue entry, the issuer's 统一社会信用代码 (or the
  institution code we hold), a sequence, a three-digit version and one check character computed with
  ISO/IEC 7064 MOD 37,36 (GB/T 17710) over the four parts concatenated without dots.
- **The data items** of the national catalogue's birth-certificate entry (C0134-2019) as far as public
  documents name them, taken from the registration form as it was signed and issued (``data_items``).
- **When it is due** (``due_at``): after the printing, by the province's ``elicense_working_days``
  (Beijing: 2–3 days after printing, seed 000), on the working-days calendar.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from domain.bundle import REGISTRATION_FIELDS
from domain.errors import InvalidValue
from domain.policy import SHANGHAI, WorkingCalendar

JSON = dict[str, Any]

# The e-licence root (电子证照根代码) every national identifier begins with.
ROOT_OID: Final = "1.2.156.3005.2"
# ISO/IEC 7064's alphabet for MOD 37,36: digits then capital letters (A = 10 … Z = 35).
ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE: Final = {c: i for i, c in enumerate(ALPHABET)}
_MODULUS: Final = 36
# The licence type code of the birth certificate: the national catalogue's entry, until the national platform's
# assigned code is configured (ELICENSE_TYPE_CODE; decision 0037 says what is assumed).
DEFAULT_TYPE_CODE: Final = "C0134"
SEQUENCE_LENGTH: Final = 20
VERSION: Final = "001"
_PART: Final = re.compile(r"^[0-9A-Z]{1,40}$")
_IDENTIFIER: Final = re.compile(
    r"^1\.2\.156\.3005\.2\.([0-9A-Z]{1,40})\.([0-9A-Z]{1,40})\.([0-9A-Z]{1,40})\.([0-9]{3})\.([0-9A-Z])$"
)


def check_character(data: str) -> str:
    """The ISO/IEC 7064 MOD 37,36 check character of ``data`` (digits and capital letters only).

    The hybrid system detects every single-character substitution and nearly every adjacent transposition
    (about 1 in 600 is missed).
    """
    product = _MODULUS
    for char in data:
        value = _VALUE.get(char)
        if value is None:
            raise ValueError(f"not a character of the identifier's alphabet: {char!r}")
        total = (product + value) % _MODULUS or _MODULUS
        product = (total * 2) % (_MODULUS + 1)
    return ALPHABET[(1 - product) % _MODULUS]


def check_holds(data_and_check: str) -> bool:
    """Whether the last character of ``data_and_check`` is the check character of the rest."""
    if len(data_and_check) < 2 or any(c not in _VALUE for c in data_and_check):
        return False
    return check_character(data_and_check[:-1]) == data_and_check[-1]


@dataclass(frozen=True, slots=True)
class LicenceId:
    """A national e-licence identifier, its parts checked."""

    type_code: str
    issuer_code: str
    sequence: str
    version: str = VERSION

    def __post_init__(self) -> None:
        for name in ("type_code", "issuer_code", "sequence"):
            if not _PART.match(getattr(self, name)):
                raise ValueError(f"an e-licence identifier's {name} is 1–40 digits or capital letters")
        if not re.fullmatch(r"[0-9]{3}", self.version):
            raise ValueError("an e-licence identifier's version is three digits")

    @property
    def check(self) -> str:
        """The check character over type code, issuer code, sequence and version."""
        return check_character(self.type_code + self.issuer_code + self.sequence + self.version)

    def __str__(self) -> str:
        return ".".join((ROOT_OID, self.type_code, self.issuer_code, self.sequence, self.version, self.check))

    def next_version(self) -> LicenceId:
        """The same licence's next version (an amended record: 001 → 002, docs/decisions/0048)."""
        return LicenceId(self.type_code, self.issuer_code, self.sequence, f"{int(self.version) + 1:03d}")

    @classmethod
    def parse(cls, text: str) -> LicenceId:
        """An identifier as written; ``InvalidValue`` (``invalid_licence_id``) unless its form and check hold."""
        match = _IDENTIFIER.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise InvalidValue("licence_id", "invalid_licence_id", "电子证照标识格式不正确")
        type_code, issuer, sequence, version, check = match.groups()
        licence = cls(type_code, issuer, sequence, version)
        if licence.check != check:
            raise InvalidValue("licence_id", "invalid_licence_id", "电子证照标识校验位不正确")
        return licence

    @classmethod
    def new(cls, issuer_code: str, *, type_code: str = DEFAULT_TYPE_CODE) -> LicenceId:
        """A fresh identifier: a random 20-character sequence (103 bits, so that it cannot be guessed)."""
        sequence = "".join(secrets.choice(ALPHABET) for _ in range(SEQUENCE_LENGTH))
        return cls(type_code.strip().upper(), issuer_code_of(issuer_code), sequence)

    @classmethod
    def from_digest(cls, issuer_code: str, digest: bytes, *, type_code: str = DEFAULT_TYPE_CODE) -> LicenceId:
        """An identifier whose 20-character sequence comes from ``digest`` (at least 16 bytes of a keyed hash:
        the same print always gets the same identifier, and nobody without the key can guess one)."""
        if len(digest) < 16:
            raise ValueError("a sequence needs at least 16 bytes of digest")
        return cls(type_code.strip().upper(), issuer_code_of(issuer_code), _base36(digest, SEQUENCE_LENGTH))


def _base36(digest: bytes, length: int) -> str:
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 36)
        chars.append(ALPHABET[digit])
    return "".join(chars)


def issuer_code_of(code: str) -> str:
    """The issuing institution's code as the identifier carries it: its 统一社会信用代码 when we hold one, else
    the institution code we know it by, upper-cased, without anything but digits and letters."""
    cleaned = re.sub(r"[^0-9A-Z]", "", (code or "").upper())
    if not cleaned:
        raise ValueError("an issuing institution needs a code")
    return cleaned[:40]


# ---------------------------------------------------------------- the data items (C0134)

# Items a verifier needs to identify the document, in clear in the credential; everything about the family is
# selectively disclosable (the holder chooses what to show). Names are the credential's claim names.
PLAIN_ITEMS: Final = ("certificate_number", "issuer_name", "issuer_code", "issue_date", "licence_id")
PERSONAL_ITEMS: Final = (
    "newborn_name",
    "newborn_sex",
    "born_at",
    "birthplace",
    "gestational_weeks",
    "weight_g",
    "length_cm",
    "mother_name",
    "mother_nationality",
    "mother_ethnicity",
    "mother_id_type",
    "mother_id_number",
    "father_name",
    "father_nationality",
    "father_ethnicity",
    "father_id_type",
    "father_id_number",
    # The police's registration of the newborn, where the province puts it into the record (0048).
    *REGISTRATION_FIELDS,
)
# What the joined father's copy leaves out (his reduced view, decision 0011): the mother's identity number.
FATHER_WITHHELD: Final = ("mother_id_type", "mother_id_number")


def data_items(
    form: JSON,
    *,
    certificate_number: str,
    issued_at: datetime,
    licence_id: str,
    registration: JSON | None = None,
) -> tuple[JSON, JSON]:
    """``(plain, personal)`` items of the e-licence from the registration form as issued (附件 3, the last
    signed form), the certificate's number, the moment it was printed and its identifier; ``registration``:
    the police's registration of the newborn (``registered_name``, ``citizen_id_number``, ``household_place``)
    where the province puts it into the record (0048), selectively disclosable like the rest.

    The issue date is the day of printing in Beijing time; ``born_at`` keeps its +08:00 offset; a father not
    named on the form leaves his items out (never ``null`` in a disclosure).
    """
    delivery = form["delivery"]
    mother = form["mother"]
    father = form.get("father")
    place = delivery.get("birthplace") or {}
    plain: JSON = {
        "certificate_number": certificate_number,
        "issuer_name": delivery["institution_name"],
        "issuer_code": delivery["institution_code"],
        "issue_date": issued_at.astimezone(SHANGHAI).date().isoformat(),
        "licence_id": licence_id,
    }
    personal: JSON = {
        "newborn_name": form["newborn"]["name"],
        "newborn_sex": delivery["newborn_sex"],
        "born_at": delivery["born_at"],
        "birthplace": _place(place),
        "gestational_weeks": delivery["gestational_weeks"],
        "weight_g": delivery["weight_g"],
        "length_cm": delivery["length_cm"],
        "mother_name": mother["name"],
        "mother_nationality": mother["nationality"],
        "mother_ethnicity": mother["ethnicity"],
        "mother_id_type": mother.get("id_type", "resident_id"),
        "mother_id_number": mother["id_number"],
    }
    if father is not None:
        personal |= {
            "father_name": father["name"],
            "father_nationality": father["nationality"],
            "father_ethnicity": father["ethnicity"],
            "father_id_type": father.get("id_type", "resident_id"),
            "father_id_number": father["id_number"],
        }
    for key in REGISTRATION_FIELDS:
        if registration and registration.get(key):
            personal[key] = registration[key]
    return plain, {k: v for k, v in personal.items() if v is not None}


def _place(place: JSON) -> str:
    """省市县 as one line, a municipality's repeated name once (北京市北京市朝阳区 → 北京市朝阳区)."""
    parts: list[str] = []
    for key in ("province", "city", "county"):
        part = str(place.get(key) or "")
        if part and (not parts or parts[-1] != part):
            parts.append(part)
    return "".join(parts)


# ---------------------------------------------------------------- when it is due


def due_at(printed_at: datetime, working_days: int | None, calendar: WorkingCalendar) -> datetime:
    """When the e-licence of a certificate printed at ``printed_at`` is generated: at once (``working_days``
    None or 0), else at the end of the n-th working day after the day of printing (Beijing's 2–3 days: 2)."""
    if not working_days:
        return printed_at
    return calendar.add_working_days(printed_at, working_days)


__all__ = [
    "ALPHABET",
    "DEFAULT_TYPE_CODE",
    "FATHER_WITHHELD",
    "PERSONAL_ITEMS",
    "PLAIN_ITEMS",
    "ROOT_OID",
    "LicenceId",
    "check_character",
    "check_holds",
    "data_items",
    "due_at",
    "issuer_code_of",
]
