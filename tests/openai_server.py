"""An OpenAI-compatible chat-completions (and embeddings) server on 127.0.0.1 for tests and benchmarks.

Hosted LLMs cannot be reached here, so generation is tested through the protocol: the real ``openai``
client talks to this aiohttp server. Answers are deterministic functions of the request (dialogue lines
that reuse the words of the item, so similarity filters have something to measure). It counts what a
paying user cares about: requests, requests in flight (and the most at once), and how often one request
(identified by :func:`audio_dialogues.llm.journal.request_key`) was answered.

Faults are queued per item: ``fault(substring, "429", "500", ...)`` makes the next requests whose item
name (header) or last message contains ``substring`` fail in that order. Kinds: ``429`` (with ``Retry-After``), ``500``,
``400``, ``403``, ``404`` (refused), ``timeout`` (answers too late), ``trickle`` (sends 200 headers, then a
space every 0.2 s for a minute before the answer: no read ever waits long), ``drop`` (closes the connection), ``empty``,
``malformed``, ``long`` (cut at max tokens), or any other string, sent as the completion text.

``report_usage = False`` leaves token usage out of the answers, as some local servers do.

Prompt caching as OpenAI and vLLM do it: a request whose first messages were sent before (the same
instruction and worked examples) reports those messages' tokens, rounded down to ``cache_block`` tokens, as
``usage.prompt_tokens_details.cached_tokens``. Tokens are 4 characters of message text. :meth:`bill` says
what the answers cost, exactly (a :class:`~fractions.Fraction` of dollars), at the prices given: what a
paying user's invoice would say.

Structured outputs: a request with ``response_format`` (a JSON schema in either spelling of
:mod:`audio_dialogues.llm.structured`) for a dialogue is answered with ``{"turns": [...]}``, the same turns;
``refuse_response_format = True`` answers any ``response_format`` with OpenAI's 400 for a model without
structured outputs, ``"llama.cpp"`` answers the ``json_schema`` spelling with the 500 that llama-cpp-python's
server gives and takes its own ``json_object`` one.
The request's key leaves ``response_format`` out, as the journal's does.

``api_key`` set makes every request without that bearer key fail with 401, as a hosted API does.

``hold_after=N`` answers N requests and then holds every later one open until the server stops: a run
killed then has requests in flight but none answered and unjournaled, which makes repeats countable.

Files and Batches (``/v1/files`` upload, retrieve and content; ``/v1/batches`` create, retrieve, list and
cancel) serve the Batch API: a batch advances when it is retrieved (``batch_step`` lines at a time, all by
default; none while ``hold_batches``), answers each line as a chat request would be answered (the same
per-item faults make error lines), and :meth:`bill` charges its answers ``batch_discount`` less.
``batch_faults`` are taken one per created batch: ``expire`` (expires half done: the rest get
``batch_expired`` error lines), ``fail`` (fails validation, no line at all), ``garble`` (its output file's
first line is cut short: no JSON, though the answer was billed). An input file over
``batch_max_bytes`` or ``batch_max_requests`` is refused with 400, as OpenAI refuses it. ``hold_creates_after=N``
registers every create call after the N-th but never answers it (a run killed then has a batch it never
heard of). ``seen`` counts every request by key, sent alone or in a batch.

Run as a script (``python -m tests.openai_server --latency 0.05``) it serves from its own process and
prints ``PORT <n>``; ``GET /stats`` returns the counters as JSON, ``POST /reset`` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from fractions import Fraction
from typing import Any

from aiohttp import web

from audio_dialogues.llm.client import text_of
from audio_dialogues.llm.journal import ITEM_HEADER, request_key


def dialogue_for(messages: list[dict[str, str]], name: str = "") -> str:
    """A deterministic completion for a rendered prompt and item: what a cooperative model would write."""
    system, item = messages[0]["content"], messages[-1]["content"]
    body = item.split("\n", 1)[1] if "\n" in item else item
    words = " ".join(body.replace("Sound of", "").replace("Music description:", "").split())
    if system.startswith("You describe how sound classes"):
        return "soft, steady and mid-pitched"
    if system.startswith("You check dialogues"):
        return judge_scores(item)
    if "several recordings" in system:
        return json.dumps({"user": "How do these recordings differ?",
                           "assistant": f"They differ in their sounds: {words[:300]} ({name})."})
    lines = []
    for turn in range(4):
        lines.append(json.dumps({"user": f"Question {turn + 1} about what is heard here?",
                                 "assistant": f"It is {words[:200]}, as part {turn + 1} of {name} makes clear."}))
    return "\n".join(lines)


_TIMESTAMP = re.compile(r"\d+(?:\.\d+)?\s*s\b|\d+(?:\.\d+)?\s*seconds")


def judge_scores(prompt: str) -> str:
    """``generate``'s judge (see audio_dialogues/generate/judge.py): faithful and specific are the share of the
    answers' longer words that the recording's description holds (1-5), no_timestamps is 1 when an answer
    gives seconds, refers_back always 4. An off-topic dialogue scores a mean of about 2.75, a faithful one
    4.75, a faithful one reading timestamps aloud 3.75."""
    content, _, dialogue = prompt.partition("## The dialogue")
    known = set(re.findall(r"[a-z]{4,}", content.lower()))
    answers = " ".join(line[len("Assistant: "):] for line in dialogue.splitlines() if line.startswith("Assistant: "))
    words = re.findall(r"[a-z]{4,}", answers.lower())
    share = sum(w in known for w in words) / len(words) if words else 0.0
    point = 1 + round(4 * share)
    return json.dumps({"faithful": point, "no_timestamps": 1 if _TIMESTAMP.search(answers) else 5,
                       "refers_back": 4, "specific": point})


def embedding_for(text: str, dim: int = 64) -> list[float]:
    """A bag-of-words hash embedding: texts sharing words point the same way."""
    vector = [0.0] * dim
    for word in text.lower().split():
        h = int.from_bytes(hashlib.blake2b(word.strip(".,;:!?").encode(), digest_size=4).digest(), "little")
        vector[h % dim] += 1.0
    return vector


#: Fault -> (content type, body) of 200 answers that are no chat completion.
NOT_A_COMPLETION = {
    "html": ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "truncated": ("application/json", b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"ind'),
    "nested": ("application/json", b"[" * 100_000 + b"]" * 100_000),
    "long number": ("application/json", b'{"id": "c", "choices": [], "created": ' + b"9" * 5000 + b"}"),
    "list": ("application/json", b"[]"),
}


class OpenAIServer:
    def __init__(self, latency_s: float = 0.0, retry_after_s: float = 0.05) -> None:
        self.latency_s = latency_s
        #: Seconds each embeddings request takes (a slow embedder, for interrupting a run while it scores).
        self.embedding_latency_s = 0.0
        #: True makes every answer (chat and embeddings) trickle, as the ``trickle`` fault does.
        self.trickle = False
        #: A NOT_A_COMPLETION key: every embeddings request gets that answer.
        self.embedding_fault: str | None = None
        self.retry_after_s = retry_after_s
        self.hold_after: int | None = None
        #: False leaves ``usage`` out of every answer, as some local servers do.
        self.report_usage = True
        #: Cached prefixes are counted in blocks of this many tokens (OpenAI: 128, after the first 1024).
        self.cache_block = 16
        #: When set, a request without ``Authorization: Bearer <api_key>`` gets OpenAI's 401 answer.
        self.api_key: str | None = None
        #: True refuses (400) every request with ``response_format``, as a model without structured outputs does.
        self.refuse_response_format: bool | str = False
        #: True refuses (400) every request with a non-text content part, as a text-only model does.
        self.reject_audio = False
        self.faults: dict[str, deque[str]] = {}
        #: The share of the price a batch's answers do not pay (see :meth:`bill`).
        self.batch_discount = 0.5
        self.batch_max_requests = 50_000
        self.batch_max_bytes = 200 * 1024 * 1024
        self.batch_step: int | None = None
        self.hold_batches = False
        self.hold_creates_after: int | None = None
        self.batch_faults: deque[str] = deque()
        self.port = 0
        self._lock = threading.RLock()  # reentrant: a batch line is answered under the lock it bills under
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.reset()

    # --- control ---------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.in_flight = 0
            self.max_in_flight = 0
            self.answered: Counter[str] = Counter()
            self.seen: Counter[str] = Counter()
            self.statuses: Counter[str] = Counter()
            #: Bytes of the chat requests' bodies (the JSON as sent).
            self.request_bytes = 0
            self.embedding_requests = 0
            self.embedded_texts = 0
            #: Requests that arrived for a request already answered: what a paying user must never see.
            self.repeated = 0
            self.authorization: str | None = None
            self.first_request_at: float | None = None
            #: When each chat request arrived (wall clock), to check rate limits per window.
            self.arrivals: list[float] = []
            self.last_answer_at: float | None = None
            #: The ``response_format`` of every request that had one, refused or not.
            self.response_formats: list[dict[str, Any]] = []
            #: Digests of every message prefix sent so far (the prompt cache).
            self.prefixes: set[bytes] = set()
            #: Per answer with usage: (prompt tokens, of which cached, completion tokens), what :meth:`bill` bills.
            self.usages: list[tuple[int, int, int]] = []
            #: The same, of the answers in batches' output files, billed at ``1 - batch_discount``.
            self.batch_usages: list[tuple[int, int, int]] = []
            self.files: dict[str, dict[str, Any]] = {}
            self.batches: dict[str, dict[str, Any]] = {}

    def bill(self, price_in: float, price_cached_in: float, price_out: float) -> Fraction:
        """Dollars for every answer sent with usage, at these prices per million tokens (those of a batch at
        ``1 - batch_discount`` of them), exactly."""
        p_in, p_cached, p_out = (Fraction(str(p)) for p in (price_in, price_cached_in, price_out))
        with self._lock:
            def dollars(usages: list[tuple[int, int, int]]) -> Fraction:
                return sum(((prompt - cached) * p_in + cached * p_cached + completion * p_out) / 1_000_000
                           for prompt, cached, completion in usages) or Fraction(0)

            return dollars(self.usages) + (1 - Fraction(str(self.batch_discount))) * dollars(self.batch_usages)

    def _cached_tokens(self, messages: list[dict[str, Any]]) -> int:
        """The tokens of the longest run of first messages sent before, in whole blocks; remembers this prompt's."""
        digest, chars, cached = hashlib.blake2b(digest_size=16), 0, 0
        with self._lock:
            for message in messages:
                digest.update(json.dumps(message, sort_keys=True).encode())
                chars += len(text_of(message["content"]))
                if digest.digest() in self.prefixes:
                    cached = chars // 4
                else:
                    self.prefixes.add(digest.digest())
        return cached // self.cache_block * self.cache_block

    def fault(self, match: str, *kinds: str) -> None:
        with self._lock:
            self.faults.setdefault(match, deque()).extend(kinds)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "request_bytes": self.request_bytes, "max_in_flight": self.max_in_flight,
                    "answered": sum(self.answered.values()),
                    "distinct_answered": len(self.answered), "repeated": self.repeated,
                    "statuses": dict(self.statuses), "first_request_at": self.first_request_at,
                    "last_answer_at": self.last_answer_at, "answered_keys": sorted(self.answered)}

    # --- handlers --------------------------------------------------------------------------------

    def answer(self, messages: list[dict[str, Any]], name: str) -> str:
        """The completion text of a request (subclasses answer other protocols, see ``audio_chat_server``)."""
        return dialogue_for(messages, name)

    def _take_fault(self, messages: list[dict[str, str]], name: str) -> str | None:
        """The next fault queued for a request whose item name or last message contains its match."""
        last = (text_of(messages[-1]["content"]) if messages else "") + "\n" + name
        with self._lock:
            for match, queue in self.faults.items():
                if queue and match in last:
                    return queue.popleft()
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        schema = body.pop("response_format", None)
        key = request_key(body, request.headers.get(ITEM_HEADER, ""))
        with self._lock:
            self.requests += 1
            self.request_bytes += len(raw)
            self.seen[key] += 1
            self.repeated += self.answered[key] > 0
            self.authorization = request.headers.get("Authorization")
            self.in_flight += 1
            if schema is not None:
                self.response_formats.append(schema)
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.arrivals.append(time.time())
            if self.first_request_at is None:
                self.first_request_at = self.arrivals[-1]
            hold = self.hold_after is not None and sum(self.answered.values()) >= self.hold_after
        try:
            if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
                self.statuses["401"] += 1
                return web.json_response({"error": {"message": "Incorrect API key provided.",
                                                    "type": "invalid_request_error", "code": "invalid_api_key"}},
                                         status=401)
            if hold:
                await asyncio.sleep(3600)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if schema is not None and self.refuse_response_format == "llama.cpp" and schema["type"] == "json_schema":
                self.statuses["500"] += 1
                # the body llama-cpp-python 0.3.36's server sent here for a json_schema response_format
                error = {"message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                                    "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}",
                         "type": "internal_server_error", "param": None, "code": None}
                return web.json_response({"error": error}, status=500)
            if schema is not None and self.refuse_response_format is True:
                self.statuses["400"] += 1
                error = {"message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                                    "with this model.", "type": "invalid_request_error", "param": "response_format"}
                return web.json_response({"error": error}, status=400)
            name = request.headers.get(ITEM_HEADER, "")
            fault = self._take_fault(body["messages"], name)
            if fault == "429":
                self.statuses["429"] += 1
                return web.json_response({"error": {"message": "rate limited", "type": "rate_limit"}}, status=429,
                                         headers={"Retry-After": str(self.retry_after_s)})
            if fault == "500":
                self.statuses["500"] += 1
                return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
            if fault in ("400", "403", "404"):
                self.statuses[fault] += 1
                error = {"message": f"refused with {fault}", "type": "invalid_request_error"}
                return web.json_response({"error": error}, status=int(fault))
            if fault in NOT_A_COMPLETION:  # a 200 answer that is no chat completion (a proxy's page, a cut body)
                self.statuses[fault] += 1
                content_type, data = NOT_A_COMPLETION[fault]
                return web.Response(status=200, body=data, content_type=content_type)
            if fault == "timeout":
                await asyncio.sleep(30)
            if fault == "trickle" or self.trickle:
                self.statuses["trickle"] += 1
                return await _trickle(request, {"error": "never sent in time"})
            if fault == "drop":
                self.statuses["drop"] += 1
                request.transport.close()
                raise asyncio.CancelledError
            if self.reject_audio and any(not isinstance(m["content"], str) and any(
                    part.get("type") != "text" for part in m["content"]) for m in body["messages"]):
                self.statuses["400"] += 1  # what a text-only model behind vLLM or OpenAI answers
                error = {"message": "this model does not support audio input", "type": "invalid_request_error"}
                return web.json_response({"error": error}, status=400)
            payload, (prompt, cached, completion) = self._completion(body, key, fault, schema)
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(json.dumps(payload).encode())
            await response.write_eof()
            with self._lock:
                self.answered[key] += 1
                self.statuses["200"] += 1
                if self.report_usage:
                    self.usages.append((prompt, cached, completion))
                self.last_answer_at = time.time()
            return response
        finally:
            with self._lock:
                self.in_flight -= 1

    def _completion(self, body: dict[str, Any], key: str, fault: str | None,
                    schema: dict[str, Any] | None) -> tuple[dict[str, Any], tuple[int, int, int]]:
        """The chat completion answering ``body`` (its text names the request, so every item's differs) and its
        usage (prompt tokens, of which cached, completion tokens)."""
        text, finish = self.answer(body["messages"], key[:16]), "stop"
        shape = (schema.get("json_schema", {}).get("schema") or schema.get("schema") or {}) if schema else {}
        if "turns" in shape.get("properties", {}):  # a dialogue's schema: the same turns, in its shape
            text = json.dumps({"turns": [json.loads(line) for line in text.splitlines()]})
        if fault == "empty":
            text = ""
        elif fault == "malformed":
            text = "Sure! Here is a conversation about the clip, I hope it helps {\"user\": oops"
        elif fault == "long":
            text, finish = text[:40], "length"
        elif fault is not None:
            text = fault
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{key[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        }
        prompt = sum(len(text_of(m["content"])) for m in body["messages"]) // 4
        cached, completion = self._cached_tokens(body["messages"]), len(text) // 4
        if self.report_usage:
            payload["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}
        return payload, (prompt, cached, completion)

    # --- files and batches -----------------------------------------------------------------------

    def _file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                               "filename": filename, "purpose": purpose, "status": "processed", "data": data}
        return self.files[file_id]

    @staticmethod
    def _public(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if not k.startswith("_") and k != "data"}

    @staticmethod
    def _refuse(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=status)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        data = upload.file.read()
        if len(data) > self.batch_max_bytes:
            self.statuses["400"] += 1
            return self._refuse(400, f"file of {len(data)} bytes is over the limit of {self.batch_max_bytes}")
        with self._lock:
            record = self._file(data, upload.filename, str(form["purpose"]))
        return web.json_response(self._public(record))

    async def _file_get(self, request: web.Request) -> web.Response:
        record = self.files.get(request.match_info["id"])
        return self._refuse(404, "no such file") if record is None else web.json_response(self._public(record))

    async def _file_content(self, request: web.Request) -> web.Response:
        record = self.files.get(request.match_info["id"])
        return self._refuse(404, "no such file") if record is None else web.Response(body=record["data"])

    async def _batch_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        source = self.files.get(body["input_file_id"])
        if source is None:
            return self._refuse(404, "no such input file")
        lines = [json.loads(line) for line in source["data"].splitlines() if line.strip()]
        if len(lines) > self.batch_max_requests:
            self.statuses["400"] += 1
            return self._refuse(400, f"{len(lines)} requests are over the limit of {self.batch_max_requests}")
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1:04d}"
            fault = self.batch_faults.popleft() if self.batch_faults else None
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": source["id"],
                "completion_window": body["completion_window"], "status": "in_progress",
                "created_at": int(time.time()), "output_file_id": None, "error_file_id": None, "errors": None,
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "_lines": lines, "_done": 0, "_fault": fault, "_output": [], "_errors": []}
            for line in lines:
                self.seen[line["custom_id"]] += 1
                self.repeated += self.answered[line["custom_id"]] > 0
            if fault == "fail":
                self.batches[batch_id].update(status="failed", errors={"object": "list", "data": [
                    {"code": "invalid_request", "message": "the test server failed this batch", "line": 1}]})
            hold = self.hold_creates_after is not None and len(self.batches) > self.hold_creates_after
        if hold:
            await asyncio.sleep(3600)
        return web.json_response(self._public(self.batches[batch_id]))

    def _advance(self, batch: dict[str, Any]) -> None:
        """Answer the next lines of an in-progress batch; finish it when all (or, expiring, half) are done."""
        if batch["status"] != "in_progress" or self.hold_batches:
            return
        lines, done = batch["_lines"], batch["_done"]
        end = len(lines) // 2 if batch["_fault"] == "expire" else len(lines)
        stop = end if self.batch_step is None else min(end, done + self.batch_step)
        counts = batch["request_counts"]
        for line in lines[done:stop]:
            custom_id, body = line["custom_id"], line["body"]
            fault = self._take_fault(body["messages"], "")
            result: dict[str, Any] = {"id": f"batch_req_{custom_id[:12]}", "custom_id": custom_id, "error": None}
            if fault in ("400", "500"):
                result["response"] = {"status_code": int(fault), "request_id": custom_id[:12], "body": {
                    "error": {"message": f"refused with {fault}", "type": "invalid_request_error"}}}
                batch["_errors"].append(result)
                counts["failed"] += 1
                continue
            payload, usage = self._completion(body, custom_id, fault, body.get("response_format"))
            result["response"] = {"status_code": 200, "request_id": custom_id[:12], "body": payload}
            with self._lock:
                self.answered[custom_id] += 1
                if self.report_usage:
                    self.batch_usages.append(usage)
            batch["_output"].append(result)
            counts["completed"] += 1
        batch["_done"] = stop
        if stop < end:
            return
        if end < len(lines):
            batch["status"] = "expired"
            for line in lines[end:]:
                batch["_errors"].append({"id": "", "custom_id": line["custom_id"], "response": None, "error": {
                    "code": "batch_expired", "message": "This request could not be executed before the completion "
                                                        "window expired."}})
        else:
            batch["status"] = "completed"
        self._finish(batch)

    def _finish(self, batch: dict[str, Any]) -> None:
        for kind, results in (("output", batch["_output"]), ("error", batch["_errors"])):
            if results:
                lines = [json.dumps(r) for r in results]
                if kind == "output" and batch["_fault"] == "garble":
                    lines[0] = lines[0][:40]
                data = "".join(line + "\n" for line in lines).encode()
                batch[f"{kind}_file_id"] = self._file(data, f"{batch['id']}_{kind}.jsonl", f"batch_{kind}")["id"]

    async def _batch_get(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return self._refuse(404, "no such batch")
        with self._lock:
            self._advance(batch)
        return web.json_response(self._public(batch))

    async def _batch_list(self, request: web.Request) -> web.Response:
        data = [self._public(b) for b in reversed(self.batches.values())]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def _batch_cancel(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return self._refuse(404, "no such batch")
        with self._lock:
            if batch["status"] == "in_progress":
                batch["status"] = "cancelled"
                self._finish(batch)
        return web.json_response(self._public(batch))

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.embedding_fault is not None:  # every embeddings answer is this 200 that is no embeddings list
            content_type, data = NOT_A_COMPLETION[self.embedding_fault]
            return web.Response(status=200, body=data, content_type=content_type)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        with self._lock:
            self.embedding_requests += 1
            self.embedded_texts += len(texts)
        if self.embedding_latency_s:
            await asyncio.sleep(self.embedding_latency_s)
        data = [{"object": "embedding", "index": i, "embedding": embedding_for(t)} for i, t in enumerate(texts)]
        if self.trickle:
            return await _trickle(request, {"object": "list", "data": data, "model": body.get("model")})
        return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}", self._file_get)
        app.router.add_get("/v1/files/{id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._batch_create)
        app.router.add_get("/v1/batches", self._batch_list)
        app.router.add_get("/v1/batches/{id}", self._batch_get)
        app.router.add_post("/v1/batches/{id}/cancel", self._batch_cancel)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/reset", self._reset)
        return app

    # --- lifecycle -------------------------------------------------------------------------------

    async def _start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> OpenAIServer:
        """Serve from a background thread with its own event loop."""
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _trickle(request: web.Request, payload: dict[str, Any], seconds: float = 60.0) -> web.StreamResponse:
    """200 headers at once, then a space (valid JSON whitespace) every 0.2 s, then ``payload``."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for _ in range(int(seconds / 0.2)):
        await response.write(b" ")
        await asyncio.sleep(0.2)
    await response.write(json.dumps(payload).encode())
    await response.write_eof()
    return response


def main(server_class: type[OpenAIServer] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--hold-after", type=int)
    args = parser.parse_args()
    server = (server_class or OpenAIServer)(args.latency)
    server.hold_after = args.hold_after

    async def run() -> None:
        await server._start(args.port)
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
