"""Dead letters, for both loops: ingest's rejected input messages and scoring's undecodable
re-keyed ones. The record of each (schemas/dead_letter.json) and the log's summary of them: one
WARNING per interval at most, counts by reason, never ids or payloads.
"""

from __future__ import annotations

import orjson

from stream_app.logs import CountSummary
from stream_app.validation import Rejection

__all__ = ["DeadLetters", "dead_letter"]


def dead_letter(rejection: Rejection, topic: str, partition: int, offset: int, payload: bytes) -> bytes:
    """The dead-letter record of a rejected message (schemas/dead_letter.json)."""
    return orjson.dumps({
        "reason": rejection.reason,
        "field": rejection.field,
        "message": rejection.message,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "payload": payload.decode("utf-8", errors="replace"),
    })


class DeadLetters(CountSummary):
    """One loop's dead letters: `record` formats each and counts it by reason for the summary."""

    def record(self, rejection: Rejection, topic: str, partition: int, offset: int, payload: bytes) -> bytes:
        self.add(rejection.reason)
        return dead_letter(rejection, topic, partition, offset, payload)
