"""The app's components (``web.AppKey``s) and the few ways handlers reach them.

Everything blocking runs off the event loop: the event store on its own executor (one thread on
SQLite), WeChat and file work on another. ``run_command`` is the path of every command: authenticate,
Idempotency-Key (answered from the store if answered before), the service method in the store executor
(under a key, its answer recorded in the same transaction; stored together with the commands that arrive
with it: group commit, decision 0027), wake the projections, wait until the
status view has it (read-your-writes), answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from backend.auth import TokenIssuer, TokenKeys, authenticate
from backend.channels import ProvincialApp
from backend.config import Config
from backend.errors import BadRequest
from backend.group_commit import GroupCommit
from backend.idempotency import Idempotency, KeyedRequest
from backend.redis_server import RedisHandle
from backend.registry import PopulationRegistry
from backend.storage import BlobStore
from backend.wechat import WeChat
from domain.idempotency import IdempotencyRecord, IdempotentRequest
from domain.policy import WorkingCalendar
from domain.service import Applications, Outcome
from domain.values import Actor, Role
from projections.leader import Leadership
from projections.runner import Follower, LogFollower
from projections.sql import SqlParkingLot
from projections.status import StatusView

log = logging.getLogger("birthcert.http")

P = ParamSpec("P")
T = TypeVar("T")

CONFIG = web.AppKey("config", Config)
STORE_EXECUTOR = web.AppKey("store_executor", ThreadPoolExecutor)
IO_EXECUTOR = web.AppKey("io_executor", ThreadPoolExecutor)
APPLICATIONS = web.AppKey("applications", Applications)
REDIS = web.AppKey("redis", RedisHandle)
# The asyncio Redis client of the views, the queue, staff login and the EMS process (not of idempotency).
REDIS_CLIENT = web.AppKey("redis_client", aioredis.Redis)
TOKEN_KEYS = web.AppKey("token_keys", TokenKeys)
TOKENS = web.AppKey("tokens", TokenIssuer)
# The provincial apps configured (粤省事, 北京通, …; docs/decisions/0030), by channel name.
CHANNELS = web.AppKey("channels", dict[str, ProvincialApp])
WECHAT = web.AppKey("wechat", WeChat)
BLOBS = web.AppKey("blobs", BlobStore)
IDEMPOTENCY = web.AppKey("idempotency", Idempotency)
STATUS_VIEW = web.AppKey("status_view", StatusView)
STATUS_FOLLOWER = web.AppKey("status_follower", LogFollower)
# Commands stored together when they arrive together (decision 0027).
GROUP_COMMIT = web.AppKey("group_commit", GroupCommit)
REGISTRY = web.AppKey("registry", PopulationRegistry)
# Every follower of the log in this process: a command wakes the status view's at once (read-your-writes)
# and the others a moment later, together (FOLLOWER_WAKEUPS); /readyz and /metrics report each.
FOLLOWERS = web.AppKey("followers", list)
# The lease among the service's processes: the followers that must run once run on its holder only.
LEADERSHIP = web.AppKey("leadership", Leadership)
# Where followers record the events they park (projections.sql.SqlParkingLot).
PARKING = web.AppKey("parking", SqlParkingLot)
HTTP = web.AppKey("http", aiohttp.ClientSession)
# Working days: the official schedules loaded under the data directory, chinesecalendar, the statutory estimate.
WORKING_CALENDAR = web.AppKey("working_calendar", WorkingCalendar)

# How long a command waits for the status view to show it before answering anyway.
READ_YOUR_WRITES_SECONDS = 2.0
# The followers no answer waits for are woken at most this often after commands (larger pages, less
# competition with the command path; decision 0027). They also poll on their own.
BEHIND_COMMANDS_SECONDS = 0.05


class Wakeups:
    """Wakes every follower once, ``delay`` after the first command that asked since the last time."""

    def __init__(self, followers: list[LogFollower], delay: float = BEHIND_COMMANDS_SECONDS) -> None:
        self.followers = followers
        self.delay = delay
        self._pending: asyncio.TimerHandle | None = None

    def soon(self) -> None:
        """Wake them all a moment from now (once, however many commands ask meanwhile)."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self.delay, self._wake)

    def _wake(self) -> None:
        self._pending = None
        for follower in self.followers:
            follower.wake()


FOLLOWER_WAKEUPS = web.AppKey("follower_wakeups", Wakeups)


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response serialised with orjson (the one encoder)."""
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


async def in_store(request: web.Request, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call the (synchronous) event store off the loop, on its own executor, for at most the store deadline.

    While PostgreSQL fails over, the library retries a statement and its pool waits for a connection (up to
    ~50 s in all): past ``BIRTHCERT_STORE_DEADLINE_SECONDS`` the request is answered 503 with Retry-After
    (``TimeoutError``) instead of hanging. A call still queued is dropped; one already running may still
    commit, which a retry under the same Idempotency-Key then finds and answers (decision 0026).
    """
    loop = asyncio.get_running_loop()
    call = loop.run_in_executor(request.app[STORE_EXECUTOR], lambda: fn(*args, **kwargs))
    return await asyncio.wait_for(call, request.app[CONFIG].store_deadline_seconds)


async def in_io(request: web.Request, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call blocking I/O (WeChat through wechatpy, files, image decoding) off the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[IO_EXECUTOR], lambda: fn(*args, **kwargs))


def actor_of(request: web.Request, *roles: Role) -> Actor:
    """The authenticated actor, whose role must be one of ``roles``."""
    return authenticate(request, request.app[TOKENS], *roles)


# A non-negative number in ASCII digits (str.isdigit() also takes "²" and "١٢").
_ASCII_NUMBER = re.compile(r"[0-9]{1,18}")


def query_limit(request: web.Request, default: int, most: int) -> int:
    """``?limit=`` as a page size from 1 to ``most`` (ASCII digits); anything else is a 400, not clamped."""
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not _ASCII_NUMBER.fullmatch(raw) or not 1 <= int(raw) <= most:
        raise BadRequest(f"limit 应为1到{most}之间的整数", code="invalid_limit")
    return int(raw)


def expected_version(request: web.Request) -> int | None:
    """``If-Match: <version>`` (an ETag, quoted or not) as the version the client last saw."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not _ASCII_NUMBER.fullmatch(text):
        raise BadRequest("If-Match 应为申请的版本号", code="invalid_if_match")
    return int(text)


Answer = Callable[[Outcome], web.Response]


async def run_command(
    request: web.Request,
    actor: Actor,
    fingerprint: bytes,
    command: Callable[[], Outcome],
    answer: Answer | None = None,
    *,
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> web.Response:
    """The path of one command, once per Idempotency-Key (backend/idempotency.py).

    ``prepare`` is what must happen before the command but never again for a request already answered
    (a paid WeChat call): it runs only when the command is about to. ``answer`` turns the outcome into
    the response, synchronously and without I/O: under a key it runs just before the save, in the store
    thread, and what it gives is recorded with the command's events.
    """
    respond = answer or version_answer
    service = request.app[APPLICATIONS]
    keyed = KeyedRequest.of(request, actor.id, fingerprint, service)
    if keyed is None:
        if prepare is not None:
            await prepare()
        outcome = await committed(request, command)
        await caught_up(request, outcome.position)
        return respond(outcome)
    answered: list[web.Response] = []

    def recorded_answer(outcome: Outcome) -> dict[str, Any]:
        answered.append(respond(outcome))
        return keyed.recorded(answered[-1])

    async def execute() -> web.Response:
        if prepare is not None:
            await prepare()
        once = IdempotentRequest(keyed.record_id, keyed.digest, recorded_answer)
        outcome = await committed(request, lambda: service.run_once(once, command))
        await caught_up(request, outcome.position)
        # The very answer recorded (the last one made: a command may try its save more than once).
        return answered[-1] if outcome.recorded else respond(outcome)

    async def lookup() -> IdempotencyRecord | None:
        return await in_store(request, service.get_recorded_answer, keyed.record_id)

    return await request.app[IDEMPOTENCY].run(keyed, lookup, execute)


async def committed(request: web.Request, command: Callable[[], Outcome]) -> Outcome:
    """Run a command on the store executor, stored together with the commands that arrive with it
    (group commit), or alone where the app has no ``GROUP_COMMIT``."""
    group = request.app.get(GROUP_COMMIT)
    if group is None:
        return await in_store(request, command)
    # The store deadline as for in_store: a command still queued when it passes is dropped (decision 0026).
    return await asyncio.wait_for(group.run(command), request.app[CONFIG].store_deadline_seconds)


async def caught_up(request: web.Request, position: int | None) -> None:
    """Wake the status view (the other followers a moment later, together) and wait (briefly) until it
    shows ``position``."""
    if position is None:
        return
    wakeups = request.app.get(FOLLOWER_WAKEUPS)
    if wakeups is not None:
        wakeups.soon()
    else:
        for other in request.app.get(FOLLOWERS, []):
            other.wake()
    follower = request.app[STATUS_FOLLOWER]
    if not await follower.wait_for(position, timeout=READ_YOUR_WRITES_SECONDS):
        log.warning("status view behind", extra={"position": position})


@contextlib.asynccontextmanager
async def following(app: web.Application, follower: LogFollower) -> AsyncIterator[None]:
    """Run ``follower`` in this process while the block runs (a view every process keeps: the queue, the
    worklist). It joins ``app[FOLLOWERS]`` where the app keeps that list, so every command wakes it; on the
    way out it stops after the page in hand (cancelled if that takes more than 5 s)."""
    followers = app.get(FOLLOWERS)
    if followers is not None:
        followers.append(follower)
    task = asyncio.create_task(follower.run(), name=f"{follower.name}-follower")
    try:
        yield
    finally:
        follower.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 5.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def follow_on_leader(app: web.Application, follower: Follower) -> None:
    """Declare a follower that must run once among all processes (a process with side effects, a table
    every process shares): it runs on the elected leader only, and every process reports it (decision 0024)."""
    app[FOLLOWERS].append(follower)
    app[LEADERSHIP].lead(follower.name, follower.run, follower.stop)


def version_answer(outcome: Outcome, status: int = 200, **extra: Any) -> web.Response:
    """``{id, state, version}`` with an ETag of the version (the next If-Match)."""
    state = getattr(outcome.aggregate, "state", None)
    body = {"id": str(outcome.id), "version": outcome.version, **({"state": state} if state else {}), **extra}
    return json_response(body, status=status, headers={"ETag": f'"{outcome.version}"'})
