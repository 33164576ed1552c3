"""Pacing downloads: a global start rate, a shared pause after rate limits, and jittered backoff."""

from __future__ import annotations

import random
import threading
import time

from .options import FetchOptions


class Pacer:
    """Start downloads no faster than ``rate`` per second overall; everyone pauses after a 429."""

    def __init__(self, rate: float | None, stop: threading.Event) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._stop = stop

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        self._stop.wait(max(0.0, slot - time.monotonic()))

    def pause(self, seconds: float) -> None:
        """Hold every worker back for ``seconds`` (the source is rate limiting or checking for bots)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def backoff_delay(options: FetchOptions, attempt: int) -> float:
    return min(options.backoff_max_s, options.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

