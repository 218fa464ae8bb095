"""Where `assistant serve` answers: a pool of assistants, each answering one question at a time in its own thread.

The loop and the backends are blocking generators (llama.cpp decodes in C, the openai backend reads a stream with
httpx), so each question runs in a worker thread and its events cross to the event loop through a queue. The pool
holds one assistant per slot: one for a local model, which serves one generation at a time (it is not
thread-safe), and up to `--concurrency` with `--backend openai`, whose server answers in parallel. A request that
finds every slot busy waits in line (`Pool.waiting`, what /health shows). The slot is the thread's: it is given
back when the generation has really stopped, never while a model may still be decoding.

Cancelling (a client gone) sets a flag the thread checks at every event, then closes the generator: the close
unwinds the loop into the backend, which stops decoding (llama.cpp) or closes the connection (openai). Tokens are
events, so a generation stops within a token or two of the flag; a search or a page read in progress finishes
first.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from assistant.events import Event
from assistant.runner import Assistant

log = logging.getLogger(__name__)


@dataclass
class Failed:
    """The answer ended in an exception (raised again on the event loop's side)."""

    error: BaseException


_END = object()  # the thread is done and its slot is free again


class Pool:
    """The assistants, one per slot, and the line of requests waiting for one. Used on the event loop only."""

    def __init__(self, assistants: list[Assistant]):
        self.idle = list(assistants)
        self.size = len(assistants)
        self.waiting = 0  # requests in line for a slot
        self.running = 0  # questions being answered
        self._free = asyncio.Semaphore(self.size)

    async def acquire(self) -> Assistant:
        """An idle assistant, once one is free; a cancelled wait leaves the line."""
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        return self.idle.pop()

    def release(self, assistant: Assistant) -> None:
        """Give a slot back (its thread has stopped)."""
        self.running -= 1
        self.idle.append(assistant)
        self._free.release()

    def close(self) -> None:
        """Release every idle assistant's model, index connections and HTTP clients."""
        for assistant in self.idle:
            assistant.close()


class Answering:
    """One question: in line for a slot, then answered in a worker thread. Read its events with `next()`, stop it
    with `cancel()` (which also takes it out of the line)."""

    def __init__(self, pool: Pool, events: Callable[[Assistant], Iterator[Event]]):
        self.pool = pool
        self.queue: asyncio.Queue[Event | Failed | object] = asyncio.Queue()
        self.cancelled = threading.Event()
        self.done = False  # the end (or the failure) was read
        self.start = asyncio.ensure_future(self._start(events))

    async def _start(self, events: Callable[[Assistant], Iterator[Event]]) -> None:
        assistant = await self.pool.acquire()  # nothing awaits between this and the thread's start
        loop = asyncio.get_running_loop()
        work = threading.Thread(target=self._work, args=(assistant, events, loop), name="answer", daemon=True)
        work.start()

    def _work(
        self, assistant: Assistant, make: Callable[[Assistant], Iterator[Event]], loop: asyncio.AbstractEventLoop
    ) -> None:
        def put(item: Event | Failed | object) -> None:
            try:
                loop.call_soon_threadsafe(self._arrive, assistant, item)
            except RuntimeError:  # the event loop is gone (the server stopped): nobody is reading
                log.debug("event after the server stopped: %r", item)

        events = make(assistant)
        try:
            for event in events:
                if self.cancelled.is_set():
                    break
                put(event)
        except BaseException as e:  # noqa: BLE001 (the request answers with it)
            put(Failed(e))
        finally:
            close = getattr(events, "close", None)
            if callable(close):
                close()  # unwinds the loop and the model's stream: a decode ends, a connection is closed
            put(_END)

    def _arrive(self, assistant: Assistant, item: Event | Failed | object) -> None:
        if item is _END:
            self.pool.release(assistant)
        self.queue.put_nowait(item)

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event; None at the end (`done`), or when `timeout` seconds pass first (not `done`)."""
        if self.done:
            return None
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None
        if item is _END:
            self.done = True
            return None
        if isinstance(item, Failed):
            self.done = True
            raise item.error
        return item  # type: ignore[return-value]

    def cancel(self) -> None:
        """Leave the line, or stop the answer at its next event (the slot is given back when the thread stops)."""
        self.start.cancel()
        self.cancelled.set()
