"""Limits over real HTTP: what an abusive client meets, and what the people it targets still get.

Different clients are different loopback addresses (the client binds 127.0.0.2, 127.0.0.3, …), or
different ``X-Forwarded-For`` values behind a configured trusted proxy.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend.components import CONFIG
from backend.dev import DEMO_PASSWORD, seed_demo_staff
from miniprogram_stub.client import ApiProblem, MiniProgram, StaffClient
from miniprogram_stub.people import Family, demo_family
from tests.e2e.conftest import Stack, free_port, running_stack

pytestmark = pytest.mark.e2e
Tight = Callable[..., AbstractAsyncContextManager[Stack]]


@asynccontextmanager
async def from_address(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose connections come from ``address`` (a loopback address)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def staff_login(
    stack: Stack, session: aiohttp.ClientSession, username: str, password: str, **headers: str
) -> aiohttp.ClientResponse:
    async with session.post(
        f"{stack.api}/api/v1/auth/staff", json={"username": username, "password": password}, headers=headers
    ) as r:
        await r.read()
        stack.check("POST", "/api/v1/auth/staff", r.status, r.content_type, await r.json())
        return r


async def wechat_login(
    stack: Stack, openid: str, session: aiohttp.ClientSession | None = None, **headers: str
) -> tuple[int, dict[str, Any], str | None]:
    code = f"dev:{openid}:{uuid.uuid4().hex[:8]}"
    async with (session or stack.session).post(
        f"{stack.api}/api/v1/auth/wechat", json={"code": code}, headers=headers
    ) as r:
        body = await r.json()
        stack.check("POST", "/api/v1/auth/wechat", r.status, r.content_type, body)
        return r.status, body, r.headers.get("Retry-After")


async def platform_calls(stack: Stack, path: str) -> int:
    async with stack.session.get(f"{stack.platform}/_fake/calls", params={"path": path}) as r:
        return int((await r.json())["count"])


def blobs(stack: Stack) -> set[str]:
    return {p.name for p in stack.app[CONFIG].blob_dir.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- staff login


async def test_an_attacker_cannot_lock_a_colleague_out(stack: Stack) -> None:
    await stack.in_store(seed_demo_staff, stack.service)
    async with from_address("127.0.0.2") as attacker:
        statuses = [(await staff_login(stack, attacker, "issuer2", f"guess-{n}")).status for n in range(6)]
        assert statuses == [401] * 5 + [429]
        # The owner, from her own address, gets in at once.
        owner = StaffClient(stack.session, stack.api, check=stack.check)
        assert (await owner.login("issuer2", DEMO_PASSWORD))["role"] == "issuer"
        # The attacker's own wait grows: 1 s after five failures; after waiting it out and failing again, 2 s.
        held = await staff_login(stack, attacker, "issuer2", DEMO_PASSWORD)
        assert (held.status, held.headers["Retry-After"]) == (429, "1")
        await asyncio.sleep(1)  # the client honours Retry-After: that wait is what is under test
        assert (await staff_login(stack, attacker, "issuer2", "guess-6")).status == 401
        held = await staff_login(stack, attacker, "issuer2", "guess-7")
        assert (held.status, held.headers["Retry-After"]) == (429, "2")
    # And the owner, still: twice in a row.
    assert (await owner.login("issuer2", DEMO_PASSWORD))["role"] == "issuer"


async def test_guessing_from_many_addresses_does_not_keep_the_owner_out(stack: Stack) -> None:
    await stack.in_store(seed_demo_staff, stack.service)
    answers = []
    for n in range(2, 14):  # twelve addresses, one guess each: none of them is slowed on its own
        async with from_address(f"127.0.0.{n}") as bot:
            answers.append((await staff_login(stack, bot, "issuer2", "guess")).status)
            if n == 13:  # a second guess from an address that failed: the account's wait applies
                held = await staff_login(stack, bot, "issuer2", DEMO_PASSWORD)
                assert held.status == 429 and int(held.headers["Retry-After"]) >= 2
    assert answers == [401] * 12
    owner = StaffClient(stack.session, stack.api, check=stack.check)
    assert (await owner.login("issuer2", DEMO_PASSWORD))["role"] == "issuer"


# ---------------------------------------------------------------- who the client is


# Small limits, so that a test reaches them in a few requests.
TIGHT = {
    "BIRTHCERT_RATE_LOGIN_SOURCE": "3 per minute",
    "BIRTHCERT_RATE_FACE_USER": "2 per hour",
    "BIRTHCERT_RATE_FACE_ID_NUMBER": "2 per hour",
    "BIRTHCERT_RATE_UPLOAD": "2 per hour",
}


@pytest.fixture
def tight(tmp_path: Path, redis_url: str) -> Tight:
    """The stack with the ``TIGHT`` limits, and whatever else a test sets."""
    return lambda **environ: running_stack(tmp_path / "var", redis_url, {**TIGHT, **environ})


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(tight: Tight) -> None:
    async with tight() as stack:
        answers = [
            await wechat_login(stack, f"oParent{n}", **{"X-Forwarded-For": f"198.51.100.{n}"})
            for n in range(4)
        ]
        assert [status for status, _, _ in answers] == [200, 200, 200, 429]
        _, problem, retry_after = answers[-1]
        assert problem["code"] == "rate_limited" and "请" in problem["detail"]
        assert retry_after is not None and 1 <= int(retry_after) <= 60
        # Refused before WeChat was asked anything.
        assert await platform_calls(stack, "/sns/jscode2session") == 3
        # Another address has its own budget.
        async with from_address("127.0.0.2") as other:
            assert (await wechat_login(stack, "oParent9", other))[0] == 200


async def test_behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client(tight: Tight) -> None:
    async with tight(BIRTHCERT_TRUSTED_PROXIES="127.0.0.1/32, 10.0.0.0/8") as stack:

        async def as_forwarded(forwarded_for: str, openid: str = "oParent") -> int:
            return (await wechat_login(stack, openid, **{"X-Forwarded-For": forwarded_for}))[0]

        assert [await as_forwarded("198.51.100.1") for _ in range(3)] == [200] * 3
        assert await as_forwarded("198.51.100.1") == 429
        # What the client wrote left of its address changes nothing; the proxies right of it are skipped.
        assert await as_forwarded("6.6.6.6, 198.51.100.1, 10.1.1.1") == 429
        assert await as_forwarded("198.51.100.1, 198.51.100.2, 10.1.1.1") == 200
        # A peer that is not a trusted proxy forwards nothing that counts.
        async with from_address("127.0.0.2") as untrusted:
            statuses = [
                (
                    await wechat_login(
                        stack, "oParent", untrusted, **{"X-Forwarded-For": f"198.51.100.{50 + n}"}
                    )
                )[0]
                for n in range(4)
            ]
        assert statuses == [200, 200, 200, 429]


async def test_behind_a_trusted_proxy_one_attacker_does_not_lock_out_the_others(tight: Tight) -> None:
    async with tight(
        BIRTHCERT_TRUSTED_PROXIES="127.0.0.1/32", BIRTHCERT_RATE_LOGIN_SOURCE="100 per minute"
    ) as stack:
        await stack.in_store(seed_demo_staff, stack.service)
        attacker = {"X-Forwarded-For": "203.0.113.66"}
        statuses = [
            (await staff_login(stack, stack.session, "issuer2", "guess", **attacker)).status for _ in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        owner = await staff_login(
            stack, stack.session, "issuer2", DEMO_PASSWORD, **{"X-Forwarded-For": "198.51.100.10"}
        )
        assert owner.status == 200


async def test_the_access_log_names_the_same_client_as_the_limits_and_never_its_address(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="birthcert.access")

    async def logged_client(session: aiohttp.ClientSession, **headers: str) -> str:
        caplog.clear()
        async with session.get(f"{stack.api}/healthz", headers=headers) as r:
            assert r.status == 200
        (record,) = [r for r in caplog.records if r.name == "birthcert.access"]
        return str(record.__dict__["client"])

    plain = await logged_client(stack.session)
    assert await logged_client(stack.session, **{"X-Forwarded-For": "198.51.100.7"}) == plain  # not trusted
    async with from_address("127.0.0.2") as other:
        assert await logged_client(other) != plain
    assert "127.0.0" not in plain


# ---------------------------------------------------------------- face checks and uploads


async def _parent(stack: Stack, family: Family, openid: str | None = None) -> MiniProgram:
    mp = stack.mini_program(family)
    await mp.login(openid)
    await mp.start()
    return mp


async def test_face_check_starts_are_limited_per_parent_and_per_id_number(tight: Tight) -> None:
    family = demo_family(1)
    async with tight() as stack:
        await stack.record_delivery(family)
        mother = await _parent(stack, family)
        for _ in range(2):
            await mother.begin_face("mother", family.mother)
        paid = await platform_calls(stack, "/cityservice/face/identify/getverifyid")
        with pytest.raises(ApiProblem) as too_many:
            await mother.begin_face("mother", family.mother)
        assert (too_many.value.status, too_many.value.code) == (429, "rate_limited")
        # Someone else typing the same ID number shares its budget, spent already.
        other = await _parent(stack, demo_family(2), openid="oSomeoneElse")
        with pytest.raises(ApiProblem) as same_id:
            await other.begin_face("mother", family.mother)
        assert same_id.value.code == "rate_limited"
        await other.begin_face("mother", demo_family(2).mother)  # another ID number
        assert await platform_calls(stack, "/cityservice/face/identify/getverifyid") == paid + 1


async def test_uploads_are_limited_per_parent_and_a_refused_one_is_not_stored(tight: Tight) -> None:
    async with tight() as stack:
        family = demo_family(1)
        mother = await _parent(stack, family)
        await mother.upload("mother_id_front")
        await mother.upload("mother_id_back")
        stored = blobs(stack)
        with pytest.raises(ApiProblem) as too_many:
            await mother.upload("mother_id_back")
        assert (too_many.value.status, too_many.value.code) == (429, "rate_limited")
        assert blobs(stack) == stored


# ---------------------------------------------------------------- images


def png_of_zeros(width: int, height: int, *, colour: bool = False) -> bytes:
    """A PNG of black pixels, ``width``×``height``, compressed row by row (a few hundred KB at most)."""
    channels = 3 if colour else 1
    row = b"\0" * (1 + width * channels)  # filter byte 0, then the pixels
    squeeze = zlib.compressobj(9)
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2 if colour else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


async def test_a_tiny_png_of_huge_dimensions_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    family = demo_family(1)
    bomb = png_of_zeros(6320, 6320, colour=True)
    assert len(bomb) < 200_000  # the reported one: 131 KB for 40 megapixels
    mother = await _parent(stack, family)
    with pytest.raises(ApiProblem) as refused:
        await mother.upload("mother_id_front", bomb, filename="id.png")
    assert (refused.value.status, refused.value.code) == (422, "image_too_large")
    assert refused.value.problem["detail"] == "图片分辨率过高，请上传不超过 1600万 像素的图片"
    assert blobs(stack) == set()


class PeakMemory:
    """The growth of this process's resident memory over a stretch of time, sampled every 2 ms."""

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def _sample(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> int:
        """The growth at its peak, in bytes."""
        self._done.set()
        self._thread.join()
        return max(self.peak, self._rss()) - self.base


@pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="resident memory is read from /proc (Linux)"
)
async def test_eight_uploads_at_the_pixel_cap_at_once_are_decoded_two_at_a_time(stack: Stack) -> None:
    photo = png_of_zeros(4000, 4000, colour=True)  # exactly 16 MP: the largest accepted
    parents = [await _parent(stack, demo_family(n)) for n in range(1, 9)]
    await parents[0].upload("mother_id_front", photo, filename="id.png")  # warm: first-use allocations
    alone = PeakMemory()
    await parents[0].upload("mother_id_front", photo, filename="id.png")
    one = alone.stop()
    together = PeakMemory()
    await asyncio.gather(*(p.upload("mother_id_back", photo, filename="id.png") for p in parents))
    eight = together.stop()
    # Measured: one +128 MB; eight at once +336 MB (decoding all eight at once: +995 MB).
    assert eight < 4 * one, (one, eight)


async def test_with_redis_away_logins_are_still_limited_and_never_a_500(tmp_path: Path) -> None:
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    async with running_stack(tmp_path / "var", nothing_there) as stack:
        await stack.in_store(seed_demo_staff, stack.service)
        async with from_address("127.0.0.2") as attacker:
            statuses = [
                (await staff_login(stack, attacker, "issuer2", f"guess-{n}")).status for n in range(6)
            ]
        assert statuses == [401] * 5 + [429]
        owner = StaffClient(stack.session, stack.api, check=stack.check)
        assert (await owner.login("issuer2", DEMO_PASSWORD))["role"] == "issuer"
        assert (await wechat_login(stack, "oParent"))[0] == 200
