"""The sweep index (DESIGN.md "sweeps without full scans"): the first midnight at which a daily
sweep may act on a customer, so that a sweep touches only customers with something due."""

from __future__ import annotations

import math

from stream_app.engine.clock import DAY, midnight_at_or_after, next_midnight_after
from stream_app.engine.config import SILVER, EngineConfig
from stream_app.engine.customer import LN2, Customer


def next_due_day(c: Customer, after: int, demote_at: tuple[float, ...], cfg: EngineConfig) -> int:
    """Day index of the first midnight > `after` when a sweep may demote the customer or raise
    its churn alert; -1 when none can (bronze: only an event can change that)."""
    if c.tier < SILVER:
        return -1
    theta = demote_at[c.tier]
    if c.s_ref < theta:
        cand = after
    else:
        # S crosses theta at t_ref + H·log2(s_ref/theta); take the midnight at or before it and
        # let the sweep check exactly (the float may land either side).
        cross = c.t_ref + cfg.half_life * (math.log(c.s_ref / theta) / LN2)  # log2: a Python call compiled
        whole = int(cross)
        cand = whole - whole % DAY  # no product (clock.format_instant)
    if not c.churn_alerted and c.last_activity is not None:
        cand = min(cand, midnight_at_or_after(c.last_activity + cfg.churn_after))
    return max(cand, next_midnight_after(after)) // DAY
