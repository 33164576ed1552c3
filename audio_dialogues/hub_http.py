"""Deadlines for every request the package makes to the Hub: the package's one HTTP timeout policy
(:func:`audio_dialogues.llm.client.bounded`) applied to ``huggingface_hub``'s client.

``huggingface_hub`` 1.x/2.x sends through one shared ``httpx`` client whose default has no timeout for
API calls, and its download timeouts (``HF_HUB_DOWNLOAD_TIMEOUT``, ``HF_HUB_ETAG_TIMEOUT``) are per
read: a Hub that sends headers and then a byte now and then holds a push or a load forever.
:func:`install` gives ``huggingface_hub`` (through its own hook, ``set_client_factory``) a client whose
every request must end, from connecting to its last byte sent and received, within

    deadline = base + (bytes sent + bytes received) / min_rate

``base`` (:data:`BASE_S`, ``AUDIO_DIALOGUES_HUB_TIMEOUT``) bounds a small API call (repo info, preupload,
commit, listing files); the size term lets a transfer (an LFS upload of a 500 MB parquet shard, a
download) take as long as a link of ``min_rate`` bytes/s (:data:`MIN_RATE`,
``AUDIO_DIALOGUES_HUB_MIN_RATE``) needs, so a slow but moving transfer is not killed. The size is the
request's and the answer's ``Content-Length``. The deadline is checked at each chunk of the bodies, and
each wait for bytes is bounded by ``base`` too (httpx's per-read timeout), so a stalled or trickling
Hub ends within ``deadline + base`` at most. A request past its deadline, or a wait past ``base``,
raises :class:`HubTimeout`,
an :class:`AudioDialoguesError` and a ``TimeoutError``; it is not one of ``httpx``'s errors, so
``huggingface_hub`` does not retry it: a stalled Hub ends the command after one deadline.

``huggingface_hub<1`` (the ``datasets36`` environment) sends through ``requests``, which has no hook for
a bound on the whole request: there only the per-read timeouts of ``huggingface_hub`` apply.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import AudioDialoguesError, UsageError

#: Seconds a request without a body worth counting may take, and the longest wait for the next bytes.
BASE_S = 60.0
#: Bytes per second a transfer must average at least: 128 KiB/s (about 1 Mbit/s), so a 500 MB shard
#: may take 60 s + 63 min.
MIN_RATE = 128 * 1024
BASE_ENV = "AUDIO_DIALOGUES_HUB_TIMEOUT"
RATE_ENV = "AUDIO_DIALOGUES_HUB_MIN_RATE"


class HubTimeout(AudioDialoguesError, TimeoutError):
    """A Hub request that did not end within its deadline (see the module's docstring)."""


def _positive(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise UsageError(f"{name} must be a positive number, got {text!r}")
    return value


def limits() -> tuple[float, float]:
    """``(base seconds, minimum bytes/s)``, from the environment where set."""
    return _positive(BASE_ENV, BASE_S), _positive(RATE_ENV, MIN_RATE)


def deadline_s(size: int, base: float, rate: float) -> float:
    """Seconds a request moving ``size`` bytes (sent plus received) may take."""
    return base + size / rate


def _s(seconds: float) -> str:
    """``1``, ``1.5``, ``3875.2``: seconds to a tenth, as the limits are given."""
    return f"{seconds:.1f}".removesuffix(".0")


def _length(headers: Any) -> int:
    try:
        return max(0, int(headers.get("content-length") or 0))
    except ValueError:
        return 0


_installed: Any = None


def install() -> None:
    """Make every request of ``huggingface_hub`` (1.x, 2.x) bounded as a whole; a no-op on ``huggingface_hub<1``
    and when done before. A client factory the user set is left alone."""
    global _installed
    limits()  # a bad AUDIO_DIALOGUES_HUB_* value is refused before any request
    try:
        from huggingface_hub.utils import _http, set_client_factory
    except ImportError:  # huggingface_hub<1: requests, no such hook
        return
    httpx = getattr(_http, "httpx2", None) or getattr(_http, "httpx", None)  # 2.x: httpx2, 1.x: httpx
    if httpx is None:
        return
    current = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None)
    if current is _installed and current is not None:
        return
    if current is not getattr(_http, "default_client_factory", None):
        return
    _installed = _factory(httpx, current)
    set_client_factory(_installed)


def _factory(httpx: Any, default: Any) -> Any:
    """A client factory like ``huggingface_hub``'s default, with each transport wrapped in a deadline."""

    class Checked(httpx.SyncByteStream):
        """A body that raises :class:`HubTimeout` at its first chunk past the deadline."""

        def __init__(self, stream: Any, request: Any, clock: list[float]) -> None:
            self.stream, self.request, self.clock = stream, request, clock

        def __iter__(self) -> Iterator[bytes]:
            with _stalls(self.request, self.clock):
                for chunk in self.stream:
                    _check(self.request, self.clock)
                    yield chunk

        def close(self) -> None:
            close = getattr(self.stream, "close", None)
            if close is not None:
                close()

    @contextmanager
    def _stalls(request: Any, clock: list[float]) -> Iterator[None]:
        """httpx's timeout for one wait (``base``) as a :class:`HubTimeout` naming the request."""
        try:
            yield
        except httpx.TimeoutException as e:
            raise HubTimeout(f"{request.method} {request.url}: no bytes for {_s(limits()[0])} s, no whole answer "
                             f"within {_s(clock[1])} s (the Hub deadline: {BASE_ENV} + size / {RATE_ENV})") from e

    def _check(request: Any, clock: list[float]) -> None:
        start, limit = clock
        if time.monotonic() - start > limit:
            raise HubTimeout(f"{request.method} {request.url}: no whole answer within {_s(limit)} s (the Hub "
                             f"deadline: {BASE_ENV} + size / {RATE_ENV})")

    class Deadline(httpx.BaseTransport):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def handle_request(self, request: Any) -> Any:
            base, rate = limits()
            clock = [time.monotonic(), deadline_s(_length(request.headers), base, rate)]
            # each wait (connect, a read, a write) at most ``base``, whatever timeout the caller gave
            waits = dict(request.extensions.get("timeout") or {})
            request.extensions["timeout"] = {phase: min(base, waits.get(phase) or base)
                                             for phase in ("connect", "read", "write", "pool")}
            if isinstance(request.stream, httpx.SyncByteStream):
                request.stream = Checked(request.stream, request, clock)
            with _stalls(request, clock):
                response = self.inner.handle_request(request)
            clock[1] = deadline_s(_length(request.headers) + _length(response.headers), base, rate)
            try:
                _check(request, clock)
            except HubTimeout:
                response.close()
                raise
            return httpx.Response(response.status_code, headers=response.headers,
                                  stream=Checked(response.stream, request, clock), extensions=response.extensions)

        def close(self) -> None:
            self.inner.close()

    class Client(httpx.Client):
        def _transport_for_url(self, url: Any) -> Any:
            return Deadline(super()._transport_for_url(url))

    def factory() -> Any:
        client = default()
        bounded = Client(event_hooks=client.event_hooks, follow_redirects=client.follow_redirects,
                         timeout=client.timeout, headers=client.headers)
        client.close()
        return bounded

    return factory
