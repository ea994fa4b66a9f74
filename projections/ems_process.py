"""The EMS process: every issued EMS certificate gets a pickup booked and its waybill recorded, once.

A process is a ``View`` whose ``apply`` has side effects. For each ``Issued``, ``Reissued`` or ``CertificateReplaced`` of an
application whose delivery method is EMS, it books a pickup (揽件) with the recipient of the aggregate
at that version and the institution of its delivery record, then records ``Applications.dispatch``
with the waybill number (邮件号), on the store executor. It also keeps the index the issuer's daily
pickup list (揽件清单) is read from, from every ``Dispatched`` event — automatic or by hand.

Exactly once per event, across restarts and racing followers:
- the position is in Redis and only ever moves forward (one Lua script, with the page's index entries);
  it is written right after each booked-and-recorded event, so a failure redoes no earlier event;
- the order id is the application id plus the version of the issue event, and EMS answers the same
  waybill for the same order id;
- one process books at a time: the process runs on the elected leader only, the lease is checked before
  each booking and the position's script refuses an older leader's term (decision 0024);
- the waybill is kept under ``bc:ems:booked:<app id>:<version>`` as soon as EMS answers, so a restart
  between booking and recording reuses it without asking EMS again;
- nothing is booked unless the application, as it is now, still waits in state ``issued`` with that
  certificate number (an issuer may have dispatched by hand; a later reissue has its own event), and a
  dispatch that loses the race to a hand-made one is skipped.

EMS being down (``EmsUnavailable``) makes ``apply`` raise: the follower retries the same event with
backoff and never moves past it. A booking EMS refuses outright (``EmsRejected``, e.g. an address it
does not serve) is recorded under ``bc:ems:rejected:<app id>:<version>`` and logged, and the process
goes on: the issuer sees the certificate still waiting and dispatches it by hand.

Keys (``key_prefix`` defaults to ``bc:``):
- ``bc:ems:position``: the last notification id handled
- ``bc:ems:booked:<app id>:<version>``: the waybill booked for that issue (kept by ``reset``)
- ``bc:ems:rejected:<app id>:<version>``: why EMS refused that booking (JSON; kept by ``reset``)
- ``bc:ems:dispatched:<institution code>:<YYYY-MM-DD>``: sorted set of ``<app id>:<version of Dispatched>``
  scored by the dispatch time (ms since epoch), per day in Asia/Shanghai
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import redis.asyncio as aioredis
from eventsourcing.application import AggregateNotFoundError

from backend.ems import EmsPort, EmsRejected, PickupRecipient, Sender, order_id_for
from domain.application import ISSUED, BirthCertificateApplication
from domain.errors import Conflict, RuleViolated
from domain.service import Applications
from domain.values import Actor
from projections.leader import FENCE_LUA, fenced_args, refused
from projections.redis_view import delete_prefix, stored_position
from projections.runner import DomainEvent, Fence, Fenced, Page

log = logging.getLogger(__name__)

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
PROCESS_ACTOR: Final = Actor(id="ems-process", role="system")
T = TypeVar("T")

# KEYS: position, n index keys, the fence key. ARGV: new position, n, n members, n scores, the position it
# moves from, the leader's term (FENCE_LUA).
COMMIT_LUA: Final = (
    FENCE_LUA
    + """
local n = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[3 + 2 * n]) then
  return 0
end
for i = 1, n do
  redis.call('ZADD', KEYS[1 + i], ARGV[2 + n + i], ARGV[2 + i])
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
)

# Every print on a new blank of an EMS application is a parcel to book: a first issue, a reissue after a
# loss, a replacement of a misprinted or damaged certificate (sent again to the parent, 粤卫办 五(一)).
_ISSUES = (
    BirthCertificateApplication.Issued,
    BirthCertificateApplication.Reissued,
    BirthCertificateApplication.CertificateReplaced,
)


@dataclass(frozen=True)
class Pickup:
    """What one booking needs (recipient: personal data, never logged)."""

    order_id: str
    sender: Sender
    recipient: PickupRecipient


@dataclass(frozen=True)
class DispatchEntry:
    """One ``Dispatched`` event in the daily index."""

    institution: str
    day: date
    member: str
    score: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class DispatchIndex:
    """The applications each institution dispatched by EMS each day (Asia/Shanghai), read side."""

    def __init__(self, redis: aioredis.Redis, *, key_prefix: str = "bc:") -> None:
        self.redis = redis
        self.prefix = f"{key_prefix}ems:dispatched:"

    def key(self, institution: str, day: date) -> str:
        """The sorted set of one institution's day."""
        return f"{self.prefix}{institution.strip().upper()}:{day.isoformat()}"

    async def dispatched_on(self, institution: str, day: date) -> list[tuple[UUID, int]]:
        """``(application id, version of its Dispatched event)`` in dispatch order."""
        raw = await self.redis.zrange(self.key(institution, day), 0, -1)
        out = []
        for member in raw:
            app_id, _, version = _text(member).rpartition(":")
            out.append((UUID(app_id), int(version)))
        return out


class EmsProcess:
    """Books EMS pickups for issued certificates and records the waybills: a ``View`` for ``LogFollower``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        applications: Applications,
        executor: Executor,
        ems: EmsPort,
        *,
        actor: Actor = PROCESS_ACTOR,
        callback_url: str,
        key_prefix: str = "bc:",
        fence: Fence | None = None,
    ) -> None:
        if actor.role not in ("system", "ems"):
            raise ValueError("the EMS process acts as a system (or ems) actor")
        self.redis = redis
        self.applications = applications
        self.executor = executor
        self.ems = ems
        self.actor = actor
        self.callback_url = callback_url
        # The leader's term (projections.leader): a commit under an older one is refused, and no pickup is
        # booked by a process that does not lead.
        self.fence = fence
        self.key_prefix = key_prefix
        self.prefix = f"{key_prefix}ems:"
        self.position_key = f"{self.prefix}position"
        self.index = DispatchIndex(redis, key_prefix=key_prefix)
        self._commit_script = redis.register_script(COMMIT_LUA)

    # ------------------------------------------------------------------ keys

    def booked_key(self, app_id: UUID | str, version: int) -> str:
        """Where the waybill booked for one issue is kept."""
        return f"{self.prefix}booked:{UUID(str(app_id))}:{int(version)}"

    def rejected_key(self, app_id: UUID | str, version: int) -> str:
        """Where EMS's refusal of one issue's booking is kept."""
        return f"{self.prefix}rejected:{UUID(str(app_id))}:{int(version)}"

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id handled (0 before any)."""
        return await stored_position(self.redis, self.position_key)

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Handle the page's issues one by one, moving the position past each (each move only on top of
        the last: compare-and-set from ``start``); index its dispatches."""
        if end is None:
            end = page[-1][0] if page else start
        if await self.position() != start:
            return False
        at = start
        pending: list[tuple[int, DomainEvent]] = []
        for position, event in page:
            if isinstance(event, BirthCertificateApplication.Dispatched):
                pending.append((position, event))
            elif isinstance(event, _ISSUES):
                await self._handle_issue(event, position)
                if not await self._commit(at, position, pending):
                    return False  # another follower moved it: it has done the rest
                at, pending = position, []
        return await self._commit(at, end, pending) if end > at or pending else True

    async def reset(self) -> None:
        """Forget the position and the daily index (both rebuilt from the log); keep what EMS was told."""
        await delete_prefix(self.redis, self.index.prefix, position_key=self.position_key)

    # ------------------------------------------------------------------ internals

    async def _in_store(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, fn)

    async def _commit(self, start: int, position: int, dispatched: Sequence[tuple[int, DomainEvent]]) -> bool:
        """Move from ``start`` to ``position`` with the index entries of ``dispatched``; False (nothing
        written) when the position is not ``start``."""
        entries = await self._in_store(lambda: self._dispatch_entries(dispatched)) if dispatched else []
        keys = [self.position_key, *(self.index.key(e.institution, e.day) for e in entries)]
        args: list[str | int] = [position, len(entries)]
        args += [e.member for e in entries]
        args += [e.score for e in entries]
        args.append(start)
        fence, term = fenced_args(self.fence, self.key_prefix)
        answer = await self._commit_script(keys=[*keys, fence], args=[*args, term])
        if refused(answer):
            raise Fenced("the EMS position refused a commit under an old term")
        return bool(answer)

    def _dispatch_entries(self, dispatched: Sequence[tuple[int, DomainEvent]]) -> list[DispatchEntry]:
        """On the executor: the institution and Shanghai day of each EMS dispatch."""
        entries = []
        for _, event in dispatched:
            if getattr(event, "carrier", "EMS") != "EMS":
                continue
            app_id = UUID(str(event.originator_id))
            app: object = self.applications.get_as_stored(app_id, event.originator_version)
            if not isinstance(app, BirthCertificateApplication) or app.institution is None:
                continue
            stamp = getattr(event, "timestamp", None)
            moment = stamp if isinstance(stamp, datetime) else datetime.now(SHANGHAI)
            entries.append(
                DispatchEntry(
                    institution=app.institution,
                    day=moment.astimezone(SHANGHAI).date(),
                    member=f"{app_id}:{event.originator_version}",
                    score=int(moment.timestamp() * 1000),
                )
            )
        return entries

    async def _handle_issue(self, event: DomainEvent, position: int) -> None:
        app_id = UUID(str(event.originator_id))
        version = event.originator_version
        number = str(getattr(event, "certificate_number", ""))
        pickup = await self._in_store(lambda: self._plan(app_id, version, number))
        if pickup is None:
            return
        key = self.booked_key(app_id, version)
        stored = await self.redis.get(key)
        if stored is not None:
            waybill = _text(stored)
        else:
            fenced_args(self.fence, self.key_prefix)  # the lease, checked just before the booking
            try:
                waybill = await self.ems.book_pickup(
                    order_id=pickup.order_id,
                    sender=pickup.sender,
                    recipient=pickup.recipient,
                    callback_url=self.callback_url,
                )
            except EmsRejected as refusal:
                log.error(
                    "EMS refused the pickup of the issue at position %d (%s): dispatch it by hand",
                    position,
                    refusal.code,
                )
                await self.redis.set(
                    self.rejected_key(app_id, version),
                    orjson.dumps(
                        {"order_id": pickup.order_id, "code": refusal.code, "message": refusal.message}
                    ),
                )
                return
            await self.redis.set(key, waybill)
        recorded = await self._in_store(lambda: self._record(app_id, number, waybill))
        if not recorded:
            log.warning(
                "pickup booked for the issue at position %d but it was dispatched otherwise", position
            )

    def _plan(self, app_id: UUID, version: int, number: str) -> Pickup | None:
        """On the executor: the booking for this issue, or None when there is nothing to book."""
        try:
            at: object = self.applications.repository.get(app_id, version=version)
            now: object = self.applications.repository.get(app_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(at, BirthCertificateApplication) or not isinstance(
            now, BirthCertificateApplication
        ):
            return None
        method: dict[str, Any] | None = at.delivery_method
        if method is None or method.get("method") != "ems" or not method.get("recipient"):
            return None
        if not _still_waiting(now, number):
            return None  # dispatched already (by us before a restart, or by hand), or reissued since
        record = at.record or {}
        sender = Sender(
            institution_code=str(record.get("institution_code") or at.institution or ""),
            institution_name=str(record.get("institution_name") or ""),
        )
        recipient = method["recipient"]
        return Pickup(
            order_id=order_id_for(app_id, version),
            sender=sender,
            recipient=PickupRecipient(
                name=str(recipient["name"]), phone=str(recipient["phone"]), address=str(recipient["address"])
            ),
        )

    def _record(self, app_id: UUID, number: str, waybill: str) -> bool:
        """On the executor: record the dispatch; False when someone else dispatched it first."""
        try:
            self.applications.dispatch(self.actor, app_id, tracking_number=waybill)
        except (RuleViolated, Conflict):
            now: object = self.applications.repository.get(app_id)
            if isinstance(now, BirthCertificateApplication) and _still_waiting(now, number):
                raise  # a race with some other change: the follower retries
            return False
        return True


def _still_waiting(app: BirthCertificateApplication, number: str) -> bool:
    return app.state == ISSUED and app.certificate_number == number


__all__ = ["PROCESS_ACTOR", "DispatchIndex", "EmsProcess", "Pickup"]
