"""Random command sequences, illegal ones included, against the service on the in-memory store.

After every step: a refused command wrote nothing; the aggregate read back from the store
equals the one the command left in memory; and the invariants of shared/domain.md hold across
every application and delivery record. The father may join by invitation on his own account
(docs/decisions/0011-father-invitation.md) and, whatever he tries, does only his own part. A mother
may start without naming her province: her delivery record's then decides (decision 0013). An issuer may
declare a certificate void at any moment (decision 0040): once, from a printed state only, and nothing follows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.application import (
    CLOSED_STATES,
    ISSUED_STATES,
    REVOCABLE_STATES,
    REVOKED,
    STATES,
    SUBMITTED,
    BirthCertificateApplication,
)
from domain.delivery import DeliveryRecord
from domain.errors import DomainError
from domain.policy import get_profile
from domain.service import Applications, Index
from domain.values import Actor, CertificateNumber, IdNumber, PersonName
from tests.builders import (
    EMS,
    FATHER_ID,
    GD_HOSPITAL,
    MOTHER_ID,
    NOW,
    OTHER_WOMAN_ID,
    SD_FATHER_ID,
    SD_HOSPITAL,
    SD_MOTHER_ID,
    SYSTEM,
    Walk,
    facts,
    hospital,
    in_memory,
    issuer,
    sha,
    two_parents,
)

NUMBERS = [f"X00000000{i}" for i in range(1, 5)]
FAMILIES = ("gd", "sd")
KINDS = ["mother_id_front", "mother_id_back", "father_id_front", "father_id_back", "father_handheld_id"]
# What a father who joined by invitation may ever be recorded doing: his face check and his own photos.
FATHERS_EVENTS = (
    BirthCertificateApplication.FatherJoined,
    BirthCertificateApplication.FaceVerificationRequested,
    BirthCertificateApplication.FaceVerificationFailed,
    BirthCertificateApplication.FaceVerified,
    BirthCertificateApplication.DocumentUploaded,
    BirthCertificateApplication.FatherIdPhotoAccepted,
)


def _state(agg: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(agg).items() if k != "_pending_events"}


class Service(RuleBasedStateMachine):
    """Two families, one Guangdong and one Shandong, and whoever else happens to act."""

    @initialize()
    def setup(self) -> None:
        self.app: Applications = in_memory()
        self.walks = {
            "gd": Walk(self.app),
            "sd": Walk(self.app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID),
        }
        self.memory: dict[UUID, Any] = {}
        self.issued_forms: dict[tuple[UUID, str], Any] = {}
        self.seq = 0
        self.now = NOW
        self.app.clock = lambda: self.now
        self.fathers = {family: Actor(id=f"openid-father-{family}", role="parent") for family in FAMILIES}
        self.codes: dict[str, list[str]] = {family: [] for family in FAMILIES}

    # ------------------------------------------------------------------ running a command

    def _run(self, command: Callable[[], Any]) -> None:
        """Run one command; a refusal must leave the log exactly as it was."""
        before = self.app.recorder.max_notification_id()
        try:
            outcome = command()
        except DomainError:
            assert self.app.recorder.max_notification_id() == before, "a refused command wrote events"
            return
        if outcome is not None and hasattr(outcome, "aggregate"):
            self.memory[outcome.id] = outcome.aggregate

    def _walk(self, family: str) -> Walk:
        return self.walks[family]

    def _app_id(self, family: str) -> UUID:
        return self._walk(family).app_id or UUID(int=0)

    def _next_seq(self) -> str:
        self.seq += 1
        return f"seq-{self.seq:05d}"

    # ------------------------------------------------------------------ hospitals

    @rule(family=st.sampled_from(FAMILIES))
    def record_delivery(self, family: str) -> None:
        w = self._walk(family)
        self._run(lambda: w.record_delivery(province="广东省" if family == "gd" else "山东省"))

    @rule(family=st.sampled_from(FAMILIES), weight=st.sampled_from([3100, 3250, 3400]))
    def correct_delivery(self, family: str, weight: int) -> None:
        w = self._walk(family)
        if w.record_id is None:
            return
        province = "广东省" if family == "gd" else "山东省"
        self._run(
            lambda: self.app.correct_delivery(
                hospital(w.inst),
                w.record_id or "",
                facts=facts(w.mother_id, weight_g=weight, province=province),
                reason="核对病历后更正",
            )
        )

    # ------------------------------------------------------------------ parents

    @rule(
        family=st.sampled_from(FAMILIES),
        parents=st.sampled_from(["both", "both", "single_mother", "single_father"]),
        named=st.booleans(),
    )
    def start(self, family: str, parents: str, named: bool) -> None:
        """Naming her province, or not (the service's default, GD, until her record's is adopted)."""
        w = self._walk(family)
        circumstances = two_parents(
            parents=parents, father_residency=None if parents != "both" else "mainland"
        )
        province = w.inst.province if named else None

        def go() -> Any:
            out = self.app.start_application(w.parent, circumstances=circumstances, province=province)
            current = self.app.repository.get(w.app_id) if w.app_id else None
            if current is None or current.state in CLOSED_STATES:
                w.app_id = out.id  # otherwise the new one stays a rival in draft, checked by the invariants
            return out

        self._run(go)

    @rule(
        family=st.sampled_from(FAMILIES),
        role=st.sampled_from(["mother", "father"]),
        who=st.sampled_from(["right", "right", "stranger"]),
        verdict=st.sampled_from([10000, 10000, 10000, 10003, 10004, 90002]),
    )
    def face_check(self, family: str, role: str, who: str, verdict: int) -> None:
        w = self._walk(family)
        if who == "stranger":
            id_number = OTHER_WOMAN_ID
        elif role == "mother":
            id_number = w.mother_id
        else:
            id_number = w.father_id or FATHER_ID
        seq = self._next_seq()
        self._run(
            lambda: self.app.request_face_verification(
                w.parent,
                self._app_id(family),
                role=role,  # type: ignore[arg-type]
                name=PersonName("王芳" if role == "mother" else "张伟"),
                id_number=IdNumber(id_number),
                out_seq_no=seq,
            )
        )
        self._run(
            lambda: self.app.record_face_verification(
                w.parent, self._app_id(family), out_seq_no=seq, verify_ret=verdict
            )
        )

    @rule(family=st.sampled_from(FAMILIES), seq=st.integers(min_value=1, max_value=40))
    def replay_face_result(self, family: str, seq: int) -> None:
        w = self._walk(family)
        self._run(
            lambda: self.app.record_face_verification(
                w.parent, self._app_id(family), out_seq_no=f"seq-{seq:05d}", verify_ret=10000
            )
        )

    @rule(family=st.sampled_from(FAMILIES), dispute=st.booleans())
    def confirm_or_dispute(self, family: str, dispute: bool) -> None:
        w = self._walk(family)
        if dispute:
            self._run(
                lambda: self.app.dispute_delivery_info(w.parent, self._app_id(family), reason="体重记录有误")
            )
        else:
            self._run(lambda: self.app.confirm_delivery_info(w.parent, self._app_id(family)))

    @rule(family=st.sampled_from(FAMILIES), newborn=st.sampled_from(["张小花", "王小明", "李三姓"]))
    def details(self, family: str, newborn: str) -> None:
        w = self._walk(family)
        self._run(lambda: w.details(newborn=newborn))

    @rule(family=st.sampled_from(FAMILIES), kind=st.sampled_from(KINDS))
    def upload(self, family: str, kind: str) -> None:
        w = self._walk(family)
        self._run(
            lambda: self.app.upload_document(
                w.parent,
                self._app_id(family),
                kind=kind,
                document_id=sha(kind),
                sha256=sha(kind),
                content_type="image/jpeg",
                size=100,
            )
        )

    @rule(family=st.sampled_from(FAMILIES), stale=st.booleans())
    def sign(self, family: str, stale: bool) -> None:
        w = self._walk(family)
        self._run(lambda: w.sign(form_sha256=sha("stale") if stale else None))

    @rule(family=st.sampled_from(FAMILIES), ems=st.booleans())
    def choose_method(self, family: str, ems: bool) -> None:
        w = self._walk(family)
        self._run(w.choose_ems if ems else w.choose_pickup)

    @rule(family=st.sampled_from(FAMILIES), amount_right=st.booleans())
    def pay(self, family: str, amount_right: bool) -> None:
        w = self._walk(family)
        order = f"BC{self._next_seq()}"
        self._run(lambda: self.app.place_postage_order(w.parent, self._app_id(family), out_trade_no=order))
        self._run(
            lambda: self.app.record_postage_paid(
                SYSTEM,
                self._app_id(family),
                out_trade_no=order,
                amount_fen=2000 if amount_right else 1,
                transaction_id=order,
            )
        )

    @rule(family=st.sampled_from(FAMILIES))
    def submit(self, family: str) -> None:
        self._run(self._walk(family).submit)

    @rule(family=st.sampled_from(FAMILIES), dice=st.sampled_from(range(8)))
    def withdraw(self, family: str, dice: int) -> None:
        if dice != 5:  # rarely (boundaries are drawn often): a withdrawal ends the family's walk
            return
        w = self._walk(family)
        self._run(lambda: self.app.withdraw(w.parent, self._app_id(family)))

    @rule(family=st.sampled_from(FAMILIES), number=st.sampled_from(NUMBERS), steps=st.integers(1, 8))
    def next_steps(self, family: str, number: str, steps: int) -> None:
        """Do whatever the family's application needs next, a few times, so random runs reach review and issue."""
        for _ in range(steps):
            self.next_step(family, number)

    def next_step(self, family: str, number: str) -> None:
        """One step forward along the happy path."""
        w = self._walk(family)
        if w.record_id is None:
            self._run(lambda: w.record_delivery(province="广东省" if family == "gd" else "山东省"))
            return
        if w.app_id is None:
            self._run(w.start)
            return
        agg = self.app.repository.get(w.app_id)
        missing = agg.missing_for_submission() if agg.state in ("draft", "returned") else []
        steps: dict[str, Callable[[], Any]] = {
            "delivery_record_linked": lambda: self.app.link_delivery_record(w.parent, w.id),
            "delivery_info_confirmed": w.confirm,
            "details_provided": w.details,
            "father_verified": lambda: self._father_verifies(family),
            "documents_uploaded": w.upload_all,
            "form_signed": w.sign,
            "delivery_method_chosen": w.choose_ems,
            "postage_paid": lambda: self.pay(family, amount_right=True),
        }
        if missing and missing[0] == "mother_verified":
            # Begun and answered as two commands: the verdict may be refused (a link it cannot make)
            # after the request was recorded.
            self.face_check(family, "mother", "right", 10000)
        elif missing:
            self._run(steps[missing[0]])
        elif agg.state in ("draft", "returned"):
            self._run(w.submit)
        elif agg.state == "submitted":
            self.issue(family, number)
        elif agg.state == "issued":
            self.after_issue(family, "dispatch" if agg.delivery_method["method"] == "ems" else "handover")
        elif agg.state == "dispatched":
            self.after_issue(family, "loss")
        elif agg.state == "lost":
            self.reissue(family, number)

    # ------------------------------------------------------------------ the father's invitation

    @rule(family=st.sampled_from(FAMILIES))
    def invite_father(self, family: str) -> None:
        w = self._walk(family)

        def go() -> Any:
            out = self.app.invite_father(w.parent, self._app_id(family))
            self.codes[family].append(str(out.detail))
            return out

        self._run(go)

    @rule(family=st.sampled_from(FAMILIES))
    def father_joins(self, family: str) -> None:
        """The usual way: she invites, he accepts at once on his own phone."""
        self.invite_father(family)
        self.accept_invitation(family, "father", "latest")

    @rule(
        family=st.sampled_from(FAMILIES),
        who=st.sampled_from(["father", "father", "mother", "stranger"]),
        which=st.sampled_from(["latest", "latest", "first", "garbage"]),
    )
    def accept_invitation(self, family: str, who: str, which: str) -> None:
        codes = self.codes[family]
        picks = {"latest": codes[-1:], "first": codes[:1], "garbage": []}[which]
        code = picks[0] if picks else "A" * 27  # well-formed, but no invitation has it
        actor = {
            "father": self.fathers[family],
            "mother": self._walk(family).parent,
            "stranger": Actor(id="openid-stranger", role="parent"),
        }[who]

        def go() -> Any:
            before = self.app.recorder.max_notification_id()
            out = self.app.accept_father_invitation(actor, code)
            assert isinstance(out.aggregate, BirthCertificateApplication)
            assert out.aggregate.father_invitation is None  # consumed by the join
            if self.app.recorder.max_notification_id() == before:
                # Only the father who joined with this very code may retry (and records nothing).
                assert out.aggregate.father_user_id == actor.id
                assert out.aggregate.father_joined_digest == self.app.invitation_digest(code)
                return out
            invited = [
                e
                for e in self.app.events.get(out.id)
                if isinstance(e, BirthCertificateApplication.FatherInvited)
                and e.invitation_digest == self.app.invitation_digest(code)
            ]
            assert self.now < datetime.fromisoformat(invited[0].expires_at), "an expired invitation worked"
            return out

        self._run(go)

    @rule(hours=st.sampled_from([1, 12, 25]))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(
        family=st.sampled_from(FAMILIES),
        action=st.sampled_from(["face", "face", "face_as_mother", "upload", "details", "sign", "submit"]),
        kind=st.sampled_from(KINDS),
    )
    def father_acts(self, family: str, action: str, kind: str) -> None:
        """The father on his own account: his face check and photos work once he joined; nothing else does."""
        w = self._walk(family)
        father = self.fathers[family]
        app_id = self._app_id(family)
        if action in ("face", "face_as_mother"):
            seq = self._next_seq()
            as_mother = action == "face_as_mother"
            self._run(
                lambda: self.app.request_face_verification(
                    father,
                    app_id,
                    role="mother" if as_mother else "father",
                    name=PersonName("王芳" if as_mother else "张伟"),
                    id_number=IdNumber(w.mother_id if as_mother else (w.father_id or FATHER_ID)),
                    out_seq_no=seq,
                )
            )
            self._run(
                lambda: self.app.record_face_verification(father, app_id, out_seq_no=seq, verify_ret=10000)
            )
        elif action == "upload":
            self._run(
                lambda: self.app.upload_document(
                    father,
                    app_id,
                    kind=kind,
                    document_id=sha(kind + "-his"),
                    sha256=sha(kind + "-his"),
                    content_type="image/jpeg",
                    size=100,
                )
            )
        elif action == "details":
            self._run(lambda: Walk(self.app, parent=father, app_id=app_id).details())
        elif action == "sign":
            self._run(lambda: Walk(self.app, parent=father, app_id=app_id).sign())
        else:
            self._run(lambda: self.app.submit(father, app_id))

    def _father_verifies(self, family: str) -> Any:
        """His own check on his own account once he joined; otherwise on the mother's device, as before."""
        w = self._walk(family)
        agg = self.app.repository.get(w.id)
        if agg.father_user_id is None:
            return w.verify("father")
        # His own counter, far from the mother's, so that his out_seq_nos never collide with hers.
        his = Walk(self.app, parent=self.fathers[family], app_id=w.id, father_id=w.father_id, _seq=5000)
        his._seq += sum(1 for k in agg.pending_face) + agg.face_failures + len(agg.verified)
        return his.verify("father")

    # ------------------------------------------------------------------ issuers and the courier

    @rule(family=st.sampled_from(FAMILIES), own=st.booleans())
    def reject(self, family: str, own: bool) -> None:
        w = self._walk(family)
        actor = w.issuer if own else issuer(GD_HOSPITAL if family == "sd" else SD_HOSPITAL)
        self._run(
            lambda: self.app.reject(
                actor, self._app_id(family), reasons=["照片不清晰"], fields=["documents.mother_id_front"]
            )
        )

    @rule(family=st.sampled_from(FAMILIES), number=st.sampled_from(NUMBERS))
    def issue(self, family: str, number: str) -> None:
        w = self._walk(family)
        self._run(
            lambda: self.app.issue(
                w.issuer,
                self._app_id(family),
                certificate_number=CertificateNumber(number),
                sealer_name="赵盖章",
            )
        )

    @rule(family=st.sampled_from(FAMILIES), number=st.sampled_from(NUMBERS))
    def reissue(self, family: str, number: str) -> None:
        w = self._walk(family)
        self._run(
            lambda: self.app.reissue(
                w.issuer,
                self._app_id(family),
                certificate_number=CertificateNumber(number),
                sealer_name="赵盖章",
            )
        )

    @rule(
        family=st.sampled_from(FAMILIES),
        number=st.sampled_from(NUMBERS),
        cause=st.sampled_from(["misprinted", "damaged"]),
        own=st.booleans(),
    )
    def replace(self, family: str, number: str, cause: str, own: bool) -> None:
        """The institution's own misprint or damage, at any moment: a new number, the data as it was."""
        w = self._walk(family)
        actor = w.issuer if own else issuer(GD_HOSPITAL if family == "sd" else SD_HOSPITAL)
        self._run(
            lambda: self.app.replace_certificate(
                actor,
                self._app_id(family),
                certificate_number=CertificateNumber(number),
                cause=cause,
                old_certificate="recovered",
                sealer_name="赵盖章",
            )
        )

    @rule(
        family=st.sampled_from(FAMILIES), step=st.sampled_from(["dispatch", "delivered", "loss", "handover"])
    )
    def after_issue(self, family: str, step: str) -> None:
        w = self._walk(family)
        app_id = self._app_id(family)
        if step == "dispatch":
            self._run(lambda: self.app.dispatch(EMS, app_id, tracking_number=f"EA{self.seq:09d}CN"))
        elif step == "delivered":
            self._run(lambda: self.app.record_delivered(EMS, app_id))
        elif step == "loss":
            self._run(lambda: self.app.report_loss(EMS, app_id, reason="邮件丢失"))
        else:
            self._run(w.hand_over)

    @rule(
        family=st.sampled_from(FAMILIES),
        who=st.sampled_from(["own", "own", "own", "other", "mother"]),
        reason=st.sampled_from(["obtained_by_deception", "issued_in_error", "court_order", "forgot"]),
        dice=st.sampled_from(range(2)),
    )
    def revoke(self, family: str, who: str, reason: str, dice: int) -> None:
        """宣布作废, now and then (a revocation ends the family's walk): only the institution's own issuer, with a
        known ground, from a printed state, once."""
        if dice:
            return
        w = self._walk(family)
        actor = {
            "own": w.issuer,
            "other": issuer(GD_HOSPITAL if family == "sd" else SD_HOSPITAL),
            "mother": w.parent,
        }[who]
        self._run(
            lambda: self.app.revoke_certificate(
                actor, self._app_id(family), reason=reason, note="经核查，申办材料系冒用他人身份"
            )
        )

    @rule(family=st.sampled_from(FAMILIES))
    def record_elicense(self, family: str) -> None:
        """The e-licence process records the e-licence of the number in force (refused once it is void)."""
        w = self._walk(family)
        agg = self.app.repository.get(w.app_id) if w.app_id else None
        number = getattr(agg, "certificate_number", None) or NUMBERS[0]
        self.seq += 1
        self._run(
            lambda: self.app.issue_elicense(
                SYSTEM,
                self._app_id(family),
                licence_id=f"1.2.156.3005.2.C0134.GZFY01.SEQ{self.seq:05d}.001.X",
                certificate_number=number,
                key_id="key-00000001",
                status_list="1",
                status_index=self.seq,
            )
        )

    @rule(family=st.sampled_from(FAMILIES))
    def stranger_acts(self, family: str) -> None:
        stranger = Actor(id="openid-stranger", role="parent")
        self._run(lambda: self.app.submit(stranger, self._app_id(family)))
        self._run(lambda: self.app.withdraw(stranger, self._app_id(family)))

    # ------------------------------------------------------------------ invariants

    def _aggregates(self) -> list[Any]:
        ids = self.app.recorder.select_notifications(1, 100_000)
        seen = dict.fromkeys(n.originator_id for n in ids)
        return [self.app.repository.get(i) for i in seen]

    @invariant()
    def stored_equals_memory(self) -> None:
        if not hasattr(self, "app"):
            return
        for agg_id, agg in self.memory.items():
            stored = self.app.repository.get(agg_id)
            if stored.version == agg.version:
                assert _state(stored) == _state(agg)

    @invariant()
    def note_reach(self) -> None:
        """Statistics (--hypothesis-show-statistics): how deep the runs get."""
        if hasattr(self, "app"):
            for a in self._aggregates():
                if isinstance(a, BirthCertificateApplication):
                    event(f"reached {a.state}")
                    if a.father_user_id is not None:
                        event("a father joined by invitation")
                    if a.province_chosen is False and a.record is not None:
                        event(f"an unnamed start linked a {a.province} record")

    @invariant()
    def rules_hold(self) -> None:
        if not hasattr(self, "app"):
            return
        aggregates = self._aggregates()
        apps = [a for a in aggregates if isinstance(a, BirthCertificateApplication)]
        records = {str(r.id): r for r in aggregates if isinstance(r, DeliveryRecord)}
        numbers: list[str] = []
        for a in apps:
            assert a.state in STATES
            if a.state == SUBMITTED:
                assert a.signature_valid, "a submitted application must carry a valid signature"
                assert a.missing_for_submission() == []
            if a.record is not None:
                assert a.verified["mother"]["id_number"] == a.record["mother_id_number"], "防冒领"
            if a.state in ISSUED_STATES:
                assert a.certificate_number is not None
                record = records[a.delivery_record_id or ""]
                assert record.issued_certificate is not None
                key = (a.id, str(record.issued_certificate))
                form = self.issued_forms.setdefault(key, a.form())
                assert a.form() == form, "registered data changed after issue"
                numbers.append(a.certificate_number)
                numbers.extend(a.voided_numbers)
            if a.state in CLOSED_STATES and a.delivery_record_id is not None:
                assert records[a.delivery_record_id].application_id != str(a.id)
        assert len(numbers) == len(set(numbers)), "a certificate number was used twice"
        for record in records.values():
            holders = [a for a in apps if a.delivery_record_id == str(record.id) and a.state in ISSUED_STATES]
            assert len(holders) <= 1, "two certificates from one delivery record"
            if record.application_id is not None:
                holder = next(a for a in apps if str(a.id) == record.application_id)
                assert holder.delivery_record_id == str(record.id)
        for index in (a for a in aggregates if isinstance(a, Index) and a.kind == "certificate-number"):
            assert len(index.refs) == 1

    @invariant()
    def the_province_is_the_records(self) -> None:
        """A linked record's province is the application's; adopted only when unnamed, once, at the link."""
        if not hasattr(self, "app"):
            return
        for a in (a for a in self._aggregates() if isinstance(a, BirthCertificateApplication)):
            if a.record is not None:
                assert a.province == a.record["province"]
                assert a.policy == get_profile(a.province).to_dict()
            events: list[Any] = list(self.app.events.get(a.id))
            adopted = [
                i for i, e in enumerate(events) if isinstance(e, BirthCertificateApplication.ProvinceAdopted)
            ]
            if not adopted:
                continue
            assert len(adopted) == 1 and not a.province_chosen
            assert isinstance(events[adopted[0] + 1], BirthCertificateApplication.DeliveryRecordLinked)
            before = {type(e) for e in events[: adopted[0]]}
            assert before <= {
                BirthCertificateApplication.ApplicationStarted,
                BirthCertificateApplication.FaceVerificationRequested,
                BirthCertificateApplication.FaceVerificationFailed,
                BirthCertificateApplication.FaceVerified,
                BirthCertificateApplication.FatherInvited,
                BirthCertificateApplication.FatherJoined,
            }, "a province adopted after steps taken under another's rules"

    @invariant()
    def a_revocation_is_final(self) -> None:
        """Revoked once at most, by the institution's own issuer, from a printed state, with a known ground;
        nothing is recorded after it, and the number stays used."""
        if not hasattr(self, "app"):
            return
        for a in (a for a in self._aggregates() if isinstance(a, BirthCertificateApplication)):
            events: list[Any] = list(self.app.events.get(a.id))
            revoked = [e for e in events if isinstance(e, BirthCertificateApplication.CertificateRevoked)]
            assert len(revoked) <= 1, "revoked twice"
            assert (a.state == REVOKED) == bool(revoked)
            if not revoked:
                continue
            e = revoked[0]
            assert e is events[-1], f"{type(events[-1]).__name__} recorded after the revocation"
            before = self.app.repository.get(a.id, version=e.originator_version - 1)
            assert before.state in REVOCABLE_STATES
            assert e.voided_certificate_number == before.certificate_number == a.certificate_number
            assert e.actor["role"] == "issuer" and e.actor["institution"] == a.institution
            assert e.reason in ("obtained_by_deception", "issued_in_error", "court_order")
            assert a.elicense_state() == "revoked"

    @invariant()
    def the_father_does_only_his_part(self) -> None:
        if not hasattr(self, "app"):
            return
        for a in (a for a in self._aggregates() if isinstance(a, BirthCertificateApplication)):
            events: list[Any] = list(self.app.events.get(a.id))
            joins = [e for e in events if isinstance(e, BirthCertificateApplication.FatherJoined)]
            assert len(joins) <= 1, "an invitation used twice, or a second father"
            if a.father_user_id is None:
                assert not joins
                continue
            assert a.father_user_id != a.applicant_id, "the mother joined as the father"
            assert joins[0].invitation_digest in a.invitation_digests
            invited = [e for e in events if isinstance(e, BirthCertificateApplication.FatherInvited)]
            latest_before_join = [e for e in invited if e.originator_version < joins[0].originator_version][
                -1
            ]
            assert latest_before_join.invitation_digest == joins[0].invitation_digest, (
                "a superseded one worked"
            )
            for e in events:
                if (
                    e.actor.get("id") != a.father_user_id
                    or e.originator_version < joins[0].originator_version
                ):
                    continue
                assert isinstance(e, FATHERS_EVENTS), f"the father was recorded doing {type(e).__name__}"
                if isinstance(e, BirthCertificateApplication.DocumentUploaded):
                    assert e.kind.startswith("father_")
                if hasattr(e, "role"):
                    assert e.role == "father"

    @invariant()
    def no_invitation_code_is_stored(self) -> None:
        if not hasattr(self, "app"):
            return
        codes = [c for family in FAMILIES for c in self.codes[family]]
        if not codes:
            return
        stored = b"".join(n.state for n in self.app.recorder.select_notifications(1, 100_000))
        for code in codes:
            assert code.encode() not in stored, "an invitation code is stored in clear"


Service.TestCase.settings = settings(
    max_examples=50, stateful_step_count=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestService = Service.TestCase


def test_a_full_walk_satisfies_the_machine_invariants() -> None:
    """The machine's invariants also hold on the happy path (so they are not vacuous)."""
    machine = Service()
    machine.setup()
    w = machine.walks["gd"]
    machine._run(w.record_delivery)
    machine._run(w.submitted)
    machine._run(w.issue)
    machine.rules_hold()
    machine.stored_equals_memory()
    agg = machine.app.get_application(w.parent, w.app_id or "")
    assert agg.state == "issued"
    assert MOTHER_ID in str(agg.verified)


def test_a_father_who_joins_satisfies_the_machine_invariants() -> None:
    """The invitation path through the machine: she invites, he joins and does his part, she submits."""
    machine = Service()
    machine.setup()
    w = machine.walks["gd"]
    for _ in range(5):  # delivery, start, her face check (which links the record), confirmation, details
        machine.next_step("gd", NUMBERS[0])
    machine.father_joins("gd")
    for _ in range(5):  # his face check, then the photos, signature, method and submission
        machine.next_step("gd", NUMBERS[0])
    machine.father_acts("gd", "submit", "father_id_front")
    machine.father_acts("gd", "upload", "mother_id_front")
    machine.rules_hold()
    machine.the_father_does_only_his_part()
    machine.no_invitation_code_is_stored()
    agg = machine.app.get_application(w.parent, w.app_id or "")
    assert agg.father_user_id == machine.fathers["gd"].id
    assert agg.state == "submitted"
    his = [e for e in machine.app.events.get(agg.id) if e.actor["id"] == agg.father_user_id]
    assert [type(e).__name__ for e in his] == [
        "FatherJoined",
        "FaceVerificationRequested",
        "FaceVerified",
    ]


def test_an_unnamed_start_adopts_the_records_province_within_the_machine() -> None:
    """The adoption path through the machine: a Shandong mother names no province, then walks to review."""
    machine = Service()
    machine.setup()
    machine.record_delivery("sd")
    machine.start("sd", "both", named=False)
    w = machine.walks["sd"]
    for _ in range(15):
        if machine.app.get_application(w.parent, w.app_id or "").state == "submitted":
            break
        machine.next_step("sd", NUMBERS[0])
    machine.rules_hold()
    machine.the_province_is_the_records()
    machine.stored_equals_memory()
    agg = machine.app.get_application(w.parent, w.app_id or "")
    assert (agg.province, agg.province_chosen, agg.state) == ("SD", False, "submitted")
    assert agg.postage_paid is not None  # Shandong's postage, paid up front
