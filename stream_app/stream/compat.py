"""The one seam between this project and faust/aiokafka internals.

Everything here is private or semi-private in the library that provides it: not in its
documented API, so a release can move or reshape it without notice. Keeping every such use in
this module, and pinning the tested versions (pyproject.toml upper bounds, constraints.txt),
means an upgrade is checked in one place: `tests/unit/stream/test_compat.py` fails when an internal we
rely on disappears or changes shape.

What we rely on:

- `AIOKafkaConsumer._client.force_metadata_update()`: a consumer started before a topic existed
  learns of it only at its next periodic metadata refresh (5 min); this asks for one now.
- aiokafka's assignor protocol (`aiokafka.coordinator`): a custom assignor subclasses
  `AbstractPartitionAssignor`, and the group coordinator calls, on the *instance* passed in
  `partition_assignment_strategy`, `metadata(topics)` when joining, `assign(cluster, members)`
  on the leader and `on_assignment(assignment)` on every member. The member metadata and
  assignment are the `ConsumerProtocolMember*` structs with `user_data` bytes, which carry our
  web URLs (`assignor.py`).
- Faust's aiohttp driver exposes its `aiohttp.web.Application` as `app.web.web_app`; the API
  token check (`web.py`) is an aiohttp middleware appended there before the app starts, so it
  sees every route, Faust's own pages included.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

__all__ = ["AbstractPartitionAssignor", "ClusterMetadata", "ConsumerProtocolMemberAssignment",
           "ConsumerProtocolMemberMetadata", "add_web_middleware", "refresh_metadata"]


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Fetch cluster metadata now (topics created after the consumer started)."""
    await consumer._client.force_metadata_update()


def add_web_middleware(app: faust.App, middleware: Any) -> None:
    """Run `middleware` (an `aiohttp.web.middleware`) for every request to the app's web server."""
    app.web.web_app.middlewares.append(middleware)  # type: ignore[attr-defined]
