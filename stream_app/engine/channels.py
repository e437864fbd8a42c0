"""Channels (SPEC §1) of activity events: the canonical names, and a customer's latest day on each
with the KPI histograms that follow it (customers by channel, omnichannel)."""

from __future__ import annotations

from typing import Any, Final

from stream_app.engine.clock import SharedInt
from stream_app.engine.customer import Customer
from stream_app.engine.events import OTHER_CHANNEL, channel_of
from stream_app.engine.kpis import KpiPartial


class Channels:
    """The configured channels and `other`, each one canonical string object (restored states
    hold copies: compare by value), with the exact `channel` spellings seen mapped to them."""

    def __init__(self, configured: tuple[str, ...]) -> None:
        self.configured = configured
        self.canonical = {ch: ch for ch in (*configured, OTHER_CHANNEL)}
        self.seen = dict(self.canonical)  # exact `channel` values -> canonical channel

    def of(self, channel: str) -> str:
        """A non-empty `channel` field: lower-cased, or `other` (SPEC §1)."""
        ch = self.seen.get(channel)
        if ch is None:
            ch = self.canonical.get(channel_of("", channel, self.configured) or OTHER_CHANNEL, OTHER_CHANNEL)
            if len(self.seen) < 1024:  # producers' spellings are few; a flood of odd ones is not cached
                self.seen[channel] = ch
        return ch


#: `touch_channel`: the channel's latest day did not move
UNMOVED: Final = -2


def touch_channel(kpis: KpiPartial, c: Customer, ch: str | None, day: SharedInt) -> int:
    """An activity event on channel `ch` (None: none) on `day`: the customer's latest day on it,
    and the KPI histograms of per-channel days and of the second-latest of them (omnichannel).
    Returns the channel's latest day before (-1: a new channel), or UNMOVED (segments reading
    the channels: `Scoring.apply`)."""
    if ch is None:
        return UNMOVED
    cd = c.channel_days
    if cd and cd[0] == ch and cd[1] >= day:
        return UNMOVED  # the common case: the customer's first channel, already seen that day
    n = len(cd)
    i = 0
    while i < n and cd[i] != ch:
        i += 2
    if i < n:
        old = cd[i + 1]
        if old >= day:
            return UNMOVED
        before = second_day(cd) if n > 2 else -1
        cd[i + 1] = day
    else:
        old = -1
        before = second_day(cd) if n > 2 else -1
        cd += (ch, day)
    kpis.move_channel(ch, old, day)
    if len(cd) > 2:  # with one channel the second-latest day stays -1
        after = second_day(cd)
        if after != before:
            kpis.move_omni(before, after)
    return old


def forget_channels(kpis: KpiPartial, c: Customer) -> None:
    """An erased customer's channel days leave the KPI histograms (SPEC §9)."""
    cd = c.channel_days
    for i in range(0, len(cd), 2):
        kpis.move_channel(cd[i], cd[i + 1], -1)
    kpis.move_omni(second_day(cd), -1)


def second_day(cd: list[Any]) -> int:
    """The second-largest day in a flat [channel, day, ...] list; -1 with fewer than 2 channels."""
    first = second = -1
    for i in range(1, len(cd), 2):
        d = cd[i]
        if d > first:
            first, second = d, first
        elif d > second:
            second = d
    return second
