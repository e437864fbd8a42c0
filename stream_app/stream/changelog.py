"""The state changelog protocol: each processing batch of a partition commits as a group.

A batch writes its state records (customers, remembered event ids) and then the partition's unit
record (`<p>|u`: watermark, KPI partial, counters, the offset of the last message applied).
**The unit record is the commit marker**: the records before it belong to the batch it closes.
A crash can cut a batch's writes anywhere when they span several record batches (a sweep can
change thousands of customers at one message), so a restore reads the partition in offset order,
applies each group only when its unit record arrives, and discards an unclosed tail. It then
writes a *rollback*: the committed value (or a tombstone) of every key of that tail, and the
unit record again, so the newest value of every key in the topic is committed state again (a
compacted topic keeps only the newest).

`ChangelogReplayer` is the rule, pure; `restore.read_changelog` feeds it from Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable

from stream_app.engine.formats import UNIT, state_key
from stream_app.stream.state_store import Record, StateStore


def unit_record_key(partition: int) -> bytes:
    """The key of the partition's unit record (`<p>|u`), the commit marker."""
    return state_key(partition, UNIT)


class ChangelogReplayer:
    """Rebuilds one partition's committed state from its changelog records, in offset order."""

    def __init__(self, partition: int, records: dict[bytes, bytes], offset: int,
                 store: StateStore | None = None) -> None:
        self.partition = partition
        self.unit_record_key = unit_record_key(partition)
        self.records = records        # committed state: key -> value
        self.offset = offset          # changelog offset of the last record reflected in `records`
        self.store = store            # local copy, written once per committed group
        self.pending: list[Record] = []   # records after the last commit marker
        self.pending_offset = offset
        self.read = 0

    def feed(self, offset: int, key: bytes, value: bytes | None) -> None:
        self.read += 1
        self.pending.append((key, value))
        self.pending_offset = offset
        if key == self.unit_record_key:
            self._commit()

    def feed_many(self, records: Iterable[tuple[int, bytes, bytes | None]]) -> None:
        for offset, key, value in records:
            self.feed(offset, key, value)

    def _commit(self) -> None:
        records = self.records
        for key, value in self.pending:
            if value is None:
                records.pop(key, None)
            else:
                records[key] = value
        if self.store is not None:
            self.store.write(self.partition, self.pending, self.pending_offset)
        self.offset = self.pending_offset
        self.pending = []

    def rollback(self) -> list[Record]:
        """Records that make the newest value of every key of the unclosed tail committed again.

        Empty when the changelog ends on a commit marker. The last record is the unit record, so
        the rollback is itself a committed group.
        """
        if not self.pending:
            return []
        keys = dict.fromkeys(k for k, _ in self.pending if k != self.unit_record_key)
        out: list[Record] = [(k, self.records.get(k)) for k in keys]
        out.append((self.unit_record_key, self.records.get(self.unit_record_key)))
        return out
