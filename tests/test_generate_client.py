"""The chat client's rate limits and failure labels, through the real ``openai`` client and real HTTP.

Hosted LLMs cannot be reached from tests: requests go to ``tests/openai_server.py`` (aiohttp on 127.0.0.1),
to a closed port on 127.0.0.1, or to a host name that cannot resolve (``.invalid`` is reserved for that).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from audio_dialogues.generate.client import ChatClient, ModelSettings, estimate_tokens
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
