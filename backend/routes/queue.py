"""The issuers' review queue over HTTP: the list (JSON) and its live changes (Server-Sent Events).

An issuer sees only the queue of the institution in their token; an auditor (read-only) names one
with ``?institution=CODE``. The list comes from ``projections.review_queue.ReviewQueueView``; the
stream relays the view's Pub/Sub channel of that institution: ``event: queue`` with
``{application_id, queue_state, version}`` (no personal data) per changed item, and a comment line
every ``HEARTBEAT_SECONDS`` so that proxies keep the connection open. A client going away ends the
stream quietly (no error is logged), and so does the server's shutdown (``queue_shutdown``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from backend.components import (
    APPLICATIONS,
    PARKING,
    REDIS_CLIENT,
    STORE_EXECUTOR,
    WORKING_CALENDAR,
    actor_of,
    following,
    json_response,
    query_limit,
)
from backend.errors import BadRequest, ViewRecovering
from domain.errors import Forbidden, InvalidValue
from domain.values import Actor
from projections.review_queue import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    QUEUE_STATES,
    ReviewQueueView,
    check_institution,
)
from projections.runner import LogFollower

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

QUEUE_VIEW = web.AppKey("queue_view", ReviewQueueView)
QUEUE_FOLLOWER = web.AppKey("queue_follower", LogFollower)
QUEUE_CLOSING = web.AppKey("queue_closing", asyncio.Event)

HEARTBEAT_SECONDS = 15.0
# How often a stream looks whether its client or the server is going away, between messages.
_CHECK_SECONDS = 1.0
_RETRY_MS = 5000


async def queue_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the review-queue view and its follower, running for the app's lifetime.

    The follower joins ``app[FOLLOWERS]`` (when the app keeps that list), so every command wakes it.
    """
    view = ReviewQueueView(
        app[REDIS_CLIENT], app[APPLICATIONS], app[STORE_EXECUTOR], calendar=app.get(WORKING_CALENDAR)
    )
    follower = LogFollower(
        app[APPLICATIONS], view, executor=app[STORE_EXECUTOR], name="review-queue", parking=app.get(PARKING)
    )
    app[QUEUE_VIEW], app[QUEUE_FOLLOWER] = view, follower
    app[QUEUE_CLOSING] = asyncio.Event()
    async with following(app, follower):
        yield
        app[QUEUE_CLOSING].set()


async def queue_shutdown(app: web.Application) -> None:
    """``on_shutdown``: end the open event streams now rather than after the shutdown timeout."""
    closing = app.get(QUEUE_CLOSING)
    if closing is not None:
        closing.set()


def _institution(request: web.Request, actor: Actor) -> str:
    """The institution whose queue the caller may read: an issuer's own, or the one an auditor names."""
    asked = request.query.get("institution")
    if actor.role == "auditor":
        if not asked:
            raise BadRequest("审计人员请用 institution 参数指定机构", code="institution_required")
        try:
            return check_institution(asked)
        except InvalidValue:
            raise BadRequest("机构代码为4到16位大写字母或数字", code="invalid_institution_code") from None
    own = actor.institution or ""
    if asked and asked.strip().upper() != own.upper():
        raise Forbidden("只能查看本机构的审核队列")
    return check_institution(own)


def _filters(request: web.Request) -> dict[str, Any]:
    query = request.query
    state = query.get("state") or None
    if state is not None and state not in QUEUE_STATES:
        raise BadRequest(f"state 应为 {'、'.join(QUEUE_STATES)} 之一", code="invalid_state_filter")
    limit = query_limit(request, DEFAULT_LIMIT, MAX_LIMIT)
    return {
        "state": state,
        "overdue": _flag(request, "overdue"),
        # 出生一件事's time limit passed with a department still to answer (decision 0049).
        "second_overdue": _flag(request, "bundle_overdue"),
        "cursor": query.get("cursor") or None,
        "limit": limit,
    }


def _flag(request: web.Request, name: str) -> bool | None:
    text = request.query.get(name)
    if not text:
        return None
    if text not in ("true", "false"):
        raise BadRequest(f"{name} 应为 true 或 false", code=f"invalid_{name}_filter")
    return text == "true"


@routes.get("/api/v1/review/queue")
async def review_queue(request: web.Request) -> web.Response:
    """The institution's queue, oldest submission first, with counts per queue state and overdue."""
    actor = actor_of(request, "issuer", "auditor")
    institution = _institution(request, actor)
    filters = _filters(request)
    follower = request.app.get(QUEUE_FOLLOWER)
    if follower is not None and follower.recovering:
        # The queue was lost (Redis flushed or replaced) and is being rebuilt: it would miss applications.
        raise ViewRecovering()
    page = await request.app[QUEUE_VIEW].list(institution, **filters)
    return json_response(page, headers={"Cache-Control": "no-store"})


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@routes.get("/api/v1/review/queue/events")
async def review_queue_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: one ``queue`` event per changed item of the institution's queue."""
    actor = actor_of(request, "issuer", "auditor")
    institution = _institution(request, actor)
    view = request.app[QUEUE_VIEW]
    closing = request.app.get(QUEUE_CLOSING) or asyncio.Event()
    pubsub = view.redis.pubsub(ignore_subscribe_messages=True)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    try:
        # Subscribed before the first byte: a client that has read it misses no later change.
        await pubsub.subscribe(view.channel(institution))
        await response.prepare(request)
        await response.write(f"retry: {_RETRY_MS}\n: subscribed\n\n".encode())
        next_beat = time.monotonic() + HEARTBEAT_SECONDS
        while not closing.is_set() and not _gone(request):
            wait = min(_CHECK_SECONDS, max(next_beat - time.monotonic(), 0.0))
            message = await pubsub.get_message(timeout=wait)
            if message is not None and message.get("type") == "message":
                data = message["data"]
                await response.write(b"event: queue\ndata: " + _bytes(data) + b"\n\n")
            if time.monotonic() >= next_beat:
                await response.write(b": heartbeat\n\n")
                next_beat = time.monotonic() + HEARTBEAT_SECONDS
    except ConnectionResetError:
        pass  # the client went away mid-write (aiohttp's ClientConnectionResetError is one)
    finally:
        with contextlib.suppress(Exception):
            await pubsub.unsubscribe()
        with contextlib.suppress(Exception):
            await pubsub.aclose()
    return response


def _bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    return str(data).encode()
