"""The father verifies on his own WeChat account, over real HTTP: two phones, one application.

The mother invites on her phone; the father logs in on his own account (his own openid at the fake
WeChat), accepts, passes his face check (WeChat binds it to HIS openid) and uploads his ID photos; the
mother signs and submits. Then the refusals, each with its code and nothing recorded, and the proof that
the invitation code is kept neither in the event store nor in Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import pytest
import redis.asyncio as aioredis

from backend.components import CONFIG
from domain.application import FATHER_INVITATION_TTL, BirthCertificateApplication
from miniprogram_stub.client import ApiProblem, MiniProgram, id_photo, signature_png
from miniprogram_stub.people import Family, demo_family
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


async def on_her_phone(stack: Stack, family: Family, *, details: bool = True) -> MiniProgram:
    """The mother, logged in, with her application started, her face check passed and the record confirmed."""
    await stack.record_delivery(family)
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    await mother.verify_face("mother")
    await mother.confirm_delivery()
    if details:
        await mother.provide_details()
    return mother


async def on_his_phone(stack: Stack, family: Family) -> MiniProgram:
    """The father's own mini-program, logged in with his own WeChat account."""
    father = stack.mini_program(family)
    await father.login(family.father_openid)
    assert father.openid != family.openid
    return father


async def refused(call: Any, status: int, code: str) -> ApiProblem:
    """Awaits ``call``, which must be answered with this problem."""
    with pytest.raises(ApiProblem) as raised:
        await call
    assert (raised.value.status, raised.value.code) == (status, code), raised.value.problem
    assert raised.value.problem["detail"]  # a sentence for the parent, in Chinese
    return raised.value


@contextmanager
def nothing_recorded(stack: Stack) -> Iterator[None]:
    """The event store's last notification id is the same after the block."""
    before = stack.service.recorder.max_notification_id()
    yield
    assert stack.service.recorder.max_notification_id() == before, "a refused command recorded events"


def sqlite_bytes(stack: Stack) -> bytes:
    """The SQLite event store as it is on disk, with its write-ahead log."""
    db = Path(stack.app[CONFIG].event_store_env()["SQLITE_DBNAME"])
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


async def redis_text(redis_url: str) -> bytes:
    """Every key and value in Redis, whatever its type."""
    client = aioredis.Redis.from_url(redis_url)
    parts: list[bytes] = []
    try:
        async for key in client.scan_iter(match="*"):
            parts.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                parts.append(await client.get(key) or b"")
            elif kind == "zset":
                parts += [m for m, _ in await client.zrange(key, 0, -1, withscores=True)]
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    parts += [field, value]
            elif kind == "list":
                parts += await client.lrange(key, 0, -1)
            elif kind == "set":
                parts += list(await client.smembers(key))
    finally:
        await client.aclose()
    return b"\n".join(parts)


# ---------------------------------------------------------------------------------------------- the journey


async def test_the_father_verifies_on_his_own_phone_and_the_mother_submits(
    stack: Stack, family: Family, redis_url: str
) -> None:
    mother = await on_her_phone(stack, family)
    invitation = await mother.invite_father()
    code = invitation["invitation"]
    assert invitation["path"] == f"/pages/father/join?invitation={code}"
    assert invitation["qr_svg"].startswith("<svg") and "</svg>" in invitation["qr_svg"]
    expires = datetime.fromisoformat(invitation["expires_at"])
    assert expires.utcoffset() == timedelta(hours=8)
    assert abs(expires - (datetime.now(expires.tzinfo) + FATHER_INVITATION_TTL)) < timedelta(minutes=1)
    assert (await mother.status())["father_invitation"]["status"] == "invited"

    father = await on_his_phone(stack, family)
    assert (await father.call("GET", "/api/v1/applications"))["items"] == []  # nothing before he accepts
    joined = await father.accept_invitation(code)
    assert (joined["application_id"], joined["role"]) == (mother.app_id, "father")

    listing = await father.call("GET", "/api/v1/applications")
    assert [(i["id"], i["role"]) for i in listing["items"]] == [(mother.app_id, "father")]
    view = await father.status()
    assert view["role"] == "father"
    assert [s["code"] for s in view["next_steps"]] == ["father_verified", "father_documents_uploaded"]
    for personal in ("mother_name_masked", "delivery_record", "rejection", "certificate_number"):
        assert personal not in view
    for text in (
        family.mother.name,
        family.mother.name[0] + "*",
        family.newborn_name,
        family.mother.id_number,
    ):
        assert text not in str(view)

    await father.fathers_part()  # his face check is bound to HIS openid at WeChat, then his photos
    view = await father.status()
    assert view["father"] == {"verified": True, "documents": ["father_id_back", "father_id_front"]}
    assert [s["code"] for s in view["next_steps"]] == ["await_applicant"]

    await mother.upload("mother_id_front")
    await mother.upload("mother_id_back")
    await mother.sign()
    await mother.choose_ems()
    await mother.submit()
    status = await mother.status()
    assert status["state"] == "submitted"
    assert status["father_invitation"] == {"status": "joined", "expires_at": None}
    assert [s["code"] for s in (await father.status())["next_steps"]] == ["await_review"]

    events = await stack.in_store(lambda: list(stack.service.events.get(UUID(mother.app_id))))
    verified = [e for e in events if isinstance(e, BirthCertificateApplication.FaceVerified)]
    assert [(e.role, e.actor["id"]) for e in verified] == [
        ("mother", family.openid),
        ("father", family.father_openid),
    ]
    uploaded = {
        e.kind: e.actor["id"] for e in events if isinstance(e, BirthCertificateApplication.DocumentUploaded)
    }
    assert uploaded["father_id_front"] == uploaded["father_id_back"] == family.father_openid

    # The code is nowhere at rest: not in the event store (encrypted or not), not in Redis (views, idempotency).
    assert code.encode() not in sqlite_bytes(stack)
    assert code.encode() not in await redis_text(redis_url)


async def test_a_retried_invitation_answers_the_same_code_from_a_sealed_record(
    stack: Stack, family: Family, redis_url: str
) -> None:
    mother = await on_her_phone(stack, family)
    first = await mother.call("POST", f"{mother.base}/father-invitation", idempotency_key="inv-1")
    again = await mother.call("POST", f"{mother.base}/father-invitation", idempotency_key="inv-1")
    assert again == first  # the same code, the same version: recorded once
    assert first["invitation"].encode() not in await redis_text(redis_url)
    father = await on_his_phone(stack, family)
    await father.accept_invitation(first["invitation"])


# ---------------------------------------------------------------------------------------------- refusals


async def test_a_wrong_code_finds_nothing(stack: Stack, family: Family) -> None:
    mother = await on_her_phone(stack, family)
    await mother.invite_father()
    father = await on_his_phone(stack, family)
    with nothing_recorded(stack):
        for wrong in ("A" * 27, "not-a-code", "x" * 300):
            await refused(father.accept_invitation(wrong), 404, "invitation_not_found")
        await refused(
            father.call("POST", "/api/v1/father-invitations/accept", json={}), 422, "validation_failed"
        )


async def test_an_expired_invitation_is_refused(stack: Stack, family: Family) -> None:
    mother = await on_her_phone(stack, family)
    code = (await mother.invite_father())["invitation"]
    father = await on_his_phone(stack, family)
    real_clock = stack.service.clock
    stack.service.clock = lambda: real_clock() + FATHER_INVITATION_TTL + timedelta(minutes=1)
    try:
        with nothing_recorded(stack):
            await refused(father.accept_invitation(code), 409, "invitation_expired")
    finally:
        stack.service.clock = real_clock
    fresh = (await mother.invite_father())["invitation"]
    await father.accept_invitation(fresh)


async def test_an_invitation_is_used_once(stack: Stack, family: Family) -> None:
    mother = await on_her_phone(stack, family)
    code = (await mother.invite_father())["invitation"]
    father = await on_his_phone(stack, family)
    await father.accept_invitation(code)
    someone = stack.mini_program(demo_family(3))
    await someone.login()
    with nothing_recorded(stack):
        await refused(someone.accept_invitation(code), 409, "invitation_used")
        assert (await father.accept_invitation(code))["role"] == "father"  # his retry: already in
        await refused(mother.invite_father(), 409, "father_already_joined")
    someone.app_id = mother.app_id
    await refused(someone.status(), 404, "not_found")


async def test_a_new_invitation_supersedes_the_previous_one(stack: Stack, family: Family) -> None:
    mother = await on_her_phone(stack, family)
    old = (await mother.invite_father())["invitation"]
    new = (await mother.invite_father())["invitation"]
    father = await on_his_phone(stack, family)
    with nothing_recorded(stack):
        await refused(father.accept_invitation(old), 409, "invitation_superseded")
    await father.accept_invitation(new)


async def test_the_mother_cannot_accept_her_own_invitation(stack: Stack, family: Family) -> None:
    mother = await on_her_phone(stack, family)
    code = (await mother.invite_father())["invitation"]
    with nothing_recorded(stack):
        await refused(mother.accept_invitation(code), 403, "own_invitation")


async def test_no_invitation_before_her_face_check_or_for_a_single_mother(stack: Stack) -> None:
    family = demo_family(4)
    await stack.record_delivery(family)
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    with nothing_recorded(stack):
        problem = await refused(mother.invite_father(), 409, "not_ready")
    assert problem.problem["missing"] == ["mother_verified"]

    single = Family(
        openid="oSingleMother1",
        mother=demo_family(5).mother,
        father=None,
        newborn_name="王小花",
        inpatient_no="ZY2026999001",
    )
    await stack.record_delivery(single)
    alone = stack.mini_program(single)
    await alone.login()
    await alone.start()
    await alone.verify_face("mother")
    with nothing_recorded(stack):
        await refused(alone.invite_father(), 409, "no_father")


async def test_the_father_can_do_only_his_own_part(stack: Stack, family: Family) -> None:
    mother = await on_her_phone(stack, family)
    father = await on_his_phone(stack, family)
    await father.accept_invitation((await mother.invite_father())["invitation"])
    signature = aiohttp.FormData()
    signature.add_field("form_sha256", "0" * 64)
    signature.add_field("file", signature_png(), filename="s.png", content_type="image/png")
    with nothing_recorded(stack):
        await refused(
            father.call("PUT", f"{father.base}/details", json=father.details_body()), 403, "applicant_only"
        )
        await refused(father.call("POST", f"{father.base}/delivery-record/confirm"), 403, "applicant_only")
        await refused(
            father.call("POST", f"{father.base}/delivery-record/dispute", json={"reason": "体重不对"}),
            403,
            "applicant_only",
        )
        await refused(father.call("POST", f"{father.base}/signature", data=signature), 403, "applicant_only")
        await refused(father.choose_pickup(), 403, "applicant_only")
        await refused(father.submit(), 403, "applicant_only")
        await refused(father.withdraw(), 403, "applicant_only")
        await refused(father.invite_father(), 403, "applicant_only")
        await refused(father.form(), 403, "applicant_only")
        await refused(father.delivery_record(), 403, "applicant_only")
        await refused(father.prefill(), 403, "applicant_only")
        await refused(father.begin_face("mother", family.mother), 403, "father_own_check_only")
        await refused(father.upload("mother_id_front", id_photo("母亲")), 403, "father_documents_only")
        assert family.father is not None
        other = demo_family(6).father
        assert other is not None
        problem = await refused(father.begin_face("father", other), 422, "not_named_father")
        assert problem.problem["errors"][0]["field"] == "id_number"

    # The mother, on her device, still does everything, the father's check included (as before).
    await mother.verify_face("father")
    assert "father_verified" not in [s["code"] for s in (await mother.status())["next_steps"]]


async def test_a_third_user_without_an_invitation_sees_nothing(stack: Stack, family: Family) -> None:
    mother = await on_her_phone(stack, family, details=False)
    father = await on_his_phone(stack, family)
    await father.accept_invitation((await mother.invite_father())["invitation"])
    stranger = stack.mini_program(demo_family(7))
    await stranger.login()
    stranger.app_id = mother.app_id
    assert (await stranger.call("GET", "/api/v1/applications"))["items"] == []
    with nothing_recorded(stack):
        for call in (
            stranger.status(),
            stranger.form(),
            stranger.begin_face("father", family.father or family.mother),
            stranger.upload("father_id_front"),
            stranger.invite_father(),
        ):
            await refused(call, 404, "not_found")
