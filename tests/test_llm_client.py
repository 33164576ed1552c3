"""The chat client's rate limits, failure labels and proxy, through real HTTP (the client's own aiohttp session).

Hosted LLMs cannot be reached from tests: requests go to ``tests/openai_server.py`` (aiohttp on 127.0.0.1),
to a closed port on 127.0.0.1, or to a host name that cannot resolve (``.invalid`` is reserved for that).
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from audio_dialogues.errors import UsageError
from audio_dialogues.llm.client import (
    ChatClient,
    ClientStats,
    EndpointUnusable,
    ModelSettings,
    RequestFailed,
    estimate_tokens,
)
from tests.openai_server import OpenAIServer


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


def test_tpm_charges_the_whole_request_when_it_needs_more_than_a_seconds_worth(server: OpenAIServer) -> None:
    """A 3,000 TPM quota drains 50 tokens a second; each request needs 100 (prompt estimate + max_tokens).

    Every request must be paid in full before it goes: by t seconds after the start at most 50 * (t + 1)
    tokens (one second's bucket plus what drained since) may have reached the server.
    """
    messages = [{"role": "user", "content": "x" * 40}]
    settings = ModelSettings("m", max_tokens=100 - estimate_tokens(messages))
    per_second, need, n = 50.0, 100, 2

    async def run() -> float:
        client = ChatClient(settings, base_url=server.base_url, tpm=per_second * 60)
        started = time.time()
        try:
            await asyncio.gather(*(client.complete(messages) for _ in range(n)))
        finally:
            await client.close()
        return started

    started = asyncio.run(run())
    arrivals = sorted(server.arrivals)
    assert len(arrivals) == n
    for sent, at in enumerate(arrivals, 1):
        allowed = per_second * (at - started + 1) + 0.05 * per_second
        assert sent * need <= allowed, (sent, at - started)
    assert arrivals[-1] - started >= (n * need - per_second) / per_second - 0.05


MESSAGES = [{"role": "user", "content": "Say something about a dog."}]


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def attempt(base_url: str, **client: object) -> tuple[BaseException | None, ClientStats]:
    """One completion through a fresh client; what it raised (None when answered) and its counters."""

    async def run() -> tuple[BaseException | None, ClientStats]:
        chat = ChatClient(ModelSettings("m", max_tokens=8), base_url=base_url, backoff_s=0.01, **client)
        try:
            await chat.complete(MESSAGES)
        except (RequestFailed, EndpointUnusable) as e:
            return e, chat.stats
        finally:
            await chat.close()
        return None, chat.stats

    return asyncio.run(run())


@pytest.mark.parametrize("url,label", [(None, "connection refused"),
                                       ("http://audio-dialogues-test.invalid/v1", "host name not resolved (")])
def test_refused_and_unresolved_are_connection_failures_not_timeouts(url: str | None, label: str) -> None:
    """The aiohttp transport reports both as connect timeouts; the OS error underneath names them."""
    error, stats = attempt(url or closed_url(), max_attempts=2)
    assert isinstance(error, RequestFailed) and str(error).startswith(label) and "after 2 attempts" in str(error)
    assert [reason.startswith(label) for reason in stats.retry_reasons] == [True]


def test_an_endpoint_that_never_answers_stops_the_client_after_the_watched_attempts() -> None:
    error, stats = attempt(closed_url(), max_attempts=6, fail_fast_after=3)
    assert isinstance(error, EndpointUnusable) and error.attempts == 3 and stats.requests == 3
    assert error.failure.label == "connection refused" and error.base_url.endswith("/v1")


def test_transient_faults_and_failures_after_a_success_keep_their_retries(server: OpenAIServer) -> None:
    """429s before the first answer disarm the watch; a server gone after an answer is retried, not condemned."""
    server.fault("dog", "429", "429", "429")
    server.retry_after_s = 0.01
    error, stats = attempt(server.base_url, max_attempts=4, fail_fast_after=2)
    assert error is None and stats.retry_reasons == {"HTTP 429": 3}

    async def answered_then_gone() -> BaseException:
        chat = ChatClient(ModelSettings("m", max_tokens=8), base_url=server.base_url, backoff_s=0.01,
                          max_attempts=3, fail_fast_after=2)
        try:
            await chat.complete(MESSAGES)
            server.stop()
            with pytest.raises(RequestFailed) as raised:
                await chat.complete(MESSAGES)
            return raised.value
        finally:
            await chat.close()

    assert str(asyncio.run(answered_then_gone())) == "connection refused after 3 attempts"


def test_estimate_counts_the_text_parts_of_a_message_and_no_audio() -> None:
    """A predict request's first message is a list of parts: its text counts, the base64 audio does not (the
    TPM bucket charged 0 text tokens for it before, whatever the question)."""
    audio = {"type": "input_audio", "input_audio": {"data": "A" * 400_000, "format": "wav"}}
    parts = [{"role": "user", "content": [audio, {"type": "text", "text": "abcd" * 10}]}]
    assert estimate_tokens(parts) == estimate_tokens([{"role": "user", "content": "abcd" * 10}]) == 10 + 4


@pytest.mark.parametrize("bypass", [False, True])
def test_the_proxy_the_environment_names_carries_the_requests(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch,
                                                              bypass: bool) -> None:
    """HTTP_PROXY is honoured (the host below resolves nowhere: only the proxy, here the stand-in server, can
    answer for it) and NO_PROXY exempts a host, though the environment is read once per client, not per request."""
    host = "audio-dialogues-test.invalid"
    for name in ("http_proxy", "no_proxy", "all_proxy", "ALL_PROXY"):  # the lower-case ones win in urllib
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.base_url.rsplit("/", 1)[0])
    monkeypatch.setenv("NO_PROXY", host if bypass else "")
    error, stats = attempt(f"http://{host}/v1", max_attempts=1)
    if bypass:
        assert isinstance(error, RequestFailed) and str(error).startswith("host name not resolved (")
    else:
        assert error is None and server.requests == stats.requests == 1


def test_all_proxy_carries_the_requests_and_a_socks_proxy_is_refused_with_the_fix(
        server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """ALL_PROXY is honoured as the openai client honours it; a SOCKS proxy, which no request could go through,
    stops at once with what to do (it raised ImportError from inside the openai client before)."""
    host = "audio-dialogues-test.invalid"
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", server.base_url.rsplit("/", 1)[0])
    error, stats = attempt(f"http://{host}/v1", max_attempts=1)
    assert error is None and server.requests == stats.requests == 1
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    with pytest.raises(UsageError, match="only HTTP proxies carry the LLM requests; unset it"):
        attempt(f"http://{host}/v1", max_attempts=1)


def test_a_redirected_endpoint_is_followed_with_the_post(server: OpenAIServer) -> None:
    """A base URL answered with a 308 (moved to another path) keeps working, as with the openai client: the POST
    and its body are repeated at the new address (a 308 failed every request at once before)."""
    from aiohttp import web

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(server.base_url + request.path.removeprefix("/old"))

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/old/chat/completions", moved)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        chat = ChatClient(ModelSettings("m", max_tokens=8), base_url=f"http://127.0.0.1:{port}/old", max_attempts=1)
        try:
            completion = await chat.complete(MESSAGES)
        finally:
            await chat.close()
            await runner.cleanup()
        assert completion.text and server.requests == 1

    asyncio.run(run())
