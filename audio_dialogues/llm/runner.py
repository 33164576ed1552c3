"""Running units of requests with N workers: what ``predict`` and ``evaluate``'s judge share.

A unit is whatever must be asked in order (one request, or the turns of a dialogue whose history is the
model's own answers); units run ``concurrency`` at a time. The first Ctrl-C (or SIGTERM) lets the
requests in flight finish and be journaled, and starts no new unit; a second abandons them. An
:class:`~audio_dialogues.llm.client.EndpointUnusable` raised by any unit stops every worker and is returned,
so the caller can say in one paragraph why nothing can be asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .client import EndpointUnusable

U = TypeVar("U")


@contextlib.contextmanager
def interrupt_handlers(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on SIGINT and SIGTERM in the running event loop, instead of raising (where signals can be
    handled: the main thread of a POSIX process)."""
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


@dataclass
class Outcome:
    interrupted: bool = False
    unusable: EndpointUnusable | None = None


class Pool(Generic[U]):
    """Runs ``work(unit)`` for each unit with ``concurrency`` workers (see the module docstring)."""

    def __init__(self, work: Callable[[U], Awaitable[None]], concurrency: int,
                 log: Callable[[str], None] = print) -> None:
        self.work, self.concurrency, self.log = work, max(1, concurrency), log
        self.stop = asyncio.Event()
        self.outcome = Outcome()
        self._tasks: list[asyncio.Task] = []
        self._interrupts = 0

    def _interrupt(self) -> None:
        self._interrupts += 1
        self.outcome.interrupted = True
        if self._interrupts == 1:
            self.log("stopping: waiting for the requests in flight to be answered and journaled "
                     "(interrupt again to abandon them)")
            self.stop.set()
        else:
            for task in self._tasks:
                task.cancel()

    async def run(self, units: Sequence[U]) -> Outcome:
        if not units:
            return self.outcome
        queue = iter(units)

        async def worker() -> None:
            for unit in queue:
                if self.stop.is_set():
                    return
                try:
                    await self.work(unit)
                except EndpointUnusable as e:
                    self.outcome.unusable = self.outcome.unusable or e  # the first to trip is the one reported
                    self.stop.set()
                    for task in self._tasks:
                        if task is not asyncio.current_task():
                            task.cancel()
                    return

        with interrupt_handlers(self._interrupt):
            self._tasks = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(units)))]
            try:
                await asyncio.gather(*self._tasks)
            except asyncio.CancelledError:
                pass
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.outcome
