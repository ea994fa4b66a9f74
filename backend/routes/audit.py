"""Auditors: the complete history of an application, proof bundles, checkpoints, consistency proofs.

At start the log is checked against the last signed checkpoint; on a mismatch the service refuses
every write (503 ``integrity_failure``, naming the position) until an operator has looked. Staff
can still log in (that writes nothing to the store) and read ``/api/v1/audit/integrity``; an
auditor's full reading, which must be recorded first, is refused too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from backend.auth import TokenKeys
from backend.components import (
    APPLICATIONS,
    CONFIG,
    FOLLOWERS,
    LEADERSHIP,
    STORE_EXECUTOR,
    actor_of,
    caught_up,
    follow_on_leader,
    in_store,
    json_response,
)
from backend.config import Config
from backend.errors import BadRequest, problem
from backend.headers import content_disposition
from domain.application import BirthCertificateApplication
from domain.errors import NotFound
from domain.service import Outcome
from domain.values import Actor
from projections.audit_log import AuditLog, CheckResult, IntegrityError
from projections.runner import Fenced, LogFollower
from projections.sql import Database

log = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
routes = web.RouteTableDef()

AUDIT_LOG = web.AppKey("audit_log", AuditLog)
AUDIT_FOLLOWER = web.AppKey("audit_follower", LogFollower)
INTEGRITY = web.AppKey("integrity", CheckResult)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POSTs that write nothing to the event store: staff must still be able to log in during an incident,
# or nobody could read /api/v1/audit/integrity (login touches only Redis's throttle records).
STORE_NEUTRAL_POSTS = frozenset({"/api/v1/auth/staff"})
# How often the checkpoint duty looks at the log for unsigned leaves (BIRTHCERT_CHECKPOINT_LEAVES).
CHECKPOINT_POLL_SECONDS = 5.0
LOG_KEY_ENV, LOG_PREVIOUS_KEY_ENV = "BIRTHCERT_LOG_KEY", "BIRTHCERT_LOG_PREVIOUS_KEY"


def log_signing_keys(config: Config) -> TokenKeys:
    """The audit log's Ed25519 keys: from the environment in production, else development files."""
    if os.environ.get(LOG_KEY_ENV):
        return TokenKeys.from_pem(os.environ[LOG_KEY_ENV], os.environ.get(LOG_PREVIOUS_KEY_ENV) or None)
    return TokenKeys.load_or_create(config.log_key_dir, environ={})


def open_audit_log(config: Config, applications: Any, executor: Any) -> AuditLog:
    """The audit log over the event store's database (blocking: call it on the store executor)."""
    from projections.status import derive_pseudonym_key

    return AuditLog(
        Database.open(config.event_store_env()),
        applications,
        executor,
        pseudonym_key=derive_pseudonym_key(config.index_key + b"audit"),
        origin=config.log_origin,
        signing_keys=log_signing_keys(config).private_keys(),
    )


async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the audit log, check it against the last checkpoint, follow the event log, sign checkpoints."""
    loop = asyncio.get_running_loop()
    executor = app[STORE_EXECUTOR]
    audit = await loop.run_in_executor(executor, open_audit_log, app[CONFIG], app[APPLICATIONS], executor)
    app[AUDIT_LOG] = audit
    # A store from before the stored tree gets its nodes once, streamed, a batch per transaction (0029).
    await loop.run_in_executor(executor, audit.complete_tree)
    result = await loop.run_in_executor(executor, functools.partial(audit.check, thorough=False))
    app[INTEGRITY] = result
    if not result.ok:
        log.error(
            "audit log check failed: writes refused",
            extra={"position": result.position, "detail": result.message},
        )
    # Never parks (the log's order matters): a failing event stops it, and /readyz says so.
    follower = LogFollower(app[APPLICATIONS], audit, executor=executor, name="audit-log")
    app[AUDIT_FOLLOWER] = follower
    leadership = app[LEADERSHIP]
    audit.db.fence = leadership  # leaves and position appended under the leader's term only
    if result.ok:
        # A store that does not match its log is not logged further: whatever follows the last leaf
        # (possibly events added while the service was down) stays out of the log for the operator.
        # Appended and signed by the elected leader only (decision 0024).
        follow_on_leader(app, follower)
        leadership.lead("audit-checkpoints", functools.partial(_checkpoints, app))
    else:
        app[FOLLOWERS].append(follower)  # reported (its stored position), never run
    yield
    await leadership.close()  # (already done on shutdown) before the audit log's connection closes
    await loop.run_in_executor(executor, audit.db.close)


async def _checkpoints(app: web.Application) -> None:
    """Sign a checkpoint whenever the log has grown, every BIRTHCERT_CHECKPOINT_SECONDS, and sooner when
    BIRTHCERT_CHECKPOINT_LEAVES leaves are unsigned (a catch-up appends thousands a second); once more when the
    duty stops while this process still leads. The next start-up checks every unsigned leaf in full
    (decision 0029), so this bounds that check after a kill -9 and makes it nothing after a clean stop."""
    loop = asyncio.get_running_loop()
    executor, audit, leadership = app[STORE_EXECUTOR], app[AUDIT_LOG], app[LEADERSHIP]
    period, enough = app[CONFIG].checkpoint_seconds, app[CONFIG].checkpoint_leaves
    # Signed under the leader's term: a paused old leader's duty signs nothing once another leads.
    sign = functools.partial(audit.make_checkpoint, leadership)
    signed_at = time.monotonic()
    try:
        while True:
            await asyncio.sleep(min(period, CHECKPOINT_POLL_SECONDS))
            try:
                due = time.monotonic() - signed_at >= period
                if not due:
                    due = await loop.run_in_executor(executor, audit.unsigned_leaves) >= enough
                if due:
                    await loop.run_in_executor(executor, sign)
                    signed_at = time.monotonic()
            except Fenced:
                raise  # this process no longer leads: it steps down
            except Exception as error:
                log.warning("checkpoint failed (%s)", type(error).__name__)
    except asyncio.CancelledError:
        if leadership.term is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(loop.run_in_executor(executor, sign))
        raise


def integrity_failure(message: str, position: int | None) -> web.Response:
    """503 ``integrity_failure``: the store does not match its signed log."""
    return problem(
        503,
        "integrity_failure",
        "数据完整性校验未通过",
        f"事件存储与已签名的审计日志不一致，暂停所有写入：{message}",
        position=position,
    )


@web.middleware
async def integrity_guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """While the store does not match its signed log, refuse every write (staff login excepted)."""
    result = request.app.get(INTEGRITY)
    if (
        result is not None
        and not result.ok
        and request.method in WRITE_METHODS
        and request.path not in STORE_NEUTRAL_POSTS
    ):
        return integrity_failure(result.message, result.position)
    try:
        return await handler(request)
    except IntegrityError as error:
        return integrity_failure(str(error), None)


async def record_reading(request: web.Request, actor: Actor, app_id: uuid.UUID, what: str) -> Outcome:
    """An auditor is about to read an application's personal data in full: record who, what, when first.

    Nothing is recorded (and so nothing read) while the store does not match its signed log.
    """
    result = request.app.get(INTEGRITY)
    if result is not None and not result.ok:
        raise IntegrityError(f"{result.message} (position {result.position})")
    service = request.app[APPLICATIONS]
    outcome: Outcome = await in_store(request, service.record_personal_data_viewed, actor, app_id, what=what)
    return outcome


def _app_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["app_id"])
    except ValueError:
        raise NotFound() from None


def _event_json(event: Any, position: int | None, leaf_index: int | None) -> dict[str, Any]:
    data = {
        k: v
        for k, v in vars(event).items()
        if k not in ("originator_id", "originator_version", "timestamp", "actor", "originator_topic")
    }
    return {
        "version": event.originator_version,
        "event": type(event).__name__,
        "at": event.timestamp.astimezone(SHANGHAI).isoformat(),
        "actor": getattr(event, "actor", None),
        "position": position,
        "leaf_index": leaf_index,
        "data": data,
    }


def full_history(audit: AuditLog, actor: Actor, app_id: uuid.UUID) -> dict[str, Any]:
    """Every event decrypted, with its position and leaf (on the store executor)."""
    events = audit.applications.get_history(actor, app_id)
    leaves = {entry["version"]: entry for entry in audit.leaves_of(app_id)}
    items = []
    for event in events:
        entry = leaves.get(event.originator_version)
        items.append(
            _event_json(event, entry["position"] if entry else None, entry["index"] if entry else None)
        )
    return {"application_id": str(app_id), "events": items}


@routes.get("/api/v1/audit/applications/{app_id}/events")
async def application_events(request: web.Request) -> web.Response:
    """The complete history, decrypted for the auditor; the reading itself is recorded first."""
    actor = actor_of(request, "auditor")
    app_id = _app_id(request)
    result = request.app.get(INTEGRITY)
    if result is not None and not result.ok:
        # The reading must be recorded before it happens, and nothing is written to a store
        # that no longer matches its signed log.
        return integrity_failure(result.message, result.position)
    service = request.app[APPLICATIONS]
    await in_store(request, service.get_application, actor, app_id)
    outcome = await record_reading(request, actor, app_id, "events")
    follower = request.app[AUDIT_FOLLOWER]
    follower.wake()
    await follower.wait_for(outcome.position, timeout=2.0)
    await caught_up(request, outcome.position)
    history = await in_store(request, full_history, request.app[AUDIT_LOG], actor, app_id)
    return json_response(history, headers={"Cache-Control": "no-store"})


@routes.get("/api/v1/audit/applications/{app_id}/proof")
async def application_proof(request: web.Request) -> web.Response:
    """A self-contained bundle (leaves, inclusion proofs, the signed checkpoint) to verify offline."""
    actor_of(request, "auditor")
    app_id = _app_id(request)
    result = request.app.get(INTEGRITY)
    if result is None or result.ok:
        follower = request.app[AUDIT_FOLLOWER]
        position = await in_store(request, request.app[APPLICATIONS].recorder.max_notification_id)
        follower.wake()
        await follower.wait_for(position, timeout=2.0)
    # Whether this is an application is read from its leaves, not by decrypting its events: the
    # bundle must still be available when a stored event was altered and no longer decrypts —
    # that is when an auditor needs it most (it then fails verification, naming the position).
    audit = request.app[AUDIT_LOG]
    leaves = await in_store(request, audit.leaves_of, app_id)
    if not leaves or leaves[0]["leaf"]["topic"] != BirthCertificateApplication.ApplicationStarted.TOPIC:
        raise NotFound()
    bundle = await in_store(request, audit.proof_bundle, app_id)
    return json_response(
        bundle,
        headers={
            "Content-Disposition": content_disposition("attachment", f"proof-{app_id}.json"),
            "Cache-Control": "no-store",
        },
    )


@routes.get("/api/v1/audit/checkpoint")
async def checkpoint(request: web.Request) -> web.Response:
    """The latest signed checkpoint (``?fresh=true`` signs one now if the log grew)."""
    actor_of(request, "auditor", "admin")
    audit = request.app[AUDIT_LOG]
    latest: dict[str, Any] | None = None
    if request.query.get("fresh") != "true":
        latest = await in_store(request, audit.latest_checkpoint)
    if latest is None:
        latest = await in_store(request, audit.make_checkpoint)
    return json_response(latest)


@routes.get("/api/v1/audit/consistency")
async def consistency(request: web.Request) -> web.Response:
    """A consistency proof between two tree sizes."""
    actor_of(request, "auditor", "admin")
    try:
        size1, size2 = int(request.query["from"]), int(request.query["to"])
    except (KeyError, ValueError):
        raise BadRequest("请提供整数参数 from 和 to", code="invalid_sizes") from None
    try:
        proof = await in_store(request, request.app[AUDIT_LOG].consistency, size1, size2)
    except ValueError as e:
        raise BadRequest(str(e), code="invalid_sizes") from None
    return json_response(proof)


@routes.get("/api/v1/audit/integrity")
async def integrity(request: web.Request) -> web.Response:
    """What the start-up check found."""
    actor_of(request, "auditor", "admin")
    result = request.app.get(INTEGRITY)
    return json_response(
        asdict(result) if result else {"ok": True, "checked_size": 0, "message": "not checked"}
    )
