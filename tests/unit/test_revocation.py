"""An issuer's revocation of a certificate (宣布作废, decision 0040), and the stale If-Match that e-licence bookkeeping
must not turn into a conflict: the domain through the service on the in-memory store.

- Examples: what a revocation records, what the family is told (the counter, never the issuer's note), and that
  nothing follows online — no e-licence, no courier, no replacement, no edits.
- A Hypothesis state machine over one certificate's life after review (issue, dispatch, delivery, loss, reissue,
  replacement, handover, e-licence, revocation attempts by anyone): the command is accepted exactly from issued,
  dispatched, delivered or collected, by the institution's own issuer, with a known ground, once.
- ``_only_bookkeeping_since`` through the public commands: an issuer's command with a stale If-Match goes through
  only when every event after that version is an ``ELicenseIssued``; any other event in between is a 409.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.application import (
    REVOCABLE_STATES,
    REVOKED,
    SUBMITTED,
    BirthCertificateApplication,
)
from domain.errors import Conflict, DomainError, Forbidden, InvalidValue, NotFound, RuleViolated
from domain.revocation import REVOCATION_REASONS
from domain.service import Applications, Outcome
from domain.values import Actor
from projections.status import father_status_of, status_of
from tests.builders import EMS, SD_HOSPITAL, SYSTEM, Walk, in_memory, issuer, refused
from tests.unit.test_counter import number, replace
from tests.unit.test_referrals import GD_COUNTER, app

__all__ = ["app"]  # the fixture (the GD and SD institutions, GD's counter set), shared with test_referrals

NOTE = "经公安机关核查，申办时所持母亲身份证系冒用他人身份"


def elicense(app: Applications, w: Walk, serial: int = 1) -> Outcome:
    """What the e-licence process records for the number in force (projections/elicense.py)."""
    number = app.get_application(w.issuer, w.id).certificate_number or ""
    return app.issue_elicense(
        SYSTEM,
        w.id,
        licence_id=f"1.2.156.3005.2.C0134.GZFY01.SEQ{serial:017d}.001.X",
        certificate_number=number,
        key_id="key-00000001",
        status_list="1",
        status_index=serial,
    )


def revoke(app: Applications, w: Walk, **changes: Any) -> Outcome:
    arguments: dict[str, Any] = {"reason": "obtained_by_deception", "note": NOTE, **changes}
    actor = arguments.pop("actor", w.issuer)
    return app.revoke_certificate(actor, w.id, **arguments)


# ---------------------------------------------------------------- what a revocation records and tells


def test_a_revocation_voids_the_certificate_and_its_e_licence_and_nothing_follows_online(
    app: Applications,
) -> None:
    w = Walk(app)
    w.submitted("ems")
    w.issue("X440100001")
    elicense(app, w)
    out = revoke(app, w)
    agg = app.get_application(w.parent, w.id)
    assert (agg.state, agg.elicense_state(), agg.certificate_number) == (REVOKED, "revoked", "X440100001")
    [event] = [
        e for e in app.events.get(w.id) if isinstance(e, BirthCertificateApplication.CertificateRevoked)
    ]
    assert (event.voided_certificate_number, event.reason, event.note) == (
        "X440100001",
        "obtained_by_deception",
        NOTE,
    )
    assert event.actor["role"] == "issuer" and event.counter is not None
    assert event.counter["address"] == GD_COUNTER.address
    assert out.version == agg.version

    with refused(app, RuleViolated, "already_revoked"):
        revoke(app, w, reason="court_order")
    with refused(app, RuleViolated, "certificate_revoked"):
        elicense(app, w, serial=2)
    with refused(app, RuleViolated, "invalid_state"):
        app.dispatch(w.issuer, w.id, tracking_number="EA123456789CN")
    with refused(app, RuleViolated, "invalid_state"):
        replace(app, w, 2)
    with refused(app, RuleViolated, "certificate_revoked"):
        app.withdraw(w.parent, w.id)
    with refused(app, RuleViolated, "certificate_revoked"):
        w.details(newborn="王小明")
    # The courier's late news of a void certificate's parcel changes nothing (and is no error for EMS).
    before = app.recorder.max_notification_id()
    app.record_delivered(EMS, w.id)
    app.report_loss(EMS, w.id, reason="邮件遗失")
    assert app.recorder.max_notification_id() == before


def test_the_family_is_told_why_and_where_to_go_never_the_note(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify("mother")
    father = Actor(id="openid-father", role="parent")
    app.accept_father_invitation(father, app.invite_father(w.parent, w.id).detail or "")
    w.confirm()
    w.details()
    Walk(app, parent=father, app_id=w.id, _seq=500).verify("father")
    w.upload_all()
    w.sign()
    w.choose_pickup()
    w.submit()
    w.issue("X440100003")
    revoke(app, w, reason="issued_in_error")
    agg = app.get_application(w.parent, w.id)

    hers = status_of(agg)
    assert (hers["state"], hers["state_label"]) == ("revoked", "出生医学证明已作废")
    told = hers["revocation"]
    assert (told["certificate_number"], told["reason"]) == ("X440100003", "issued_in_error")
    assert told["reason_label"] == REVOCATION_REASONS["issued_in_error"]
    assert (
        "X440100003" in told["message"] and "已宣布作废" in told["message"] and "行政复议" in told["message"]
    )
    assert told["counter"]["phone"] == GD_COUNTER.phone and GD_COUNTER.address in told["where"]
    assert told["bring"][-1].startswith("已作废的《出生医学证明》原件")
    assert [s["code"] for s in hers["next_steps"]] == ["visit_counter"]
    assert hers["done_steps"][-1]["code"] == "revoked"
    assert hers["elicense"]["state"] == "revoked"
    assert NOTE not in str(hers) and "冒用" not in str(hers)

    his = father_status_of(agg)
    assert his["state"] == "revoked" and "revocation" not in his
    assert [s["code"] for s in his["next_steps"]] == ["visit_counter"]
    assert "X440100003" not in str(his) and NOTE not in str(his)


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"reason": "forgot"}, InvalidValue, "invalid_reason"),
        ({"reason": ""}, InvalidValue, "invalid_reason"),
        ({"note": " "}, InvalidValue, "invalid_text"),
        ({"note": "x" * 501}, InvalidValue, "invalid_text"),
        ({"note": "核查\u202e结果"}, InvalidValue, "invalid_characters"),
        ({"actor": issuer(SD_HOSPITAL)}, NotFound, "not_found"),
        ({"actor": Actor(id="openid-mother", role="parent")}, Forbidden, "forbidden"),
        ({"actor": EMS}, Forbidden, "forbidden"),
    ],
)
def test_a_revocation_needs_the_own_issuer_a_known_ground_and_a_note(
    app: Applications, changes: dict[str, Any], error: type[DomainError], code: str
) -> None:
    w = Walk(app)
    w.submitted("ems")
    w.issue("X440100004")
    with refused(app, error, code):
        revoke(app, w, **changes)


# ---------------------------------------------------------------- the command's allowed states


def _printed(app: Applications, w: Walk, method: str) -> None:
    w.submitted(method)
    w.issue("X440100031")


def _dispatched(app: Applications, w: Walk) -> None:
    _printed(app, w, "ems")
    app.dispatch(w.issuer, w.id, tracking_number="EA000000031CN")


def _lost(app: Applications, w: Walk) -> None:
    _dispatched(app, w)
    app.report_loss(EMS, w.id, reason="邮件遗失")


PATHS: dict[str, Callable[[Applications, Walk], object]] = {
    "draft": lambda app, w: w.ready_to_submit(),
    "submitted": lambda app, w: w.submitted(),
    "returned": lambda app, w: (w.submitted(), w.reject()),
    "withdrawn": lambda app, w: (w.submitted(), app.withdraw(w.parent, w.id)),
    "issued (EMS)": lambda app, w: _printed(app, w, "ems"),
    "issued (pickup)": lambda app, w: _printed(app, w, "pickup"),
    "dispatched": _dispatched,
    "delivered": lambda app, w: (_dispatched(app, w), app.record_delivered(EMS, w.id)),
    "lost": _lost,
    "issued again (reissue)": lambda app, w: (
        _lost(app, w),
        app.reissue(w.issuer, w.id, certificate_number=number(32), sealer_name="赵盖章"),
    ),
    "collected": lambda app, w: (_printed(app, w, "pickup"), w.hand_over()),
    "issued again (replacement)": lambda app, w: (
        _printed(app, w, "pickup"),
        w.hand_over(),
        replace(app, w, 33, old_certificate="recovered"),
    ),
    "revoked": lambda app, w: (_printed(app, w, "ems"), revoke(app, w)),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_certificate_is_revocable_from_issued_dispatched_delivered_or_collected(
    app: Applications, path: str
) -> None:
    w = Walk(app)
    PATHS[path](app, w)
    before = app.get_application(w.issuer, w.id)
    assert before.state == path.split(" ")[0]
    if before.state in REVOCABLE_STATES:
        revoke(app, w, reason="court_order")
        after = app.get_application(w.issuer, w.id)
        assert (after.state, after.revocation["certificate_number"]) == (REVOKED, before.certificate_number)
        return
    code = "already_revoked" if before.state == REVOKED else "invalid_state"
    with refused(app, RuleViolated, code):
        revoke(app, w, reason="court_order")


class CertificateLife(RuleBasedStateMachine):
    """One certificate after review, its life driven at random, revocation tried at any moment by anyone.

    The model: a revocation is recorded exactly when the state before it is issued, dispatched, delivered or
    collected, the actor is the institution's own issuer and the ground is known; a refusal writes nothing."""

    @initialize(method=st.sampled_from(["ems", "pickup"]), printed=st.sampled_from([True, True, True, False]))
    def submitted(self, method: str, printed: bool) -> None:
        self.app = in_memory()
        self.w = Walk(self.app)
        self.w.submitted(method)
        self.numbers = iter(range(1, 10_000))
        self.serial = 0
        self.revocations = 0
        if printed:
            self.w.issue(number(next(self.numbers)).value)

    def state(self) -> str:
        return self.app.get_application(self.w.issuer, self.w.id).state

    def _try(self, command: Callable[[], object]) -> bool:
        before = self.app.recorder.max_notification_id()
        try:
            command()
        except DomainError:
            assert self.app.recorder.max_notification_id() == before, "a refused command wrote events"
            return False
        return True

    @rule()
    def issue(self) -> None:
        self._try(lambda: self.w.issue(number(next(self.numbers)).value))

    @rule(step=st.sampled_from(["dispatch", "delivered", "loss", "handover"]))
    def courier_or_counter(self, step: str) -> None:
        app, w = self.app, self.w
        commands: dict[str, Callable[[], object]] = {
            "dispatch": lambda: app.dispatch(w.issuer, w.id, tracking_number=f"EA{self.serial:09d}CN"),
            "delivered": lambda: app.record_delivered(EMS, w.id),
            "loss": lambda: app.report_loss(EMS, w.id, reason="邮件遗失"),
            "handover": w.hand_over,
        }
        self._try(commands[step])

    @rule(replacement=st.booleans())
    def new_blank(self, replacement: bool) -> None:
        """A replacement (the institution's error) or, after a loss, a reissue: each on a new number."""
        n = next(self.numbers)
        if replacement:
            self._try(lambda: replace(self.app, self.w, n, cause="damaged", old_certificate="recovered"))
        else:
            self._try(
                lambda: self.app.reissue(
                    self.w.issuer, self.w.id, certificate_number=number(n), sealer_name="赵盖章"
                )
            )

    @rule()
    def e_licence(self) -> None:
        self.serial += 1
        self._try(lambda: elicense(self.app, self.w, self.serial))

    @rule(
        who=st.sampled_from(["own", "own", "own", "other", "mother", "ems"]),
        reason=st.sampled_from([*REVOCATION_REASONS, "misprinted"]),
    )
    def revoke(self, who: str, reason: str) -> None:
        actor = {
            "own": self.w.issuer,
            "other": issuer(SD_HOSPITAL),
            "mother": self.w.parent,
            "ems": EMS,
        }[who]
        before = self.state()
        accepted = self._try(lambda: revoke(self.app, self.w, actor=actor, reason=reason))
        expected = who == "own" and before in REVOCABLE_STATES and reason in REVOCATION_REASONS
        assert accepted == expected, (before, who, reason)
        event(f"revoke from {before}: {'recorded' if accepted else 'refused'}")
        self.revocations += accepted

    @rule()
    def the_family_tries(self) -> None:
        """The mother submits again (never recorded: under review, or printed) or withdraws (only before issue,
        never after a revocation)."""
        before = self.state()
        assert not self._try(self.w.submit)
        withdrawn = self._try(lambda: self.app.withdraw(self.w.parent, self.w.id))
        assert withdrawn == (before == SUBMITTED), before

    @invariant()
    def revoked_once_and_last(self) -> None:
        if not hasattr(self, "app"):
            return
        events = list(self.app.events.get(self.w.id))
        revoked = [
            i for i, e in enumerate(events) if isinstance(e, BirthCertificateApplication.CertificateRevoked)
        ]
        assert len(revoked) == self.revocations <= 1
        if revoked:
            assert revoked[0] == len(events) - 1, "something was recorded after the revocation"
            assert self.state() == REVOKED


CertificateLife.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestCertificateLife = CertificateLife.TestCase


# ---------------------------------------------------------------- a stale If-Match and e-licence bookkeeping


def test_a_stale_if_match_passes_over_the_e_licence_only(app: Applications) -> None:
    """The console read the application, then the leader's process recorded the e-licence: the issuer's next step
    goes through. A revocation read before a replacement does not."""
    w = Walk(app)
    w.submitted("ems")
    read = w.issue("X440100011").version
    elicense(app, w)
    app.dispatch(w.issuer, w.id, tracking_number="EA000000001CN", expected_version=read)
    delivered = app.record_delivered(EMS, w.id).version
    replace(app, w, 12, cause="damaged", old_certificate="recovered")
    with refused(app, Conflict, "version_mismatch"):
        revoke(app, w, expected_version=delivered)


ACTIONS = ("elicense", "elicense", "replace", "open_check", "revoke")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(st.sampled_from(ACTIONS), max_size=8))
def test_a_stale_version_is_accepted_exactly_when_only_e_licences_were_recorded_since(
    actions: list[str],
) -> None:
    app = in_memory()
    w = Walk(app)
    w.submitted("pickup")
    w.issue("X440100021")
    numbers = iter(range(22, 100))
    serials = iter(range(1, 100))
    for action in actions:
        commands: dict[str, Callable[[], object]] = {
            "elicense": lambda: elicense(app, w, next(serials)),
            "replace": lambda: replace(app, w, next(numbers)),
            "open_check": lambda: w.collector_check(),
            "revoke": lambda: revoke(app, w),
        }
        with contextlib.suppress(
            DomainError
        ):  # not possible now: a second e-licence, anything after a revocation
            commands[action]()
    events = list(app.events.get(w.id))
    version = events[-1].originator_version
    for read in range(0, version + 2):
        later = [e for e in events if e.originator_version > read]
        stale_ok = read == version or (
            0 < read < version
            and all(isinstance(e, BirthCertificateApplication.ELicenseIssued) for e in later)
        )
        # reject is refused by the state (issued, revoked: never under review) once past the version check, so
        # the probe records nothing either way.
        with pytest.raises(DomainError) as probe:
            app.reject(w.issuer, w.id, reasons=["照片不清晰"], fields=["newborn_name"], expected_version=read)
        assert probe.value.code == ("invalid_state" if stale_ok else "version_mismatch"), (
            read,
            version,
            actions,
        )
        if stale_ok and read < version:
            event("a stale version accepted over an e-licence")
        assert list(app.events.get(w.id))[-1].originator_version == version
