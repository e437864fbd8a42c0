"""Local copies of each partition's committed state: what a restart reads before the changelog.

The changelog topic is the source of truth (docs/RELIABILITY.md); a local store only saves
re-reading it. Each store keeps, per partition, the committed state records and the changelog
offset they reflect, written together in one atomic step, so a restore reads the changelog from
that offset + 1 and never applies a record twice or skips one.

- `MemoryStore` keeps nothing across processes: every assignment reads the whole changelog
  partition. The decoded state lives in the engine's `Unit`; keeping the raw records too would
  double the memory.
- `RocksStore` (rocksdict, one database per partition under the data dir) persists records and
  offset with one `WriteBatch`: a kill -9 leaves either the old or the new pair, never a mix.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

Record = tuple[bytes, bytes | None]

#: the offset key sorts before every state key (those start with the partition number)
OFFSET_KEY = b"\x00changelog-offset"


class StateStore(Protocol):
    def load(self, partition: int) -> tuple[dict[bytes, bytes], int]:
        """(committed records, changelog offset they reflect; -1 when none)."""

    def write(self, partition: int, records: list[Record], changelog_offset: int) -> None:
        """Apply `records` (None = delete) and remember `changelog_offset`, atomically."""

    def reset(self, partition: int) -> None:
        """Forget the partition's local copy (the changelog no longer matches it)."""

    def release(self, partition: int) -> None:
        """The partition moved to another worker: free what this process holds for it."""

    def close(self) -> None: ...


class MemoryStore:
    """No local persistence: a restore always reads the changelog from its start."""

    def load(self, partition: int) -> tuple[dict[bytes, bytes], int]:
        return {}, -1

    def write(self, partition: int, records: list[Record], changelog_offset: int) -> None:
        pass

    def reset(self, partition: int) -> None:
        pass

    def release(self, partition: int) -> None:
        pass

    def close(self) -> None:
        pass


class RocksStore:
    """One rocksdict database per partition: `<data_dir>/state/p<N>.rocksdb`."""

    def __init__(self, data_dir: str) -> None:
        from rocksdict import Options, Rdict, WriteBatch

        self._Rdict, self._WriteBatch = Rdict, WriteBatch
        self._options = Options(raw_mode=True)
        self._options.create_if_missing(True)
        self.root = Path(data_dir) / "state"
        self.root.mkdir(parents=True, exist_ok=True)
        self._dbs: dict[int, Any] = {}

    def path(self, partition: int) -> Path:
        return self.root / f"p{partition}.rocksdb"

    def _db(self, partition: int):  # rocksdict ships no types
        db = self._dbs.get(partition)
        if db is None:
            db = self._dbs[partition] = self._Rdict(str(self.path(partition)), options=self._options)
        return db

    def load(self, partition: int) -> tuple[dict[bytes, bytes], int]:
        db = self._db(partition)
        raw = db.get(OFFSET_KEY)
        offset = int(raw) if raw is not None else -1
        records = {bytes(k): bytes(v) for k, v in db.items() if k != OFFSET_KEY}
        return records, offset

    def write(self, partition: int, records: list[Record], changelog_offset: int) -> None:
        db = self._db(partition)
        batch = self._WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(OFFSET_KEY, str(changelog_offset).encode())
        db.write(batch)

    def reset(self, partition: int) -> None:
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()
        shutil.rmtree(self.path(partition), ignore_errors=True)

    def release(self, partition: int) -> None:
        # Kept on disk: if the partition comes back, only the changelog written since is read.
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs = {}


def open_store(url: str, data_dir: str) -> StateStore:
    """`memory://` or `rocksdb://` (ENGAGEMENT_STORE)."""
    if url.startswith("rocksdb://"):
        return RocksStore(data_dir)
    return MemoryStore()
