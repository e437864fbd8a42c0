"""The dedupe memory (SPEC §2): applied event ids, each until the watermark is a horizon past the
watermark right after its application.

Exact and deterministic (no probabilistic filter: `stream == replay` must hold, DESIGN.md). Ids
are remembered in application order, which is watermark order, so forgetting pops from the front.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class RecentIds:
    __slots__ = ("_log", "horizon", "ids", "order")

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        #: event_id -> watermark right after its application; insertion order = watermark order
        self.ids: dict[str, int] = {}
        #: (watermark at application, event_id) in application order
        self.order: deque[tuple[int, str]] = deque()
        #: when a shell persists ids (`start_log`): (event_id, watermark) remembered, (event_id,
        #: None) forgotten, since the last `take_log`; None when nobody listens
        self._log: list[tuple[str, int | None]] | None = None

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def remember(self, event_id: str, watermark: int) -> None:
        self.ids[event_id] = watermark
        self.order.append((watermark, event_id))
        if self._log is not None:
            self._log.append((event_id, watermark))

    def start_log(self) -> None:
        """Log the ids remembered and forgotten from now on (`take_log` hands them over)."""
        if self._log is None:
            self._log = []

    def take_log(self) -> list[tuple[str, int | None]]:
        """The ids remembered and forgotten since the last call, in order (empty when not logging)."""
        log = self._log
        if log is None:
            return []
        self._log = []
        return log

    def forget(self, watermark: int) -> int:
        """Drop the ids whose horizon `watermark` has reached; return the watermark at which the
        next one expires (so the caller can skip calling until then)."""
        ids, order, horizon, log = self.ids, self.order, self.horizon, self._log
        while order:
            at, eid = order[0]
            if at + horizon > watermark:
                return at + horizon
            order.popleft()
            del ids[eid]
            if log is not None:
                log.append((eid, None))
        return watermark + horizon

    @classmethod
    def restore(cls, horizon: int, remembered: Iterable[tuple[str, int]],
                watermark: int | None) -> RecentIds:
        """Rebuild from persisted (event_id, watermark at application) pairs, any order; ids
        already past the horizon at `watermark` are left out."""
        r = cls(horizon)
        for eid, at in sorted(remembered, key=lambda e: e[1]):
            if watermark is None or at + horizon > watermark:
                r.ids[eid] = at
                r.order.append((at, eid))
        return r

    def next_expiry(self, watermark: int) -> int:
        """The watermark at which the oldest remembered id expires."""
        return self.order[0][0] + self.horizon if self.order else watermark + self.horizon
