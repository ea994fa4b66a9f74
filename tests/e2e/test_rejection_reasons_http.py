"""Rejection reason codes over real HTTP (docs/decisions/0045): what the mother reads, what WeChat tells her.

An issuer rejects with codes from the catalogue and her own words: the mother's status view explains each code
in a sentence and keeps the words; the subscribe message names the codes' labels, never the words. The first
API's body (words only) still works and reads as 其他问题. An unknown code, no code, or 其他问题 without words
are RFC 9457 problems with a stable code, and nothing is recorded.
"""

from __future__ import annotations

import pytest

from domain.rejection import REJECTION_REASONS
from miniprogram_stub.client import ApiProblem
from miniprogram_stub.people import demo_family
from tests.e2e.conftest import Stack
from tests.e2e.test_staff import staff, submitted, wait_for_messages

pytestmark = pytest.mark.e2e

REVIEW = "/api/v1/review/applications"


async def test_the_mother_reads_what_each_reason_means_and_the_issuers_words(stack: Stack) -> None:
    family = demo_family(1)
    mp = await submitted(stack, family)
    issuer = await staff(stack, "issuer1")
    words = f"母亲身份证（{family.mother.id_number}）国徽面有反光"
    await issuer.call(
        "POST",
        f"{REVIEW}/{mp.app_id}/reject",
        json={
            "reason_codes": ["id_photo_unclear", "id_expired", "id_photo_unclear"],
            "reasons": [words],
            "fields": ["documents.mother_id_back"],
        },
    )
    rejection = (await mp.status())["rejection"]
    assert rejection["reason_codes"] == ["id_photo_unclear", "id_expired"]  # each once, in the order picked
    assert [(m["label"], m["message"]) for m in rejection["reason_messages"]] == [
        ("证件照片不清晰或不完整", REJECTION_REASONS["id_photo_unclear"].message),
        ("身份证件已过有效期", REJECTION_REASONS["id_expired"].message),
    ]
    assert "有效期" in rejection["reason_messages"][1]["message"]
    assert rejection["reasons"] == [words]
    assert rejection["field_labels"] == ["母亲身份证国徽面照片"]
    # WeChat names the reasons by their labels; the issuer's words (an ID number here) stay out of it.
    [message] = await wait_for_messages(stack, family.openid, 1)
    assert message["data"]["phrase2"]["value"] == "已退回"
    assert message["data"]["thing3"]["value"] == "证件照片不清晰或不完整等2项"
    assert family.mother.id_number not in str(message) and "反光" not in str(message)
    # The issuer's console shows the codes in the application's history.
    review = await issuer.call("GET", f"{REVIEW}/{mp.app_id}")
    [line] = [h for h in review["history"] if h["event"] == "Rejected"]
    assert line["detail"]["reason_codes"] == ["id_photo_unclear", "id_expired"]
    assert review["application"]["rejection"]["reason_codes"] == ["id_photo_unclear", "id_expired"]


async def test_a_body_with_only_the_issuers_words_still_works_as_other(stack: Stack) -> None:
    mp = await submitted(stack, demo_family(2))
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST",
        f"{REVIEW}/{mp.app_id}/reject",
        json={"reasons": ["新生儿姓名与户口登记不一致"], "fields": ["newborn_name"]},
    )
    status = await mp.status()
    assert status["state"] == "returned"
    assert status["rejection"]["reason_codes"] == ["other"]
    assert status["rejection"]["reason_messages"][0]["message"] == REJECTION_REASONS["other"].message
    assert status["rejection"]["reasons"] == ["新生儿姓名与户口登记不一致"]


async def test_a_wrong_choice_of_reasons_is_a_problem_and_changes_nothing(stack: Stack) -> None:
    mp = await submitted(stack, demo_family(3))
    issuer = await staff(stack, "issuer1")
    before = await mp.status()
    position = await stack.in_store(stack.service.recorder.max_notification_id)
    for body, field, code in (
        (
            {"reason_codes": ["id_expired", "shoe_size"], "fields": ["newborn_name"]},
            "reason_codes[1]",
            "unknown_reason_code",
        ),
        ({"reason_codes": [], "reasons": ["姓名有误"], "fields": ["newborn_name"]}, "reason_codes", None),
        ({"reason_codes": ["other"], "fields": ["newborn_name"]}, "reasons", "reasons_required"),
        ({"reason_codes": "id_expired", "fields": ["newborn_name"]}, "reason_codes", None),
        ({"fields": ["newborn_name"]}, "reasons", None),
    ):
        with pytest.raises(ApiProblem) as refused:
            await issuer.call("POST", f"{REVIEW}/{mp.app_id}/reject", json=body)
        problem = refused.value.problem
        assert refused.value.status == 422, (body, problem)
        assert problem["title"] and problem["detail"], problem
        errors = {e["field"]: e["code"] for e in problem.get("errors", [])}
        assert field in errors, (body, problem)
        if code is not None:
            assert code in (problem["code"], errors[field]), (body, problem)
    assert await stack.in_store(stack.service.recorder.max_notification_id) == position
    after = await mp.status()
    assert (after["state"], after["version"], after["rejection"]) == ("submitted", before["version"], None)
