"""PartitionProcessor: state records rebuild the unit; re-delivered offsets are never re-applied."""

from __future__ import annotations

import orjson

from stream_app.engine import DEFAULT_CONFIG, Unit
from stream_app.engine.formats import decode_ids, decode_unit, kpi_state, parse_state_key, state_key, wrap_event
from stream_app.simulate import Simulator
from stream_app.stream.processor import PartitionProcessor
from stream_app.validation import decode_line


def messages(n: int) -> list[tuple[int, bytes]]:
    out = []
    for i, line in enumerate(Simulator(customers=30, seed=4, days=60).lines(n)):
        obj = orjson.loads(line)
        topic = {"order_placed": "orders", "order_refunded": "orders"}.get(obj["type"])
        if topic is None:
            from stream_app.engine.events import TOPIC_OF_TYPE

            topic = TOPIC_OF_TYPE[obj["type"]]
        out.append((i, wrap_event(topic, line)))
    return out


def changelog(state: dict[bytes, bytes], records: list[tuple[bytes, bytes | None]]) -> None:
    for k, v in records:
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v


def test_state_keys_round_trip() -> None:
    assert parse_state_key(state_key(3, "c", "a|b")) == (3, "c", "a|b")
    assert parse_state_key(state_key(0, "u")) == (0, "u", "")


def test_restart_from_state_records_skips_redelivered_offsets() -> None:
    msgs = messages(2000)
    straight = PartitionProcessor(0, Unit())
    straight.process(msgs[:1000])
    straight.process(msgs[1000:])

    first = PartitionProcessor(0, Unit())
    state: dict[bytes, bytes] = {}
    changelog(state, first.process(msgs[:1000]).state)
    # crash after the state was written, before the offsets were committed: all of it comes again
    restored = PartitionProcessor.restore(0, dict(state), DEFAULT_CONFIG)
    again = restored.process(msgs[:1200])
    assert again.skipped == 1000 and again.applied + again.duplicates == 200
    restored.process(msgs[1200:])
    for cid in straight.unit.customers:
        assert restored.unit.record(cid) == straight.unit.record(cid)
    assert restored.unit.applied == straight.unit.applied
    assert restored.offset == straight.offset == 1999


def test_outputs_carry_every_changed_customer_and_the_unit_record_last() -> None:
    p = PartitionProcessor(2, Unit())
    out = p.process(messages(300))
    assert out.state[-1][0] == b"2|u"
    customers = {parse_state_key(k)[2] for k, _ in out.state if parse_state_key(k)[1] == "c"}
    assert customers == set(out.scores) == set(p.unit.customers)
    ids = [(parse_state_key(k)[2], v) for k, v in out.state if parse_state_key(k)[1] == "E"]
    # one record for the batch's remembered ids (SPEC §2: each with the watermark after it)
    assert len(ids) == 1 and ids[0][0] == "1"
    assert len(decode_ids(ids[0][1])) == out.applied
    assert out.kpis_changed


def test_id_records_expire_as_a_whole_and_legacy_per_id_records_still_restore() -> None:
    """Batches of remembered ids are tombstoned once their last id is forgotten; a changelog in the
    older per-id form restores, and its records are tombstoned when (or once) their id is gone."""
    from stream_app.engine.clock import DAY
    from stream_app.engine.events import Event
    from stream_app.engine.formats import encode_rekeyed

    def ev(eid: str, day: float) -> bytes:
        return encode_rekeyed(Event(eid, "page_view", "clicks", "c", 1_704_067_200_000_000 + int(day * DAY)))

    p = PartitionProcessor(1, Unit())
    first = p.process([(0, ev("a", 0)), (1, ev("b", 1))])
    assert [k for k, _ in first.state if parse_state_key(k)[1] == "E"] == [b"1|E|1"]
    second = p.process([(2, ev("c", 7.5))])  # "a" (day 0) forgotten, "b" (day 1) not yet
    assert [(k, v is None) for k, v in second.state if parse_state_key(k)[1] == "E"] == [(b"1|E|2", False)]
    third = p.process([(3, ev("d", 9))])  # day 9: "b" too: record 1 goes as a whole
    assert (b"1|E|1", None) in third.state
    # an older changelog: per-id records, one of them long expired
    unit = decode_unit(next(v for k, v in third.state if k == b"1|u"))
    core = {"watermark": unit.core.watermark, "kpis": kpi_state(unit.core.kpis), "applied": unit.core.applied,
            "duplicates": unit.core.duplicates, "offset": unit.offset}  # format 0: an object, no id_seq
    records = {b"1|u": orjson.dumps(core), b"1|e|old": orjson.dumps(0),
               b"1|e|d": orjson.dumps(1_704_067_200_000_000 + 9 * DAY)}
    records.update((k, v) for k, v in first.state + third.state if k.startswith(b"1|c|"))
    restored = PartitionProcessor.restore(1, records, DEFAULT_CONFIG)
    assert "d" in restored.unit.seen and "old" not in restored.unit.seen
    out = restored.process([(4, ev("e", 10))])
    assert (b"1|e|old", None) in out.state and (b"1|e|d", None) not in out.state
    out = restored.process([(5, ev("f", 17))])  # "d" (day 9) forgotten at day 16+
    assert (b"1|e|d", None) in out.state


def test_a_bad_rekeyed_message_is_rejected_not_applied() -> None:
    p = PartitionProcessor(0, Unit())
    # otherwise valid, so the fault is the topic (SPEC §1 checks wrong_topic last)
    click = b'{"event_id": "x", "type": "page_view", "customer_id": "c", "occurred_at": "2024-01-01T00:00:00Z"}'
    out = p.process([(0, b"not json"), (1, wrap_event("orders", click))])
    assert [r.reason for _, r, _ in out.rejected] == ["invalid_json", "wrong_topic"]
    assert out.applied == 0 and p.offset == 1
    assert decode_line(b"{}") is not None
