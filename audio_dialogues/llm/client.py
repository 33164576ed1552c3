"""Chat completions from any OpenAI-compatible endpoint, with rate limits and retries we can account for.

The official ``openai`` client says where and how to ask (the base URL, ``OPENAI_BASE_URL``, the API key and
the headers it sends); the requests themselves go out on one aiohttp session and their JSON is read into plain
dicts. At hundreds of requests in flight the ``openai`` client's own request path (options, headers and URL
built per request, its httpx layer over aiohttp, a pydantic model per answer) cost four times the CPU of the
HTTP exchange, enough to make a 2-core client the bottleneck (``bench/generate.py`` (a)). Every attempt,
wait and ``Retry-After`` is ours to honour and count. 429, 408/409, 5xx, timeouts and connection errors are
retried with exponential backoff and jitter (or exactly the server's ``Retry-After``); other 4xx fail
at once, since they would fail again. Requests-per-minute and tokens-per-minute limits are leaky
buckets; tokens are counted the way hosted APIs do, prompt estimate plus ``max_tokens``.

An endpoint that cannot serve the run at all (a wrong key, a wrong URL, no server) would otherwise fail
every item one by one, retries included: until one attempt succeeds, an :class:`EndpointWatch` stops the
client once enough attempts have all failed in the same such way.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import socket
import ssl
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import openai
from aiolimiter import AsyncLimiter

from ..errors import AudioDialoguesError, UsageError, reason
from .usage import Usage

#: Characters per token, for estimates before any usage comes back (English prose with JSON: ~4).
CHARS_PER_TOKEN = 4.0
MAX_RETRY_AFTER_S = 300.0

T = TypeVar("T")


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A tokenizer-free estimate of a prompt's text tokens (4 characters each, plus a few per message).

    A content given as parts counts its text parts; audio parts are priced per model (per second or per
    token of its own encoder) and are not estimated here.
    """
    return int(sum(len(text_of(m["content"])) for m in messages) / CHARS_PER_TOKEN) + 4 * len(messages)


def text_of(content: Any) -> str:
    """The text of a message content: the string itself, or its ``text`` parts joined."""
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content or () if isinstance(part, dict) and part.get("type") == "text")


class RequestFailed(AudioDialoguesError, RuntimeError):
    """A request that got no usable response after its retries; nothing was journaled, so a re-run retries."""


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified."""

    #: What the endpoint watch compares: ``HTTP 401``, ``connection refused``, ``timeout`` ...
    kind: str
    #: For the report: the kind with its detail (the server's message, the transport's exception).
    label: str
    #: Whether another attempt may succeed.
    retry: bool
    #: Whether, while nothing has succeeded, it says the endpoint cannot serve this run at all.
    fatal_first: bool
    status: int | None = None

    @property
    def about_endpoint(self) -> bool:
        """Whether it says nothing about the request itself, only that the endpoint (its key, URL, host or TLS)
        cannot serve: a 400 or 422 refuses one request, and another request may well pass."""
        return self.status in ENDPOINT_STATUSES or self.kind in ENDPOINT_KINDS


#: HTTP statuses that condemn the endpoint rather than one request: a refused key, no such route or model.
ENDPOINT_STATUSES = frozenset({401, 403, 404})
#: Transport failures of the same kind: nothing can be asked of the endpoint at all.
ENDPOINT_KINDS = frozenset({"connection refused", "host name not resolved", "TLS error"})


class _NotAnAnswer(AudioDialoguesError, ValueError):
    """A 200 answer that is not what was asked for (a JSON list, a completion without its fields)."""


class ResponseFormatRefused(AudioDialoguesError, RuntimeError):
    """An error answer naming the request's ``response_format``: the endpoint (or its model) has no structured
    outputs. OpenAI answers 400; llama-cpp-python's server answers 500 with its validation error (it knows only
    ``json_object``), so the status alone does not tell, and a 5xx would otherwise be retried in vain.

    It says nothing about the endpoint's health or the item, so the endpoint watch does not count it; the
    caller asks again without the parameter.
    """

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.label)
        self.failure = failure


class EndpointUnusable(AudioDialoguesError, RuntimeError):
    """The first attempts of a run all failed the same way, one that says the endpoint cannot serve it."""

    def __init__(self, failure: Failure, attempts: int, base_url: str) -> None:
        super().__init__(f"{base_url}: the first {attempts} attempts all failed with {failure.label}")
        self.failure, self.attempts, self.base_url = failure, attempts, base_url


@dataclass
class EndpointWatch:
    """Watches the attempts until one succeeds; says the endpoint is unusable once ``threshold`` have all
    failed with one kind of fatal-first failure (a 401, 404, refused connection, unknown host ...).

    A success, a transient failure (429, 5xx, timeout) or a second kind disarms it for good: from then on
    failures are retried as usual, since the endpoint has shown it can answer or the fault may pass.
    With ``endpoint_only`` (the endpoint answered before), only failures :attr:`Failure.about_endpoint`
    count: a refused key or a server gone still stop the run, a 400 about one request disarms it.
    """

    threshold: int
    endpoint_only: bool = False
    armed: bool = True
    failed_attempts: int = 0
    first: Failure | None = None

    def succeeded(self) -> None:
        self.armed = False

    def failed(self, failure: Failure) -> None:
        if not self.armed:
            return
        fatal = failure.fatal_first and (failure.about_endpoint or not self.endpoint_only)
        if not fatal or (self.first is not None and failure.kind != self.first.kind):
            self.armed = False
            return
        self.first = self.first or failure
        self.failed_attempts += 1

    @property
    def tripped(self) -> bool:
        return self.armed and self.failed_attempts >= self.threshold

    @property
    def every_attempt_failed(self) -> bool:
        """Nothing succeeded and every attempt failed with one fatal-first kind (however few there were)."""
        return self.armed and self.failed_attempts > 0


def status_failure(status: int, body: bytes) -> Failure:
    """What an answer with an HTTP error status says: retried or not, and whether it condemns an endpoint that
    never answered. The detail is the server's own message (``{"error": {"message": ...}}``), as the
    ``openai`` client reports it."""
    if status in (408, 409, 429) or status >= 500:
        return Failure(f"HTTP {status}", f"HTTP {status}", retry=True, fatal_first=False, status=status)
    detail = _short(_error_message(body))
    return Failure(f"HTTP {status}", f"HTTP {status}: {detail}" if detail else f"HTTP {status}", retry=False,
                   fatal_first=True, status=status)


def transport_failure(error: BaseException) -> Failure:
    """What an attempt that got no answer at all says (aiohttp's exception, with the OS error underneath).

    A refused connection, an unknown host and a TLS failure are searched for in the exception chain, so that
    the endpoint watch can tell them from a connection dropped mid-answer.
    """
    for cause in _chain(error):
        if isinstance(cause, ConnectionRefusedError):
            return Failure("connection refused", "connection refused", retry=True, fatal_first=True)
        if isinstance(cause, socket.gaierror):
            return Failure("host name not resolved", f"host name not resolved ({cause.strerror or cause})",
                           retry=True, fatal_first=True)
        if isinstance(cause, ssl.SSLError):
            return Failure("TLS error", f"TLS error ({cause.reason or type(cause).__name__})", retry=True,
                           fatal_first=True)
    if isinstance(error, TimeoutError):
        return Failure("timeout", f"timeout ({_root_cause(error)})", retry=True, fatal_first=False)
    return Failure("connection error", f"connection error ({_root_cause(error)})", retry=True, fatal_first=False)


def _error_message(body: bytes) -> str:
    """The message of a JSON error body (``{"error": {"message": ...}}`` or ``{"message": ...}``), else ''."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    error = data.get("error", data) if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else ""


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
    #: Of ``prompt_tokens``, those the endpoint served from its prompt cache.
    cached_prompt_tokens: int = 0

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens, self.cached_prompt_tokens)


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
    """Sends chat completions (and embeddings requests) with retries, backoff, a deadline per attempt and
    optional RPM/TPM limits."""

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
        fail_fast_after: int | None = None,
    ) -> None:
        self.settings = settings
        self.watch = EndpointWatch(fail_fast_after) if fail_fast_after else None
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = ClientStats()
        self._rpm = _per_second_bucket(rpm) if rpm else None
        self._tpm = _per_second_bucket(tpm) if tpm else None
        # Where and how to ask, as the openai client resolves them: its default headers (1.x includes the key
        # in them, later versions keep it in ``auth_headers``), the options it leaves unset (``Omit``) left out.
        config = openai_config(base_url, api_key)
        self.base_url = str(config.base_url).rstrip("/")
        self._headers = {name: value for name, value in {**config.default_headers, **config.auth_headers}.items()
                         if isinstance(value, str)}
        self._proxy = env_proxy(self.base_url)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The one session of every request (made in the running loop at the first one): its connections are
        kept alive and shared, and their number is not capped here, since the callers' workers bound the
        requests in flight."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, connector=aiohttp.TCPConnector(limit=0),
                                                  timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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

    async def complete(self, messages: list[dict[str, str]], headers: dict[str, str] | None = None,
                       response_format: dict[str, Any] | None = None) -> Completion:
        """One completion; retried on transient failures; :class:`RequestFailed` when they run out.

        ``response_format`` (structured outputs) is sent with the request but is no part of its settings:
        the same messages asked with or without it are one request to the journal. Raises
        :class:`ResponseFormatRefused` when the endpoint refuses it, :class:`EndpointUnusable` when the
        endpoint watch trips.
        """
        started = time.perf_counter()
        body = self.settings.body(messages)
        if response_format is not None:
            body["response_format"] = response_format
        answer, attempt = await self._post("/chat/completions", body, _completion, messages, headers)
        text, finish_reason, prompt_tokens, completion_tokens, cached, model = answer
        return Completion(text=text, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens, attempts=attempt,
                          latency_s=time.perf_counter() - started, model=model, cached_prompt_tokens=cached)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """The embeddings of ``texts`` in their order, with the same retries and deadline as a completion."""
        vectors, _ = await self._post("/embeddings", {"model": self.settings.model, "input": texts}, _embeddings,
                                      [{"content": text} for text in texts])
        return vectors

    async def _post(self, path: str, body: dict[str, Any], read: Callable[[Any], T], messages: list[dict[str, str]],
                    headers: dict[str, str] | None = None) -> tuple[T, int]:
        """What ``read`` makes of the JSON answer, and the attempt that got it; each attempt ends within
        ``timeout_s`` (see :func:`bounded`). An answer ``read`` cannot use is retried like a 5xx."""
        url = self.base_url + path
        label = "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            await self._throttle(messages)
            self.stats.requests += 1
            response: aiohttp.ClientResponse | None = None
            try:
                answered, raw = await bounded(self._exchange(url, body, headers), self.timeout_s)
                response = answered
                if answered.status < 300:
                    result = read(json.loads(raw))
                    if self.watch is not None:
                        self.watch.succeeded()
                    return result, attempt
                failure = status_failure(answered.status, raw)
                message = _error_message(raw) if "response_format" in body else ""
                if "response_format" in message:  # the label keeps the server's words, 5xx included
                    raise ResponseFormatRefused(Failure(failure.kind, f"{failure.kind}: {_short(message)}",
                                                        retry=False, fatal_first=False, status=failure.status))
            except RequestTimeout:
                failure = Failure("timeout", f"timeout (no whole answer within {self.timeout_s:g} s)", retry=True,
                                  fatal_first=False)
            except (ValueError, RecursionError) as e:
                # A 200 that is no answer: truncated JSON (JSONDecodeError), a number of more than 4300 digits,
                # JSON nested too deep, an HTML page, a JSON list. Retried like a 5xx.
                failure = Failure("invalid response", f"invalid response ({_short(reason(e))})", retry=True,
                                  fatal_first=False)
            except (aiohttp.ClientError, OSError) as e:
                failure = transport_failure(e)
            label = failure.label
            if self.watch is not None:
                self.watch.failed(failure)
                if self.watch.tripped:
                    raise EndpointUnusable(failure, self.watch.failed_attempts, self.base_url) from None
            if not failure.retry:
                raise RequestFailed(label) from None
            if attempt == self.max_attempts:
                break
            self.stats.retried(label)
            delay = self._delay(attempt, response)
            self.stats.waited_s += delay
            await asyncio.sleep(delay)
        raise RequestFailed(f"{label} after {self.max_attempts} attempts")

    async def _exchange(self, url: str, body: dict[str, Any],
                        headers: dict[str, str] | None) -> tuple[aiohttp.ClientResponse, bytes]:
        """One POST and its whole answer. Redirects are followed, as the openai client follows them (a 307 or
        308 repeats the POST at the new address; a base URL moved to https or another path keeps working).
        ``json=`` makes the JSON payload at once (``data=`` bytes are looked up in aiohttp's payload registry, a
        tenth of the request's CPU)."""
        async with self._http().post(url, json=body, headers=headers, proxy=self._proxy) as response:
            return response, await response.read()


def _completion(answer: Any) -> tuple[str | None, str | None, int, int, int, str | None]:
    """(text, finish reason, prompt tokens, completion tokens, of them cached, model) of a chat completion's
    JSON."""
    if not isinstance(answer, dict):
        raise _NotAnAnswer(f"not a chat completion but {type(answer).__name__} {_short(str(answer))}")
    try:
        choices = answer.get("choices") or ()
        choice = choices[0] if choices else {}
        message = choice.get("message") or {}
        usage = answer.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return (message.get("content"), choice.get("finish_reason"), int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0), int(details.get("cached_tokens") or 0), answer.get("model"))
    except (AttributeError, TypeError, KeyError, IndexError) as e:
        raise _NotAnAnswer(f"not a chat completion ({reason(e)}): {_short(str(answer))}") from None


def _embeddings(answer: Any) -> list[list[float]]:
    """The vectors of an embeddings answer's JSON, in the order of their ``index``."""
    try:
        return [d["embedding"] for d in sorted(answer["data"], key=lambda d: d["index"])]
    except (AttributeError, TypeError, KeyError, IndexError) as e:
        raise _NotAnAnswer(f"not an embeddings answer ({reason(e)}): {_short(str(answer))}") from None


def openai_config(base_url: str | None, api_key: str | None) -> openai.AsyncOpenAI:
    """Where and how to ask, as the openai client resolves them (``OPENAI_BASE_URL``, ``OPENAI_ORG_ID`` ...),
    for reading only: no request goes through it.

    Its HTTP client ignores the environment, so that a proxy variable httpx cannot serve (SOCKS without
    socksio) does not raise here; :func:`env_proxy` says what is honoured.
    """
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0,
                              http_client=openai.DefaultAsyncHttpxClient(trust_env=False))


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``, then ``ALL_PROXY``;
    ``NO_PROXY``), as the openai client honours them; a SOCKS proxy, which the client cannot use, is refused
    with the fix rather than failing every request.

    Read once per client: aiohttp's ``trust_env`` reads it again for every request in a thread of the
    executor, two thread hand-offs that cost more CPU than the rest of the request.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and urllib.parse.urlsplit(proxy).scheme not in ("http", "https"):
        raise UsageError(f"the environment's proxy for {parts.scheme} requests is {proxy!r}: only HTTP proxies "
                         "carry the LLM requests; unset it (or name an HTTP proxy in HTTPS_PROXY/HTTP_PROXY, or "
                         f"exempt {parts.hostname} in NO_PROXY)")
    return proxy


class RequestTimeout(AudioDialoguesError, TimeoutError):
    """An HTTP request that did not end (its answer read to the last byte) within its deadline."""


async def bounded(request: Awaitable[T], timeout_s: float) -> T:
    """The package's one HTTP timeout policy: ``timeout_s`` bounds a whole request, from connecting to the
    last byte of the answer, not the wait between two bytes.

    The transports' own timeouts are per read (aiohttp's ``sock_read``, httpx's ``read``): an endpoint that
    trickles a byte now and then never trips them, and a run would wait forever on it. Python 3.11's
    ``asyncio.timeout`` bounds the request in its own task; ``wait_for`` (3.10) wraps it in another task,
    which at hundreds of requests a second is CPU the client spends on nothing.
    """
    try:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(timeout_s):
                return await request
        return await asyncio.wait_for(request, timeout_s)
    except asyncio.TimeoutError:  # on 3.10 not the built-in TimeoutError
        raise RequestTimeout(f"no whole answer within {timeout_s:g} s") from None


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


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The exception and those it was raised from or during, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _root_cause(error: BaseException) -> str:
    """The innermost exception's class: the transports disagree on what to call a dropped connection."""
    *_, root = _chain(error)
    return type(root).__name__


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
