"""Invented families for tests, the demo and the load generator (valid ID numbers, fictional people)."""

from __future__ import annotations

from dataclasses import dataclass


def make_id_number(region: str, birth: str, seq: str) -> str:
    """A valid 18-character resident ID number (GB 11643 check character) for invented people."""
    body = region + birth + seq
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]


@dataclass(frozen=True)
class Person:
    """A parent as the mini-program knows them."""

    name: str
    id_number: str
    ethnicity: str = "01"
    address: str = "广东省广州市越秀区中山二路58号"


@dataclass(frozen=True)
class Family:
    """Mother, father (None for a single mother), the baby's name and the mother's WeChat openid.

    ``father_openid`` is the father's own WeChat account, for when he joins by invitation on his phone.
    """

    openid: str
    mother: Person
    father: Person | None
    newborn_name: str
    inpatient_no: str
    father_openid: str | None = None


def demo_family(n: int = 1) -> Family:
    """The n-th invented Guangdong family (n ≥ 1): different ID numbers and inpatient numbers each."""
    day = 1 + (n - 1) % 28
    return Family(
        openid=f"oDemoMother{n:06d}",
        mother=Person(
            "王芳",
            make_id_number("440106", f"1993{(n - 1) // 28 % 12 + 1:02d}{day:02d}", f"{(n * 2) % 1000:03d}"),
        ),
        father=Person(
            "张伟",
            make_id_number(
                "440104", f"1991{(n - 1) // 28 % 12 + 1:02d}{day:02d}", f"{(n * 2 + 1) % 1000:03d}"
            ),
        ),
        newborn_name="张小花",
        inpatient_no=f"ZY{2026000000 + n}",
        father_openid=f"oDemoFather{n:06d}",
    )


def hebei_family(n: int = 1) -> Family:
    """The n-th invented Hebei family: both parents with a Hebei 户口 (their ID cards' addresses) and the
    same ethnicity, as 出生一件事 asks (docs/decisions/0044)."""
    month, day = (n - 1) // 28 % 12 + 1, 1 + (n - 1) % 28
    address = "河北省石家庄市长安区中山东路88号"
    return Family(
        openid=f"oHebeiMother{n:06d}",
        mother=Person(
            "李娜",
            make_id_number("130102", f"1994{month:02d}{day:02d}", f"{(n * 2) % 1000:03d}"),
            address=address,
        ),
        father=Person(
            "赵强",
            make_id_number("130104", f"1992{month:02d}{day:02d}", f"{(n * 2 + 1) % 1000:03d}"),
            address=address,
        ),
        newborn_name="赵小雨",
        inpatient_no=f"HB{2026000000 + n}",
        father_openid=f"oHebeiFather{n:06d}",
    )
