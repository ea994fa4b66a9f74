"""The two messages that end a mother's wait on the hospital (issue 10): its answer that her record stands
(``upheld``) and the record she reported missing, entered (``record_entered``). Both fill the ``corrected``
template's keys with values WeChat takes, and mask what looks like an ID or phone number."""

from __future__ import annotations

from datetime import UTC, datetime

from miniprogram_stub.fake_messages import value_is_valid
from projections.notifications import CORRECTED, RECORD_ENTERED, TEMPLATE_KIND, UPHELD, message_data

AT = datetime(2026, 12, 4, 2, 30, tzinfo=UTC)


def valid(data: dict[str, str]) -> bool:
    return all(value_is_valid(key, value) for key, value in data.items())


def test_an_upheld_record_is_told_with_the_hospitals_reason_masked_and_fitted() -> None:
    reason = "经核对产妇440106199001011234的产房记录（电话13800138000），出生体重3250克无误"
    data = message_data(UPHELD, AT, reason=reason)
    assert valid(data), data
    assert (data["thing1"], data["phrase2"], data["thing4"], data["time5"]) == (
        "出生医学证明申领",
        "待确认",
        "医院已答复异议，请核对后确认",
        "2026年12月4日 10:30",
    )
    assert data["thing3"].startswith("经核对产妇***的产房记录") and data["thing3"].endswith("…")
    assert "440106199001011234" not in str(data) and "13800138000" not in str(data)
    assert message_data(UPHELD, AT, reason="  ")["thing3"] == "医院答复分娩信息无误"


def test_an_entered_record_names_the_institution_or_says_hospital() -> None:
    named = message_data(RECORD_ENTERED, AT, institution="广州市妇女儿童医疗中心")
    assert valid(named), named
    assert (named["phrase2"], named["thing3"], named["thing4"]) == (
        "已录入",
        "广州市妇女儿童医疗中心已录入分娩信息",
        "请查看并确认分娩信息",
    )
    unnamed = message_data(RECORD_ENTERED, AT)
    assert unnamed["thing3"] == "医院已录入分娩信息" and valid(unnamed)
    long_name = message_data(RECORD_ENTERED, AT, institution="某某省某某市某某区妇幼保健院产科分院")
    assert len(long_name["thing3"]) <= 20 and valid(long_name)


def test_both_use_the_corrected_template() -> None:
    assert TEMPLATE_KIND[UPHELD] == TEMPLATE_KIND[RECORD_ENTERED] == CORRECTED
