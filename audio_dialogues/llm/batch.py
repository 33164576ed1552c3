"""Requests through a batch API (OpenAI's ``/v1/batches``, or ``vllm run-batch`` offline), journaled like any answer.

A batch costs half and answers within 24 hours. The requests go out as JSONL files of
``{"custom_id", "method", "url", "body"}`` lines, the ``custom_id`` being the request's journal key
(:func:`~audio_dialogues.llm.journal.request_key`), so every result line lands in the same journal as a
synchronous answer, and a request already journaled is never put in a batch.

Never paying twice hinges on one record: ``batches.json`` in the output folder (:class:`BatchState`),
written atomically and fsynced. Each file is recorded (its id and custom_ids) the moment it is uploaded,
before the batch is created, and the batch id the moment the create call returns. A run killed at any
point finds its batches there on the next start and re-attaches to them; a run killed while a create call
was in flight finds that batch by its input file in the account's batch list, or creates it then. A
request in a batch not yet collected is in flight and never submitted again.

A finished batch (completed, failed, expired or cancelled) is collected: its output lines are journaled as
answers, its error lines, and every request of the batch with no line at all (the unfinished part of an
expired or cancelled batch, a failed batch), as errors, which are not answers (see
:attr:`~audio_dialogues.llm.journal.Journal.errors`): a later run asks them again, in a batch or not.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import openai

from ..errors import AudioDialoguesError, reason
from ..files import atomic_write, load_json, read_input
from .client import Completion, env_proxy, openai_config
from .endpoint import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS
from .journal import Journal
from .runner import interrupt_handlers

CHAT_URL: Final = "/v1/chat/completions"
STATE_NAME = "batches.json"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})

#: Makes the journal entry of an answer: (custom_id, completion, batch id or output file name) -> entry.
EntryMaker = Callable[[str, Completion, str], dict[str, Any]]


class BatchError(AudioDialoguesError, ValueError):
    """A batch file, result line or state that cannot be used; the message names the file and the line."""


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """One line of a batch input file, as the Batch API and ``vllm run-batch`` read it."""
    line = {"custom_id": custom_id, "method": "POST", "url": CHAT_URL, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def split_lines(requests: Mapping[str, dict[str, Any]], max_requests: int = BATCH_MAX_REQUESTS,
                max_bytes: int = BATCH_MAX_BYTES) -> list[list[tuple[str, bytes]]]:
    """The requests' lines cut into files of at most ``max_requests`` lines and ``max_bytes`` bytes, in order."""
    files: list[list[tuple[str, bytes]]] = []
    current: list[tuple[str, bytes]] = []
    size = 0
    for custom_id, body in requests.items():
        line = request_line(custom_id, body)
        if len(line) > max_bytes:
            raise BatchError(f"request {custom_id}: {len(line):,} bytes, more than a batch file may hold "
                             f"({max_bytes:,} bytes)")
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            files.append(current)
            current, size = [], 0
        current.append((custom_id, line))
        size += len(line)
    if current:
        files.append(current)
    return files


def write_request_files(folder: Path, prefix: str, requests: Mapping[str, dict[str, Any]],
                        max_requests: int = BATCH_MAX_REQUESTS, max_bytes: int = BATCH_MAX_BYTES) -> list[Path]:
    """The offline form: ``{prefix}-0001.jsonl``... in ``folder``, for ``vllm run-batch`` or an upload by hand."""
    paths = []
    for n, chunk in enumerate(split_lines(requests, max_requests, max_bytes), start=1):
        path = Path(folder) / f"{prefix}-{n:04d}.jsonl"
        with atomic_write(path, binary=True) as f:
            f.write(b"".join(line for _, line in chunk))
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Result:
    """One line of a batch's output or error file: an answer or why there is none."""

    custom_id: str
    completion: Completion | None
    error: str | None


def parse_result(raw: bytes, where: str) -> Result:
    """A result line (``{"custom_id", "response": {"status_code", "body"}, "error"}``); ``where`` names it in errors."""
    try:
        line = json.loads(raw)
        custom_id = line["custom_id"]
        response = line.get("response") or {}
        if not isinstance(custom_id, str) or not isinstance(response, dict):
            raise TypeError("custom_id is not a string or response not an object")
        error, status, body = line.get("error"), response.get("status_code"), response.get("body")
        if error or status != 200 or not isinstance(body, dict):
            if isinstance(error, dict):
                error = f"{error.get('code') or 'error'}: {error.get('message') or ''}".rstrip(": ")
            elif not error:
                message = (body or {}).get("error", {}).get("message") if isinstance(body, dict) else None
                error = f"HTTP {status}" + (f": {message}" if message else "")
            return Result(custom_id, None, str(error))
        choice = (body.get("choices") or [{}])[0]
        usage = body.get("usage") or {}
        return Result(custom_id, Completion(
            text=(choice.get("message") or {}).get("content"), finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0), attempts=1, latency_s=0.0,
            model=body.get("model"),
            cached_prompt_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)), None)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise BatchError(f"{where}: not a batch result line ({type(e).__name__}: {e})") from None


def read_results(path: Path) -> Iterator[Result]:
    """The result lines of an output (or error) file, e.g. what ``vllm run-batch`` wrote."""
    for n, raw in enumerate(read_input(path, BatchError).splitlines(), start=1):
        if raw.strip():
            yield parse_result(raw, f"{path}:{n}")


def journal_result(journal: Journal, result: Result, source: str, entry: EntryMaker) -> bool:
    """Journal one result (unless its request is answered already); True when it is an answer."""
    if result.custom_id in journal:
        return False  # collected before a kill, or answered synchronously meanwhile
    if result.completion is not None:
        journal.append(entry(result.custom_id, result.completion, source))
        return True
    journal.append({"key": result.custom_id, "error": result.error, "batch": source, "at": time.time()})
    return False


def ingest(paths: Sequence[Path], journal: Journal, keys: Collection[str], entry: EntryMaker) -> tuple[int, int]:
    """Journal the result lines of ``paths`` whose custom_id is one of ``keys``; returns (answers, errors)."""
    answers = errors = 0
    for path in paths:
        for result in read_results(Path(path)):
            if result.custom_id in keys and result.custom_id not in journal:
                if journal_result(journal, result, Path(path).name, entry):
                    answers += 1
                else:
                    errors += 1
    return answers, errors


class BatchState:
    """``batches.json``: every uploaded file and its batch, the custom_ids in it and whether it was collected."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        data = load_json(self.path, BatchError) if self.path.exists() else {"batches": []}
        records = data.get("batches") if isinstance(data, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) and {"file_id", "batch_id", "custom_ids"}
                                                    <= r.keys() for r in records):
            raise BatchError(f"{self.path}: not a batch record (it names the batches in flight: restore it, or "
                             "cancel them and move it aside)")
        self.records: list[dict[str, Any]] = records

    def save(self) -> None:
        """Replace the file whole and fsync it: the record must outlive a kill or a power cut."""
        with atomic_write(self.path) as f:
            json.dump({"batches": self.records}, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())

    def in_flight(self) -> set[str]:
        return {cid for r in self.records if not r.get("collected") for cid in r["custom_ids"]}


@dataclass
class BatchOutcome:
    batches_created: int = 0
    requests_submitted: int = 0
    collected: int = 0
    #: Requests in batches still running when the run stopped waiting (a re-run collects them).
    in_flight: int = 0
    interrupted: bool = False
    #: Requests the collected batches returned no answer for, by reason (a re-run asks them again).
    errors: Counter[str] = field(default_factory=Counter)


def open_client(base_url: str | None, api_key: str | None, timeout_s: float, max_attempts: int) -> openai.AsyncOpenAI:
    """A client for the Files and Batches endpoints: the ``openai`` client's own retries suit them (a create
    call is never retried, see :meth:`BatchRunner._create`).

    Its proxy is the one :func:`~.client.env_proxy` names, as for chat requests: a SOCKS proxy is refused with
    the fix, where httpx, reading the environment itself, raised an ImportError (it needs an extra for SOCKS).
    """
    proxy = env_proxy(str(openai_config(base_url, api_key).base_url))
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s,
                              max_retries=max_attempts - 1,
                              http_client=openai.DefaultAsyncHttpxClient(proxy=proxy, trust_env=False))


class BatchRunner:
    """Submits the requests not answered nor in flight, then polls and collects until done (see the module)."""

    def __init__(self, client: openai.AsyncOpenAI, state: BatchState, journal: Journal, *,
                 max_requests: int = BATCH_MAX_REQUESTS, max_bytes: int = BATCH_MAX_BYTES, poll_s: float = 60.0,
                 wait_s: float | None = None, log: Callable[[str], None] = print) -> None:
        self.client, self.state, self.journal, self.log = client, state, journal, log
        self.max_requests, self.max_bytes, self.poll_s, self.wait_s = max_requests, max_bytes, poll_s, wait_s
        self.outcome = BatchOutcome()
        self._stop = asyncio.Event()
        #: The custom_ids this run asks for; a batch's lines for others are left in it (see :meth:`_collect`).
        self._asked: Collection[str] = ()
        #: Batch ids collected as far as this run can: they still hold answers for requests it does not ask.
        self._deferred: set[str] = set()

    def _interrupt(self) -> None:
        self.outcome.interrupted = True
        self.log("stopping: the batches keep running at the provider; run the same command again to collect them")
        self._stop.set()

    async def run(self, requests: Mapping[str, dict[str, Any]], entry: EntryMaker) -> BatchOutcome:
        """Send ``requests`` (custom_id -> body) by batch and journal what comes back through ``entry``.

        A failure of the API stops with :class:`BatchError`: what was created is recorded, and the same
        command re-attaches to it.
        """
        try:
            return await self._run(requests, entry)
        except openai.OpenAIError as e:
            where = str(self.client.base_url).rstrip("/")
            raise BatchError(f"stopped: the Batch API at {where} failed: {reason(e)}. The batches created are "
                             f"recorded in {self.state.path}; the same command re-attaches to them") from None

    async def _run(self, requests: Mapping[str, dict[str, Any]], entry: EntryMaker) -> BatchOutcome:
        self._asked = requests.keys()
        with interrupt_handlers(self._interrupt):
            mine = [r for r in self.state.records if not r.get("collected") and not
                    requests.keys().isdisjoint(r["custom_ids"])]
            for record in mine:
                if record["batch_id"] is None:  # killed while creating it: it may exist
                    await self._create(record, await self._find(record["file_id"]))
            in_flight = self.state.in_flight()
            todo = {cid: body for cid, body in requests.items() if cid not in self.journal and cid not in in_flight}
            for n, chunk in enumerate(split_lines(todo, self.max_requests, self.max_bytes), start=1):
                if self._stop.is_set():
                    break
                uploaded = await self.client.files.create(
                    file=(f"requests-{n:04d}.jsonl", b"".join(line for _, line in chunk)), purpose="batch")
                record = {"file_id": uploaded.id, "batch_id": None, "custom_ids": [cid for cid, _ in chunk],
                          "collected": False}
                self.state.records.append(record)
                self.state.save()
                mine.append(record)
                await self._create(record, None)
                self.outcome.requests_submitted += len(chunk)
            await self._poll(mine, entry)
        self.outcome.in_flight = sum(len(r["custom_ids"]) for r in mine if not r.get("collected"))
        return self.outcome

    async def _find(self, file_id: str) -> str | None:
        """The batch made from ``file_id``, if the create call of a killed run reached the provider."""
        async for batch in self.client.batches.list(limit=100):
            if batch.input_file_id == file_id:
                return batch.id
        return None

    async def _create(self, record: dict[str, Any], batch_id: str | None) -> None:
        if batch_id is None:
            # No retries of its own: a create that timed out may have made the batch, and a second would pay twice;
            # the record (batch id none yet) makes the next run look for it first.
            try:
                batch = await self.client.with_options(max_retries=0).batches.create(
                    input_file_id=record["file_id"], endpoint=CHAT_URL, completion_window="24h")
            except openai.APIStatusError as e:
                if e.status_code < 500 and e.status_code not in (408, 409, 429):  # refused: no batch was made
                    self.state.records.remove(record)
                    self.state.save()
                raise
            batch_id = batch.id
            self.outcome.batches_created += 1
        record["batch_id"] = batch_id
        self.state.save()

    async def _poll(self, records: list[dict[str, Any]], entry: EntryMaker) -> None:
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        while True:
            for record in records:
                if record.get("collected") or record["batch_id"] in self._deferred:
                    continue
                batch = await self.client.batches.retrieve(record["batch_id"])
                counts = batch.request_counts
                done = f"{counts.completed}/{counts.failed}/{counts.total}" if counts else "?"
                self.log(f"batch {batch.id}: {batch.status}, {done} completed/failed/total")
                if batch.status in TERMINAL:
                    await self._collect(record, batch, entry)
            if all(r.get("collected") or r["batch_id"] in self._deferred for r in records) or self._stop.is_set():
                return
            left = self.poll_s if deadline is None else min(self.poll_s, deadline - time.monotonic())
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._stop.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def _collect(self, record: dict[str, Any], batch: Any, entry: EntryMaker) -> None:
        """Journal every line of a finished batch, and an error for each of its requests with none; then mark it.

        Only the requests this run asks for are journaled (their entries need what the run knows of them): a
        batch that also holds requests of an earlier, larger run stays uncollected, its other lines kept at the
        provider for a run that asks them. A line that is no result is counted and skipped, so that one bad
        line of a provider's file does not keep the paid answers after it out of the journal.
        """
        seen: set[str] = set()
        ours, asked, left, unreadable = set(record["custom_ids"]), self._asked, 0, 0
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = (await self.client.files.content(file_id)).content
            for n, raw in enumerate(content.splitlines(), start=1):
                if not raw.strip():
                    continue
                try:
                    result = parse_result(raw, f"batch {batch.id}, file {file_id}, line {n}")
                except BatchError as e:
                    self.log(f"{e}; skipped (its request counts as without a result)")
                    unreadable += 1
                    continue
                if result.custom_id not in ours:
                    continue
                if result.custom_id not in asked:
                    left += result.custom_id not in self.journal
                    continue
                seen.add(result.custom_id)
                if result.custom_id not in self.journal and not journal_result(self.journal, result, batch.id,
                                                                               entry):
                    self.outcome.errors[str(result.error)] += 1
        why = f"no result: the batch {batch.status}" + (f", {unreadable} of its lines unreadable" if unreadable else "")
        if batch.errors and batch.errors.data:
            why += " (" + "; ".join(f"{e.code}: {e.message}" for e in batch.errors.data[:3]) + ")"
        for custom_id in (cid for cid in record["custom_ids"]
                          if cid in asked and cid not in seen and cid not in self.journal):
            self.journal.append({"key": custom_id, "error": why, "batch": batch.id, "at": time.time()})
            self.outcome.errors[why] += 1
        if any(cid not in asked and cid not in self.journal for cid in ours):
            self._deferred.add(batch.id)
            self.log(f"batch {batch.id}: {left} lines answer requests this run does not ask; they stay in the "
                     "batch for a run that asks them")
            return
        record["collected"], record["status"] = True, batch.status
        self.state.save()
        self.outcome.collected += 1

