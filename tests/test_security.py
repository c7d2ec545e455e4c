"""Flood protection and scanner recognition, with time stepped by the test."""

from __future__ import annotations

import pytest

from firmware import security
from firmware.security import (
    DEFAULT_BAN_S,
    DEFAULT_REQUESTS,
    DEFAULT_WINDOW_S,
    AuthGuard,
    RateLimiter,
    is_scanner,
)

ATTACKER = "198.51.100.66"
NEIGHBOUR = "198.51.100.67"


def flood(limiter: RateLimiter, source: str, count: int, *, start: float = 0.0,
          step: float = 0.01) -> list[bool]:
    return [limiter.allow(source, start + i * step) for i in range(count)]


def test_default_limits_are_16_requests_per_2_s_and_a_300_s_ban() -> None:
    assert (DEFAULT_REQUESTS, DEFAULT_WINDOW_S, DEFAULT_BAN_S) == (16, 2.0, 300.0)


def test_sixteen_requests_within_the_window_pass() -> None:
    limiter = RateLimiter()
    assert flood(limiter, ATTACKER, 16) == [True] * 16
    assert not limiter.is_banned(ATTACKER, 0.2)


def test_the_seventeenth_request_within_the_window_bans_the_source() -> None:
    limiter = RateLimiter()
    flood(limiter, ATTACKER, 16)
    assert limiter.allow(ATTACKER, 1.9) is False
    assert limiter.is_banned(ATTACKER, 1.9)


def test_a_banned_source_is_refused_for_the_whole_ban() -> None:
    limiter = RateLimiter()
    flood(limiter, ATTACKER, 17)
    banned_at = 16 * 0.01
    assert limiter.allow(ATTACKER, banned_at + 10.0) is False
    assert limiter.allow(ATTACKER, banned_at + DEFAULT_BAN_S - 0.001) is False


def test_the_ban_lifts_after_ban_s() -> None:
    limiter = RateLimiter()
    flood(limiter, ATTACKER, 17)
    lifted_at = 16 * 0.01 + DEFAULT_BAN_S
    assert not limiter.is_banned(ATTACKER, lifted_at)
    assert limiter.allow(ATTACKER, lifted_at) is True


def test_after_the_ban_the_source_starts_a_fresh_window() -> None:
    limiter = RateLimiter()
    flood(limiter, ATTACKER, 17)
    lifted_at = 16 * 0.01 + DEFAULT_BAN_S
    assert flood(limiter, ATTACKER, 16, start=lifted_at) == [True] * 16


def test_refused_requests_during_a_ban_do_not_extend_it() -> None:
    limiter = RateLimiter(ban_s=10.0)
    flood(limiter, ATTACKER, 17)
    flood(limiter, ATTACKER, 100, start=1.0, step=0.05)
    assert limiter.allow(ATTACKER, 0.16 + 10.0) is True


def test_the_window_resets_after_window_s() -> None:
    limiter = RateLimiter()
    assert flood(limiter, ATTACKER, 16, step=0.1) == [True] * 16
    assert flood(limiter, ATTACKER, 16, start=DEFAULT_WINDOW_S) == [True] * 16
    assert not limiter.is_banned(ATTACKER, DEFAULT_WINDOW_S + 1)


def test_configured_limits_are_used() -> None:
    limiter = RateLimiter(requests=3, window_s=10.0, ban_s=60.0)
    assert flood(limiter, ATTACKER, 4, step=2.0) == [True, True, True, False]
    assert limiter.bans(6.0)[0].until == 66.0


def test_a_ban_applies_to_that_source_only() -> None:
    limiter = RateLimiter()
    flood(limiter, ATTACKER, 17)
    assert limiter.allow(NEIGHBOUR, 0.5) is True


def test_bans_lists_the_active_bans_with_their_facts() -> None:
    limiter = RateLimiter()
    flood(limiter, ATTACKER, 17)
    [ban] = limiter.bans(1.0)
    assert (ban.source, ban.requests) == (ATTACKER, 17)
    assert ban.since == pytest.approx(0.16)
    assert ban.until == pytest.approx(0.16 + DEFAULT_BAN_S)
    assert limiter.bans(300.16) == []


def test_prune_forgets_ended_windows_and_lifted_bans() -> None:
    limiter = RateLimiter(ban_s=10.0)
    flood(limiter, ATTACKER, 17)
    for index in range(50):
        limiter.allow(f"203.0.113.{index}", 0.5)
    limiter.prune(20.0)
    # Memory is what prune is for, so look at what it holds.
    assert limiter._windows == {}
    assert len(limiter._bans) == 0


def test_prune_keeps_windows_and_bans_still_running() -> None:
    limiter = RateLimiter(ban_s=10.0)
    flood(limiter, ATTACKER, 17)
    limiter.allow(NEIGHBOUR, 0.5)
    limiter.prune(1.0)
    assert set(limiter._windows) == {NEIGHBOUR}
    assert limiter.is_banned(ATTACKER, 1.0)


def test_tracked_sources_stay_bounded_under_a_scan_from_many_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A scan with a new (possibly spoofed) source address per packet, all within one window.
    monkeypatch.setattr(security, "MAX_TRACKED_SOURCES", 100)
    limiter = RateLimiter()
    for index in range(250):
        limiter.allow(f"10.{index // 256}.{index % 256}.1", index * 0.001)
    assert len(limiter._windows) <= 100


@pytest.mark.parametrize("user_agent", [
    "friendly-scanner", "Friendly-Scanner", "sipvicious 0.2.8", "SIPVicious", "sipcli/v1.8",
    "SIPCLI/1.0", "my friendly-scanner build",
])
def test_scanner_user_agents_are_recognised_in_any_case(user_agent: str) -> None:
    assert is_scanner(user_agent)


@pytest.mark.parametrize("user_agent", [
    None, "", "Yealink SIP-T46S 66.86.0.15", "Linphone/5.2", "Grandstream GXP1625",
])
def test_ordinary_user_agents_are_not_scanners(user_agent: str | None) -> None:
    assert not is_scanner(user_agent)


def test_configured_scanner_names_match_in_any_case() -> None:
    assert is_scanner("sipsak 0.9.8", ("SipSak",))
    assert is_scanner("SIPSAK 0.9.8", ("sipsak",))


def test_only_the_configured_scanner_names_are_used() -> None:
    assert not is_scanner("friendly-scanner", ("sipsak",))


# --- failed authentications (issue 9 item 9) ------------------------------------------------------


def guard(**limits: float) -> AuthGuard:
    settings = {"per_source": 10, "per_extension": 20, "window_s": 600.0, "ban_s": 300.0}
    settings.update(limits)
    return AuthGuard(**settings)  # type: ignore[arg-type]


def test_ten_failures_within_the_window_ban_the_address() -> None:
    g = guard()
    for i in range(9):
        g.failed(ATTACKER, "101", i * 10.0)
    assert not g.source_banned(ATTACKER, 90.0)
    g.failed(ATTACKER, "101", 95.0)
    assert g.source_banned(ATTACKER, 95.0)
    assert not g.source_banned(NEIGHBOUR, 95.0)
    assert not g.source_banned(ATTACKER, 95.0 + 300.0)


def test_failures_spread_wider_than_the_window_do_not_ban() -> None:
    g = guard()
    for i in range(30):
        g.failed(ATTACKER, None, i * 70.0)  # 9 per 600 s at most
    assert not g.source_banned(ATTACKER, 30 * 70.0)


def test_failures_for_one_extension_from_many_addresses_lock_it() -> None:
    g = guard()
    for i in range(20):
        g.failed(f"198.51.100.{i}", "102", float(i))
    assert g.extension_locked("102", 20.0)
    assert not g.extension_locked("101", 20.0)
    assert not any(g.source_banned(f"198.51.100.{i}", 20.0) for i in range(20))


def test_new_limits_keep_bans_already_given() -> None:
    g = guard(per_source=2)
    g.failed(ATTACKER, None, 0.0)
    g.failed(ATTACKER, None, 1.0)
    g.configure(per_source=50, per_extension=50, window_s=60.0, ban_s=300.0)
    assert g.source_banned(ATTACKER, 2.0)
