"""The API's per-client token bucket (docs/api.md limits), with time passed in."""

from __future__ import annotations

from scryp.server.api import CLIENTS_TRACKED_MAX, RateLimiter


def test_burst_then_steady_rate() -> None:
    limiter = RateLimiter(rate_per_s=10.0, burst=5)
    assert [limiter.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("b", 0.0)  # another client has its own bucket
    assert not limiter.allow("a", 0.05)  # half a token earned
    assert limiter.allow("a", 0.1)  # one token earned
    assert not limiter.allow("a", 0.1)
    assert [limiter.allow("a", 100.0) for _ in range(6)] == [True] * 5 + [False]


def test_forgets_the_least_recently_seen_clients() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert limiter.allow("first", 0.0)
    assert not limiter.allow("first", 0.0)
    for number in range(CLIENTS_TRACKED_MAX):
        limiter.allow(f"client-{number}", 0.0)
    # "first" was forgotten, so it starts again with a full bucket: memory stays bounded.
    assert limiter.allow("first", 0.0)
    assert len(limiter._buckets) == CLIENTS_TRACKED_MAX
