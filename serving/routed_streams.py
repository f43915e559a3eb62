"""The SDK's streams, passed through and watched: time to first token, usage and stop reason, reported at the end.

A routed stream behaves as the stream the `anthropic` SDK returns (`MessageStream` from `.messages.stream()`, or
the raw event `Stream` from `.messages.create(stream=True)`): every attribute it does not define is the SDK
stream's own. It adds `tierwise` (a `Routing`), complete once the stream has ended. The attempt is reported
when the stream ends, fails, or is closed unfinished.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
from tierwise.serving.escalation import Routing, StreamWatch
from tierwise.serving.sdk_calls import event_facts, failure, with_routing


def _final_message(inner: Any) -> Any:
    """The accumulated message of a finished `MessageStream` (a raw event stream has none)."""
    final = getattr(inner, "get_final_message", None)
    return final() if final is not None else None


class RoutedStream:
    """A synchronous SDK stream, watched for the attempt report."""

    def __init__(self, inner: Any, watch: StreamWatch):
        self._inner = inner
        self._watch = watch
        self._events: Iterator[Any] | None = None

    @property
    def tierwise(self) -> Routing:
        return self._watch.escalation.routing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __iter__(self) -> Iterator[Any]:
        try:
            for event in self._inner:
                self._watch.seen(*event_facts(event))
                yield event
        except anthropic.APIError as exc:
            self._watch.finish(error=failure(exc, self._watch.started).error)
            raise
        self._watch.finish(_final_message(self._inner))

    def __next__(self) -> Any:
        if self._events is None:
            self._events = iter(self)
        return next(self._events)

    @property
    def text_stream(self) -> Iterator[str]:
        return (e.delta.text for e in self if e.type == "content_block_delta" and e.delta.type == "text_delta")

    def until_done(self) -> None:
        for _ in self:
            pass

    def get_final_message(self) -> Any:
        self.until_done()
        return with_routing(self._inner.get_final_message(), self.tierwise)

    def get_final_text(self) -> str:
        self.until_done()
        return self._inner.get_final_text()

    def close(self) -> None:
        self._inner.close()
        self._watch.finish()

    def __enter__(self) -> RoutedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRoutedStream:
    """An asynchronous SDK stream, watched for the attempt report."""

    def __init__(self, inner: Any, watch: StreamWatch):
        self._inner = inner
        self._watch = watch
        self._events: AsyncIterator[Any] | None = None

    @property
    def tierwise(self) -> Routing:
        return self._watch.escalation.routing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for event in self._inner:
                self._watch.seen(*event_facts(event))
                yield event
        except anthropic.APIError as exc:
            self._watch.finish(error=failure(exc, self._watch.started).error)
            raise
        final = getattr(self._inner, "get_final_message", None)
        self._watch.finish(await final() if final is not None else None)

    async def __anext__(self) -> Any:
        if self._events is None:
            self._events = self.__aiter__()
        return await self._events.__anext__()

    @property
    def text_stream(self) -> AsyncIterator[str]:
        return (e.delta.text async for e in self if e.type == "content_block_delta" and e.delta.type == "text_delta")

    async def until_done(self) -> None:
        async for _ in self:
            pass

    async def get_final_message(self) -> Any:
        await self.until_done()
        return with_routing(await self._inner.get_final_message(), self.tierwise)

    async def get_final_text(self) -> str:
        await self.until_done()
        return await self._inner.get_final_text()

    async def close(self) -> None:
        await self._inner.close()
        self._watch.finish()

    async def __aenter__(self) -> AsyncRoutedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
