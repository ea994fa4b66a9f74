"""The rules behind the limits: the staff-login waits, and which address is the client's."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.addresses import forwarded_client
from backend.config import Config, ConfigError, parse_networks
from backend.throttle import Backoff, RateLimited, Tally, admit, wait_text

SOURCE = Backoff(free=5, most=900)
ACCOUNT = Backoff(free=10, most=900)
failures = st.integers(min_value=0, max_value=200)
times = st.floats(min_value=0, max_value=1e6, allow_nan=False)


def test_the_first_failures_cost_nothing_then_the_wait_doubles_up_to_the_ceiling() -> None:
    assert [SOURCE.wait(n) for n in range(4, 10)] == [0, 1, 2, 4, 8, 16]
    assert SOURCE.wait(5 + 10) == 900 and SOURCE.wait(10_000) == 900


@given(failures)
def test_one_more_failure_never_shortens_the_wait(n: int) -> None:
    assert SOURCE.wait(n + 1) >= SOURCE.wait(n)


@given(account=failures, last=times, elapsed=st.floats(min_value=0, max_value=1e4))
def test_a_clean_address_is_never_kept_waiting_whatever_the_account_has_suffered(
    account: int, last: float, elapsed: float
) -> None:
    wait = admit(
        Tally(),
        Tally(account, last),
        known_source=False,
        now=last + elapsed,
        per_source=SOURCE,
        per_account=ACCOUNT,
    )
    assert wait == 0


@given(source=failures, account=failures, last=times, elapsed=st.floats(min_value=0, max_value=1e4))
def test_the_owners_usual_address_is_held_only_by_its_own_failures(
    source: int, account: int, last: float, elapsed: float
) -> None:
    now = last + elapsed
    wait = admit(
        Tally(source, last),
        Tally(account, last),
        known_source=True,
        now=now,
        per_source=SOURCE,
        per_account=ACCOUNT,
    )
    assert wait == Tally(source, last).held_for(SOURCE, now)


@given(source=st.integers(min_value=1, max_value=4), account=failures, last=times)
def test_an_address_that_failed_too_waits_for_the_guessed_account(
    source: int, account: int, last: float
) -> None:
    wait = admit(
        Tally(source, last),
        Tally(account, last),
        known_source=False,
        now=last,
        per_source=SOURCE,
        per_account=ACCOUNT,
    )
    assert wait == pytest.approx(ACCOUNT.wait(account))


@given(n=failures, last=times)
def test_a_failure_taken_back_restores_the_earlier_wait(n: int, last: float) -> None:
    tally = Tally(n, last)
    assert tally.failed(last).undone() == Tally(n, last)
    assert Tally.decode(tally.encode()) == tally
    assert Tally.decode(None) == Tally()


def test_the_wait_is_said_in_whole_seconds_minutes_or_hours() -> None:
    assert [wait_text(s) for s in (1, 59, 60, 61, 3599, 3600, 7201)] == [
        "1秒",
        "59秒",
        "1分钟",
        "2分钟",
        "60分钟",
        "1小时",
        "3小时",
    ]
    limited = RateLimited(0.2)
    assert (limited.retry_after, limited.headers, limited.code) == (1, {"Retry-After": "1"}, "rate_limited")
    assert limited.message == "操作过于频繁，请1秒后再试"


# ---------------------------------------------------------------- the client's address

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.1")
addresses = st.ip_addresses(v=4).map(str)


@given(peer=addresses, forged=st.lists(st.text(max_size=20) | addresses, max_size=5))
def test_an_untrusted_peer_is_the_client_whatever_it_forwards(peer: str, forged: list[str]) -> None:
    address = ipaddress.ip_address(peer)
    if any(address in network for network in PROXIES):
        return
    assert forwarded_client(address, [", ".join(forged)], PROXIES) == address


@given(
    client=addresses,
    forged=st.lists(addresses | st.text(max_size=20), max_size=5),
    proxies=st.lists(st.sampled_from(["10.1.2.3", "10.9.9.9", "192.0.2.1"]), max_size=3),
)
def test_behind_trusted_proxies_the_client_is_the_right_most_untrusted_hop(
    client: str, forged: list[str], proxies: list[str]
) -> None:
    if any(ipaddress.ip_address(client) in network for network in PROXIES):
        return
    header = ", ".join([*forged, client, *proxies])
    assert forwarded_client(ipaddress.ip_address("10.0.0.1"), [header], PROXIES) == ipaddress.ip_address(
        client
    )


def test_a_broken_hop_stops_the_walk_at_the_last_trusted_one() -> None:
    peer = ipaddress.ip_address("10.0.0.1")
    assert forwarded_client(peer, ["203.0.113.9, not-an-address, 10.2.2.2"], PROXIES) == ipaddress.ip_address(
        "10.2.2.2"
    )
    assert forwarded_client(peer, [], PROXIES) == peer
    assert forwarded_client(
        peer, ["[2001:db8::7]:443", "198.51.100.4:5555"], PROXIES
    ) == ipaddress.ip_address("198.51.100.4")


def test_trusted_proxies_and_limits_come_from_the_environment(tmp_path: Path) -> None:
    config = Config.from_env(
        {"BIRTHCERT_TRUSTED_PROXIES": "10.0.0.0/8 2001:db8::/32", "BIRTHCERT_RATE_UPLOAD": "3 per minute"},
        data_dir=tmp_path,
    )
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.0/8", "2001:db8::/32"]
    assert config.rate_limits["upload"] == "3 per minute"
    assert Config.from_env({}, data_dir=tmp_path).trusted_proxies == ()


@pytest.mark.parametrize(
    "bad", [{"BIRTHCERT_TRUSTED_PROXIES": "10.0.0.0/33"}, {"BIRTHCERT_RATE_FACE_USER": "lots"}], ids=str
)
def test_a_malformed_limit_or_proxy_is_a_configuration_error(tmp_path: Path, bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        Config.from_env(bad, data_dir=tmp_path)
