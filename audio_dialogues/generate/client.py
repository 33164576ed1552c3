"""Chat completions from any OpenAI-compatible endpoint, with rate limits and retries we can account for.

The official ``openai`` client does the HTTP (and the API key); its own retries are off so that every attempt, wait and
``Retry-After`` is ours to honour and count. 429, 408/409, 5xx, timeouts and dropped connections are
retried with exponential backoff and jitter (or exactly the server's ``Retry-After``); other 4xx fail
at once, since they would fail again. Requests-per-minute and tokens-per-minute limits are leaky
buckets; tokens are counted the way hosted APIs do, prompt estimate plus ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any

import openai
from aiolimiter import AsyncLimiter
from openai.types.chat import ChatCompletion

#: Characters per token, for estimates before any usage comes back (English prose with JSON: ~4).
CHARS_PER_TOKEN = 4.0
MAX_RETRY_AFTER_S = 300.0


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A tokenizer-free estimate of a prompt's tokens (4 characters each, plus a few per message)."""
    return int(sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN) + 4 * len(messages)


class RequestFailed(RuntimeError):
    """A request that got no usable response after its retries; nothing was journaled, so a re-run retries."""


@dataclass(frozen=True)
class ModelSettings:
    """What the requests send, recorded with every output record (the API key is never part of it)."""

    model: str
    temperature: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None

    def body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                "max_tokens": self.max_tokens}
        if self.seed is not None:
            body["seed"] = self.seed
        return body


@dataclass(frozen=True)
class Completion:
    text: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    latency_s: float
    model: str | None


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)
    waited_s: float = 0.0

    def retried(self, reason: str) -> None:
        self.retries += 1
        self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1


def retry_after_s(response: Any) -> float | None:
    """The server's requested wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class ChatClient:
    """Sends chat completions with retries, backoff and optional RPM/TPM limits."""

    def __init__(
        self,
        settings: ModelSettings,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_attempts: int = 6,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> None:
        self.settings = settings
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = ClientStats()
        self._rpm = _per_second_bucket(rpm) if rpm else None
        self._tpm = _per_second_bucket(tpm) if tpm else None
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s,
                                          max_retries=0, http_client=_http_client(timeout_s))

    async def close(self) -> None:
        await self._client.close()

    async def _throttle(self, messages: list[dict[str, str]]) -> None:
        if self._rpm is not None:
            await self._rpm.acquire()
        if self._tpm is not None:
            await _acquire_all(self._tpm, estimate_tokens(messages) + self.settings.max_tokens)

    def _delay(self, attempt: int, response: Any = None) -> float:
        server = retry_after_s(response)
        if server is not None:
            return min(server, MAX_RETRY_AFTER_S)
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    async def complete(self, messages: list[dict[str, str]], headers: dict[str, str] | None = None) -> Completion:
        """One completion; retried on transient failures; :class:`RequestFailed` when they run out."""
        body = self.settings.body(messages)
        options = {"headers": headers} if headers else {}
        started = time.perf_counter()
        reason = "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            await self._throttle(messages)
            self.stats.requests += 1
            response = None
            try:
                # The client's generic POST: ``chat.completions.create`` first walks every message through
                # its TypedDict transformer, which cost more CPU than the whole HTTP exchange here.
                result = await self._client.post("/chat/completions", cast_to=ChatCompletion, body=body,
                                                 options=options)
            except openai.APIStatusError as e:
                status = e.status_code
                if status not in (408, 409, 429) and status < 500:
                    raise RequestFailed(f"HTTP {status}: {_short(e.message)}") from None
                reason, response = f"HTTP {status}", e.response
            except openai.APITimeoutError as e:
                reason = f"timeout ({_root_cause(e)})"
            except openai.APIConnectionError as e:
                reason = f"connection error ({_root_cause(e)})"
            except openai.APIResponseValidationError as e:
                reason = f"invalid response ({_short(str(e))})"
            else:
                choice = result.choices[0] if result.choices else None
                usage = result.usage
                return Completion(
                    text=choice.message.content if choice and choice.message else None,
                    finish_reason=choice.finish_reason if choice else None,
                    prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                    completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                    attempts=attempt,
                    latency_s=time.perf_counter() - started,
                    model=result.model,
                )
            if attempt == self.max_attempts:
                break
            self.stats.retried(reason)
            delay = self._delay(attempt, response)
            self.stats.waited_s += delay
            await asyncio.sleep(delay)
        raise RequestFailed(f"{reason} after {self.max_attempts} attempts")


def _per_second_bucket(per_minute: float) -> AsyncLimiter:
    """A leaky bucket for a per-minute limit that holds about one second's worth, not a minute's.

    A bucket of a whole minute would let the first minute's requests out at once; hosted APIs enforce
    their per-minute limits over shorter windows and would answer such a burst with 429s.
    """
    capacity = max(1.0, per_minute / 60)
    return AsyncLimiter(capacity, capacity * 60 / per_minute)


async def _acquire_all(bucket: AsyncLimiter, amount: float) -> None:
    """Take ``amount`` from the bucket, in chunks of at most its capacity when it holds less than that.

    A request may need more tokens than the one-second bucket holds (a long prompt plus ``max_tokens``
    against a small TPM quota); charging only a bucket's worth would let such requests out at the
    request rate, several times over the quota.
    """
    while amount > 0:
        chunk = min(amount, bucket.max_rate)
        await bucket.acquire(chunk)
        amount -= chunk


def _http_client(timeout_s: float) -> Any:
    """The client's aiohttp transport (the ``openai[aiohttp]`` extra) when present, else its httpx default.

    At 64 requests in flight the default transport's connection pool spends several times more CPU per
    request than the aiohttp one, enough to make the client the bottleneck of a fast endpoint.
    """
    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None:
        return None
    try:
        return factory(timeout=timeout_s)
    except RuntimeError:  # aiohttp is not installed
        return None


def _root_cause(error: BaseException) -> str:
    """The innermost exception's class: the transports disagree on what to call a dropped connection."""
    while error.__cause__ is not None:
        error = error.__cause__
    return type(error).__name__


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
