"""The changelog commit protocol: groups apply at their unit record; an unclosed tail rolls back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.stream.changelog import ChangelogReplayer, unit_record_key
from stream_app.stream.state_store import MemoryStore, RocksStore

U = unit_record_key(3)


def feed(replayer: ChangelogReplayer, records: list[tuple[bytes, bytes | None]], start: int = 0) -> None:
    replayer.feed_many((start + i, k, v) for i, (k, v) in enumerate(records))


def test_a_group_applies_only_when_its_unit_record_arrives() -> None:
    r = ChangelogReplayer(3, {}, -1)
    feed(r, [(b"3|c|a", b"1"), (b"3|c|b", b"2")])
    assert r.records == {} and r.offset == -1
    r.feed(2, U, b"u1")
    assert r.records == {b"3|c|a": b"1", b"3|c|b": b"2", U: b"u1"} and r.offset == 2
    assert r.rollback() == []


def test_an_unclosed_tail_is_discarded_and_rolled_back_to_committed_values() -> None:
    r = ChangelogReplayer(3, {}, -1)
    feed(r, [(b"3|c|a", b"1"), (b"3|e|x", b"9"), (U, b"u1"),        # committed
             (b"3|c|a", b"1'"), (b"3|c|new", b"n"), (b"3|e|x", None)])  # a crash cut this batch
    assert r.records == {b"3|c|a": b"1", b"3|e|x": b"9", U: b"u1"}
    assert r.offset == 2
    assert r.rollback() == [(b"3|c|a", b"1"), (b"3|c|new", None), (b"3|e|x", b"9"), (U, b"u1")]


def test_a_rollback_replayed_restores_the_committed_state() -> None:
    first = ChangelogReplayer(3, {}, -1)
    log = [(b"3|c|a", b"1"), (U, b"u1"), (b"3|c|a", b"2"), (b"3|c|b", b"3")]
    feed(first, log)
    log += first.rollback()
    again = ChangelogReplayer(3, {}, -1)
    feed(again, log)
    assert again.records == first.records == {b"3|c|a": b"1", U: b"u1"}
    assert again.rollback() == []


def test_a_partial_first_batch_rolls_back_to_nothing() -> None:
    r = ChangelogReplayer(3, {}, -1)
    feed(r, [(b"3|c|a", b"1")])
    assert r.rollback() == [(b"3|c|a", None), (U, None)]
    log = [(b"3|c|a", b"1"), *r.rollback()]
    again = ChangelogReplayer(3, {}, -1)
    feed(again, log)
    assert again.records == {}


def test_tombstones_in_a_committed_group_delete() -> None:
    r = ChangelogReplayer(3, {b"3|e|x": b"1"}, 10)
    feed(r, [(b"3|e|x", None), (U, b"u")], start=11)
    assert r.records == {U: b"u"} and r.offset == 12


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from([b"3|c|a", b"3|c|b", b"3|e|x"]),
                                   st.one_of(st.none(), st.binary(min_size=1, max_size=3))),
                         max_size=5), min_size=1, max_size=6),
       st.integers(min_value=0, max_value=40))
def test_any_cut_restores_exactly_the_last_committed_group(groups: list[list[tuple[bytes, bytes | None]]],
                                                           cut: int) -> None:
    """Write groups, cut the log anywhere: the restore equals the state after the last whole group."""
    log: list[tuple[bytes, bytes | None]] = []
    ends = []
    for i, g in enumerate(groups):
        log += g + [(U, f"u{i}".encode())]
        ends.append(len(log))
    cut = min(cut, len(log))
    want: dict[bytes, bytes] = {}
    for k, v in log[:max([e for e in ends if e <= cut], default=0)]:
        if v is None:
            want.pop(k, None)
        else:
            want[k] = v
    r = ChangelogReplayer(3, {}, -1)
    feed(r, log[:cut])
    assert r.records == want
    healed = log[:cut] + r.rollback()
    again = ChangelogReplayer(3, {}, -1)
    feed(again, healed)
    assert again.records == want and again.rollback() == []
    # and the newest value of every key in the healed log is the committed one (compaction-safe)
    newest: dict[bytes, bytes | None] = {}
    for k, v in healed:
        newest[k] = v
    assert {k: v for k, v in newest.items() if v is not None} == want


def test_rocks_store_keeps_records_and_offset_together(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = RocksStore(str(tmp_path))
    r = ChangelogReplayer(3, {}, -1, store)
    feed(r, [(b"3|c|a", b"1"), (U, b"u1"), (b"3|c|a", b"2")])
    store.close()
    reopened = RocksStore(str(tmp_path))
    assert reopened.load(3) == ({b"3|c|a": b"1", U: b"u1"}, 1)
    reopened.write(3, [(b"3|c|a", None), (b"3|c|b", b"x")], 7)
    assert reopened.load(3) == ({U: b"u1", b"3|c|b": b"x"}, 7)
    reopened.reset(3)
    assert reopened.load(3) == ({}, -1)
    reopened.close()


def test_memory_store_persists_nothing() -> None:
    store = MemoryStore()
    store.write(0, [(b"0|u", b"x")], 5)
    assert store.load(0) == ({}, -1)
