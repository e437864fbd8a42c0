"""A stand-in for aiokafka's consumer and producer in unit tests that must not reach a broker:
every call does nothing; a test subclasses it for the calls it watches or breaks."""

from __future__ import annotations

from typing import Any


class NoopClient:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        pass

    def assign(self, *args: Any) -> None:
        pass

    async def seek_to_beginning(self, *args: Any) -> None:
        pass
