"""Rejection reason codes (docs/decisions/0045): the catalogue, the reject command's checks, old events.

The command's rule, said once below (``expected``) and checked by Hypothesis against the real service: codes
from the catalogue only, at least one, each kept once in the order named; ``other`` only with the issuer's own
words; no codes at all (the first API's body) is ``other``, which then needs words. A refused command records
nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.application import FIXABLE_FIELDS, BirthCertificateApplication
from domain.errors import InvalidValue
from domain.rejection import (
    LABEL_MAX,
    OTHER,
    REJECTION_REASONS,
    check_reason_codes,
    labels_in_a_thing,
    message_of,
)
from tests.builders import Walk, in_memory, issuer, last_written, refused, store_as_written_before

CODES = list(REJECTION_REASONS)
# Codes an issuer might send that the catalogue does not have: a typo, a case change, a label, nothing.
UNKNOWN = ["photo_unclear", "ID_EXPIRED", "证件照片不清晰或不完整", "", " other"]


def test_the_catalogue_covers_what_issuers_reject_for() -> None:
    assert set(REJECTION_REASONS) == {
        "id_photo_unclear",
        "id_expired",
        "name_rare_character",
        "newborn_name_inconsistent",
        "parent_details_mismatch",
        "delivery_record_mismatch",
        "signature_invalid",
        "address_undeliverable",
        "bundle_material_unclear",
        "other",
    }
    for reason in REJECTION_REASONS.values():
        assert set(reason.fields) <= set(FIXABLE_FIELDS), reason.code
        assert 0 < len(reason.label) <= LABEL_MAX, reason.code  # a subscribe message's thing
        assert reason.message.endswith("。"), reason.code  # a sentence she reads
    assert message_of("no_longer_in_the_catalogue") == REJECTION_REASONS[OTHER].message


def expected(codes: list[str] | None, reasons: list[str]) -> tuple[str, list[str]]:
    """The rule: ``("ok", codes recorded)`` or ``("refused", error code)``."""
    if codes is None:
        return ("ok", [OTHER]) if reasons else ("refused", ["reasons_required"])
    if not codes:
        return "refused", ["reason_codes_required"]
    if any(code not in REJECTION_REASONS for code in codes):
        return "refused", ["unknown_reason_code"]
    if OTHER in codes and not reasons:
        return "refused", ["reasons_required"]
    return "ok", list(dict.fromkeys(codes))


CODE_LISTS = st.one_of(
    st.none(),
    st.lists(st.sampled_from(CODES), max_size=5),
    st.lists(st.sampled_from(CODES + UNKNOWN), min_size=1, max_size=4),
)
WORDS = st.lists(
    st.sampled_from(["照片反光，看不清号码", "请用母亲本人的签名", "姓名第二个字写错了"]), max_size=2
)


@settings(max_examples=80, deadline=None)
@given(codes=CODE_LISTS, reasons=WORDS)
def test_the_reject_command_records_checked_codes_or_refuses_and_records_nothing(
    codes: list[str] | None, reasons: list[str]
) -> None:
    app = in_memory()
    w = Walk(app)
    w.submitted()
    outcome, value = expected(codes, reasons)
    if outcome == "refused":
        with refused(app, InvalidValue, value[0]):
            app.reject(w.issuer, w.id, reasons=reasons, fields=["newborn_name"], reason_codes=codes)
        assert app.get_application(w.parent, w.id).state == "submitted"
        return
    app.reject(w.issuer, w.id, reasons=reasons, fields=["newborn_name"], reason_codes=codes)
    [event] = [e for e in app.events.get(w.id) if isinstance(e, BirthCertificateApplication.Rejected)]
    assert (event.reason_codes, event.reasons) == (value, reasons)
    agg = app.get_application(w.parent, w.id)
    assert agg.state == "returned"
    assert agg.rejection is not None and agg.rejection["reason_codes"] == value


def test_an_unknown_code_is_refused_with_its_place_and_the_choices() -> None:
    try:
        check_reason_codes(["id_expired", "shoe_size"], [])
    except InvalidValue as e:
        [error] = e.errors
        assert (error.field, error.code) == ("reason_codes[1]", "unknown_reason_code")
        assert "shoe_size" in error.message and "身份证件已过有效期（id_expired）" in error.message
    else:  # pragma: no cover
        raise AssertionError("an unknown code was accepted")


@given(codes=st.lists(st.sampled_from(CODES), min_size=1, max_size=len(CODES), unique=True))
def test_the_labels_of_any_choice_fit_a_subscribe_message(codes: list[str]) -> None:
    phrase = labels_in_a_thing(codes)
    assert len(phrase) <= LABEL_MAX
    assert phrase.startswith(REJECTION_REASONS[codes[0]].label)
    if len(codes) > 1 and not phrase.endswith(f"等{len(codes)}项"):
        assert phrase == "、".join(REJECTION_REASONS[c].label for c in codes)


def test_a_v1_rejection_is_read_as_other() -> None:
    """Rejected v1 had no codes; one stored before v2 reads as ``other`` (the issuer's words said it)."""
    app = in_memory()
    w = Walk(app)
    submitted = w.submitted()
    v1_state = {
        "timestamp": datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        "actor": issuer().to_dict(),
        "reasons": ["身份证照片不清晰"],
        "fields": ["documents.mother_id_front"],
    }
    store_as_written_before(app, w.id, submitted.version + 1, "birthcert:Rejected", v1_state)
    event = list(app.events.get(w.id))[-1]
    assert isinstance(event, BirthCertificateApplication.Rejected)
    assert (event.reason_codes, event.reasons) == (["other"], ["身份证照片不清晰"])
    agg = app.get_application(w.parent, w.id)
    assert agg.state == "returned"
    assert agg.rejection == {
        "reasons": ["身份证照片不清晰"],
        "fields": ["documents.mother_id_front"],
        "reason_codes": ["other"],
    }


def test_new_rejections_are_written_as_v2() -> None:
    app = in_memory()
    w = Walk(app)
    w.submitted()
    w.reject(codes=["id_expired"])
    decoded = last_written(app, w.id)
    assert (decoded["class_version"], decoded["reason_codes"]) == (2, ["id_expired"])
