"""One partition of the re-keyed stream -> one engine Unit; a batch in, state records and outputs out.

No Faust or Kafka here: the worker feeds `(offset, value)` pairs and sends what comes back, which
keeps the stream's logic the replay's logic (the audit checks exactly that).

State records go to the partition's own changelog partition, keyed `<p>|c|<customer_id>`
(customer; a tombstone when erased), `<p>|E|<n>` (the event ids a batch remembered, with the
watermark after each: one record per batch, a tombstone once all of them are forgotten) and `<p>|u`
(watermark, KPI partial, counters, the last id record's number and the offset of the last message
applied); `engine.formats` encodes and decodes each (docs/STREAM.md, "Record formats").
Changelogs written before the batched form may hold `<p>|e|<event_id>` records: they are
still read, and tombstoned when their id is forgotten. The unit record is written last in each
batch; messages at or below its offset are skipped after a restart, so a batch re-delivered after
a crash is never applied twice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import orjson

from stream_app.engine import APPLIED, TIERS, Customer, EngineConfig, Unit
from stream_app.engine.formats import (
    CUSTOMER,
    EVENT_ID,
    EVENT_IDS,
    UNIT,
    UnitRecord,
    decode_customer,
    decode_ids,
    decode_legacy_id,
    decode_unit,
    encode_customer,
    encode_ids,
    encode_kpi_message,
    encode_unit,
    parse_state_key,
    state_key,
)
from stream_app.engine.records import Alert, SegmentChange, TierChange
from stream_app.validation import Rejection, decode_rekeyed


@dataclass
class PartitionBatch:
    state: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    #: customer_id -> its record at its clock
    scores: dict[str, bytes] = field(default_factory=dict)
    #: customers erased in the batch (SPEC §9): a tombstone each, published before the records, so
    #: one erased and back in the same batch ends with its new record (`score_records`)
    tombstones: list[str] = field(default_factory=list)
    tier_changes: list[TierChange] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    segment_changes: list[SegmentChange] = field(default_factory=list)
    rejected: list[tuple[int, Rejection, bytes]] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    #: applied customer_erased events (SPEC §9), for `engagement_erasures_total`
    erased: int = 0
    #: (short topic, "applied" | "duplicate") -> count
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    #: occurred_at (µs) of the applied events, for the event-lag histogram
    applied_at: list[int] = field(default_factory=list)
    skipped: int = 0
    kpis_changed: bool = False


class PartitionProcessor:
    def __init__(self, partition: int, unit: Unit, offset: int = -1,
                 topic_names: dict[str, str] | None = None) -> None:
        self.partition = partition
        self.unit = unit
        self.offset = offset  # last applied offset of the re-keyed topic partition
        self.topic_names = topic_names
        unit.log_ids()  # remembered ids become state records, one per batch
        #: the number of the last `<p>|E|<n>` record, and the live ones: (n, watermark after
        #: their last id), oldest first; a record expires as a whole with its last id
        self.id_seq = 0
        self.id_records: deque[tuple[int, int]] = deque()
        #: ids restored from per-id `<p>|e|` records (the older form): tombstoned when forgotten
        self.legacy_ids: set[str] = set()
        self._legacy_swept = True
        self.tier_counts: dict[str, int] = {t: 0 for t in TIERS}
        for c in unit.customers.values():
            self.tier_counts[TIERS[c.tier]] += 1

    @classmethod
    def restore(cls, partition: int, records: dict[bytes, bytes], config: EngineConfig,
                topic_names: dict[str, str] | None = None) -> PartitionProcessor:
        """Rebuild from this partition's state records (key -> value, tombstones removed)."""
        unit_record: UnitRecord | None = None
        customers: list[Customer] = []
        seen: list[tuple[str, int]] = []
        legacy: set[str] = set()
        id_records: list[tuple[int, int]] = []
        for key, value in records.items():
            _, kind, name = parse_state_key(key)
            if kind == CUSTOMER:
                customers.append(decode_customer(value))
            elif kind == EVENT_IDS:
                ids = decode_ids(value)
                seen.extend(ids)
                id_records.append((int(name), ids[-1][1]))
            elif kind == EVENT_ID:
                seen.append((name, decode_legacy_id(value)))
                legacy.add(name)
            elif kind == UNIT:
                unit_record = decode_unit(value)
        core = unit_record.core if unit_record else None
        unit = Unit.from_parts(core, customers, seen, config)
        proc = cls(partition, unit, unit_record.offset if unit_record else -1, topic_names)
        proc.id_seq = unit_record.id_seq if unit_record else 0
        proc.id_records.extend(sorted(id_records))
        proc.legacy_ids = legacy  # the expired ones are tombstoned with the first batch
        proc._legacy_swept = not legacy
        return proc

    def process(self, messages: list[tuple[int, bytes | None]]) -> PartitionBatch:
        out = PartitionBatch()
        unit = self.unit
        cfg = unit.config
        p = self.partition
        before = (unit.applied, unit.duplicates)
        for offset, value in messages:
            if offset <= self.offset:
                out.skipped += 1  # applied before a restart: its state is already in the changelog
                continue
            self.offset = offset
            ev = decode_rekeyed(value or b"", self.topic_names, cfg.currency)
            if type(ev) is Rejection:
                # Only a producer writing straight to the re-keyed topic can cause this.
                out.rejected.append((offset, ev, value or b""))
                continue
            outcome = unit.offer(ev)
            key = (ev.topic, outcome)
            out.outcomes[key] = out.outcomes.get(key, 0) + 1
            if outcome == APPLIED:
                out.applied_at.append(ev.occurred_at)
        out.applied = unit.applied - before[0]
        out.duplicates = unit.duplicates - before[1]
        drained = unit.drain()
        out.erased = len(drained.erased)
        for tier in drained.erased_tiers:
            self.tier_counts[TIERS[tier]] -= 1
        for tc in drained.tier_changes:
            if tc["from_tier"] is not None:
                self.tier_counts[tc["from_tier"]] -= 1
            self.tier_counts[tc["to_tier"]] += 1
        out.tier_changes = drained.tier_changes
        out.alerts = drained.alerts
        out.segment_changes = drained.segment_changes
        for cid in dict.fromkeys(drained.erased):  # once each, in order
            if cid not in unit.customers:  # back in the same batch: its new record replaces it
                out.state.append((state_key(p, CUSTOMER, cid), None))
            out.tombstones.append(cid)
        for cid in sorted(drained.changed):
            c = unit.customers[cid]
            out.state.append((state_key(p, CUSTOMER, cid), encode_customer(c)))
            out.scores[cid] = orjson.dumps(c.snapshot(cfg, unit.segment_set.held(c.segments)))
        self._id_state(out, drained.id_log)
        if out.applied or out.skipped or out.rejected or out.duplicates:
            out.state.append((state_key(p, UNIT), encode_unit(unit.core(), self.offset, self.id_seq)))
            out.kpis_changed = out.applied > 0
        return out

    def _id_state(self, out: PartitionBatch, log: list[tuple[str, int | None]]) -> None:
        """The batch's remembered ids as one state record, and tombstones for id records (and
        older per-id records) whose ids are all forgotten: a record per batch instead of one per
        applied event (the changelog's largest share of records and of the scoring CPU)."""
        unit, p = self.unit, self.partition
        remembered = [(eid, at) for eid, at in log if at is not None]
        legacy = self.legacy_ids
        if legacy:
            if self._legacy_swept:
                gone = [eid for eid, at in log if at is None and eid in legacy]
            else:  # once after a restore: those already past the horizon then
                gone = [eid for eid in legacy if eid not in unit.seen]
                self._legacy_swept = True
            for eid in gone:
                legacy.discard(eid)
                out.state.append((state_key(p, EVENT_ID, eid), None))
        if remembered:
            self.id_seq += 1
            out.state.append((state_key(p, EVENT_IDS, str(self.id_seq)), encode_ids(remembered)))
            self.id_records.append((self.id_seq, remembered[-1][1]))  # watermarks only grow
        wm, horizon, records = unit.watermark, unit.config.dedupe_horizon, self.id_records
        while records and wm is not None and records[0][1] + horizon <= wm:
            out.state.append((state_key(p, EVENT_IDS, str(records.popleft()[0])), None))

    def score_records(self, out: PartitionBatch) -> list[tuple[str, bytes | None]]:
        """What the batch publishes on the scores topic, in order: tombstones, then records."""
        return [(cid, None) for cid in out.tombstones] + list(out.scores.items())

    def kpi_partial_record(self) -> bytes:
        return encode_kpi_message(self.partition, self.unit.watermark, self.unit.kpis)

