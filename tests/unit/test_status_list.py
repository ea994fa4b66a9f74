"""The Token Status List (draft-ietf-oauth-status-list): the draft's own example, signing and reading back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.credentials import CredentialError, Es256Signer, b64url, b64url_decode
from backend.status_list import (
    INVALID,
    VALID,
    compress,
    decompress,
    encode_bits,
    read_token,
    sign_token,
    status_at,
)

# The draft's example of a one-bit list (section "Status List", "bits: 1"): statuses of indexes 0…15 and the
# ``lst`` it publishes for them (bytes 0xB9 0xA3, ZLIB at best compression).
DRAFT_STATUSES = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
DRAFT_LST = "eNrbuRgAAhcBXQ"


def test_the_drafts_example_encodes_to_its_published_lst() -> None:
    raw = encode_bits([i for i, s in enumerate(DRAFT_STATUSES) if s], 16)
    assert raw == bytes([0xB9, 0xA3])
    assert compress(raw) == DRAFT_LST
    assert [status_at(decompress(DRAFT_LST), i) for i in range(16)] == DRAFT_STATUSES


@given(st.sets(st.integers(0, 2**17 - 1), max_size=50))
def test_every_set_index_reads_back_and_no_other(invalid: set[int]) -> None:
    raw = decompress(compress(encode_bits(invalid, 2**17)))
    assert len(raw) == 2**14
    for idx in invalid:
        assert status_at(raw, idx) == INVALID
    for idx in (0, 1, 8, 2**17 - 1):
        if idx not in invalid:
            assert status_at(raw, idx) == VALID


def test_an_index_outside_the_list_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_bits([2**17], 2**17)
    with pytest.raises(IndexError):
        status_at(bytes(2), 16)


def test_a_token_is_signed_read_back_and_a_changed_byte_fails() -> None:
    signer = Es256Signer.generate()
    jwks = {"keys": [signer.public_jwk()]}
    uri = "https://example.test/api/v1/status-lists/1"
    token = sign_token(signer, uri, [3, 70000], 2**17, now=1_700_000_000)
    read = read_token(token, jwks)
    assert read.header == {"alg": "ES256", "kid": signer.kid, "typ": "statuslist+jwt"}
    assert read.claims["sub"] == uri and read.claims["iat"] == 1_700_000_000
    assert read.claims["exp"] > read.claims["iat"] and read.claims["ttl"] == 60
    assert read.claims["status_list"]["bits"] == 1
    assert (read.status(3), read.status(70000), read.status(4)) == (INVALID, INVALID, VALID)

    head, payload, signature = token.split(".")
    changed = bytearray(b64url_decode(payload))
    changed[10] ^= 1
    with pytest.raises(CredentialError) as bad:
        read_token(f"{head}.{b64url(bytes(changed))}.{signature}", jwks)
    assert bad.value.code in ("bad_signature", "malformed")
    with pytest.raises(CredentialError) as unknown:
        read_token(token, {"keys": [Es256Signer.generate().public_jwk()]})
    assert unknown.value.code == "unknown_key"
    with pytest.raises(CredentialError) as malformed:
        read_token("not.a-token", jwks)
    assert malformed.value.code == "malformed"
