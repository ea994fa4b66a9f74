"""The father verifies on his own WeChat account: the mother's invitation, his acceptance, and his part.

One test per rule, through the service on the in-memory store with a clock the test moves. A refused
command must leave the log exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from eventsourcing.domain import Snapshot

from domain.application import FATHER_INVITATION_TTL, BirthCertificateApplication, NotReady
from domain.errors import DomainError, Forbidden, InvalidValue, NotFound, RuleViolated
from domain.service import INVITATION_CODE_RE, Applications
from domain.values import Actor, IdNumber, PersonName
from tests.builders import (
    FATHER_ID,
    NOW,
    OTHER_MAN_ID,
    SD_FATHER_ID,
    SD_HOSPITAL,
    SD_MOTHER_ID,
    SYSTEM,
    Walk,
    father_details,
    issuer,
    mother_details,
    recipient,
    refused,
    sha,
)

FATHER = Actor(id="openid-father", role="parent")
STRANGER = Actor(id="openid-stranger", role="parent")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> Applications:
    return Applications(clock=clock)


@pytest.fixture
def walk(app: Applications) -> Walk:
    """A two-parent application whose mother has passed her face check and confirmed the record."""
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify("mother")
    w.confirm()
    return w


def joined(app: Applications, walk: Walk, father: Actor = FATHER) -> str:
    """Invite and accept; returns the (used) code."""
    code = str(app.invite_father(walk.parent, walk.id).detail)
    app.accept_father_invitation(father, code)
    return code


def father_face(
    app: Applications,
    walk: Walk,
    actor: Actor = FATHER,
    *,
    id_number: str = FATHER_ID,
    seq: str = "fseq-0001",
) -> Any:
    app.request_face_verification(
        actor, walk.id, role="father", name=PersonName("张伟"), id_number=IdNumber(id_number), out_seq_no=seq
    )
    return app.record_face_verification(actor, walk.id, out_seq_no=seq, verify_ret=10000)


def upload(app: Applications, actor: Actor, walk: Walk, kind: str) -> Any:
    return app.upload_document(
        actor, walk.id, kind=kind, document_id=sha(kind), sha256=sha(kind), content_type="image/jpeg", size=10
    )


def events_of(app: Applications, walk: Walk) -> list[Any]:
    return list(app.events.get(walk.id))


# ---------------------------------------------------------------- the invitation


def test_the_mother_invites_and_only_a_keyed_digest_is_recorded(app: Applications, walk: Walk) -> None:
    out = app.invite_father(walk.parent, walk.id)
    code = str(out.detail)
    assert INVITATION_CODE_RE.fullmatch(code) and len(code) == 27  # 160 random bits, URL-safe
    event = events_of(app, walk)[-1]
    assert isinstance(event, BirthCertificateApplication.FatherInvited)
    assert event.actor["id"] == walk.parent.id
    assert event.invitation_digest == app.invitation_digest(code)
    assert re.fullmatch(r"[0-9a-f]{64}", event.invitation_digest)
    assert code not in repr(vars(event))
    expires = datetime.fromisoformat(event.expires_at)
    assert expires == NOW + FATHER_INVITATION_TTL
    assert expires.utcoffset() == timedelta(hours=8)


def test_codes_are_random_and_their_digests_depend_on_the_index_key(app: Applications, walk: Walk) -> None:
    first = str(app.invite_father(walk.parent, walk.id).detail)
    second = str(app.invite_father(walk.parent, walk.id).detail)
    assert first != second
    assert Applications().invitation_digest(first) != app.invitation_digest(first)


def test_no_invitation_before_the_mothers_face_check(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    with refused(app, NotReady, "not_ready"):
        app.invite_father(w.parent, w.id)


def test_a_single_mother_invites_nobody(app: Applications) -> None:
    w = Walk(app, father_id=None)
    w.record_delivery()
    w.start()
    w.verify("mother")
    with refused(app, RuleViolated, "no_father"):
        app.invite_father(w.parent, w.id)


def test_no_invitation_once_the_father_is_verified_on_her_device(app: Applications, walk: Walk) -> None:
    walk.details()
    walk.verify("father")
    with refused(app, RuleViolated, "father_already_verified"):
        app.invite_father(walk.parent, walk.id)


def test_no_invitation_while_under_review(app: Applications, walk: Walk) -> None:
    walk.details()
    walk.upload_all()
    code = str(app.invite_father(walk.parent, walk.id).detail)
    father_face(app, walk, walk.parent)  # on her device, as today
    walk.sign()
    walk.choose_ems()
    walk.submit()
    with refused(app, RuleViolated, "under_review"):
        app.invite_father(walk.parent, walk.id)
    with refused(app, RuleViolated, "under_review"):
        app.accept_father_invitation(FATHER, code)


def test_only_the_applicant_invites(app: Applications, walk: Walk) -> None:
    with refused(app, NotFound, "not_found"):  # another parent does not even learn that it exists
        app.invite_father(STRANGER, walk.id)
    for actor in (issuer(), SYSTEM):
        with refused(app, Forbidden, "forbidden"):
            app.invite_father(actor, walk.id)


def test_a_stale_if_match_refuses_the_invitation(app: Applications, walk: Walk) -> None:
    version = app.get_application(walk.parent, walk.id).version
    app.invite_father(walk.parent, walk.id, expected_version=version)
    with refused(app, DomainError, "version_mismatch"):
        app.invite_father(walk.parent, walk.id, expected_version=version)


# ---------------------------------------------------------------- accepting it


def test_the_father_accepts_on_his_own_account(app: Applications, walk: Walk) -> None:
    code = str(app.invite_father(walk.parent, walk.id).detail)
    out = app.accept_father_invitation(FATHER, code)
    assert out.id == walk.id
    event = events_of(app, walk)[-1]
    assert isinstance(event, BirthCertificateApplication.FatherJoined)
    assert event.actor["id"] == FATHER.id
    assert event.invitation_digest == app.invitation_digest(code)
    agg = app.get_application(FATHER, walk.id)  # he may see it now
    assert agg.father_user_id == FATHER.id
    assert agg.is_joined_father(FATHER) and not agg.is_joined_father(walk.parent)


@pytest.mark.parametrize("code", ["", "short", "x" * 27, "!" * 27, "A" * 200])
def test_a_wrong_or_malformed_code_finds_nothing(app: Applications, walk: Walk, code: str) -> None:
    app.invite_father(walk.parent, walk.id)
    with refused(app, NotFound, "invitation_not_found"):
        app.accept_father_invitation(FATHER, code)


def test_an_expired_invitation_is_refused(app: Applications, walk: Walk, clock: Clock) -> None:
    code = str(app.invite_father(walk.parent, walk.id).detail)
    clock.advance(FATHER_INVITATION_TTL)
    with refused(app, RuleViolated, "invitation_expired"):
        app.accept_father_invitation(FATHER, code)
    fresh = str(app.invite_father(walk.parent, walk.id).detail)
    clock.advance(FATHER_INVITATION_TTL - timedelta(seconds=1))
    app.accept_father_invitation(FATHER, fresh)  # a second before its end it still works


def test_an_invitation_is_used_once(app: Applications, walk: Walk) -> None:
    code = joined(app, walk)
    with refused(app, RuleViolated, "invitation_used"):
        app.accept_father_invitation(STRANGER, code)
    # The father's own retry (his answer was lost) finds him joined, and records nothing more.
    before = app.recorder.max_notification_id()
    app.accept_father_invitation(FATHER, code)
    assert app.recorder.max_notification_id() == before


def test_a_new_invitation_supersedes_the_previous_one(app: Applications, walk: Walk) -> None:
    old = str(app.invite_father(walk.parent, walk.id).detail)
    new = str(app.invite_father(walk.parent, walk.id).detail)
    with refused(app, RuleViolated, "invitation_superseded"):
        app.accept_father_invitation(FATHER, old)
    app.accept_father_invitation(FATHER, new)
    with refused(app, RuleViolated, "invitation_used"):
        app.accept_father_invitation(STRANGER, new)


def test_the_mother_cannot_accept_her_own_invitation(app: Applications, walk: Walk) -> None:
    code = str(app.invite_father(walk.parent, walk.id).detail)
    with refused(app, Forbidden, "own_invitation"):
        app.accept_father_invitation(walk.parent, code)
    with refused(app, Forbidden, "forbidden"):
        app.accept_father_invitation(issuer(), code)


def test_no_new_invitation_once_a_father_joined(app: Applications, walk: Walk) -> None:
    joined(app, walk)
    with refused(app, RuleViolated, "father_already_joined"):
        app.invite_father(walk.parent, walk.id)


def test_a_withdrawn_application_takes_no_father(app: Applications, walk: Walk) -> None:
    code = str(app.invite_father(walk.parent, walk.id).detail)
    app.withdraw(walk.parent, walk.id)
    with refused(app, RuleViolated, "application_closed"):
        app.accept_father_invitation(FATHER, code)


def test_a_race_lost_to_another_acceptance_says_used(app: Applications, walk: Walk) -> None:
    code = str(app.invite_father(walk.parent, walk.id).detail)
    # Both load the application before either saves: the second save loses on the version.
    first: BirthCertificateApplication = app.repository.get(walk.id)
    second: BirthCertificateApplication = app.repository.get(walk.id)
    digest = app.invitation_digest(code)
    first.accept_father_invitation(FATHER, invitation_digest=digest, now=NOW)
    second.accept_father_invitation(STRANGER, invitation_digest=digest, now=NOW)
    app.save(first)
    with pytest.raises(RuleViolated) as lost:
        app._commit(second, conflict=lambda: app._joined_or_raced(walk.id))
    assert lost.value.code == "invitation_used"
    assert app.get_application(walk.parent, walk.id).father_user_id == FATHER.id


# ---------------------------------------------------------------- the father's part, and nothing else


def test_the_father_passes_his_own_face_check(app: Applications, walk: Walk) -> None:
    walk.details()
    joined(app, walk)
    father_face(app, walk)
    agg = app.get_application(walk.parent, walk.id)
    assert agg.verified["father"] == {"name": "张伟", "id_number": FATHER_ID}
    assert agg.father_confirmed
    assert "father_verified" not in agg.missing_for_signing()
    verified = events_of(app, walk)[-1]
    assert isinstance(verified, BirthCertificateApplication.FaceVerified)
    assert (verified.role, verified.actor["id"]) == ("father", FATHER.id)


def test_before_the_details_his_check_counts_once_they_name_him(app: Applications, walk: Walk) -> None:
    joined(app, walk)
    father_face(app, walk)
    agg = app.get_application(FATHER, walk.id)
    assert agg.missing_for_father() == ["father_documents_uploaded"]
    walk.details()
    assert app.get_application(FATHER, walk.id).father_confirmed


def test_the_father_verifies_only_as_the_named_father(app: Applications, walk: Walk) -> None:
    walk.details()
    joined(app, walk)
    with refused(app, InvalidValue, "not_named_father"):
        app.request_face_verification(
            FATHER,
            walk.id,
            role="father",
            name=PersonName("张伟"),
            id_number=IdNumber(OTHER_MAN_ID),
            out_seq_no="fseq-0002",
        )


def test_the_father_cannot_do_the_mothers_face_check(app: Applications) -> None:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify("mother")
    joined(app, w)
    with refused(app, Forbidden, "father_own_check_only"):
        app.request_face_verification(
            FATHER,
            w.id,
            role="mother",
            name=PersonName("王芳"),
            id_number=IdNumber(w.mother_id),
            out_seq_no="fseq-0003",
        )


def test_only_who_began_a_check_records_its_verdict(app: Applications, walk: Walk) -> None:
    joined(app, walk)
    app.request_face_verification(
        FATHER,
        walk.id,
        role="father",
        name=PersonName("张伟"),
        id_number=IdNumber(FATHER_ID),
        out_seq_no="fseq-1",
    )
    with refused(app, Forbidden, "not_your_verification"):
        app.record_face_verification(walk.parent, walk.id, out_seq_no="fseq-1", verify_ret=10000)
    app.request_face_verification(
        walk.parent,
        walk.id,
        role="father",
        name=PersonName("张伟"),
        id_number=IdNumber(FATHER_ID),
        out_seq_no="mseq-1",
    )
    with refused(app, Forbidden, "not_your_verification"):
        app.record_face_verification(FATHER, walk.id, out_seq_no="mseq-1", verify_ret=10000)
    app.record_face_verification(walk.parent, walk.id, out_seq_no="mseq-1", verify_ret=10000)


def test_the_mother_can_still_verify_the_father_on_her_device(app: Applications, walk: Walk) -> None:
    walk.details()
    joined(app, walk)
    walk.verify("father")
    assert app.get_application(walk.parent, walk.id).father_confirmed


def test_the_father_uploads_only_his_own_photos(app: Applications, walk: Walk) -> None:
    joined(app, walk)
    upload(app, FATHER, walk, "father_id_front")
    upload(app, FATHER, walk, "father_id_back")
    agg = app.get_application(FATHER, walk.id)
    assert {"father_id_front", "father_id_back"} <= set(agg.documents)
    for kind in ("mother_id_front", "mother_id_back"):
        with refused(app, Forbidden, "father_documents_only"):
            upload(app, FATHER, walk, kind)
    with refused(app, RuleViolated, "handheld_not_allowed"):  # Guangdong has no handheld-ID rule
        upload(app, FATHER, walk, "father_handheld_id")


def test_in_shandong_the_father_may_send_his_handheld_id_photo(app: Applications) -> None:
    w = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, father_id=SD_FATHER_ID)
    w.record_delivery(province="山东省")
    w.start()
    w.verify("mother")
    w.confirm()
    w.details()
    joined(app, w)
    upload(app, FATHER, w, "father_handheld_id")
    assert app.get_application(w.parent, w.id).father_confirmed


def mother_only_commands(app: Applications, walk: Walk) -> dict[str, Callable[[], Any]]:
    return {
        "details": lambda: app.provide_details(
            FATHER,
            walk.id,
            newborn_name=PersonName("张小花"),
            mother=mother_details(),
            father=father_details(),
        ),
        "confirm": lambda: app.confirm_delivery_info(FATHER, walk.id),
        "dispute": lambda: app.dispute_delivery_info(FATHER, walk.id, reason="体重记录有误"),
        "sign": lambda: app.sign_form(
            FATHER,
            walk.id,
            form_sha256=sha("form"),
            signature_document_id=sha("s"),
            signature_sha256=sha("s"),
        ),
        "method": lambda: app.choose_delivery_method(FATHER, walk.id, method="ems", recipient=recipient()),
        "postage": lambda: app.place_postage_order(FATHER, walk.id, out_trade_no="BC123456789"),
        "submit": lambda: app.submit(FATHER, walk.id),
        "withdraw": lambda: app.withdraw(FATHER, walk.id),
        "invite": lambda: app.invite_father(FATHER, walk.id),
    }


@pytest.mark.parametrize(
    "command", ["details", "confirm", "dispute", "sign", "method", "postage", "submit", "withdraw", "invite"]
)
def test_the_father_cannot_do_the_mothers_commands(app: Applications, walk: Walk, command: str) -> None:
    walk.details()
    joined(app, walk)
    with refused(app, Forbidden, "applicant_only"):
        mother_only_commands(app, walk)[command]()


def test_a_father_sees_only_the_application_he_joined(app: Applications, walk: Walk) -> None:
    other = Walk(app, mother_id=SD_MOTHER_ID, inst=SD_HOSPITAL, father_id=SD_FATHER_ID)
    other.parent = Actor(id="openid-other-mother", role="parent")
    other.record_delivery(province="山东省")
    other.start()
    with pytest.raises(NotFound):
        app.get_application(FATHER, walk.id)
    joined(app, walk)
    app.get_application(FATHER, walk.id)
    with pytest.raises(NotFound):
        app.get_application(FATHER, other.id)
    with refused(app, NotFound, "not_found"):
        father_face(app, other)


def test_a_stranger_with_no_invitation_sees_and_does_nothing(app: Applications, walk: Walk) -> None:
    joined(app, walk)
    with pytest.raises(NotFound):
        app.get_application(STRANGER, walk.id)
    with refused(app, NotFound, "not_found"):
        upload(app, STRANGER, walk, "father_id_front")


def test_after_a_rejection_the_father_replaces_his_photos(app: Applications, walk: Walk) -> None:
    walk.details()
    joined(app, walk)
    father_face(app, walk)
    walk.upload_all()
    walk.sign()
    walk.choose_ems()
    walk.submit()
    with refused(app, RuleViolated, "under_review"):
        upload(app, FATHER, walk, "father_id_front")
    walk.reject(fields=["documents.father_id_front"])
    upload(app, FATHER, walk, "father_id_front")
    assert walk.state() == "returned"


def test_a_snapshot_from_before_invitations_loads(app: Applications, walk: Walk) -> None:
    agg = app.get_application(walk.parent, walk.id)
    snapshot = Snapshot.take(agg)
    state = dict(snapshot.state)
    assert state.pop("class_version") == 6
    assert state.pop("elicenses") == []  # v6's (decision 0038)
    v4 = ("replacements", "pickup_appointment", "collector_letter", "collector_check")
    v5 = ("named_institution", "face_failure_day", "referral")
    for name in (
        "father_invitation",
        "invitation_digests",
        "father_user_id",
        "father_joined_digest",
        *v4,
        *v5,
    ):
        state.pop(name)
    old = Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )
    loaded = old.mutate(None)
    assert isinstance(loaded, BirthCertificateApplication)
    assert (loaded.father_user_id, loaded.invitation_digests, loaded.father_invitation) == (None, [], None)
    assert not loaded.is_joined_father(FATHER)
