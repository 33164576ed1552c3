"""Running an audio chat model over a test split, turn by turn: the predictions file ``evaluate`` reads.

Protocol (``history="gold"``, the default): for assistant turn k (0-based) of a dialogue, the model gets
the optional system prompt, then the first user message holding every clip of the dialogue (as audio
content parts, in the record's order) and user turn 0, then the *gold* assistant turn 0, user turn 1 ...
up to user turn k; its answer is the prediction for turn k. Every turn is one independent request, so a
wrong early answer never leaks into the next. ``history="own"`` gives the model its own earlier answers
instead of the gold ones (what a deployed chat sees; papers differ): turns of a dialogue are then asked
one after another, and a turn whose earlier answer is missing is not asked.

Audio goes as ``input_audio`` parts (OpenAI's: base64 WAV; any clip decoded, resampled to
``sample_rate`` mono and written as 16-bit WAV by :func:`audio_dialogues.dataset.decoding.wav_bytes`) or
as ``audio_url`` parts naming ``file://`` copies in that same WAV form (vLLM reads them when started with
``--allowed-local-media-path`` covering the folder), never through a model's own preprocessing.

Requests go through :mod:`audio_dialogues.llm` like ``generate``'s: concurrency, RPM/TPM limits, retries
honouring ``Retry-After``, and a journal (``<output>.journal.jsonl``) appended the moment an answer
arrives, keyed by the request (the clip *content's* hash, the history, the model and sampling), so a
killed run resumes without asking again. The predictions file is written whole at the end, from the
journal; a report (``<output>.report.json``) counts turns answered, empty, failed and without audio, and
the tokens and dollars.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AudioDialoguesError
from ..files import atomic_write
from ..sources.annotations import Record
from .options import PredictOptions

#: The item header's prefix, and the journal entries' kind.
KIND = "predict"


class PredictError(AudioDialoguesError, ValueError):
    """A prediction run that cannot start or had to stop; the message names the file, option or endpoint."""



@dataclass
class PredictReport:
    config: str
    split: str
    model: str
    settings: dict[str, Any]
    dialogues: int = 0
    turns: int = 0
    #: Turns written to the predictions file (a non-empty answer).
    written: int = 0
    #: Turns the model answered with nothing (journaled, left out of the file: ``evaluate --allow-missing``).
    empty: int = 0
    #: Turns not answered in this run: failed after retries or interrupted (a re-run asks them).
    pending: int = 0
    #: ``own`` history: turns after an answer journaled empty, never asked (their history would lack it).
    after_empty: int = 0
    failed_requests: Counter = field(default_factory=Counter)
    #: Dialogues without usable audio, by reason, and the turns they hold (never asked).
    no_audio: dict[str, int] = field(default_factory=dict)
    no_audio_turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    this_run_prompt_tokens: int = 0
    this_run_completion_tokens: int = 0
    cost_usd: float = 0.0
    client: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    wall_time_s: float = 0.0
    output: str = ""

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.pending == 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failed_requests"] = dict(self.failed_requests.most_common())
        return out

    def summary(self) -> str:
        lines = [f"predict {self.config}/{self.split} with {self.model}: {self.written} of {self.turns} assistant "
                 f"turns answered ({self.dialogues} dialogues) -> {self.output}"]
        if self.empty:
            lines.append(f"{self.empty} turns answered empty: left out of the predictions (journaled); score them "
                         "as empty answers with `evaluate --allow-missing`")
        if self.after_empty:
            lines.append(f"{self.after_empty} turns not asked: an earlier answer of their dialogue was empty "
                         "(--history own)")
        if self.no_audio:
            reasons = ", ".join(f"{r}: {n}" for r, n in self.no_audio.items())
            lines.append(f"{sum(self.no_audio.values())} dialogues ({self.no_audio_turns} turns) not asked: no "
                         f"usable audio ({reasons})")
        if self.failed_requests:
            reasons = "; ".join(f"{r}: {n}" for r, n in self.failed_requests.most_common())
            lines.append(f"{sum(self.failed_requests.values())} requests failed after retries ({reasons})")
        if self.pending:
            lines.append(f"{self.pending} turns still to ask: run the same command again to resume (answers "
                         "already journaled are not asked again)")
        lines.append(f"tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion "
                     f"(this run {self.this_run_prompt_tokens} + {self.this_run_completion_tokens}); "
                     f"cost ${self.cost_usd:.4f}")
        return "\n".join(lines)


# --- the dialogues and their audio ----------------------------------------------------------------


@dataclass
class _Dialogue:
    record: Record
    paths: list[Path]
    digests: list[str]


class _Audio:
    """Each clip's content digest (the journal key's) and its audio part, converted once, kept for a while."""

    def __init__(self, options: PredictOptions, keep: int = 64) -> None:
        self.options = options
        self._digests: dict[Path, str] = {}
        self._parts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, asyncio.Future] = {}
        self.keep = keep
        #: Bytes of the audio parts built (base64 text for inline audio), for the report and the bench.
        self.converted = 0

    def digest(self, path: Path) -> str:
        if path not in self._digests:
            digest = hashlib.sha256()  # hashlib.file_digest is Python 3.11+; the package supports 3.10
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._digests[path] = digest.hexdigest()
        return self._digests[path]

    def key_part(self, digest: str) -> dict[str, Any]:
        """What the journal key sees of a clip: its content and how it is sent, not base64 or a path."""
        return {"type": self.options.audio_input, "sha256": digest, "sample_rate": self.options.sample_rate}

    async def part(self, path: Path, digest: str) -> dict[str, Any]:
        """The content part sending the clip, converted once however many turns ask for it at the same time
        (with gold history every turn of a dialogue is in flight at once); ``AudioDecodeError`` for a clip
        that cannot be decoded."""
        cached = self._parts.get(digest)
        if cached is not None:
            self._parts.move_to_end(digest)
            return cached
        pending = self._pending.get(digest)
        if pending is None:
            pending = self._pending[digest] = asyncio.ensure_future(asyncio.to_thread(self._convert, path, digest))
            pending.add_done_callback(lambda _: self._pending.pop(digest, None))
        part = await asyncio.shield(pending)
        self._parts[digest] = part
        if len(self._parts) > self.keep:
            self._parts.popitem(last=False)
        return part

    def _convert(self, path: Path, digest: str) -> dict[str, Any]:
        from ..dataset.decoding import wav_bytes

        data = wav_bytes(str(path), self.options.sample_rate)
        self.converted += 1
        if self.options.audio_input == "input_audio":
            return {"type": "input_audio",
                    "input_audio": {"data": base64.b64encode(data).decode("ascii"), "format": "wav"}}
        copy = self.options.audio_copy_dir / f"{digest[:32]}_{self.options.sample_rate}.wav"
        if not copy.exists():
            with atomic_write(copy, binary=True) as f:
                f.write(data)
        return {"type": "audio_url", "audio_url": {"url": copy.absolute().as_uri()}}


def messages_for(record: Record, k: int, history: Sequence[str], audio_parts: list[dict[str, Any]],
                 system_prompt: str | None) -> list[dict[str, Any]]:
    """The chat that asks assistant turn ``k``: clips and user turn 0 first, then ``history[i]`` after user
    turn i, up to user turn ``k`` (see the module docstring)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for i in range(k + 1):
        user = record.turns[i].user
        messages.append({"role": "user", "content": [*audio_parts, {"type": "text", "text": user}] if i == 0
                         else user})
        if i < k:
            messages.append({"role": "assistant", "content": history[i]})
    return messages


# --- running ----------------------------------------------------------------------------------------


class _Run:
    def __init__(self, options: PredictOptions, journal: Any, report: PredictReport,
                 log: Callable[[str], None]) -> None:
        self.options, self.journal, self.report, self.log = options, journal, report, log
        self.settings = options.model_settings()
        self.audio = _Audio(options)
        self.client: Any = None
        self.bar: Any = None

    def item(self, record: Record, k: int) -> str:
        return f"{KIND}:{self.options.config}:{self.options.split}:{record.id}:{k}"

    def key(self, dialogue: _Dialogue, k: int, history: Sequence[str]) -> str:
        from ..llm.journal import request_key

        parts = [self.audio.key_part(d) for d in dialogue.digests]
        body = self.settings.body(messages_for(dialogue.record, k, history, parts, self.options.system_prompt))
        return request_key(body, self.item(dialogue.record, k))

    def history(self, dialogue: _Dialogue, k: int, answers: Sequence[str]) -> list[str]:
        if self.options.history == "gold":
            return [turn.assistant for turn in dialogue.record.turns[:k]]
        return list(answers[:k])

    def answers(self, dialogue: _Dialogue) -> list[dict | None]:
        """The journaled answer of each turn (``None`` where none is, and, for ``own`` history, after a gap)."""
        out: list[dict | None] = []
        texts: list[str] = []
        for k in range(len(dialogue.record.turns)):
            if self.options.history == "own" and len(texts) < k:
                out.append(None)
                continue
            entry = self.journal.get(self.key(dialogue, k, self.history(dialogue, k, texts)))
            out.append(entry)
            if entry is not None and (entry.get("text") or "").strip():
                texts.append(entry["text"])
        return out

    def askable(self, answers: Sequence[dict | None]) -> int:
        """How many turns can be asked: all with gold history; with ``own``, none after an answer journaled
        empty (its history would lack that answer, so asking again cannot help)."""
        if self.options.history == "own":
            for k, entry in enumerate(answers):
                if entry is not None and not (entry.get("text") or "").strip():
                    return k + 1
        return len(answers)

    async def ask(self, dialogue: _Dialogue, k: int, answers: Sequence[str]) -> dict | None:
        """The journaled answer of turn ``k``, asking for it first if it is not journaled yet."""
        from ..dataset.decoding import AudioDecodeError
        from ..llm.client import RequestFailed
        from ..llm.journal import ITEM_HEADER

        history = self.history(dialogue, k, answers)
        key = self.key(dialogue, k, history)
        entry = self.journal.get(key)
        if entry is not None:
            return entry
        try:
            parts = [await self.audio.part(p, d) for p, d in zip(dialogue.paths, dialogue.digests, strict=True)]
        except AudioDecodeError as e:
            self.report.failed_requests[f"undecodable audio ({e})"] += 1
            return None
        messages = messages_for(dialogue.record, k, history, parts, self.options.system_prompt)
        try:
            completion = await self.client.complete(messages, {ITEM_HEADER: self.item(dialogue.record, k)})
        except RequestFailed as e:
            self.report.failed_requests[str(e)] += 1
            return None
        entry = {"key": key, "kind": KIND, "config": self.options.config, "split": self.options.split,
                 "id": dialogue.record.id, "turn": k, "model": completion.model or self.settings.model,
                 "base_url": self.client.base_url, "text": completion.text, "finish_reason": completion.finish_reason,
                 "usage": {"prompt_tokens": completion.prompt_tokens,
                           "completion_tokens": completion.completion_tokens},
                 "attempts": completion.attempts, "latency_s": round(completion.latency_s, 4), "at": time.time()}
        self.journal.append(entry)
        self.report.this_run_prompt_tokens += completion.prompt_tokens
        self.report.this_run_completion_tokens += completion.completion_tokens
        return entry

    async def unit(self, unit: tuple[_Dialogue, list[int]]) -> None:
        dialogue, turns = unit
        texts: list[str] = []
        try:
            for k in turns:
                entry = await self.ask(dialogue, k, texts)
                text = (entry or {}).get("text") or ""
                if self.options.history == "own" and not text.strip():
                    return  # the next turn's history would lack this answer
                texts.append(text)
        finally:
            if self.bar is not None:
                self.bar.update()

    async def send(self, units: list[tuple[_Dialogue, list[int]]]) -> None:
        from tqdm import tqdm

        from ..llm.client import EndpointUnusable
        from ..llm.runner import Pool

        self.client = self.options.client(self.settings)
        self.bar = tqdm(total=len(units), unit="unit", desc="turns" if self.options.history == "gold" else "dialogues",
                        disable=not self.options.progress, mininterval=1.0, file=sys.stderr)
        try:
            outcome = await Pool(self.unit, self.options.concurrency, self.log).run(units)
        finally:
            self.bar.close()
            stats = self.client.stats
            self.report.client = {"requests_sent": stats.requests, "retries": stats.retries,
                                  "retry_reasons": dict(stats.retry_reasons), "waited_s": round(stats.waited_s, 3),
                                  "audio_parts_converted": self.audio.converted}
            await self.client.close()
        self.report.interrupted = outcome.interrupted
        watch = self.client.watch
        if (outcome.unusable is None and not outcome.interrupted and watch is not None and watch.every_attempt_failed
                and watch.first is not None):
            # Fewer attempts than the watch needs (a small run), every one refused the same way: an endpoint
            # that takes no audio refuses each request with a 400, which says more than "N requests failed".
            outcome.unusable = EndpointUnusable(watch.first, watch.failed_attempts, self.client.base_url)
        if outcome.unusable is not None:
            raise unusable(outcome.unusable, self.options)


def unusable(error: Any, options: PredictOptions) -> PredictError:
    """One paragraph for an endpoint that refused every request: where, what it said and the likely fix."""
    failure = error.failure
    if failure.status in (400, 415, 422):
        fix = (f"the endpoint refuses the requests themselves; if {options.model!r} takes no audio, or not as "
               f"{options.audio_input} parts, choose a model that does, or --audio-input "
               f"{'audio_url' if options.audio_input == 'input_audio' else 'input_audio'} (vLLM reads audio_url "
               "file:// parts when started with --allowed-local-media-path)")
    elif failure.status in (401, 403):
        fix = f"the endpoint refuses the API key: export a valid key in {options.api_key_env} (--api-key-env)"
    elif failure.status == 404:
        fix = "nothing serves chat completions there, or not this model: the base URL usually ends with /v1"
    else:
        fix = "nothing answers at --base-url: start the server or correct the URL"
    return PredictError(f"stopped: the endpoint {error.base_url} cannot serve this run: the first {error.attempts} "
                        f"attempts all failed with {failure.label}. Likely fix: {fix}. Answers already journaled "
                        "are kept; the same command resumes once this is fixed.")


def _dialogues(options: PredictOptions, report: PredictReport, audio: _Audio) -> list[_Dialogue]:
    from ..audio.cache import resolve_cache_dir
    from ..audio.resolver import AudioResolver
    from ..dataset.resolution import SplitReport, resolve_records
    from ..sources.records import audio_folders, records_by_split

    records = records_by_split(options.config, [options.split], data_dir=options.data_dir,
                               **options.source_metadata)[options.split]
    if options.limit is not None:
        records = records[: options.limit]
    resolver = AudioResolver(audio_folders(options.config, options.data_dir, options.audio_dirs),
                             resolve_cache_dir(options.audio_cache_dir))
    split_report = SplitReport()
    kept = [(record, [Path(p) for p in paths if p is not None])
            for record, paths in resolve_records(records, resolver, "drop", split_report)]
    report.no_audio = dict(split_report.dropped)
    kept_ids = {id(r) for r, _ in kept}
    report.no_audio_turns = sum(len(r.turns) for r in records if id(r) not in kept_ids)
    if not kept:
        if not records:
            raise PredictError(f"{options.config}/{options.split}: no dialogues in {options.data_dir}")
        raise PredictError(f"{split_report.no_audio_message(f'{options.config}/{options.split}')}: a model cannot "
                           "be asked about clips it cannot hear; pass --audio-dir or fetch the clips first "
                           "(`audio-dialogues fetch`)")
    return [_Dialogue(record, paths, [audio.digest(p) for p in paths]) for record, paths in kept]


def predict(options: PredictOptions, out: Callable[[str], None] = print) -> PredictReport:
    """Ask ``options.model`` every assistant turn of ``options.config``'s split; write the predictions file.

    Returns the report (also written to ``<output>.report.json``). With ``dry_run`` nothing is sent or
    written: the report holds what would be asked and an estimate of its text tokens and cost.
    """
    try:
        import aiolimiter  # noqa: F401
        import openai  # noqa: F401
    except ImportError as e:
        raise PredictError(f"predict needs the `generate` extra ({e}): pip install 'audio-dialogues[generate]'") \
            from None
    from ..llm.journal import Journal, OutputLock

    started = time.perf_counter()

    def log(text: str) -> None:
        print(text, file=sys.stderr)

    report = PredictReport(options.config, options.split, options.model or "", options.request_settings(),
                           output=str(options.output))
    run = _Run(options, None, report, log)
    dialogues = _dialogues(options, report, run.audio)
    report.dialogues = len(dialogues)
    report.turns = sum(len(d.record.turns) for d in dialogues)
    if options.dry_run:
        with Journal(options.journal_path, read_only=True) as journal:
            run.journal = journal
            estimate = _estimate(run, dialogues)
        out(json.dumps(estimate, indent=2))
        return report
    options.output.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(options.output.parent, KIND, "--output", name=f".{options.output.name}.lock"), \
            Journal(options.journal_path) as journal:
        run.journal = journal
        if journal.torn_bytes:
            log(f"journal: cut a torn last line ({journal.torn_bytes} bytes) left by an interrupted run")
        units = _units(run, dialogues)
        if units:
            asyncio.run(run.send(units))
        _finish(run, dialogues)
    report.wall_time_s = round(time.perf_counter() - started, 3)
    with atomic_write(options.report_path) as f:
        f.write(json.dumps(report.to_dict(), indent=2) + "\n")
    out(report.summary())
    return report


def _units(run: _Run, dialogues: Sequence[_Dialogue]) -> list[tuple[_Dialogue, list[int]]]:
    """What is left to ask: one unit per unanswered turn (gold history), or per dialogue with a gap (own)."""
    units = []
    for dialogue in dialogues:
        answers = run.answers(dialogue)
        if run.options.history == "gold":
            units += [(dialogue, [k]) for k, entry in enumerate(answers) if entry is None]
        elif any(entry is None for entry in answers[: run.askable(answers)]):
            units.append((dialogue, list(range(len(answers)))))
    return units


def _finish(run: _Run, dialogues: Sequence[_Dialogue]) -> None:
    """Write the predictions file whole, from the journal, in the split's order; count what is not in it."""
    from ..llm.usage import Usage

    options, report = run.options, run.report
    usage = Usage()
    settings = options.request_settings()
    with atomic_write(options.output) as f:
        for dialogue in dialogues:
            answers = run.answers(dialogue)
            askable = run.askable(answers)
            report.after_empty += len(answers) - askable
            for k, entry in enumerate(answers[:askable]):
                if entry is None:
                    report.pending += 1
                    continue
                usage.add(entry["usage"]["prompt_tokens"], entry["usage"]["completion_tokens"])
                text = (entry.get("text") or "").strip()
                if not text:
                    report.empty += 1
                    continue
                row = {"id": dialogue.record.id, "turn": k, "config": options.config, "prediction": text,
                       "model": entry.get("model"), "finish_reason": entry.get("finish_reason"), **settings}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                report.written += 1
    report.prompt_tokens, report.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    report.cost_usd = round(usage.cost(options.price_in, options.price_out), 6)


def _estimate(run: _Run, dialogues: Sequence[_Dialogue]) -> dict[str, Any]:
    """What a run would ask: turns not journaled, their text tokens (estimated) and cost, and the audio sent."""
    from ..llm.client import estimate_tokens
    from ..llm.usage import Usage

    options = run.options
    pending, usage, audio_s = 0, Usage(), 0.0
    for dialogue in dialogues:
        answers = run.answers(dialogue)
        record = dialogue.record
        seconds = sum(c.duration_s or 10.0 for c in record.clips)
        for k, entry in enumerate(answers):
            if entry is not None:
                continue
            pending += 1
            history = [t.assistant for t in record.turns[:k]]  # own history: the gold answers' length, an estimate
            usage.add(estimate_tokens(messages_for(record, k, history, [], options.system_prompt)), options.max_tokens)
            audio_s += seconds
    wav_bytes = audio_s * options.sample_rate * 2
    return {"config": options.config, "split": options.split, "model": options.model, "dialogues": len(dialogues),
            "turns": sum(len(d.record.turns) for d in dialogues), "journaled": sum(
                len(d.record.turns) for d in dialogues) - pending, "to_ask": pending,
            "text_tokens_estimate": usage.to_dict(),
            "cost_usd_estimate_text_only": round(usage.cost(options.price_in, options.price_out), 6),
            "audio_seconds": round(audio_s, 1),
            "audio_request_bytes_estimate": int(wav_bytes * 4 / 3) if options.audio_input == "input_audio" else 0,
            "no_audio_dialogues": sum(run.report.no_audio.values()), "settings": options.request_settings()}

