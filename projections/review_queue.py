"""The issuers' review queue in Redis: per institution, what an issuer must act on, oldest submission first.

An application is in its institution's queue (the issuing institution of the linked delivery record)
from its first ``Submitted`` until it leaves the issuer's hands for good:

============================  ======================  ===========================================
application                   ``queue_state``         why the issuer sees it
============================  ======================  ===========================================
submitted, first time         ``new``                 to review (deadline, may be overdue)
submitted after a return      ``resubmitted``         to review again (deadline from this submission)
returned                      ``returned``            with the parent for fixes (pending elsewhere)
issued, EMS                   ``awaiting_dispatch``   to hand to the courier
issued, pickup                ``awaiting_handover``   to hand over at the counter
lost                          ``awaiting_reissue``    to print again on a new blank
handed on, 出生一件事 open    ``awaiting_departments`` departments still to answer (may be overdue)
============================  ======================  ===========================================

Dispatched, delivered, collected, withdrawn and counter-only applications leave the queue (their item
and set entries are deleted) — unless a department of 出生一件事 has not answered yet: then the certificate has
left the issuer's hands but the bundle has not (``awaiting_departments``, 待部门办结). Every issued item with a
department still open carries the bundle's time limit (``bundle_due_at``: the earliest deadline of the open
parts, domain/bundle_clock.py, decision 0049) and ``bundle_open`` (those services' names); ``bundle_overdue``,
like ``overdue``, is computed when read, and the item sits in ``bc:queue:<g>:bundle_due:<CODE>`` by it. As in ``projections.status``, an item is computed from the aggregate AT
THE VERSION of its last event in the page, so a rebuild writes byte-identical items whatever the
paging. The deadline is stored (``due_at``: the province profile's ``review_working_days`` counted on
the Chinese working-day calendar from the LAST submission, or a service default of 5 working days
where the province sets none, told apart by ``due_basis``; ``calendar_source`` and ``calendar_year`` say
which working-day calendar counted it: a loaded official schedule, chinesecalendar's data, or the statutory
holidays alone); ``overdue`` depends on the time of reading
and is computed by ``list()`` with the view's clock, never stored. Items hold no personal data in
plaintext: masked names only (王*, 张**), no ID numbers, addresses, phones or free-text reasons; of 出生一件事
only the names of the services a department refused (``bundle_refused``), for the queue's badge.

Keys (``key_prefix`` defaults to ``bc:``; ``<g>`` is the generation, ``projections.redis_view``), laid out and
written as ``projections.institution_items`` says: ``bc:queue:live``; ``bc:queue:<g>:item:<uuid>``;
``bc:queue:<g>:inst:<CODE>`` (application ids by first submission, µs); ``bc:queue:<g>:state:<CODE>:<queue_state>``;
``bc:queue:<g>:due:<CODE>`` (the items awaiting review, by ``due_at``); ``bc:queue:<g>:position``. Each item
whose bytes changed is announced as ``{application_id, queue_state, version}`` on ``bc:queue:events:<CODE>``
(``queue_state`` null when it left).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Final

import orjson
import redis.asyncio as aioredis

from domain.application import (
    COLLECTED,
    DELIVERED,
    DISPATCHED,
    ISSUED,
    LOST,
    RETURNED,
    SUBMITTED,
    BirthCertificateApplication,
)
from domain.bundle_clock import next_due
from domain.policy import WorkingCalendar
from domain.service import Applications
from projections.institution_items import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Entry,
    InstitutionItems,
    Row,
    Touched,
    apply_items_lua,
    check_institution,
    iso,
    micros,
    parse_time,
)
from projections.redis_view import application_events, masked
from projections.runner import Page
from projections.status import bundle_view

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "QUEUE_STATES",
    "REVIEW_STATES",
    "ReviewQueueView",
    "check_institution",
    "queue_entry",
    "queue_state_of",
]

NEW: Final = "new"
RESUBMITTED: Final = "resubmitted"
RETURNED_TO_PARENT: Final = "returned"
AWAITING_DISPATCH: Final = "awaiting_dispatch"
AWAITING_HANDOVER: Final = "awaiting_handover"
AWAITING_REISSUE: Final = "awaiting_reissue"
AWAITING_DEPARTMENTS: Final = "awaiting_departments"
QUEUE_STATES: Final = (
    NEW,
    RESUBMITTED,
    RETURNED_TO_PARENT,
    AWAITING_DISPATCH,
    AWAITING_HANDOVER,
    AWAITING_REISSUE,
    AWAITING_DEPARTMENTS,
)
# Only these have a review deadline, and so can be overdue.
REVIEW_STATES: Final = (NEW, RESUBMITTED)

DEFAULT_REVIEW_WORKING_DAYS: Final = 5
APPLY_PAGE_LUA: Final = apply_items_lua("queue_state", "bundle_due")


def queue_state_of(app: BirthCertificateApplication, bundle_open: bool = False) -> str | None:
    """Where ``app`` stands in its institution's queue, or None when it is not (or no longer) there;
    ``bundle_open``: a department of its 出生一件事 has not answered yet."""
    if app.institution is None or app.first_submitted_at is None:
        return None
    if app.state == SUBMITTED:
        return RESUBMITTED if app.submissions > 1 else NEW
    if app.state == RETURNED:
        return RETURNED_TO_PARENT
    if app.state == ISSUED:
        method = app.delivery_method["method"] if app.delivery_method else None
        return AWAITING_HANDOVER if method == "pickup" else AWAITING_DISPATCH
    if app.state == LOST:
        return AWAITING_REISSUE
    if app.state in (DISPATCHED, DELIVERED, COLLECTED) and bundle_open:
        return AWAITING_DEPARTMENTS
    return None


def _event(app_id: str, queue_state: str | None, version: int) -> dict[str, object]:
    return {"application_id": app_id, "queue_state": queue_state, "version": version}


def queue_entry(
    app: BirthCertificateApplication,
    calendar: WorkingCalendar,
    default_review_working_days: int = DEFAULT_REVIEW_WORKING_DAYS,
) -> Entry | None:
    """The queue item of ``app`` as stored (without ``overdue``), or None when it is not in a queue."""
    clocks = app.bundle_clocks(calendar)
    bundle_due = next_due(clocks)
    queue_state = queue_state_of(app, bundle_open=bundle_due is not None)
    if queue_state is None or app.institution is None or app.first_submitted_at is None:
        return None
    first = parse_time(app.first_submitted_at)
    last = parse_time(app.submitted_at or app.first_submitted_at)
    due: datetime | None = None
    basis: str | None = None
    days: int | None = None
    source: str | None = None
    source_year: int | None = None
    if queue_state in REVIEW_STATES:
        days = app.profile.review_working_days
        basis = "province"
        if days is None:
            days, basis = default_review_working_days, "default"
        deadline = calendar.deadline(last, days)
        due, source, source_year = deadline.at, deadline.source, deadline.year
    mother = app.verified.get("mother")
    mother_name = (mother or {}).get("name") or (app.record or {}).get("mother_name")
    method = app.delivery_method["method"] if app.delivery_method else None
    names = {s.code: s.name for s in app.bundle_offer.services} if app.bundle_offer else {}
    # Times sent back to the parent: an issuer's rejection, or a hospital's correction under review.
    returns = app.submissions if app.state == RETURNED else app.submissions - 1
    item = {
        "application_id": str(app.id),
        "institution": app.institution,
        "state": app.state,
        "queue_state": queue_state,
        "submitted_at": iso(first),
        "last_submitted_at": iso(last),
        "submissions": app.submissions,
        "due_at": None if due is None else iso(due),
        "due_basis": basis,
        "due_working_days": days,
        # Which calendar counted the days (domain.policy.Deadline): official, chinesecalendar or statutory.
        "calendar_source": source,
        "calendar_year": source_year,
        "delivery_method": method,
        "province": app.province,
        "newborn_name_masked": masked((app.details or {}).get("newborn_name")),
        "mother_name_masked": masked(mother_name),
        "rejection_count": max(returns, 0),
        "returned_fields": list(app.rejection.get("fields", []))
        if app.state == RETURNED and app.rejection
        else None,
        # 出生一件事: the services a department refused (their names only; the reasons are on the application).
        "bundle_refused": [
            s["name"] for s in (bundle_view(app) or {}).get("services", []) if s["state"] == "refused"
        ],
        # Its time limit (0049): the earliest deadline of the departments that have not answered, and their
        # services' names; ``bundle_overdue`` is computed when read.
        "bundle_due_at": None if bundle_due is None else iso(bundle_due),
        "bundle_open": [names[c.service] for c in clocks if c.finished_at is None],
        "updated_at": iso(app.modified_on),
        "version": app.version,
    }
    return Entry(
        item,
        state=queue_state,
        score=micros(first),
        due_score=None if due is None else micros(due),
        second_score=None if bundle_due is None else micros(bundle_due),
        present=_event(str(app.id), queue_state, app.version),
        left=_event(str(app.id), None, app.version),
    )


class ReviewQueueView(InstitutionItems):
    """The issuers' review queue: a ``View`` for ``projections.runner.LogFollower``."""

    state_field = "queue_state"
    states = QUEUE_STATES
    due_states = REVIEW_STATES
    overdue_after = "due_basis"
    state_error = ("invalid_queue_state", "队列状态不正确")
    second_due = ("bundle_due", "bundle_due_at", "bundle_overdue")

    def __init__(
        self,
        redis: aioredis.Redis,
        applications: Applications,
        executor: Executor,
        *,
        key_prefix: str = "bc:",
        calendar: WorkingCalendar | None = None,
        clock: Callable[[], datetime] | None = None,
        default_review_working_days: int = DEFAULT_REVIEW_WORKING_DAYS,
        generation: str | None = None,
    ) -> None:
        if default_review_working_days < 0:
            raise ValueError("default_review_working_days must not be negative")
        super().__init__(redis, executor, base=f"{key_prefix}queue:", clock=clock, generation=generation)
        self.applications = applications
        self.calendar = calendar or WorkingCalendar()
        self.default_review_working_days = default_review_working_days

    def touched(self, page: Page) -> Touched:
        """The applications the page touched (delivery-record and index events make no item)."""
        return [(a, events[-1].originator_version, events) for a, events in application_events(page).items()]

    def rows(self, touched: Touched) -> list[Row]:
        """On the executor: each application's item at its version, or at its latest (None: not in a queue);
        the application as stored then from the cache and the page's events (decision 0027)."""
        rows: list[Row] = []
        for app_id, at, page_events in touched:
            app: object = self.applications.get_as_stored(app_id, at, page_events)
            if not isinstance(app, BirthCertificateApplication):
                continue
            entry = queue_entry(app, self.calendar, self.default_review_working_days)
            rows.append((str(app_id), entry, orjson.dumps(_event(str(app_id), None, app.version))))
        return rows
