"""The scoring group's assignor: balanced, sticky, and every member learns every owner."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_app.stream.assignor import OwnerAssignor, balance


def test_a_new_member_takes_only_what_balance_needs() -> None:
    assert balance(list(range(8)), {"a": list(range(8)), "b": []}) == {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]}


def test_a_departed_members_partitions_go_to_the_survivor() -> None:
    assert balance(list(range(4)), {"b": [2, 3]}) == {"b": [0, 1, 2, 3]}


@given(st.integers(1, 16), st.integers(1, 6), st.data())
def test_every_partition_once_sizes_within_one_and_holders_keep_their_share(n: int, members: int,
                                                                          data: st.DataObject) -> None:
    ids = [f"m{i}" for i in range(members)]
    # a previous assignment: each partition held by one member or by none (its holder left)
    owner = data.draw(st.lists(st.sampled_from([*ids, None]), min_size=n, max_size=n))
    held = {m: [p for p in range(n) if owner[p] == m] for m in ids}
    out = balance(list(range(n)), held)
    assert sorted(p for ps in out.values() for p in ps) == list(range(n))
    sizes = [len(ps) for ps in out.values()]
    assert max(sizes) - min(sizes) <= 1
    for m in ids:  # a member keeps what it held, up to its share: only the surplus moves
        assert len(set(out[m]) & set(held[m])) == min(len(held[m]), len(out[m]))


def test_members_learn_the_owner_url_of_every_partition() -> None:
    class Cluster:
        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2, 3}

    a, b = OwnerAssignor("http://a:1"), OwnerAssignor("http://b:2")
    members = {"m-a": a.metadata(["events"]), "m-b": b.metadata(["events"])}
    plan = a.assign(Cluster(), members)  # type: ignore[arg-type]
    a.on_assignment(plan["m-a"])
    b.on_assignment(plan["m-b"])
    assert sorted(a.held + b.held) == [0, 1, 2, 3] and len(a.held) == 2
    assert a.owners == b.owners
    assert {a.owners[p] for p in a.held} == {"http://a:1"} and {b.owners[p] for p in b.held} == {"http://b:2"}
