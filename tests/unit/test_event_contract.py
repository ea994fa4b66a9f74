"""Events are a public contract: topics and field names are pinned in tests/contract/events.json.

A rename or a removed field fails here loudly. A deliberate, additive change is made by giving the
event class a new ``class_version`` with an ``upcast_vN_vN+1`` and regenerating the file with
``UPDATE_EVENT_CONTRACT=1 pytest tests/unit/test_event_contract.py`` (docs/decisions/0001).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.utils import get_topic

from domain.application import BirthCertificateApplication
from domain.delivery import DeliveryRecord
from domain.idempotency import IdempotencyRecord
from domain.service import Index
from domain.staff import AccessRecord, InstitutionRecord, StaffAccount
from tests.builders import EMS, Walk, in_memory, last_written, store_as_written_before

CONTRACT = Path(__file__).parent.parent / "contract" / "events.json"
AGGREGATES = (
    BirthCertificateApplication,
    DeliveryRecord,
    Index,
    InstitutionRecord,
    StaffAccount,
    AccessRecord,
    IdempotencyRecord,
)


def current_contract() -> dict[str, Any]:
    """Every event class of every aggregate: its topic, class version and field names."""
    contract: dict[str, Any] = {}
    for aggregate in AGGREGATES:
        contract[get_topic(aggregate)] = {"aggregate": aggregate.__name__}
        for name, cls in sorted(vars(aggregate).items()):
            if not (isinstance(cls, type) and issubclass(cls, CanMutateAggregate)) or name in (
                "Event",
                "Created",
            ):
                continue
            fields = sorted(
                f.name
                for f in dataclasses.fields(cls)
                if f.name not in ("originator_id", "originator_version")
            )
            contract[get_topic(cls)] = {
                "event": f"{aggregate.__name__}.{name}",
                "class_version": getattr(cls, "class_version", 1),
                "fields": fields,
            }
    return contract


def test_event_topics_and_fields_match_the_published_contract() -> None:
    contract = current_contract()
    if os.environ.get("UPDATE_EVENT_CONTRACT") == "1":
        CONTRACT.write_bytes(
            orjson.dumps(contract, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    published = orjson.loads(CONTRACT.read_bytes())
    for topic, entry in published.items():
        assert topic in contract, f"{topic} was removed or renamed: stored events would no longer load"
        now = contract[topic]
        if "fields" in entry:
            missing = set(entry["fields"]) - set(now["fields"])
            assert not missing, (
                f"{topic} lost fields {sorted(missing)}: rename needs a class_version and upcast"
            )
            if now["fields"] != entry["fields"]:
                assert now["class_version"] > entry["class_version"], (
                    f"{topic} gained fields without a class_version"
                )
    assert contract == published, "the contract changed: regenerate tests/contract/events.json deliberately"


def test_topics_are_explicit_and_free_of_module_paths() -> None:
    for topic in current_contract():
        assert topic.startswith("birthcert:"), topic
        assert "." not in topic.split(":", 1)[1], f"{topic} looks like a module path"


def test_every_event_documents_itself() -> None:
    for aggregate in AGGREGATES:
        for name, cls in vars(aggregate).items():
            if isinstance(cls, type) and issubclass(cls, CanMutateAggregate):
                assert (cls.__doc__ or "").strip(), f"{aggregate.__name__}.{name} has no docstring"


def test_a_v1_dispatched_event_is_upcast_when_read() -> None:
    """Dispatched v1 had no carrier; reading one stored before v2 gives carrier EMS."""
    app = in_memory()
    w = Walk(app)
    w.record_delivery()
    w.submitted()
    issued = w.issue()
    # A v1 event as an older release would have written it: no class_version, no carrier.
    v1_state = {
        "timestamp": datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        "actor": EMS.to_dict(),
        "tracking_number": "EA123456789CN",
    }
    store_as_written_before(app, w.id, issued.version + 1, "birthcert:Dispatched", v1_state)
    event = list(app.events.get(w.id))[-1]
    assert isinstance(event, BirthCertificateApplication.Dispatched)
    assert (event.tracking_number, event.carrier) == ("EA123456789CN", "EMS")
    agg = app.get_application(w.parent, w.id)
    assert (agg.state, agg.tracking_number) == ("dispatched", "EA123456789CN")
    app.record_delivered(EMS, w.id)
    assert app.get_application(w.parent, w.id).state == "delivered"


def test_new_dispatched_events_are_written_as_v2() -> None:
    app = in_memory()
    w = Walk(app)
    w.record_delivery()
    w.submitted()
    w.issue()
    app.dispatch(EMS, w.id, tracking_number="EA123456789CN")
    decoded = last_written(app, w.id)
    assert (decoded["class_version"], decoded["carrier"]) == (2, "EMS")
