"""The provincial apps' face check (docs/decisions/0030): the claim checks of the ID token, the channel data,
and the FaceVerified / FaceVerificationFailed events that now say which channel checked."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.channels import face_claims_failure, id_number_hash
from domain.application import BirthCertificateApplication
from domain.channels import CHANNELS, Channel, channel_name_of, channel_of
from domain.referral import COUNTED_FACE_FAILURES
from domain.values import IdDocument, PersonName
from tests.builders import Walk, in_memory, store_as_written_before

NOW = 1_800_000_000.0
NONCE = "n-0S6_WzA2Mj"
SUB = "gd-8f1c2a"
NAME = "王芳"
ID = "44010619930101002X"
YSS = CHANNELS["yueshengshi"]  # sends the number itself
BJT = CHANNELS["beijingtong"]  # sends a salted hash


def good(channel: Channel, **changes: Any) -> dict[str, Any]:
    """The ID token's claims of a pass, as the channel names them."""
    claims: dict[str, Any] = {
        "sub": SUB,
        "nonce": NONCE,
        "acr": channel.face_acr,
        "auth_time": int(NOW) - 20,
        channel.claims["name"]: NAME,
    }
    if "id_number_hash" in channel.claims:
        claims[channel.claims["id_number_hash"]] = id_number_hash(NONCE, ID)
    else:
        claims[channel.claims["id_number"]] = ID
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def verdict(channel: Channel, claims: dict[str, Any], *, name: str = NAME, id_number: str = ID) -> str | None:
    return face_claims_failure(
        channel, claims, nonce=NONCE, subject=SUB, name=name, id_number=id_number, now=NOW
    )


@pytest.mark.parametrize("channel", list(CHANNELS.values()), ids=list(CHANNELS))
def test_a_fresh_face_authentication_of_the_claimed_person_passes(channel: Channel) -> None:
    assert verdict(channel, good(channel)) is None
    # The ID number's check letter in either case; the number is compared as the document prints it.
    assert verdict(channel, good(channel), id_number=ID.lower()) is None


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"nonce": "someone-elses"}, "face_nonce_mismatch"),
        ({"nonce": None}, "face_nonce_mismatch"),
        ({"sub": "gd-other"}, "face_subject_mismatch"),
        ({"acr": "urn:gd:yss:loa:password"}, "face_acr_mismatch"),
        ({"acr": None}, "face_acr_mismatch"),
        ({"auth_time": None}, "face_stale"),
        ({"auth_time": "1800000000"}, "face_stale"),
        ({"auth_time": True}, "face_stale"),
        ({"auth_time": int(NOW) - 3600}, "face_stale"),
        ({"auth_time": int(NOW) + 3600}, "face_stale"),
        ({"id_number": "440106199001011237"}, "face_mismatch"),
        ({"id_number": None}, "face_mismatch"),
        ({"name": "王小美"}, "id_mismatch"),
    ],
)
def test_each_claim_that_does_not_prove_the_check_has_its_code(changes: dict[str, Any], code: str) -> None:
    assert verdict(YSS, good(YSS, **changes)) == code


def test_a_hashed_channel_compares_the_salted_hash_of_the_claimed_number() -> None:
    claim = BJT.claims["id_number_hash"]
    assert verdict(BJT, good(BJT, **{claim: id_number_hash(NONCE, ID).upper()})) is None
    assert verdict(BJT, good(BJT, **{claim: hashlib.sha256(ID.encode()).hexdigest()})) == "face_mismatch"
    assert verdict(BJT, good(BJT, **{claim: id_number_hash("another-nonce", ID)})) == "face_mismatch"
    assert verdict(BJT, good(BJT, **{claim: ID})) == "face_mismatch"  # the number itself is not its hash


@settings(max_examples=200, deadline=None)
@given(age=st.integers(min_value=-10_000, max_value=10_000))
def test_auth_time_passes_only_within_max_age_and_the_leeway(age: int) -> None:
    found = verdict(YSS, good(YSS, auth_time=int(NOW) - age))
    assert (found is None) == (-30 <= age <= YSS.max_age_seconds + 30)


@settings(max_examples=200, deadline=None)
@given(other=st.from_regex(r"\d{17}[0-9X]", fullmatch=True))
def test_any_other_id_number_is_someone_elses_face(other: str) -> None:
    for channel in (YSS, BJT):
        claims = good(channel)
        if "id_number_hash" in channel.claims:
            claims[channel.claims["id_number_hash"]] = id_number_hash(NONCE, other)
        else:
            claims[channel.claims["id_number"]] = other
        assert verdict(channel, claims) == (None if other == ID else "face_mismatch")


@settings(max_examples=100, deadline=None)
@given(claims=st.dictionaries(st.sampled_from(sorted(good(YSS))), st.none() | st.integers() | st.text()))
def test_arbitrary_claims_never_pass_unless_they_are_the_pass(claims: dict[str, Any]) -> None:
    if verdict(YSS, claims) is None:
        expected = good(YSS)
        assert {k: claims.get(k) for k in ("nonce", "sub", "acr", "id_number", "name")} == {
            k: expected[k] for k in ("nonce", "sub", "acr", "id_number", "name")
        }


def test_only_a_failure_like_wechats_10004_or_no_reason_counts_towards_a_referral() -> None:
    protocol = {
        "face_state_mismatch",
        "face_code_invalid",
        "face_token_invalid",
        "face_nonce_mismatch",
        "face_subject_mismatch",
        "face_acr_mismatch",
        "face_stale",
        "id_mismatch",
    }
    assert not protocol & COUNTED_FACE_FAILURES
    assert {"face_mismatch", "face_failed"} <= COUNTED_FACE_FAILURES


def test_the_channels_are_data_each_with_its_own_actor_prefix() -> None:
    assert set(CHANNELS) == {"yueshengshi", "beijingtong", "jiankangshandong", "jishiban"}
    assert {c.province for c in CHANNELS.values()} == {"GD", "BJ", "SD", "HE"}
    assert channel_of("yss:gd-1") is YSS and YSS.actor_id("gd-1") == "yss:gd-1"
    assert YSS.subject_of("yss:gd:with:colons") == "gd:with:colons"
    assert channel_of("oDemoMother000001") is None and channel_of("xyz:1") is None
    assert channel_name_of("bjt:1") == "beijingtong" and channel_name_of("o-1") == "wechat"


def test_face_events_record_the_channel_and_v1_events_read_as_wechat() -> None:
    app = in_memory()
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify(verify_ret=10004)
    verified = w.verify()
    events = [
        e
        for e in app.events.get(w.id)
        if isinstance(
            e, BirthCertificateApplication.FaceVerified | BirthCertificateApplication.FaceVerificationFailed
        )
    ]
    assert [e.channel for e in events] == ["wechat", "wechat"]
    # Events as a release before channels wrote them: no class_version, no channel.
    v1 = {
        "timestamp": datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        "actor": w.parent.to_dict(),
        "role": "mother",
        "out_seq_no": "old-0001",
        "verify_ret": 10001,
        "code": "face_bad_request",
    }
    store_as_written_before(app, w.id, verified.version + 1, "birthcert:FaceVerificationFailed", v1)
    event = list(app.events.get(w.id))[-1]
    assert isinstance(event, BirthCertificateApplication.FaceVerificationFailed)
    assert (event.channel, event.code) == ("wechat", "face_bad_request")


def test_a_provincial_apps_failure_is_recorded_with_our_code_and_verify_ret_0() -> None:
    app = in_memory()
    w = Walk(app)
    w.record_delivery()
    w.start()
    seq = w.next_seq()
    app.request_face_verification(
        w.parent,
        w.id,
        role="mother",
        name=PersonName(w.mother_name),
        id_number=IdDocument(w.mother_id),
        out_seq_no=seq,
    )
    outcome = app.record_face_verification(
        w.parent, w.id, out_seq_no=seq, verify_ret=10000, channel="yueshengshi", failure="face_stale"
    )
    assert outcome.detail == "face_stale"
    event = list(app.events.get(w.id))[-1]
    assert isinstance(event, BirthCertificateApplication.FaceVerificationFailed)
    assert (event.channel, event.code, event.verify_ret) == ("yueshengshi", "face_stale", 0)
    seq = w.next_seq()
    app.request_face_verification(
        w.parent,
        w.id,
        role="mother",
        name=PersonName(w.mother_name),
        id_number=IdDocument(w.mother_id),
        out_seq_no=seq,
    )
    passed = app.record_face_verification(
        w.parent, w.id, out_seq_no=seq, verify_ret=10000, channel="yueshengshi"
    )
    assert passed.detail is None
    event = next(e for e in app.events.get(w.id) if isinstance(e, BirthCertificateApplication.FaceVerified))
    assert (event.channel, event.verify_ret) == ("yueshengshi", 10000)
