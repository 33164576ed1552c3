"""Batch files: cut within the request and byte limits, in order; a request no file can hold is named."""

from __future__ import annotations

import asyncio
import json

import pytest

from audio_dialogues.errors import UsageError
from audio_dialogues.llm.batch import BatchError, open_client, parse_result, request_line, split_lines
from tests.openai_server import OpenAIServer


def test_files_are_cut_at_the_request_or_the_byte_limit_whichever_comes_first() -> None:
    requests = {f"id{i:02d}": {"model": "m", "messages": [{"role": "user", "content": "x" * (10 * i)}]}
                for i in range(12)}
    sizes = [len(request_line(cid, body)) for cid, body in requests.items()]
    files = split_lines(requests, max_requests=4, max_bytes=10**9)
    assert [len(f) for f in files] == [4, 4, 4]
    limit = sizes[-1] + sizes[-2]  # the two largest fit together, and no more
    files = split_lines(requests, max_requests=100, max_bytes=limit)
    assert [cid for f in files for cid, _ in f] == list(requests)  # every request once, in order
    size = [sum(len(line) for _, line in f) for f in files]
    assert all(n <= limit for n in size) and len(files) > 2
    assert all(size[i] + len(files[i + 1][0][1]) > limit for i in range(len(files) - 1))  # each file as full as fits
    assert json.loads(files[0][0][1]) == {"custom_id": "id00", "method": "POST", "url": "/v1/chat/completions",
                                          "body": requests["id00"]}
    with pytest.raises(BatchError, match="request id11: .* more than a batch file may hold"):
        split_lines(requests, max_bytes=sizes[-1] - 1)


def test_a_result_line_is_an_answer_or_an_error_and_a_broken_one_is_named() -> None:
    answer = parse_result(json.dumps({"custom_id": "a", "response": {"status_code": 200, "body": {
        "model": "m", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}}}).encode(), "f:1")
    assert answer.completion is not None and answer.completion.text == "hi" and answer.completion.prompt_tokens == 3
    refused = parse_result(
        b'{"custom_id": "b", "response": {"status_code": 400, "body": {"error": {"message": "no"}}}}', "f:2")
    assert refused.completion is None and refused.error == "HTTP 400: no"
    with pytest.raises(BatchError, match="f:3: not a batch result line"):
        parse_result(b'{"response": {}}', "f:3")


def test_the_batch_client_takes_the_proxy_the_chat_client_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment's HTTP proxy carries the Files and Batches requests to a host only it can reach; a SOCKS
    proxy stops at once with the fix (httpx, reading the environment itself, raised an ImportError), unless
    NO_PROXY exempts the host (test_llm_client does the same for the chat client)."""
    host = "audio-dialogues-test.invalid"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with OpenAIServer() as server:
        monkeypatch.setenv("HTTP_PROXY", server.base_url.rsplit("/", 1)[0])
        client = open_client(f"http://{host}/v1", None, timeout_s=10, max_attempts=1)

        async def batches() -> list:
            async with client:  # its connections closed in the loop that opened them
                return [batch async for batch in client.batches.list()]

        assert asyncio.run(batches()) == []
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    with pytest.raises(UsageError, match="only HTTP proxies carry the LLM requests; unset it"):
        open_client(f"http://{host}/v1", None, timeout_s=10, max_attempts=1)
    monkeypatch.setenv("NO_PROXY", host)
    open_client(f"http://{host}/v1", None, timeout_s=10, max_attempts=1)
