"""Idempotency-Key over HTTP: the first answer is recorded with the command, in the event store.

A retry with the same key — after the answer was lost, after a restart, after Redis was flushed or
while it is down, or sent twice at once (to one process or to two) — gets the first answer again
(status, body, ETag, Location, and ``Idempotent-Replayed: true``) and records nothing more; a retry of a
command that took effect is never a conflict. The same key with another request is a 422, and a refused
command records nothing, so its key may be used again (docs/decisions/0014).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend.components import APPLICATIONS, CONFIG, STORE_EXECUTOR
from backend.config import Config
from backend.dev import seed_demo_staff
from backend.redis_server import open_redis
from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import Family, demo_family
from tests.e2e.conftest import Stack, free_port
from tests.e2e.serving import (
    Answer,
    flush,
    killed,
    send,
    service_env,
    signature_form,
    started_service,
    store_of,
)
from tests.e2e.test_archive_http import login
from tests.e2e.test_audit_http import serve


async def last_position(stack: Stack) -> int:
    """The event store's last notification id: unchanged means nothing was recorded."""
    position: int | None = await stack.in_store(stack.service.recorder.max_notification_id)
    return position or 0


async def count(stack: Stack, topic: str) -> int:
    """How many events of ``topic`` the store holds."""
    rows = await stack.in_store(
        stack.service.recorder.select_notifications, start=1, limit=100_000, topics=(topic,)
    )
    return len(rows)


async def mother_ready_to_sign(stack: Stack, family: Family) -> MiniProgram:
    """The family's application up to the signature (face checks, record confirmed, details, photos)."""
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.ready_to_sign()
    return mp


async def application_started(stack: Stack, family: Family) -> MiniProgram:
    """The family's delivery entered, the mother logged in with her application started."""
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    return mp


# ---------------------------------------------------------------------------------------------- replays


async def test_a_start_retried_after_a_restart_and_a_redis_flush_gets_the_first_answer(
    stack: Stack, family: Family, redis_url: str
) -> None:
    mp = stack.mini_program(family)
    await mp.login()
    config: Config = stack.app[CONFIG]
    runner, api = await serve(config)
    try:
        first = await send(stack.session, api, mp, "POST", "/api/v1/applications", key="start-1", json={})
    finally:
        await runner.cleanup()  # the service stops; the client never saw its answer and retries
    flush(redis_url)
    assert first.status == 201 and not first.replayed
    before = await last_position(stack)
    runner, api = await serve(config)
    try:
        again = await send(stack.session, api, mp, "POST", "/api/v1/applications", key="start-1", json={})
    finally:
        await runner.cleanup()
    assert again.same_as(first) and again.replayed
    assert again.headers["Location"] == f"/api/v1/applications/{first.json()['id']}"
    assert await last_position(stack) == before
    assert await count(stack, "birthcert:ApplicationStarted") == 1


async def test_the_signature_retried_with_its_key_is_recorded_once(
    stack: Stack, family: Family, redis_url: str
) -> None:
    mp = await mother_ready_to_sign(stack, family)
    sha = (await mp.form())["sha256"]
    path = f"{mp.base}/signature"
    first = await send(stack.session, stack.api, mp, "POST", path, key="sign-1", form=signature_form(sha))
    assert first.status == 200 and first.json()["version"] == int(first.headers["ETag"].strip('"'))
    before = await last_position(stack)
    flush(redis_url)
    for _ in range(2):
        again = await send(stack.session, stack.api, mp, "POST", path, key="sign-1", form=signature_form(sha))
        assert again.same_as(first) and again.replayed
    assert await last_position(stack) == before
    assert await count(stack, "birthcert:FormSigned") == 1
    await stack.in_store(seed_demo_staff, stack.service)
    auditor = await login(stack, "auditor1")
    archived = await auditor.call("GET", f"/api/v1/archive/forms?application_id={mp.app_id}")
    assert [f["kind"] for f in archived["forms"]] == ["signed"]  # one permanent row, not one per retry
    await mp.choose_ems()
    assert (await mp.submit())["state"] == "submitted"


async def test_a_retry_of_a_command_that_took_effect_is_not_a_conflict(stack: Stack, family: Family) -> None:
    mp = await mother_ready_to_sign(stack, family)
    await mp.sign()
    await mp.choose_ems()
    version = (await mp.status())["version"]
    path = f"{mp.base}/submit"
    first = await send(stack.session, stack.api, mp, "POST", path, key="submit-1", if_match=version)
    assert first.status == 200 and first.json()["state"] == "submitted"
    # The same If-Match is stale now and the application is no longer a draft: still the first answer.
    again = await send(stack.session, stack.api, mp, "POST", path, key="submit-1", if_match=version)
    assert again.same_as(first) and again.replayed
    assert await count(stack, "birthcert:Submitted") == 1


async def test_the_same_key_for_another_request_is_refused_and_records_nothing(
    stack: Stack, family: Family
) -> None:
    mp = stack.mini_program(family)
    await mp.login()
    first = await send(stack.session, stack.api, mp, "POST", "/api/v1/applications", key="k-1", json={})
    before = await last_position(stack)
    other = await send(
        stack.session,
        stack.api,
        mp,
        "POST",
        "/api/v1/applications",
        key="k-1",
        json={"parents": "single_mother"},
    )
    assert (other.status, other.json()["code"]) == (422, "idempotency_key_reused")
    assert await last_position(stack) == before
    # The key is the user's own: another user's request under the same key is another request.
    stranger = stack.mini_program(Family(**{**family.__dict__, "openid": "oSomeoneElse000001"}))
    await stranger.login()
    theirs = await send(
        stack.session, stack.api, stranger, "POST", "/api/v1/applications", key="k-1", json={}
    )
    assert theirs.status == 201 and theirs.json()["id"] != first.json()["id"] and not theirs.replayed


async def test_a_refused_command_records_nothing_and_its_key_serves_again(
    stack: Stack, family: Family
) -> None:
    mp = await mother_ready_to_sign(stack, family)
    path = f"{mp.base}/submit"
    before = await last_position(stack)
    early = await send(stack.session, stack.api, mp, "POST", path, key="submit-early")
    assert (early.status, early.json()["code"]) == (409, "not_ready")
    assert await last_position(stack) == before
    await mp.sign()
    await mp.choose_ems()
    later = await send(stack.session, stack.api, mp, "POST", path, key="submit-early")
    assert later.status == 200 and later.json()["state"] == "submitted" and not later.replayed


# ---------------------------------------------------------------------------------------------- twins


async def test_twins_sent_at_once_commit_once(stack: Stack, family: Family) -> None:
    mp = stack.mini_program(family)
    await mp.login()
    answers = await asyncio.gather(
        *(
            send(stack.session, stack.api, mp, "POST", "/api/v1/applications", key="twin", json={})
            for _ in range(8)
        )
    )
    assert await count(stack, "birthcert:ApplicationStarted") == 1
    first = next(a for a in answers if not a.replayed)
    assert first.status == 201
    assert all(a.same_as(first) for a in answers)
    assert sum(a.replayed for a in answers) == 7


async def test_twins_at_two_processes_commit_once(stack: Stack, family: Family) -> None:
    mp = stack.mini_program(family)
    await mp.login()
    runner, other_api = await serve(stack.app[CONFIG])
    try:
        for n in range(5):
            key = f"twin-{n}"
            answers = await asyncio.gather(
                *(
                    send(stack.session, api, mp, "POST", "/api/v1/applications", key=key, json={})
                    for api in (stack.api, other_api)
                )
            )
            firsts = [a for a in answers if not a.replayed]
            assert len(firsts) == 1 and all(a.same_as(firsts[0]) for a in answers), [
                a.status for a in answers
            ]
    finally:
        await runner.cleanup()
    assert await count(stack, "birthcert:ApplicationStarted") == 5


# ---------------------------------------------------------------------------------------------- face checks


async def test_a_face_check_begun_and_fetched_again_with_their_keys(stack: Stack, family: Family) -> None:
    mp = await application_started(stack, family)
    path = f"{mp.base}/face-verifications"
    claim = {"role": "mother", "name": family.mother.name, "id_number": family.mother.id_number}
    begun = await send(stack.session, stack.api, mp, "POST", path, key="begin-1", json=claim)
    again = await send(stack.session, stack.api, mp, "POST", path, key="begin-1", json=claim)
    assert (
        again.same_as(begun) and again.replayed
    )  # the same verify_id: WeChat was not asked (and paid) twice
    assert await count(stack, "birthcert:FaceVerificationRequested") == 1
    started = begun.json()
    await mp.fake("/_fake/face/verify", {"verify_id": started["verify_id"], "openid": mp.openid})
    result = f"{path}/{started['out_seq_no']}/result"
    passed = await send(stack.session, stack.api, mp, "POST", result, key="result-1")
    assert passed.status == 200 and passed.json()["verified"] is True
    before = await last_position(stack)
    replayed = await send(stack.session, stack.api, mp, "POST", result, key="result-1")
    assert replayed.same_as(passed) and replayed.replayed
    keyless = await send(stack.session, stack.api, mp, "POST", result, key=None)
    assert keyless.same_as(passed) and not keyless.replayed
    assert await last_position(stack) == before
    assert await count(stack, "birthcert:FaceVerified") == 1


async def test_a_failed_face_check_fetched_again_is_the_same_failure(stack: Stack, family: Family) -> None:
    mp = await application_started(stack, family)
    await mp.fake("/_fake/faces", {"cert_no": family.mother.id_number, "verify_ret": 10004})
    started = await mp.begin_face("mother", family.mother)
    await mp.fake("/_fake/face/verify", {"verify_id": started["verify_id"], "openid": mp.openid})
    result = f"{mp.base}/face-verifications/{started['out_seq_no']}/result"
    failed = await send(stack.session, stack.api, mp, "POST", result, key="result-2")
    assert (failed.status, failed.json()["code"]) == (409, "face_mismatch")
    for key in ("result-2", "another-key"):
        again = await send(stack.session, stack.api, mp, "POST", result, key=key)
        assert again.same_as(failed)
    assert await count(stack, "birthcert:FaceVerificationFailed") == 1


# ---------------------------------------------------------------------------------------------- without Redis


async def test_with_redis_down_a_keyed_command_commits_and_replays(
    stack: Stack, family: Family, tmp_path: Path
) -> None:
    own = open_redis(None, tmp_path / "own-redis")  # a Redis of this test's own, to stop
    config = Config.from_env(
        {
            "REDIS_URL": own.url,
            "WECHAT_API_BASE": stack.platform,
            "WECHAT_PAY_BASE": stack.platform,
        },
        data_dir=tmp_path / "var",
    )
    runner, api = await serve(config)
    try:
        mp = MiniProgram(stack.session, api, stack.platform, family)
        await mp.login()
        own.sync_client().shutdown(nosave=True)
        first = await send(stack.session, api, mp, "POST", "/api/v1/applications", key="no-redis", json={})
        again = await send(stack.session, api, mp, "POST", "/api/v1/applications", key="no-redis", json={})
        assert first.status == 201, first.body
        assert again.same_as(first) and again.replayed
    finally:
        await runner.cleanup()
        own.close()


# ---------------------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
async def test_on_postgresql_twins_at_two_processes_and_a_restart_commit_once(
    stack: Stack, family: Family, postgres_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    store = {k: v for k, v in postgres_env.items() if k.startswith("POSTGRES_") or k == "PERSISTENCE_MODULE"}
    config = Config.from_env(
        {
            "REDIS_URL": redis_url,
            "WECHAT_API_BASE": stack.platform,
            "WECHAT_PAY_BASE": stack.platform,
            **store,
        },
        data_dir=tmp_path / "pg-var",
    )
    (one, api_one), (two, api_two) = await serve(config), await serve(config)
    mp = MiniProgram(stack.session, api_one, stack.platform, family)
    try:
        await mp.login()
        answers = await asyncio.gather(
            *(
                send(stack.session, api, mp, "POST", "/api/v1/applications", key="pg", json={})
                for api in (api_one, api_two)
            )
        )
        firsts = [a for a in answers if not a.replayed]
        assert len(firsts) == 1 and all(a.same_as(firsts[0]) for a in answers), [a.status for a in answers]
    finally:
        await one.cleanup()
        await two.cleanup()
    flush(redis_url)
    runner, api = await serve(config)  # restarted, Redis empty
    try:
        again = await send(stack.session, api, mp, "POST", "/api/v1/applications", key="pg", json={})
        assert again.same_as(firsts[0]) and again.replayed
        app = runner.app
        assert app is not None
        started = await asyncio.get_running_loop().run_in_executor(
            app[STORE_EXECUTOR],
            lambda: app[APPLICATIONS].recorder.select_notifications(
                start=1, limit=1000, topics=("birthcert:ApplicationStarted",)
            ),
        )
        assert len(started) == 1
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------------------------------- kill -9


async def until_started(env: Mapping[str, str], *, at_least: int, tasks: list[asyncio.Task[Any]]) -> int:
    """How many applications the store holds once it holds ``at_least`` (or every start was answered)."""
    loop = asyncio.get_running_loop()
    reader = ThreadPoolExecutor(max_workers=1)
    with store_of(env) as service:

        def count() -> int:
            found = service.recorder.select_notifications(
                start=1, limit=1000, topics=("birthcert:ApplicationStarted",)
            )
            return len(found)

        try:
            deadline = loop.time() + 30
            while True:
                n = await loop.run_in_executor(reader, count)
                if n >= at_least or all(t.done() for t in tasks) or loop.time() > deadline:
                    return n
                await asyncio.sleep(0.005)
        finally:
            reader.shutdown()


async def test_keyed_starts_cut_by_kill_9_are_each_recorded_once_after_retries(
    stack: Stack, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = service_env(
        os.environ, platform=stack.platform, port=port, redis_url=redis_url, data_dir=tmp_path / "var"
    )
    mothers = [MiniProgram(stack.session, api, stack.platform, demo_family(n)) for n in range(1, 61)]
    process = await started_service(env, api)
    try:
        for mp in mothers:
            await mp.login()

        async def start(mp: MiniProgram) -> Answer | None:
            try:
                return await send(
                    stack.session, api, mp, "POST", "/api/v1/applications", key=mp.family.openid, json={}
                )
            except aiohttp.ClientError:
                return None  # the answer was lost with the process

        tasks = [asyncio.create_task(start(mp)) for mp in mothers]
        # SIGKILL once a few starts are in the store (answered or not: answers wait for the views), in the
        # middle of the others — decided by what the store holds, not by timing.
        committed = await until_started(env, at_least=3, tasks=tasks)
        await killed(process)
        firsts = await asyncio.gather(*tasks)
        flush(redis_url)
        process = await started_service(env, api)
        retries = [await start(mp) for mp in mothers]
    finally:
        await killed(process)
    lost = sum(a is None or a.status >= 500 for a in firsts)
    assert committed >= 1 and lost > 0, (
        f"the kill came after {committed} starts were stored, with {lost} answers lost"
    )
    for first, again in zip(firsts, retries, strict=True):
        assert again is not None and again.status == 201
        if first is not None and first.status == 201:
            assert again.same_as(first) and again.replayed
    with store_of(env) as service:
        started = service.recorder.select_notifications(
            start=1, limit=1000, topics=("birthcert:ApplicationStarted",)
        )
    assert len(started) == len(mothers)  # each key once: none lost, none twice
