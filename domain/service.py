"""Applications: the service layer. One method per command, each taking who acts.

Each command loads the aggregates it needs, checks ``expected_version`` (HTTP ``If-Match``),
calls the aggregates' command methods and saves everything it changed in ONE ``save()`` —
one transaction — together with any index aggregates that make a value unique. An index
aggregate's id is ``uuid5(INDEX_NAMESPACE, kind + ":" + HMAC-SHA256(index key, kind + ":" + value))``
(docs/decisions/0002-index-ids.md): creating it twice violates the store's own
(originator_id, version) key, so two racing commands cannot both use a certificate number, a
face-verification sequence number or a delivery record's first certificate. The HMAC keeps
personal values (ID numbers) out of the stored ids, which are not encrypted.

Every command saves through ``_commit``: a command run for a request under an Idempotency-Key
(``run_once``) saves that request's answer in the same transaction (an ``IdempotencyRecord`` whose
id is keyed the same way; docs/decisions/0014-idempotency-in-the-store.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar, cast
from uuid import UUID, uuid4, uuid5

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate, CanMutateProtocol, DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Recording

from domain.aggregate_cache import DEFAULT_MAXSIZE, AggregateCache
from domain.application import (
    CLOSED_STATES,
    FACE_PASS,
    ISSUED_STATES,
    BirthCertificateApplication,
    ParentDetails,
    Recipient,
)
from domain.channels import WECHAT
from domain.delivery import DeliveryFacts, DeliveryRecord, Institution
from domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidValue,
    NotEligibleOnline,
    NotFound,
    RuleViolated,
)
from domain.idempotency import IdempotencyRecord, IdempotentRequest
from domain.pickup import PickupWindow, Slot, bookable_slots, find_slot, parse_slot_ref, slot_ref
from domain.policy import (
    REASON_MESSAGES,
    Circumstances,
    WorkingCalendar,
    application_window_error,
    get_profile,
)
from domain.referral import Referral
from domain.staff import (
    AccessRecord,
    InstitutionRecord,
    StaffAccount,
    check_institution_code,
    check_username,
)
from domain.statistics import Scope
from domain.values import (
    Actor,
    CertificateNumber,
    CounterDetails,
    IdDocument,
    IdNumber,
    PersonName,
    as_id_document,
)
from domain.verification import VerificationRecord

log = logging.getLogger(__name__)

# Fixed forever: changing it (or the index key) would forget every used number.
INDEX_NAMESPACE = UUID("6f1c1b0e-8f4e-5b7a-9a51-3c2d0e5b9a10")
# The father's invitation code: 20 random bytes (160 bits), URL-safe base64 without padding (27 characters).
# Only its keyed digest is ever stored (docs/decisions/0011-father-invitation.md).
INVITATION_KIND = "father-invitation"
# A mother's applications that reported her delivery record missing, by her ID number (keyed like every index).
AWAITING_KIND = "delivery-awaited"
INVITATION_CODE_BYTES = 20
INVITATION_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{27}$")
# The counter's one-time code for a collector's face check: as random, as long, only its digest stored.
COLLECTOR_CHECK_KIND = "collector-check"
DELIVERY_ENTERED = "医院已录入您的分娩信息，请查看分娩信息并确认"
NOT_DELIVERY_MOTHER = (
    "未找到以该身份登记的分娩记录：只有医院分娩记录中的产妇本人可以申办；如医院尚未录入，请稍后再试"
)

A = TypeVar("A", bound=Aggregate)


class Index(Aggregate):
    """An index entry: ``kind`` of a keyed value → the ids that use it (usually exactly one)."""

    TOPIC = "birthcert:Index"

    class Event(Aggregate.Event):
        """Base of the index's events."""

    class IndexCreated(Event, Aggregate.Created):
        """The value was used for the first time, by ``ref``."""

        TOPIC = "birthcert:IndexCreated"
        kind: str
        ref: str

    Created = IndexCreated

    class RefAdded(Event):
        """Another id uses the value (multi-valued indexes only, e.g. a mother's deliveries)."""

        TOPIC = "birthcert:IndexRefAdded"
        ref: str

        def apply(self, index: Index) -> None:
            index.refs.append(self.ref)

    class RefRemoved(Event):
        """An id no longer uses the value."""

        TOPIC = "birthcert:IndexRefRemoved"
        ref: str

        def apply(self, index: Index) -> None:
            index.refs.remove(self.ref)

    def __init__(self, kind: str, ref: str) -> None:
        self.kind = kind
        self.refs = [ref]

    @classmethod
    def create(cls, index_id: UUID, kind: str, ref: str) -> Index:
        """A new index entry."""
        return cls._create(cls.IndexCreated, id=index_id, kind=kind, ref=ref)

    def add(self, ref: str) -> None:
        """Add a reference (no-op if present)."""
        if ref not in self.refs:
            self.trigger_event(self.RefAdded, ref=ref)

    def remove(self, ref: str) -> None:
        """Remove a reference (no-op if absent)."""
        if ref in self.refs:
            self.trigger_event(self.RefRemoved, ref=ref)


@dataclass(frozen=True)
class Outcome:
    """What a command did: the application (or record) id, its new version and the log position
    (``recorded``: whether a request's answer was recorded with it, see ``Applications.run_once``)."""

    id: UUID
    version: int
    position: int | None
    aggregate: Aggregate
    detail: str | None = None
    recorded: bool = False


class BatchBoundary(Exception):
    """A command of a batch reads an aggregate that an earlier command of the same batch changed: the
    batch is stored first, and the command runs again at the head of the next one."""


@dataclass
class _Deferred:
    """One command's events in a batch, waiting for the batch's transaction."""

    index: int
    collected: ProcessingEvent[UUID]
    outcome: Outcome
    conflict: Callable[[], DomainError] | None


@dataclass
class _Batch:
    """The commands of one group commit so far (``Applications.run_batch``)."""

    current: int = 0
    deferred: list[_Deferred] = field(default_factory=list)
    touched: set[UUID] = field(default_factory=set)

    def defer(
        self, collected: ProcessingEvent[UUID], outcome: Outcome, conflict: Callable[[], DomainError] | None
    ) -> None:
        self.deferred.append(_Deferred(self.current, collected, outcome, conflict))
        self.touched.update(collected.aggregates)


@dataclass(frozen=True)
class FaceVerdict:
    """A face check's recorded verdict: whose (``role``) and, when it did not pass, our failure code."""

    role: str
    failure: str | None


class Applications(Application[UUID]):
    """Birth Medical Certificate applications and delivery records: every command of the service."""

    name = "Applications"
    snapshotting_intervals = {BirthCertificateApplication: 50, DeliveryRecord: 50}  # noqa: RUF012

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        calendar: WorkingCalendar | None = None,
    ) -> None:
        super().__init__(dict(env) if env is not None else None)
        interval = int(self.env.get("BIRTHCERT_SNAPSHOT_INTERVAL", "50") or "50")
        if interval < 1:
            msg = "BIRTHCERT_SNAPSHOT_INTERVAL must be at least 1"
            raise ValueError(msg)
        # The class default switches snapshotting on; the interval is configurable per deployment.
        self.snapshotting_intervals = {  # type: ignore[misc]
            BirthCertificateApplication: interval,
            DeliveryRecord: interval,
        }
        key = self.env.get("BIRTHCERT_INDEX_KEY")
        if key:
            self._index_key = base64.b64decode(key)
        elif self.env.get("PERSISTENCE_MODULE", "eventsourcing.popo") in ("", "eventsourcing.popo"):
            self._index_key = os.urandom(32)  # an in-memory store forgets everything anyway
        else:
            msg = "BIRTHCERT_INDEX_KEY must be set for a persistent event store"
            raise ValueError(msg)
        self.default_province = self.env.get("BIRTHCERT_PROVINCE", "GD") or "GD"
        self.clock = clock or (lambda: datetime.now(UTC))
        # The request (Idempotency-Key) whose command this thread is running, if any: see run_once.
        self._running = threading.local()
        # Working days for the application window: the official schedules the deployment loaded.
        self.calendar = calendar or WorkingCalendar()
        # Aggregates as stored, each at its version: one load per command at most, none for the views.
        cache_size = int(self.env.get("BIRTHCERT_AGGREGATE_CACHE", str(DEFAULT_MAXSIZE)) or DEFAULT_MAXSIZE)
        self.aggregate_cache = AggregateCache(cache_size)

    # ------------------------------------------------------------------ plumbing

    def keyed_digest(self, kind: str, value: str) -> str:
        """HMAC-SHA256 (hex) of ``kind:value`` under the index key: a value that may be stored, never the value."""
        return hmac.new(self._index_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def index_id(self, kind: str, value: str) -> UUID:
        """The id of the index aggregate for ``value`` of ``kind`` (keyed, so no personal data shows)."""
        return uuid5(INDEX_NAMESPACE, f"{kind}:{self.keyed_digest(kind, value)}")

    def invitation_digest(self, code: str) -> str:
        """What the events hold of a father's invitation code: its keyed digest."""
        return self.keyed_digest(INVITATION_KIND, code)

    def _get(self, cls: type[A], aggregate_id: UUID | str) -> A:
        try:
            agg = self._latest(UUID(str(aggregate_id)))
        except (AggregateNotFoundError, ValueError):
            raise NotFound() from None
        if not isinstance(agg, cls):
            raise NotFound()
        return agg

    def _read(self, aggregate_id: UUID) -> None:
        """Before any read of an aggregate in a command: inside a batch, one that an earlier command of the
        batch changed (not stored yet) ends the batch first (``BatchBoundary``)."""
        batch: _Batch | None = getattr(self._running, "batch", None)
        if batch is not None and aggregate_id in batch.touched:
            raise BatchBoundary()

    def _latest(self, aggregate_id: UUID) -> Aggregate:
        """The aggregate as stored now, for a command to act on: the cached state fast-forwarded by the
        events stored after it (usually none: one indexed query), else rebuilt from the store. Either way
        the stored state is kept in the cache; the command's copy is its own (decision 0027)."""
        self._read(aggregate_id)
        agg: Aggregate | None = self.aggregate_cache.get(aggregate_id)
        if agg is None:
            agg = self.repository.get(aggregate_id)
        else:
            later = list(self.repository.event_store.get(originator_id=aggregate_id, gt=agg.version))
            if not later:
                return agg
            agg = _project(agg, later)
        self.aggregate_cache.put(agg)
        return agg

    def get_as_stored(
        self, aggregate_id: UUID, version: int | None, page_events: Sequence[DomainEventProtocol[UUID]] = ()
    ) -> Aggregate:
        """For a view: the aggregate exactly as stored at ``version`` (now, when None), never reloaded when
        the cache has it at that version or ``page_events`` (its events from one page of the log, in
        order) lead there from the cached state, or from nothing, without a gap. The copy is the caller's.
        AggregateNotFoundError when the store has no such version."""
        if version is None:
            return self._latest(aggregate_id)
        cached: Aggregate | None = self.aggregate_cache.get(aggregate_id)
        if cached is not None and cached.version == version:
            return cached
        base = cached if cached is not None and cached.version < version else None
        after = 0 if base is None else base.version
        following = [e for e in page_events if after < e.originator_version <= version]
        if following and all(e.originator_version == after + i for i, e in enumerate(following, start=1)):
            agg = _project(base, following)
        else:
            agg = self.repository.get(aggregate_id, version=version)
        if agg is None or agg.version != version:
            msg = f"Aggregate {aggregate_id} version {version} not found."
            raise AggregateNotFoundError(msg)
        self.aggregate_cache.put(agg)
        return agg

    def _find_index(self, kind: str, value: str) -> Index | None:
        index_id = self.index_id(kind, value)
        self._read(index_id)
        try:
            index: Aggregate = self.repository.get(index_id)
        except AggregateNotFoundError:
            return None
        return index if isinstance(index, Index) else None

    def _commit(
        self,
        *aggregates: Aggregate,
        detail: str | None = None,
        conflict: Callable[[], DomainError] | None = None,
        deferrable: bool = False,
    ) -> Outcome:
        """Save in one transaction and say what the command did (about ``aggregates[0]``); a lost race
        becomes a 409 (never a half-written change).

        Every command saves here. When it runs for a request under an Idempotency-Key (``run_once``) and
        changes something, the request's answer, made from this outcome, is an ``IdempotencyRecord``
        saved in the same transaction: both are stored or neither. A command that changes nothing (a
        retry that finds its effect already there) records nothing: run again, it answers the same.
        """
        head = aggregates[0]
        outcome = Outcome(id=head.id, version=head.version, position=None, aggregate=head, detail=detail)
        request: IdempotentRequest | None = getattr(self._running, "request", None)
        changes = any(a.pending_events for a in aggregates)
        answer = [self._answer_record(request, outcome)] if request is not None and changes else []
        batch: _Batch | None = getattr(self._running, "batch", None)
        if batch is not None and deferrable and changes:
            # Group commit (run_batch): stored with the batch's other commands; the position comes then.
            batch.defer(self._collected(*aggregates, *answer), outcome, conflict)
            if answer:
                self._running.request = None
            return outcome
        try:
            recordings = self.save(*aggregates, *answer)
        except IntegrityError:
            for aggregate in aggregates:  # someone else's events are there: the next command loads afresh
                self.aggregate_cache.evict(aggregate.id)
            if conflict is not None:
                raise conflict() from None
            raise Conflict(code="concurrent_modification") from None
        if answer:
            self._running.request = None  # answered: a later save of the same command records nothing more
        position = recordings[-1].notification.id if recordings else None
        return replace(outcome, position=position)

    @staticmethod
    def _answer_record(request: IdempotentRequest, outcome: Outcome) -> IdempotencyRecord:
        return IdempotencyRecord.record(request.record_id, request.request_digest, request.answer(outcome))

    def run_once(self, request: IdempotentRequest, command: Callable[[], Outcome]) -> Outcome:
        """Run ``command`` (a call of one of this service's commands, in this thread) with ``request``'s
        answer recorded in the command's own transaction (``_commit``).

        ``Outcome.recorded`` says whether it was: a command that saved nothing records no answer.
        """
        self._running.request = request
        try:
            outcome = command()
        finally:
            recorded = getattr(self._running, "request", None) is None
            self._running.request = None
        return replace(outcome, recorded=recorded)

    def run_batch(self, commands: Sequence[Callable[[], Outcome]]) -> list[Outcome | Exception]:
        """Run concurrent commands one after the other in this thread and store the events of those that
        load, act on and save one application (``_command``) in ONE transaction: group commit (decision
        0027). Each gets its own outcome or error, as if run alone: a command reading an aggregate an
        earlier one of the batch changed runs after that one is stored; when the transaction is refused
        (a conflict), each command's events are stored on their own, in order, and only the conflicting
        ones fail. Nothing is answered before its events are stored."""
        results: list[Outcome | Exception | None] = [None] * len(commands)
        i = 0
        while i < len(commands):
            batch = _Batch()
            self._running.batch = batch
            ran: list[tuple[int, Outcome]] = []
            try:
                while i < len(commands):
                    batch.current = i
                    try:
                        ran.append((i, commands[i]()))
                    except BatchBoundary:
                        break  # stored first; this command runs again at the head of the next batch
                    except Exception as error:
                        results[i] = error
                    i += 1
            finally:
                self._running.batch = None
            positions = self._store_batch(batch, results)
            for index, outcome in ran:
                if results[index] is None:
                    results[index] = replace(outcome, position=positions.get(index, outcome.position))
        return [r if r is not None else RuntimeError("command not run") for r in results]

    def _store_batch(self, batch: _Batch, results: list[Outcome | Exception | None]) -> dict[int, int | None]:
        """Store a batch's deferred events: all in one transaction, else each command's alone."""
        if not batch.deferred:
            return {}
        events = [event for each in batch.deferred for event in each.collected.events]
        positions: dict[int, int | None] = {}
        try:
            recordings = self.events.put(events)
        except IntegrityError:
            for each in batch.deferred:  # one by one: only a conflicting command fails
                try:
                    mine = self._record(each.collected)
                except IntegrityError:
                    for aggregate_id in each.collected.aggregates:
                        self.aggregate_cache.evict(aggregate_id)
                    results[each.index] = (
                        each.conflict() if each.conflict else Conflict(code="concurrent_modification")
                    )
                    continue
                positions[each.index] = self._after_record(each.collected, mine)
            return positions
        except Exception as error:  # the store is away: every command of the batch fails alike
            for each in batch.deferred:
                results[each.index] = error
            return positions
        start = 0
        for each in batch.deferred:
            mine = recordings[start : start + len(each.collected.events)]
            start += len(each.collected.events)
            positions[each.index] = self._after_record(each.collected, mine)
        return positions

    def _after_record(
        self, collected: ProcessingEvent[UUID], recordings: list[Recording[UUID]]
    ) -> int | None:
        """What ``save()`` does after recording: snapshots where due (an optimisation: a failure is logged,
        the command stands), subscribers told; the position of the command's last event."""
        try:
            self._take_snapshots(collected)
        except Exception:
            log.exception("snapshot not taken")
        self._notify(recordings)
        return recordings[-1].notification.id if recordings else None

    @staticmethod
    def _collected(*objs: Aggregate) -> ProcessingEvent[UUID]:
        collected = ProcessingEvent[UUID]()
        collected.collect_events(*objs)
        return collected

    def get_recorded_answer(self, record_id: UUID) -> IdempotencyRecord | None:
        """The answer recorded for a request under an Idempotency-Key, if its command committed."""
        self._read(record_id)
        try:
            record: Aggregate = self.repository.get(record_id)
        except AggregateNotFoundError:
            return None
        return record if isinstance(record, IdempotencyRecord) else None

    def _outcome(self, agg: Aggregate, position: int | None, detail: str | None = None) -> Outcome:
        return Outcome(id=agg.id, version=agg.version, position=position, aggregate=agg, detail=detail)

    def _load_application(
        self,
        actor: Actor,
        app_id: UUID | str,
        expected_version: int | None,
        *,
        applicant_only: bool = False,
    ) -> BirthCertificateApplication:
        """The application, if ``actor`` may see it (else not found) and, ``applicant_only``, is not the
        joined father (else forbidden), at ``expected_version`` (else a conflict): in that order, so that a
        stranger learns neither that it exists nor its version."""
        app = self._get(BirthCertificateApplication, app_id)
        _visible(actor, app)
        if applicant_only and app.is_joined_father(actor):
            raise Forbidden("该操作只能由申办人（新生儿母亲）办理", code="applicant_only")
        if (
            expected_version is not None
            and expected_version != app.version
            and not _only_bookkeeping_since(app, expected_version)
        ):
            raise Conflict("申请已被更新，请刷新后重试", code="version_mismatch", current_version=app.version)
        return app

    def _command(
        self,
        actor: Actor,
        app_id: UUID | str,
        expected_version: int | None,
        act: Callable[[BirthCertificateApplication], Any],
        before_save: Callable[[], object] | None = None,
        *,
        applicant_only: bool = False,
    ) -> Outcome:
        """Load, check and act, then ``before_save`` (e.g. store the upload the events refer to: only once
        the aggregate has accepted the command), then save."""
        app = self._load_application(actor, app_id, expected_version, applicant_only=applicant_only)
        with self._referring(app.counter_institution):
            result = act(app)
        if before_save is not None:
            before_save()
        return self._commit(app, detail=result if isinstance(result, str) else None, deferrable=True)

    # ------------------------------------------------------------------ queries

    def get_application(self, actor: Actor, app_id: UUID | str) -> BirthCertificateApplication:
        """The application, if this actor may see it (otherwise NotFound: no hint it exists)."""
        app = self._get(BirthCertificateApplication, app_id)
        _visible(actor, app)
        return app

    def get_delivery_record(self, record_id: UUID | str) -> DeliveryRecord:
        """A delivery record by id."""
        return self._get(DeliveryRecord, record_id)

    def get_deliveries_of_mother(self, mother_id_number: IdNumber | IdDocument) -> list[DeliveryRecord]:
        """Every delivery record whose mother is this resident (twins give two)."""
        index = self._find_index("mother-deliveries", mother_id_number.value)
        if index is None:
            return []
        records = [self._get(DeliveryRecord, ref) for ref in index.refs]
        return sorted(records, key=lambda r: (r.facts["born_at"], r.facts["birth_order"]))

    def find_application_by_certificate(self, number: CertificateNumber) -> UUID | None:
        """The application a certificate number was used for (void numbers included)."""
        index = self._find_index("certificate-number", number.value)
        return UUID(index.refs[0]) if index else None

    # ------------------------------------------------------------------ institutions and staff accounts

    def register_institution(
        self, actor: Actor, *, code: str, name: str, province: str, district: str | None = None
    ) -> Outcome:
        """An institution joins (code unique forever), in its county-level ``district`` when given."""
        code = check_institution_code(code)
        if self._find_index("institution-code", code) is not None:
            raise Conflict(f"机构代码 {code} 已存在", code="institution_exists")
        record = InstitutionRecord.register(id=uuid4(), actor=actor, code=code, name=name, province=province)
        if district is not None:
            record.set_district(actor, district)
        by_code = Index.create(self.index_id("institution-code", code), "institution-code", str(record.id))
        listing = self._find_index("institutions", "all")
        if listing is None:
            listing = Index.create(self.index_id("institutions", "all"), "institutions", str(record.id))
        else:
            listing.add(str(record.id))
        return self._commit(
            record,
            by_code,
            listing,
            conflict=lambda: Conflict(f"机构代码 {code} 已存在", code="institution_exists"),
        )

    def _institution_record(self, code: str) -> InstitutionRecord:
        index = self._find_index("institution-code", code.strip().upper())
        if index is None:
            raise NotFound("未找到该机构")
        return self._get(InstitutionRecord, index.refs[0])

    def get_institution(self, code: str) -> Institution:
        """The institution with this code (NotFound when unknown)."""
        return _institution(self._institution_record(code))

    def set_pickup_hours(self, actor: Actor, code: str, windows: list[PickupWindow]) -> Outcome:
        """The institution's hours for collecting by appointment (replacing the previous ones)."""
        record = self._institution_record(code)
        record.set_pickup_hours(actor, windows)
        return self._commit(record)

    def get_pickup_hours(self, code: str) -> list[PickupWindow]:
        """The institution's hours for collecting by appointment (empty: none offered)."""
        return self._institution_record(code).windows

    def _hours_of(self, app: BirthCertificateApplication) -> list[PickupWindow]:
        """The pickup hours of the application's institution (none while unknown or unregistered)."""
        try:
            return self.get_pickup_hours(app.institution or "")
        except NotFound:
            return []

    def list_institutions(self) -> list[Institution]:
        """Every institution, by code."""
        listing = self._find_index("institutions", "all")
        records = [self._get(InstitutionRecord, ref) for ref in (listing.refs if listing else [])]
        return sorted(map(_institution, records), key=lambda i: i.code)

    def set_institution_district(self, actor: Actor, code: str, *, district: str) -> Outcome:
        """The county-level district the institution lies in (whose managers see its figures)."""
        record = self._institution_record(code)
        record.set_district(actor, district)
        return self._commit(record)

    def set_institution_counter(self, actor: Actor, code: str, *, counter: CounterDetails) -> Outcome:
        """Where and when the institution receives families in person: named by every referral from now on."""
        record = self._institution_record(code)
        record.set_counter(actor, counter)
        return self._commit(record)

    def _counter_institution(self, code: str | None) -> Institution | None:
        """The institution a referral names, if known (a code that no longer resolves names none)."""
        if code is None:
            return None
        try:
            return self.get_institution(code)
        except NotFound:
            return None

    @contextmanager
    def _referring(self, institution: str | Institution | None) -> Iterator[None]:
        """A refusal that sends the family to the counter (NotEligibleOnline, or a closed application window)
        leaves here naming the counter of ``institution`` and what to bring (``DomainError.referral``)."""
        try:
            yield
        except (NotEligibleOnline, RuleViolated) as error:
            if error.referral is None and (isinstance(error, NotEligibleOnline) or error.code == "too_late"):
                reason = (
                    error.reasons[0] if isinstance(error, NotEligibleOnline) and error.reasons else error.code
                )
                found = (
                    institution
                    if isinstance(institution, Institution)
                    else self._counter_institution(institution)
                )
                error.referral = Referral.to(reason, found, error.message)
            raise

    def create_staff_account(
        self,
        actor: Actor,
        *,
        username: str,
        role: str,
        institution: str | None,
        display_name: str,
        password_hash: str,
        scope: str | None = None,
    ) -> Outcome:
        """A staff login; the username is unique forever; the institution must exist, and so must a manager's
        institution scope (``institution:CODE``, ``district:440104``, ``province:GD``)."""
        username = check_username(username)
        if institution is not None:
            institution = self.get_institution(institution).code
        manager_scope = None if scope is None else Scope.parse(scope)
        if manager_scope is not None and manager_scope.kind == "institution":
            self.get_institution(manager_scope.code)
        if self._find_index("staff-username", username) is not None:
            raise Conflict(f"用户名 {username} 已存在", code="username_taken")
        account = StaffAccount.create(
            id=uuid4(),
            actor=actor,
            username=username,
            role=role,
            institution=institution,
            display_name=display_name,
            password_hash=password_hash,
            scope=manager_scope,
        )
        index = Index.create(self.index_id("staff-username", username), "staff-username", str(account.id))
        return self._commit(
            account, index, conflict=lambda: Conflict(f"用户名 {username} 已存在", code="username_taken")
        )

    def get_staff_account(self, username: str) -> StaffAccount | None:
        """The account with this username, or None."""
        try:
            username = check_username(username)
        except DomainError:
            return None
        index = self._find_index("staff-username", username)
        return None if index is None else self._get(StaffAccount, index.refs[0])

    def change_staff_password(self, actor: Actor, username: str, *, password_hash: str) -> Outcome:
        """A new password hash for an account."""
        account = self.get_staff_account(username)
        if account is None:
            raise NotFound("未找到该账号")
        account.change_password(actor, password_hash)
        return self._commit(account)

    def disable_staff_account(self, actor: Actor, username: str, *, reason: str) -> Outcome:
        """Stop an account: no login from now on, and its tokens refused within a minute."""
        account = self.get_staff_account(username)
        if account is None:
            raise NotFound("未找到该账号")
        account.disable(actor, reason)
        return self._commit(account)

    # ------------------------------------------------------------------ auditors

    def record_personal_data_viewed(self, actor: Actor, app_id: UUID | str, *, what: str) -> Outcome:
        """An auditor is about to read an application's personal data in full: record who, what, when first."""
        app = self._get(BirthCertificateApplication, app_id)
        record = AccessRecord.record(id=uuid4(), actor=actor, application_id=str(app.id), what=what)
        return self._commit(record)

    def record_verification(
        self,
        actor: Actor | None,
        *,
        kind: str,
        digest: str,
        result: str,
        licence_id: str | None,
        source: str,
        archived: bool = False,
    ) -> Outcome:
        """An e-licence was verified (by the public: ``actor`` None), or archived by a verifier (decision 0039)."""
        record = VerificationRecord.record(
            id=uuid4(),
            kind=kind,
            digest=digest,
            result=result,
            licence_id=licence_id,
            source=source,
            actor=actor,
            archived=archived,
        )
        return self._commit(record)

    def get_history(self, actor: Actor, app_id: UUID | str) -> list[Any]:
        """Every event of an application, decrypted (auditors and the application's own issuers)."""
        app = self.get_application(actor, app_id)
        return list(self.events.get(app.id))

    # ------------------------------------------------------------------ hospitals

    def record_delivery(self, actor: Actor, *, institution: Institution, facts: DeliveryFacts) -> Outcome:
        """分娩信息录入: one record per newborn, unique per institution, inpatient number and birth order."""
        profile = get_profile(institution.province)
        slot_key = f"{institution.code}:{facts.inpatient_no}:{facts.birth_order}"
        duplicate = Conflict("该住院病历号的分娩信息已录入", code="delivery_already_recorded")
        for attempt in range(3):
            if self._find_index("delivery-slot", slot_key) is not None:
                raise duplicate
            record_id = uuid4()
            record = DeliveryRecord.record(
                id=record_id,
                actor=actor,
                institution=institution,
                profile=profile,
                facts=facts,
                now=self.clock(),
            )
            slot = Index.create(self.index_id("delivery-slot", slot_key), "delivery-slot", str(record_id))
            mothers = self._indexed("mother-deliveries", facts.mother_id_number.value, str(record_id))
            awaiting = self._applications_awaiting(actor, record)
            try:
                return self._commit(record, slot, mothers, *awaiting)
            except Conflict:
                # Twins recorded at the same moment race on the mother's index, not on the slot: try again.
                if attempt == 2 or self._find_index("delivery-slot", slot_key) is not None:
                    raise (
                        duplicate
                        if self._find_index("delivery-slot", slot_key)
                        else Conflict(code="concurrent_modification")
                    ) from None
                continue
        raise Conflict(code="concurrent_modification")  # pragma: no cover - the loop returns or raises

    def _indexed(self, kind: str, value: str, ref: str) -> Index:
        """The multi-valued index of ``kind`` for ``value``, with ``ref`` added (created if missing)."""
        index = self._find_index(kind, value)
        if index is None:
            return Index.create(self.index_id(kind, value), kind, ref)
        index.add(ref)
        return index

    def _applications_awaiting(
        self, actor: Actor, record: DeliveryRecord
    ) -> list[BirthCertificateApplication]:
        """The mother's applications that reported this record missing, told that it is entered now."""
        index = self._find_index(AWAITING_KIND, record.facts["mother_id_number"])
        told = []
        for ref in index.refs if index is not None else []:
            app = self._get(BirthCertificateApplication, ref)
            if app.awaiting_delivery_record:
                app.note_awaited_delivery(
                    actor,
                    delivery_record_id=str(record.id),
                    institution=record.institution_code,
                    late=record.entered_late,
                )
                told.append(app)
        return told

    def correct_delivery(
        self,
        actor: Actor,
        record_id: UUID | str,
        *,
        facts: DeliveryFacts,
        reason: str,
        expected_version: int | None = None,
    ) -> Outcome:
        """Correct a record before issue; a linked application takes the correction (voiding its signature)."""
        record = self._own_record(actor, record_id, expected_version)
        old_mother = record.facts["mother_id_number"]
        changes = record.correct(actor, facts=facts, reason=reason, now=self.clock())
        touched: list[Aggregate] = [record]
        if "mother_id_number" in changes:
            old_index = self._find_index("mother-deliveries", old_mother)
            if old_index is not None:
                old_index.remove(str(record.id))
                touched.append(old_index)
            touched.append(self._indexed("mother-deliveries", changes["mother_id_number"], str(record.id)))
        if changes and record.application_id is not None:
            app = self._get(BirthCertificateApplication, record.application_id)
            app.refresh_delivery_record(actor, record=record.snapshot(), reason=reason)
            touched.append(app)
        return self._commit(*touched)

    def _own_record(
        self, actor: Actor, record_id: UUID | str, expected_version: int | None
    ) -> DeliveryRecord:
        """The record, if ``actor`` is its institution's hospital (else not found), at ``expected_version``."""
        record = self._get(DeliveryRecord, record_id)
        if actor.role != "hospital" or actor.institution != record.institution_code:
            raise NotFound()
        if expected_version is not None and expected_version != record.version:
            raise Conflict(code="version_mismatch", current_version=record.version)
        return record

    def uphold_delivery_record(
        self, actor: Actor, record_id: UUID | str, *, reason: str, expected_version: int | None = None
    ) -> Outcome:
        """Answer the mother's dispute: the record stands, and why (she sees the answer in her status view)."""
        record = self._own_record(actor, record_id, expected_version)
        if record.application_id is None:
            raise RuleViolated("该分娩记录没有待答复的异议", code="no_open_dispute")
        app = self._get(BirthCertificateApplication, record.application_id)
        cleaned = app.uphold_delivery_record(actor, reason=reason)
        record.uphold(actor, application_id=str(app.id), reason=cleaned)
        return self._commit(record, app)

    def get_hospital_cases(
        self, actor: Actor, app_ids: Iterable[UUID | str]
    ) -> dict[str, BirthCertificateApplication]:
        """For a hospital's worklist: the applications that dispute one of its records or await one from it,
        by id (any other id is left out: nothing tells the hospital it exists)."""
        if actor.role != "hospital" or not actor.institution:
            raise Forbidden("只有助产机构可以查看分娩记录工作单")
        found = {}
        for app_id in app_ids:
            try:
                app = self._get(BirthCertificateApplication, app_id)
            except NotFound:
                continue
            awaited = app.delivery_awaited if app.awaiting_delivery_record else None
            if (app.dispute_open and app.institution == actor.institution) or (
                awaited is not None and awaited["institution"] == actor.institution
            ):
                found[str(app.id)] = app
        return found

    # ------------------------------------------------------------------ parents

    def start_application(
        self,
        actor: Actor,
        *,
        circumstances: Circumstances,
        province: str | None = None,
        institution: str | None = None,
    ) -> Outcome:
        """申办: the mother starts an application under her province's profile.

        Without ``province`` the profile of the ``institution`` she names (where she gave birth: the
        hospital's QR code carries it), else the deployment's default, applies until her delivery record is
        linked: the record's institution then decides (ProvinceAdopted, docs/decisions/0013). A case kept
        at the counter is refused naming that institution's counter (docs/decisions/0033).
        """
        named = None
        if institution is not None:
            try:
                named = self.get_institution(institution)
            except NotFound:
                raise InvalidValue(
                    "institution", "unknown_institution", "未找到该分娩机构，请核对机构代码"
                ) from None
        profile = get_profile(province or (named.province if named is not None else self.default_province))
        with self._referring(named):
            app = BirthCertificateApplication.start(
                id=uuid4(),
                actor=actor,
                profile=profile,
                circumstances=circumstances,
                province_chosen=bool(province),
                institution=named,
            )
        return self._commit(app)

    def check_face_request(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        role: Literal["mother", "father"],
        name: PersonName,
        id_number: IdNumber | IdDocument,
        out_seq_no: str,
    ) -> None:
        """Refuse a face check that could not be recorded, before WeChat is asked for anything.

        Nothing here depends on the hospitals' delivery records: whether a woman gave birth is said
        only to her, once her face check has proved who she is (``record_face_verification``).
        Otherwise anyone could learn it by typing ID numbers.
        """
        app = self._load_application(actor, app_id, None)
        with self._referring(app.counter_institution):
            app.request_face_verification(
                actor, role=role, name=name, id_number=id_number, out_seq_no=out_seq_no
            )

    def request_face_verification(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        role: Literal["mother", "father"],
        name: PersonName,
        id_number: IdNumber | IdDocument,
        out_seq_no: str,
        verify_id: str = "",
        expected_version: int | None = None,
    ) -> Outcome:
        """Record the identity a face check (WeChat's ``verify_id``) is about to prove (records unseen)."""
        app = self._load_application(actor, app_id, expected_version)
        with self._referring(app.counter_institution):
            app.request_face_verification(
                actor, role=role, name=name, id_number=id_number, out_seq_no=out_seq_no, verify_id=verify_id
            )
        return self._commit(app)

    def _available_delivery(
        self, app: BirthCertificateApplication, mother: IdNumber | IdDocument
    ) -> DeliveryRecord:
        """The first of the mother's delivery records that no other application holds."""
        records = self.get_deliveries_of_mother(mother)
        if not records:
            raise RuleViolated(NOT_DELIVERY_MOTHER, code="not_delivery_mother")
        free = [
            r for r in records if r.issued_certificate is None and r.application_id in (None, str(app.id))
        ]
        if not free:
            raise RuleViolated("您的分娩记录已有正在办理或已签发的申请", code="record_in_use")
        record = free[0]
        window = application_window_error(  # under the profile the link would give it (it may adopt one)
            app.profile_after_linking(record.province),
            datetime.fromisoformat(record.facts["born_at"]),
            self.clock(),
            self.calendar,
        )
        if window is not None:
            with self._referring(record.institution_code):  # too late: to the counter of her institution
                raise RuleViolated(REASON_MESSAGES.get(window), code=window)
        return record

    def record_face_verification(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        out_seq_no: str,
        verify_ret: int | None,
        expected_version: int | None = None,
        channel: str = WECHAT,
        failure: str | None = None,
    ) -> Outcome:
        """WeChat's verdict, or a provincial app's (``channel``: a pass, or our ``failure`` code for why its
        answer proved nothing; docs/decisions/0030). A pass for the mother also links her delivery record, in the same save
        (adopting its institution's province first where she named none at the start).

        ``Outcome.detail`` is the failure code when the face check did not pass (the failure is
        recorded all the same: failed checks are evidence). A pass is recorded even when no delivery
        record can be linked yet (none entered, or it is held by another application): she proved who
        she is; linking is tried again when she asks for her record (``link_delivery_record``), which
        tells her why it cannot be linked.

        A verdict fetched again once recorded (the answer to the first fetch was lost; ``verify_ret``
        None: WeChat need not be asked) records nothing new and has the recorded verdict's outcome.
        """
        app = self._load_application(actor, app_id, expected_version)
        pending = app.pending_face.get(out_seq_no)
        if pending is None or verify_ret is None:
            return self._commit(app, detail=self._recorded_verdict(actor, app, out_seq_no).failure)
        seq_index = Index.create(self.index_id("face-seq", out_seq_no), "face-seq", str(app.id))
        touched: list[Aggregate] = [app, seq_index]
        # A failure may be the day's last allowed one: the referral names the counter (loaded only then).
        passed = verify_ret == FACE_PASS and failure is None
        institution = None if passed else self._counter_institution(app.counter_institution)
        failure = app.record_face_verification(
            actor,
            out_seq_no=out_seq_no,
            verify_ret=verify_ret,
            institution=institution,
            channel=channel,
            failure=failure,
        )
        if app.state in CLOSED_STATES:
            touched += self._release_record(actor, app)
        if failure is None and pending is not None and pending["role"] == "mother":
            try:
                record = self._link(actor, app, pending["id_number"])
            except (RuleViolated, NotEligibleOnline):
                pass  # her pass is kept; she is told why when she asks for her record (link_delivery_record)
            else:
                touched.append(record)
        try:
            return self._commit(
                *touched, detail=failure, conflict=lambda: self._used_or_raced("face-seq", out_seq_no)
            )
        except Conflict:
            # Two fetches of one verdict raced (a retry sent while the first was running): as a retry.
            again = self._load_application(actor, app_id, None)
            if out_seq_no in again.pending_face:
                raise
            return self._commit(again, detail=self._recorded_verdict(actor, again, out_seq_no).failure)

    def get_face_verdict(self, actor: Actor, app_id: UUID | str, out_seq_no: str) -> FaceVerdict:
        """The verdict recorded for a face check this actor began (Conflict ``verification_used`` if none)."""
        return self._recorded_verdict(actor, self.get_application(actor, app_id), out_seq_no)

    def _recorded_verdict(
        self, actor: Actor, app: BirthCertificateApplication, out_seq_no: str
    ) -> FaceVerdict:
        used = Conflict("该认证流水号无效或已使用，请重新发起刷脸认证", code="verification_used")
        index = self._find_index("face-seq", out_seq_no)
        if index is None or index.refs != [str(app.id)]:
            raise used
        verdicts = (
            BirthCertificateApplication.FaceVerified,
            BirthCertificateApplication.FaceVerificationFailed,
        )
        for event in self.events.get(app.id, desc=True):
            if isinstance(event, verdicts) and event.out_seq_no == out_seq_no:
                if event.actor.get("id") != actor.id:
                    raise used  # someone else's check: nothing about it is said
                failure = getattr(event, "code", None)
                return FaceVerdict(role=event.role, failure=failure)
        raise used

    def _used_or_raced(self, kind: str, value: str) -> DomainError:
        """After a lost race: was it this value that someone else used, or just the same aggregate?"""
        if self._find_index(kind, value) is not None:
            messages = {"face-seq": ("该认证流水号已使用，请重新发起刷脸认证", "verification_used")}
            message, code = messages.get(kind, ("订单号重复", "duplicate_order"))
            return Conflict(message, code=code)
        return Conflict(code="concurrent_modification")

    def link_delivery_record(
        self, actor: Actor, app_id: UUID | str, *, expected_version: int | None = None
    ) -> Outcome:
        """Link the verified mother's delivery record if that did not happen at her face check."""
        app = self._load_application(actor, app_id, expected_version)
        if app.delivery_record_id is not None:
            return self._outcome(app, None)
        mother = app.verified.get("mother")
        if mother is None:
            raise RuleViolated("请先完成母亲刷脸认证", code="not_ready")
        record = self._link(actor, app, mother["id_number"])
        return self._commit(app, record)

    def _link(self, actor: Actor, app: BirthCertificateApplication, mother_id: str) -> DeliveryRecord:
        """The verified mother's first free delivery record, linked to ``app`` (both changed, unsaved). The
        aggregate refuses (wrong province, province locked, not online there) before triggering anything; a
        refusal that sends her to the counter names her record's institution's."""
        record = self._available_delivery(app, as_id_document(mother_id))
        record.link_application(actor, application_id=str(app.id))
        with self._referring(record.institution_code):
            app.link_delivery_record(
                actor,
                delivery_record_id=str(record.id),
                record=record.snapshot(),
                now=self.clock(),
                calendar=self.calendar,
            )
        return record

    def confirm_delivery_info(
        self, actor: Actor, app_id: UUID | str, *, expected_version: int | None = None
    ) -> Outcome:
        """The mother confirms the delivery record."""
        return self._command(actor, app_id, expected_version, lambda a: a.confirm_delivery_info(actor))

    def dispute_delivery_info(
        self, actor: Actor, app_id: UUID | str, *, reason: str, expected_version: int | None = None
    ) -> Outcome:
        """The mother disputes the delivery record; the hospital's record notes the dispute too."""
        app = self._load_application(actor, app_id, expected_version)
        app.dispute_delivery_info(actor, reason=reason)
        record = self._get(DeliveryRecord, app.delivery_record_id or "")
        record.receive_dispute(actor, application_id=str(app.id), reason=app.dispute_reason or reason)
        return self._commit(app, record)

    def report_missing_delivery(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        institution: str,
        born_on: date,
        expected_version: int | None = None,
    ) -> Outcome:
        """Her face check passed and no delivery record of hers is there: the institution she names sees it as
        missing on its worklist (overdue past its province's entry deadline) until a hospital enters it."""
        app = self._load_application(actor, app_id, expected_version, applicant_only=True)
        mother = app.verified.get("mother")
        if mother is not None and app.record is None:
            try:
                self._available_delivery(app, IdNumber(mother["id_number"]))
            except RuleViolated as why:
                if why.code != "not_delivery_mother":
                    raise  # there is one, held by another application or outside the window: that is the answer
            else:
                raise RuleViolated(DELIVERY_ENTERED, code="delivery_record_entered")
        try:
            named = self.get_institution(institution)
        except NotFound:
            raise InvalidValue("institution", "unknown_institution", "未找到该助产机构，请重新选择") from None
        try:
            profile = get_profile(named.province)
        except InvalidValue:
            profile = None  # a province without a profile sets no entry deadline
        app.report_missing_delivery(
            actor, institution=named, profile=profile, born_on=born_on, now=self.clock()
        )
        if not app.pending_events:
            return self._commit(app)  # reported already: nothing recorded
        index = self._indexed(AWAITING_KIND, app.verified["mother"]["id_number"], str(app.id))
        return self._commit(app, index)

    def provide_details(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        newborn_name: PersonName,
        mother: ParentDetails,
        father: ParentDetails | None,
        expected_version: int | None = None,
    ) -> Outcome:
        """The newborn's name and the parents' details."""
        return self._command(
            actor,
            app_id,
            expected_version,
            lambda a: a.provide_details(actor, newborn_name=newborn_name, mother=mother, father=father),
            applicant_only=True,  # the joined father: 403 before a stale version's 409
        )

    def upload_document(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        kind: str,
        document_id: str,
        sha256: str,
        content_type: str,
        size: int,
        expected_version: int | None = None,
        before_save: Callable[[], object] | None = None,
    ) -> Outcome:
        """Attach an ID photo by reference (``before_save`` stores it, once the application takes it)."""
        return self._command(
            actor,
            app_id,
            expected_version,
            lambda a: a.upload_document(
                actor, kind=kind, document_id=document_id, sha256=sha256, content_type=content_type, size=size
            ),
            before_save,
        )

    def invite_father(
        self, actor: Actor, app_id: UUID | str, *, expected_version: int | None = None
    ) -> Outcome:
        """The mother invites the father to verify on his own account.

        ``Outcome.detail`` is the invitation code: it exists only in this answer. The events hold its keyed
        digest, and an index entry keyed the same way (same save) lets the acceptance find the application
        from the code alone.
        """
        app = self._load_application(actor, app_id, expected_version)
        code = secrets.token_urlsafe(INVITATION_CODE_BYTES)
        app.invite_father(actor, invitation_digest=self.invitation_digest(code), now=self.clock())
        index = Index.create(self.index_id(INVITATION_KIND, code), INVITATION_KIND, str(app.id))
        return self._commit(app, index, detail=code)

    def accept_father_invitation(self, actor: Actor, code: str) -> Outcome:
        """The father, on his own account, joins the application the invitation code belongs to."""
        not_found = NotFound("邀请无效，请让孩子母亲重新发送邀请", code="invitation_not_found")
        if not isinstance(code, str) or not INVITATION_CODE_RE.match(code):
            raise not_found
        index = self._find_index(INVITATION_KIND, code)
        if index is None:
            raise not_found
        app = self._get(BirthCertificateApplication, index.refs[0])
        app.accept_father_invitation(actor, invitation_digest=self.invitation_digest(code), now=self.clock())
        return self._commit(app, conflict=lambda: self._joined_or_raced(app.id))

    def _joined_or_raced(self, app_id: UUID) -> DomainError:
        """After a lost race on an acceptance: did someone else join with it first?"""
        if self._get(BirthCertificateApplication, app_id).father_user_id is not None:
            return RuleViolated("该邀请已被使用", code="invitation_used")
        return Conflict(code="concurrent_modification")

    def sign_form(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        form_sha256: str,
        signature_document_id: str,
        signature_sha256: str,
        expected_version: int | None = None,
        before_save: Callable[[], object] | None = None,
    ) -> Outcome:
        """The mother's e-signature over the form whose hash she was shown (``before_save`` stores the image)."""
        return self._command(
            actor,
            app_id,
            expected_version,
            lambda a: a.sign_form(
                actor,
                form_sha256=form_sha256,
                signature_document_id=signature_document_id,
                signature_sha256=signature_sha256,
            ),
            before_save,
        )

    def choose_delivery_method(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        method: str,
        recipient: Recipient | None,
        expected_version: int | None = None,
    ) -> Outcome:
        """EMS or pickup."""
        return self._command(
            actor,
            app_id,
            expected_version,
            lambda a: a.choose_delivery_method(actor, method=method, recipient=recipient),
        )

    def place_postage_order(
        self, actor: Actor, app_id: UUID | str, *, out_trade_no: str, expected_version: int | None = None
    ) -> Outcome:
        """Open the postage order; ``Outcome.detail`` is the amount in fen."""
        app = self._load_application(actor, app_id, expected_version)
        amount = app.place_postage_order(actor, out_trade_no=out_trade_no)
        order = Index.create(self.index_id("out-trade-no", out_trade_no), "out-trade-no", str(app.id))
        return self._commit(
            app,
            order,
            detail=str(amount),
            conflict=lambda: self._used_or_raced("out-trade-no", out_trade_no),
        )

    def check_postage_order(self, actor: Actor, app_id: UUID | str, *, out_trade_no: str) -> int:
        """The amount (fen) of the postage order ``place_postage_order`` would open now, or why not:
        checked before WeChat Pay is asked for the order, which the answer carries (nothing is saved)."""
        app = self._load_application(actor, app_id, None)
        return app.place_postage_order(actor, out_trade_no=out_trade_no)

    def find_application_by_order(self, out_trade_no: str) -> UUID | None:
        """The application a WeChat Pay order belongs to."""
        index = self._find_index("out-trade-no", out_trade_no)
        return UUID(index.refs[0]) if index else None

    def record_postage_paid(
        self, actor: Actor, app_id: UUID | str, *, out_trade_no: str, amount_fen: int, transaction_id: str
    ) -> Outcome:
        """WeChat Pay's (repeated) notification, recorded once."""
        return self._command(
            actor,
            app_id,
            None,
            lambda a: a.record_postage_paid(
                actor, out_trade_no=out_trade_no, amount_fen=amount_fen, transaction_id=transaction_id
            ),
        )

    def submit(self, actor: Actor, app_id: UUID | str, *, expected_version: int | None = None) -> Outcome:
        """Submit for review."""
        return self._command(
            actor, app_id, expected_version, lambda a: a.submit(actor, calendar=self.calendar)
        )

    def request_bundle(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        services: list[str],
        values: dict[str, Any],
        parents_married: bool,
        expected_version: int | None = None,
    ) -> Outcome:
        """She opts in to the province's 出生一件事, or changes her opt-in (docs/decisions/0044)."""
        return self._command(
            actor,
            app_id,
            expected_version,
            lambda a: a.request_bundle(
                actor,
                services=services,
                values=values,
                parents_married=parents_married,
                now=self.clock(),
                calendar=self.calendar,
            ),
            applicant_only=True,
        )

    def record_bundle_service(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        service: str,
        department: str,
        state: str,
        message_id: str,
        result_id: str | None = None,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> Outcome:
        """A bundle service's hand-off delivered, or its department's answer (docs/decisions/0046); recorded once."""
        return self._command(
            actor,
            app_id,
            None,
            lambda a: a.record_bundle_service(
                actor,
                service=service,
                department=department,
                state=state,
                message_id=message_id,
                result_id=result_id,
                reason=reason,
                result=result,
            ),
        )

    def withdraw_bundle(
        self, actor: Actor, app_id: UUID | str, *, expected_version: int | None = None
    ) -> Outcome:
        """She withdraws her opt-in to 出生一件事."""
        return self._command(
            actor, app_id, expected_version, lambda a: a.withdraw_bundle(actor), applicant_only=True
        )

    def withdraw(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        reason: str = "申办人撤回",
        expected_version: int | None = None,
    ) -> Outcome:
        """Withdraw before issue; the delivery record is free for a new application."""
        app = self._load_application(actor, app_id, expected_version)
        app.withdraw(actor, reason=reason)
        return self._commit(app, *self._release_record(actor, app))

    def _release_record(self, actor: Actor, app: BirthCertificateApplication) -> list[Aggregate]:
        if app.delivery_record_id is None:
            return []
        record = self._get(DeliveryRecord, app.delivery_record_id)
        record.unlink_application(actor, application_id=str(app.id))
        return [record]

    # ------------------------------------------------------------------ issuers

    def reject(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        reasons: list[str],
        fields: list[str],
        reason_codes: list[str] | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """驳回: back to the parent with reason codes (domain/rejection.py; None: ``other``), the issuer's
        words and the fields to fix; past the modification limit, to the counter (freeing the record)."""
        app = self._load_application(actor, app_id, expected_version)
        app.reject(
            actor,
            reasons=reasons,
            fields=fields,
            reason_codes=reason_codes,
            institution=self._counter_institution(app.institution),
        )
        extra = self._release_record(actor, app) if app.state in CLOSED_STATES else []
        return self._commit(app, *extra)

    def issue(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        certificate_number: CertificateNumber,
        sealer_name: str,
        issuer_name: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """签发: the number is used once ever; the record yields one first certificate; all in one save."""
        app = self._load_application(actor, app_id, expected_version)
        app.issue(  # the application's state first: "already issued" is the answer, not "number used"
            actor,
            certificate_number=certificate_number,
            issuer_name=issuer_name or actor.name or actor.id,
            sealer_name=sealer_name,
        )
        self._check_number_free(certificate_number)
        record = self._get(DeliveryRecord, app.delivery_record_id or "")
        record.mark_issued(actor, application_id=str(app.id), certificate_number=certificate_number.value)
        number = Index.create(
            self.index_id("certificate-number", certificate_number.value), "certificate-number", str(app.id)
        )
        first = Index.create(
            self.index_id("first-certificate", str(record.id)), "first-certificate", str(app.id)
        )
        return self._commit(
            app, record, number, first, conflict=lambda: self._issue_conflict(certificate_number)
        )

    def _check_number_free(self, number: CertificateNumber) -> None:
        if self._find_index("certificate-number", number.value) is not None:
            raise Conflict(
                f"证件编号 {number.value} 已被使用，请核对空白证件编号", code="certificate_number_used"
            )

    def _issue_conflict(self, number: CertificateNumber) -> DomainError:
        if self._find_index("certificate-number", number.value) is not None:
            return Conflict(
                f"证件编号 {number.value} 已被使用，请核对空白证件编号", code="certificate_number_used"
            )
        return Conflict("该申请已被其他签发人员处理，请刷新", code="concurrent_modification")

    def dispatch(
        self, actor: Actor, app_id: UUID | str, *, tracking_number: str, expected_version: int | None = None
    ) -> Outcome:
        """EMS picked the certificate up."""
        return self._command(
            actor, app_id, expected_version, lambda a: a.dispatch(actor, tracking_number=tracking_number)
        )

    def record_delivered(self, actor: Actor, app_id: UUID | str) -> Outcome:
        """The courier delivered it (idempotent)."""
        return self._command(actor, app_id, None, lambda a: a.record_delivered(actor))

    def hand_over(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        recipient_name: PersonName,
        relation: str,
        recipient_id: IdNumber,
        expected_version: int | None = None,
    ) -> Outcome:
        """On-site pickup."""
        return self._command(
            actor,
            app_id,
            expected_version,
            lambda a: a.hand_over(
                actor,
                recipient_name=recipient_name,
                relation=relation,
                recipient_id=recipient_id,
                now=self.clock(),
            ),
        )

    def report_loss(self, actor: Actor, app_id: UUID | str, *, reason: str) -> Outcome:
        """The courier lost or damaged it (idempotent)."""
        return self._command(actor, app_id, None, lambda a: a.report_loss(actor, reason=reason))

    def reissue(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        certificate_number: CertificateNumber,
        sealer_name: str,
        issuer_name: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """After a loss: a new number (used once ever), the old one void, the data unchanged."""
        app = self._load_application(actor, app_id, expected_version)
        app.reissue(  # the application's state first: "already issued" is the answer, not "number used"
            actor,
            certificate_number=certificate_number,
            issuer_name=issuer_name or actor.name or actor.id,
            sealer_name=sealer_name,
        )
        return self._on_new_blank(app, certificate_number)

    def _on_new_blank(self, app: BirthCertificateApplication, number: CertificateNumber) -> Outcome:
        """Save a print on a new blank (reissue, replacement): its number used once ever, in the same save."""
        self._check_number_free(number)
        index = Index.create(
            self.index_id("certificate-number", number.value), "certificate-number", str(app.id)
        )
        return self._commit(app, index, conflict=lambda: self._issue_conflict(number))

    def replace_certificate(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        certificate_number: CertificateNumber,
        cause: str,
        old_certificate: str,
        sealer_name: str,
        note: str = "",
        issuer_name: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """换发 for the institution's own error (misprinted, damaged): a new number, the old one void."""
        app = self._load_application(actor, app_id, expected_version)
        app.replace_certificate(
            actor,
            certificate_number=certificate_number,
            cause=cause,
            old_certificate=old_certificate,
            note=note,
            issuer_name=issuer_name or actor.name or actor.id,
            sealer_name=sealer_name,
        )
        return self._on_new_blank(app, certificate_number)

    def revoke_certificate(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        reason: str,
        note: str,
        expected_version: int | None = None,
    ) -> Outcome:
        """宣布作废 (docs/decisions/0040): the issuing institution declares the certificate void after its review,
        once; the family is sent to its counter. The e-licence's bit follows (projections.elicense_status)."""
        return self._command(
            actor,
            app_id,
            expected_version,
            lambda a: a.revoke_certificate(
                actor,
                reason=reason,
                note=note,
                institution=self._counter_institution(a.counter_institution),
            ),
        )

    # ------------------------------------------------------------------ on-site pickup

    def get_pickup_slots(self, actor: Actor, app_id: UUID | str) -> list[tuple[Slot, int]]:
        """The slots the mother can book at her institution now, each with the places left."""
        app = self._load_application(actor, app_id, None, applicant_only=True)
        slots = bookable_slots(self._hours_of(app), self.clock(), self.calendar)
        taken: dict[str, list[str]] = {}
        out = []
        for slot in slots:
            day = slot.day.isoformat()
            if day not in taken:
                index = self._find_index("pickup-day", f"{app.institution}:{day}")
                taken[day] = [parse_slot_ref(r)[0] for r in index.refs] if index is not None else []
            out.append((slot, slot.capacity - taken[day].count(slot.start)))
        return out

    def book_pickup(
        self, actor: Actor, app_id: UUID | str, *, day: date, start: str, expected_version: int | None = None
    ) -> Outcome:
        """预约取证: one of the institution's slots with a place left; moving a booking frees the old place.

        The bookings of an institution's day are one index aggregate (``pickup-day``): two bookings of the
        same day race on it, and the loser runs again on the winner's count (at most three times).
        """
        full = RuleViolated("该时段已约满，请选择其他时段", code="pickup_slot_full")
        for attempt in range(3):
            app = self._load_application(
                actor, app_id, expected_version if attempt == 0 else None, applicant_only=True
            )
            slot = find_slot(self._hours_of(app), day, start, self.clock(), self.calendar)
            before = app.pickup_appointment
            app.book_pickup(actor, slot=slot)
            if not app.pending_events:
                return self._outcome(app, None)
            ref = slot_ref(slot.key, str(app.id))
            touched: list[Aggregate] = [app]
            days: dict[str, Index] = {}
            if before is not None:
                old = self._find_index("pickup-day", f"{app.institution}:{before['date']}")
                if old is not None:
                    old.remove(slot_ref(f"{before['date']} {before['start']}", str(app.id)))
                    days[before["date"]] = old
            key = f"{app.institution}:{slot.day.isoformat()}"
            index = days.get(slot.day.isoformat()) or self._find_index("pickup-day", key)
            if index is None:
                index = Index.create(self.index_id("pickup-day", key), "pickup-day", ref)
            else:
                if [parse_slot_ref(r)[0] for r in index.refs].count(slot.start) >= slot.capacity:
                    raise full
                index.add(ref)
            days[slot.day.isoformat()] = index
            touched += list(days.values())
            try:
                return self._commit(*touched)
            except Conflict:
                if attempt == 2:
                    raise
        raise Conflict(code="concurrent_modification")  # pragma: no cover - the loop returns or raises

    def get_pickup_day(self, actor: Actor, day: date) -> list[tuple[str, BirthCertificateApplication]]:
        """An issuer's institution's appointments on ``day``: (start, application), in time order."""
        if actor.role != "issuer" or not actor.institution:
            raise Forbidden("只有签发人员可以查看预约领取名单")
        index = self._find_index("pickup-day", f"{actor.institution}:{day.isoformat()}")
        out = []
        for ref in index.refs if index is not None else []:
            start, app_id = parse_slot_ref(ref)
            out.append((start, self._get(BirthCertificateApplication, app_id)))
        return sorted(out, key=lambda pair: (pair[0], str(pair[1].id)))

    def get_collector_letter(
        self, actor: Actor, app_id: UUID | str, *, collector_name: PersonName, collector_id: IdNumber
    ) -> dict[str, Any]:
        """The 授权委托书 the mother would sign for this collector (shown to her before she signs)."""
        app = self._load_application(actor, app_id, None, applicant_only=True)
        return app.collector_letter_for(collector_name=collector_name, collector_id=collector_id)

    def authorize_collector(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        collector_name: PersonName,
        collector_id: IdNumber,
        letter_sha256: str,
        signature_document_id: str,
        signature_sha256: str,
        expected_version: int | None = None,
        before_save: Callable[[], object] | None = None,
    ) -> Outcome:
        """The mother signs the letter for this collector (``before_save`` stores her signature image)."""
        return self._command(
            actor,
            app_id,
            expected_version,
            lambda a: a.authorize_collector(
                actor,
                collector_name=collector_name,
                collector_id=collector_id,
                letter_sha256=letter_sha256,
                signature_document_id=signature_document_id,
                signature_sha256=signature_sha256,
            ),
            before_save,
            applicant_only=True,
        )

    def open_collector_check(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        name: PersonName,
        id_number: IdNumber,
        expected_version: int | None = None,
    ) -> Outcome:
        """At the counter: a face check of the collector as the ID shown. ``Outcome.detail`` is the one-time
        code (only in this answer; the events and the index hold its keyed digest)."""
        app = self._load_application(actor, app_id, expected_version)
        code = secrets.token_urlsafe(INVITATION_CODE_BYTES)
        app.open_collector_check(
            actor,
            check_digest=self.keyed_digest(COLLECTOR_CHECK_KIND, code),
            name=name,
            id_number=id_number,
            now=self.clock(),
        )
        index = Index.create(self.index_id(COLLECTOR_CHECK_KIND, code), COLLECTOR_CHECK_KIND, str(app.id))
        return self._commit(app, index, detail=code)

    def _checked_application(self, code: str) -> tuple[BirthCertificateApplication, str]:
        """The application a counter code belongs to, and the code's digest."""
        not_found = NotFound("认证码无效，请工作人员重新生成", code="collector_check_not_found")
        if not isinstance(code, str) or not INVITATION_CODE_RE.match(code):
            raise not_found
        index = self._find_index(COLLECTOR_CHECK_KIND, code)
        if index is None:
            raise not_found
        return self._get(BirthCertificateApplication, index.refs[0]), self.keyed_digest(
            COLLECTOR_CHECK_KIND, code
        )

    def get_collector_check(self, code: str) -> dict[str, Any]:
        """The name and ID number the counter's check is to prove (before WeChat is asked for a verify_id)."""
        app, digest = self._checked_application(code)
        check = app.open_check(digest, self.clock())
        if check["status"] == "verified":
            raise RuleViolated("领取人已完成刷脸认证", code="already_verified")
        return {"name": check["name"], "id_number": check["id_number"], "application_id": str(app.id)}

    def request_collector_face_check(
        self, actor: Actor, code: str, *, out_seq_no: str, verify_id: str
    ) -> Outcome:
        """Record the verify_id WeChat gave the collector's phone for the counter's check."""
        app, digest = self._checked_application(code)
        app.request_collector_face_check(
            actor, check_digest=digest, out_seq_no=out_seq_no, verify_id=verify_id, now=self.clock()
        )
        return self._commit(app)

    def get_collector_pending(self, actor: Actor, code: str, out_seq_no: str) -> dict[str, Any] | None:
        """The collector's pending check (None once its verdict is recorded)."""
        app, digest = self._checked_application(code)
        return app.collector_pending(actor, digest, out_seq_no, self.clock())

    def record_collector_face_check(
        self, actor: Actor, code: str, *, out_seq_no: str, verify_ret: int | None
    ) -> Outcome:
        """WeChat's verdict on the collector; ``Outcome.detail`` is the failure code (recorded all the same)."""
        app, digest = self._checked_application(code)
        failure = app.record_collector_face_check(
            actor, check_digest=digest, out_seq_no=out_seq_no, verify_ret=verify_ret, now=self.clock()
        )
        return self._commit(app, detail=failure)

    def issue_elicense(
        self,
        actor: Actor,
        app_id: UUID | str,
        *,
        licence_id: str,
        certificate_number: str,
        key_id: str,
        status_list: str,
        status_index: int,
        amends: str | None = None,
    ) -> Outcome:
        """The electronic certificate of ``certificate_number`` exists, or (``amends``) its new version
        superseding the one in force (projections.elicense records it)."""
        return self._command(
            actor,
            app_id,
            None,
            lambda a: a.issue_elicense(
                actor,
                licence_id=licence_id,
                certificate_number=certificate_number,
                key_id=key_id,
                status_list=status_list,
                status_index=status_index,
                amends=amends,
            ),
        )


def _institution(record: InstitutionRecord) -> Institution:
    return Institution(record.code, record.name, record.province, record.counter_details)


def _project(aggregate: Aggregate | None, events: Iterable[DomainEventProtocol[UUID]]) -> Aggregate:
    """Apply stored events in order (as the library's replay does, without its per-event assertion)."""
    state: Any = aggregate
    for each in events:
        state = cast(CanMutateProtocol[Any], each).mutate(state)
    if not isinstance(state, Aggregate):
        raise AggregateNotFoundError("no aggregate")
    return state


def _visible(actor: Actor, app: BirthCertificateApplication) -> None:
    """Who may see an application at all; anyone else is told it does not exist."""
    if actor.role == "parent" and actor.id == app.applicant_id:
        return
    if app.is_joined_father(actor):  # his own part only: the aggregate refuses the rest
        return
    if actor.role == "issuer" and app.institution is not None and actor.institution == app.institution:
        return
    if actor.role in ("auditor", "system", "ems"):
        return
    raise NotFound()


__all__ = ["ISSUED_STATES", "Applications", "Forbidden", "Index", "Outcome"]


def _only_bookkeeping_since(app: BirthCertificateApplication, expected_version: int) -> bool:
    """Whether every event after ``expected_version`` is a process's bookkeeping that changes nothing a person
    saw as a reason to stop (the e-licence recorded by the leader's process, a department's answer to the
    bundle's hand-off): such an event must not turn the issuer's next step, read just before it, into a version
    conflict. Each service keeps only its last answer's version, so two answers in between still conflict (safe)."""
    later = range(expected_version + 1, app.version + 1)
    recorded = {e.get("version") for e in app.elicenses}
    recorded |= {s.get("version") for s in (app.bundle_services or {}).values()}
    return 0 < expected_version < app.version and all(v in recorded for v in later)
