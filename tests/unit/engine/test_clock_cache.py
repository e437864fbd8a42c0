"""The engine's cached instant formatting (records) agrees with the oracle's, before and after the cache
is cleared at its bound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.engine import clock
from tests.oracle import format_instant as oracle_format

INSTANTS = st.integers(clock.MIN_INSTANT, clock.MAX_INSTANT - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(INSTANTS, min_size=1, max_size=20))
def test_format_instant_matches_the_oracle_cached_or_not(values: list[int]) -> None:
    for us in values + values:  # the second pass reads the cache
        assert clock.format_instant_cached(us) == oracle_format(us)


def test_the_cache_is_bounded() -> None:
    base = clock.MIN_INSTANT
    for i in range(70_000):
        clock.format_instant_cached(base + i)
    assert len(clock._INSTANT_TEXT) <= 65_536
    assert clock.format_instant_cached(base + 1) == oracle_format(base + 1)


@settings(max_examples=300, deadline=None)
@given(INSTANTS, st.sampled_from([1, 1_000, clock.SECOND, clock.DAY]))
def test_whole_seconds_milliseconds_and_midnights_format_and_round_as_the_oracle(us: int, unit: int) -> None:
    # the fraction is dropped when zero and written as milliseconds when whole
    whole = us - us % unit
    assert clock.format_instant(whole) == oracle_format(whole)
    assert clock.next_midnight_after(us) == (us // clock.DAY + 1) * clock.DAY
    assert clock.midnight_at_or_after(us) == -(-us // clock.DAY) * clock.DAY
    assert clock.midnight_at_or_after(whole) == -(-whole // clock.DAY) * clock.DAY
