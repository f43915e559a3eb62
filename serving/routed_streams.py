"""The SDK's streams, passed through and watched: time to first token, usage and stop reason, reported at the end.

A routed stream behaves as the stream the `anthropic` SDK returns (`MessageStream` from `.messages.stream()`, or
the raw event `Stream` from `.messages.create(stream=True)`): every attribute it does not define is the SDK
stream's own. It adds `tierwise` (a `Routing`), complete once the stream has ended. The attempt is reported
when the stream ends, fails, or is closed unfinished. What the sync and async streams share is `_Watched`; each
adds only its iteration protocol, each method a line or two over the shared ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
from tierwise.serving.escalation import Routing, StreamWatch, run_blocking
from tierwise.serving.sdk_calls import event_facts, failure, with_routing


class _Watched:
    """An SDK stream and the watch of its attempt."""

    def __init__(self, inner: Any, watch: StreamWatch):
        self._inner = inner
        self._watch = watch
        self._events: Any = None

    @property
    def tierwise(self) -> Routing:
        return self._watch.escalation.routing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _seen(self, event: Any) -> Any:
        self._watch.seen(*event_facts(event))
        return event

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """Around the SDK stream's events: an API error settles the attempt as failed."""
        try:
            yield
        except anthropic.APIError as exc:
            self._watch.finish(error=failure(exc, self._watch.started).error)
            raise

    def _final(self, message: Any) -> Any:
        """The final message of a finished stream, settled and carrying its routing (a raw event stream has none)."""
        self._watch.finish(message)
        return message if message is None else with_routing(message, self.tierwise)


def _is_text(event: Any) -> bool:
    return event.type == "content_block_delta" and event.delta.type == "text_delta"


class RoutedStream(_Watched):
    """A synchronous SDK stream, watched for the attempt report."""

    def __iter__(self) -> Iterator[Any]:
        with self._failures():
            yield from map(self._seen, self._inner)
        self._final(self._inner.get_final_message() if hasattr(self._inner, "get_final_message") else None)

    def __next__(self) -> Any:
        self._events = self._events or iter(self)
        return next(self._events)

    @property
    def text_stream(self) -> Iterator[str]:
        return (event.delta.text for event in self if _is_text(event))

    def until_done(self) -> None:
        for _ in self:
            pass

    def get_final_message(self) -> Any:
        self.until_done()
        return self._final(self._inner.get_final_message())

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


class AsyncRoutedStream(_Watched):
    """An asynchronous SDK stream, watched for the attempt report."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        with self._failures():
            async for event in self._inner:
                yield self._seen(event)
        self._final(await self._inner.get_final_message() if hasattr(self._inner, "get_final_message") else None)

    async def __anext__(self) -> Any:
        self._events = self._events or self.__aiter__()
        return await anext(self._events)

    @property
    def text_stream(self) -> AsyncIterator[str]:
        return (event.delta.text async for event in self if _is_text(event))

    async def until_done(self) -> None:
        async for _ in self:
            pass

    async def get_final_message(self) -> Any:
        await self.until_done()
        return self._final(await self._inner.get_final_message())

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


class _StreamManager:
    """What `.messages.stream` returns: the routed stream, routed and opened on entry and closed on exit."""

    def __init__(self, open_stream: Callable[[], Coroutine[Any, Any, Any]]):
        self._open = open_stream
        self._stream: Any = None


class RoutedStreamManager(_StreamManager):
    """The sync client's: `with ... as stream`."""

    def __enter__(self) -> RoutedStream:
        self._stream = run_blocking(self._open())
        return self._stream

    def __exit__(self, *exc: object) -> None:
        if self._stream is not None:
            self._stream.close()


class AsyncRoutedStreamManager(_StreamManager):
    """The async client's: `async with ... as stream`."""

    async def __aenter__(self) -> AsyncRoutedStream:
        self._stream = await self._open()
        return self._stream

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            await self._stream.close()
