"""Who scores which partition: a sticky, balanced assignor that also tells every worker the owners.

Each member sends its web URL and the partitions it holds; the group leader keeps every partition
with its current holder while that holder is under its fair share (so a rebalance moves as little
state as possible), hands the rest to the least-loaded members, and sends everyone the whole
partition -> URL map, which the HTTP API uses to forward a customer to its owner.

aiokafka's assignor protocol is semi-private: it is imported through `compat.py`, which says what
we rely on, and `tests/unit/stream/test_compat.py` checks it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import orjson

from stream_app.stream.compat import (
    AbstractPartitionAssignor,
    ClusterMetadata,
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

log = logging.getLogger(__name__)


def balance(partitions: list[int], members: Mapping[str, list[int]]) -> dict[str, list[int]]:
    """Assign `partitions` to members (id -> partitions held now): sticky, sizes differ by ≤ 1."""
    ids = sorted(members)
    if not ids:
        return {}
    share, extra = divmod(len(partitions), len(ids))
    # the members holding the most keep the larger shares: fewer moves
    order = sorted(ids, key=lambda m: (-len(members[m]), m))
    cap = {m: share + (1 if i < extra else 0) for i, m in enumerate(order)}
    out: dict[str, list[int]] = {m: [] for m in ids}
    free = set(partitions)
    for m in order:
        for p in sorted(members[m]):
            if p in free and len(out[m]) < cap[m]:
                out[m].append(p)
                free.discard(p)
    for p in sorted(free):
        m = min(ids, key=lambda m: (len(out[m]) - cap[m], m))
        out[m].append(p)
    return {m: sorted(ps) for m, ps in out.items()}


class OwnerAssignor(AbstractPartitionAssignor):
    name = "engagement-sticky"
    version = 0

    def __init__(self, url: str) -> None:
        self.url = url
        self.held: list[int] = []
        self.owners: dict[int, str] = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        user = orjson.dumps({"url": self.url, "held": self.held})
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user)

    def assign(self, cluster: ClusterMetadata,
               members: Mapping[str, ConsumerProtocolMemberMetadata]) -> dict[str, ConsumerProtocolMemberAssignment]:
        infos = {m: orjson.loads(meta.user_data or b"{}") for m, meta in members.items()}
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        out: dict[str, ConsumerProtocolMemberAssignment] = {}
        plan: dict[str, dict[str, list[int]]] = {m: {} for m in members}
        owners: dict[str, dict[int, str]] = {}
        for topic in topics:
            parts = sorted(cluster.partitions_for_topic(topic) or ())
            subscribers = {m: infos[m].get("held", []) for m, meta in members.items() if topic in meta.subscription}
            for m, ps in balance(parts, subscribers).items():
                plan[m][topic] = ps
                for p in ps:
                    owners.setdefault(topic, {})[p] = infos[m].get("url", "")
        for m in members:
            user = orjson.dumps({t: {str(p): u for p, u in o.items()} for t, o in owners.items()})
            out[m] = ConsumerProtocolMemberAssignment(
                self.version, sorted((t, ps) for t, ps in plan[m].items() if ps), user)
        return out

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.held = sorted(p for _, ps in assignment.assignment for p in ps)
        owners = orjson.loads(assignment.user_data or b"{}")
        self.owners = {int(p): url for o in owners.values() for p, url in o.items()}
