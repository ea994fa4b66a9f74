"""粤省事 to the end, and the other provincial apps (issue 10 item 1; docs/decisions/0030), over real HTTP.

A mother and a father who come from 粤省事 (not WeChat) log in with its ticket, pass its face check — an
OpenID Connect step-up at the fake's 粤省事 issuer: authorization request, the app's face check, the code
exchanged, the ID token checked — and reach an issued certificate; the app's message push (not WeChat's)
tells the mother, once each. Every way the app's answer can fail to prove the claimed person is a problem
with its own code, and only the failures WeChat's would count bring the day's referral. 北京通, 健康山东 and
冀时办 log in and face-check over the same adapter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest

from backend.dev import DEMO_INSTITUTION
from domain.application import BirthCertificateApplication
from miniprogram_stub.client import ApiProblem, MiniProgram
from miniprogram_stub.people import Family, Person, demo_family
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.test_referrals import issue
from tests.e2e.test_staff import staff
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

# Many face checks in one test: the per-parent limit (5 in 10 minutes) is not what is tested here.
ROOMY_LIMITS = {
    "BIRTHCERT_RATE_FACE_USER": "100 per minute",
    "BIRTHCERT_RATE_FACE_ID_NUMBER": "100 per minute",
}


@pytest.fixture
async def roomy_stack(tmp_path: Path, redis_url: str) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path / "var", redis_url, ROOMY_LIMITS) as running:
        yield running


def face_events(stack: Stack, app_id: str) -> list[Any]:
    kinds = (BirthCertificateApplication.FaceVerified, BirthCertificateApplication.FaceVerificationFailed)
    return [e for e in stack.service.events.get(UUID(app_id)) if isinstance(e, kinds)]


async def pushes(mp: MiniProgram, touser: str) -> list[dict[str, Any]]:
    async with mp.session.get(
        f"{mp.platform}/_fake/oidc/{mp.channel}/pushes", params={"touser": touser}
    ) as r:
        body: dict[str, Any] = await r.json()
        return list(body["pushes"])


async def refused(call: Any, status: int, code: str) -> dict[str, Any]:
    with pytest.raises(ApiProblem) as raised:
        await call
    assert (raised.value.status, raised.value.code) == (status, code), raised.value.problem
    assert raised.value.problem["detail"]
    return raised.value.problem


async def test_a_yueshengshi_mother_and_father_reach_an_issued_certificate_told_by_the_apps_push(
    stack: Stack, family: Family
) -> None:
    await stack.record_delivery(family)
    mother = stack.mini_program(family)
    login = await mother.login_channel("yueshengshi")
    assert login["channel"] == "yueshengshi"
    await mother.start()

    started = await mother.begin_face("mother", family.mother)
    url = urlsplit(started["authorization_url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.path.endswith("/oidc/yueshengshi/authorize")
    assert started["channel"] == "yueshengshi" and "verify_id" not in started
    assert query["state"] == started["out_seq_no"]
    assert (query["acr_values"], query["max_age"], query["prompt"]) == ("urn:gd:yss:loa:face", "300", "login")
    assert query["login_hint"] == mother.openid and query["code_challenge_method"] == "S256"
    assert len(query["nonce"]) >= 32
    # The claimed ID number never travels in the URL (URLs are logged); the name neither.
    assert family.mother.id_number not in started["authorization_url"]
    assert family.mother.name not in started["authorization_url"]
    redirect = await mother.provider_face(started["authorization_url"])
    assert redirect["state"] == started["out_seq_no"] and redirect["code"]
    verdict = await mother.face_result(started["out_seq_no"], redirect)
    assert verdict["verified"] is True and verdict["delivery_record_linked"] is True
    again = await mother.face_result(started["out_seq_no"], redirect)  # the answer was lost: asked again
    assert again["verified"] is True
    await mother.confirm_delivery()
    await mother.provide_details()
    invitation = await mother.invite_father()

    father = stack.mini_program(family)
    await father.login_channel("yueshengshi", openid="yss-father-1", holder=family.father)
    await father.accept_invitation(invitation["invitation"])
    await father.fathers_part()  # his own face check at 粤省事, bound to his own account
    submitted = await mother.submit_after_fathers_part()
    assert submitted["state"] == "submitted"

    events = face_events(stack, mother.app_id or "")
    assert [(type(e).__name__, e.role, e.channel) for e in events] == [
        ("FaceVerified", "mother", "yueshengshi"),
        ("FaceVerified", "father", "yueshengshi"),
    ]

    assert (await issue(stack, mother, "Y440100001"))["state"] == "issued"
    issued = await eventually(
        lambda: _issued(mother, mother.openid or ""), "the issued message through 粤省事's push"
    )
    assert issued["page"].endswith(f"?id={mother.app_id}")
    assert issued["data"]["phrase2"] == "已签发" and issued["data"]["character_string1"] == "Y440100001"
    messages = await pushes(mother, mother.openid or "")
    assert all(n == 1 for n in Counter(m["template"] for m in messages).values()), messages
    async with mother.session.get(f"{mother.platform}/_fake/messages") as r:
        assert (await r.json())["messages"] == []  # nothing went through WeChat
    status = await mother.status()
    assert status["certificate_number"] == "Y440100001"


async def _issued(mp: MiniProgram, touser: str) -> dict[str, Any] | None:
    return next((m for m in await pushes(mp, touser) if m["template"] == "issued"), None)


async def test_each_answer_that_proves_nothing_is_a_problem_and_only_real_failures_refer(
    roomy_stack: Stack,
) -> None:
    stack, family = roomy_stack, demo_family(41)
    await staff(stack, "his1")
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login_channel("yueshengshi")
    await mp.start(institution=DEMO_INSTITUTION.code)

    for outcome, code in (
        ("wrong_acr", "face_acr_mismatch"),
        ("stale", "face_stale"),
        ("wrong_nonce", "face_nonce_mismatch"),
        ("forged", "face_token_invalid"),
    ):
        await mp.script_provider_face(outcome)
        await refused(mp.verify_face("mother"), 409, code)
    await mp.script_provider_face("pass")

    # The right person, typed under another name: a typo (id_mismatch), not her face failing.
    typo = Person("王小美", family.mother.id_number, address=family.mother.address)
    await refused(mp.verify_face("mother", typo), 409, "id_mismatch")

    # A code used for another check (or twice), and a state that is not this check's.
    first = await mp.begin_face("mother", family.mother)
    stolen = await mp.provider_face(first["authorization_url"])
    second = await mp.begin_face("mother", family.mother)
    forged_state = {**stolen, "state": second["out_seq_no"]}
    await refused(mp.face_result(second["out_seq_no"], forged_state), 409, "face_code_invalid")
    await refused(
        mp.face_result(first["out_seq_no"], stolen), 409, "face_code_invalid"
    )  # burnt by the replay
    third = await mp.begin_face("mother", family.mother)
    await refused(mp.face_result(third["out_seq_no"], stolen), 409, "face_state_mismatch")

    assert (await mp.status())["state"] == "draft"  # none of those counted towards a referral
    await mp.script_provider_face("fail")  # the app's own face check did not pass
    await refused(mp.verify_face("mother"), 409, "face_failed")
    await mp.script_provider_face("wrong_person")  # someone else's real-name face
    await refused(mp.verify_face("mother"), 409, "face_mismatch")
    problem = await refused(mp.verify_face("mother"), 409, "face_verification_failed")
    assert problem["referral"]["counter"]["institution_code"] == DEMO_INSTITUTION.code
    status = await mp.status()
    assert (status["state"], status["counter_reason"]["code"]) == ("counter_only", "face_verification_failed")
    failures = [
        e
        for e in face_events(stack, mp.app_id or "")
        if not isinstance(e, BirthCertificateApplication.FaceVerified)
    ]
    assert {e.channel for e in failures} == {"yueshengshi"} and {e.verify_ret for e in failures} == {0}


@pytest.mark.parametrize(
    ("channel", "province"), [("beijingtong", "BJ"), ("jiankangshandong", "SD"), ("jishiban", "HE")]
)
async def test_the_other_provincial_apps_log_in_and_face_check_over_the_same_adapter(
    stack: Stack, channel: str, province: str
) -> None:
    family = demo_family(50 + ["BJ", "SD", "HE"].index(province))
    # 北京 takes applications from the seventh day after the birth.
    born = datetime.now(timezone(timedelta(hours=8))) - timedelta(days=8)
    await stack.record_delivery(family, province=province, born_at=born)
    mp = stack.mini_program(family)
    await mp.login_channel(channel)
    await mp.start(province=province)
    verdict = await mp.verify_face("mother")
    assert verdict["verified"] is True and verdict["delivery_record_linked"] is True
    [event] = face_events(stack, mp.app_id or "")
    assert (event.channel, event.name, event.id_number) == (
        channel,
        family.mother.name,
        family.mother.id_number,
    )
    # WeChat's login is not how this parent came: another channel's ticket does not log in here.
    other = "yueshengshi" if channel != "yueshengshi" else "beijingtong"
    ticket = await mp.fake(f"/_fake/oidc/{other}/tickets", {"openid": "someone"})
    await refused(
        mp.call("POST", f"/api/v1/auth/channels/{channel}", json={"ticket": ticket["ticket"]}),
        401,
        "ticket_invalid",
    )
    await refused(
        mp.call("POST", "/api/v1/auth/channels/nowhere", json={"ticket": "x"}), 404, "unknown_channel"
    )
