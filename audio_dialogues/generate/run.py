"""``generate``: items -> prompts -> journaled answers -> parsing -> filters -> canonical JSONL and a report.

Requests whose answer is in the journal are never sent again, so a run can be stopped (Ctrl-C, SIGKILL,
a crash) and started again with the same command at no extra cost. Outputs and the report are rebuilt
from the journal at the end of every run, interrupted or not; the report says when it is incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..files import OutputError, atomic_write, claim_output_folder, load_json
from ..llm.batch import STATE_NAME as BATCH_STATE
from ..llm.batch import BatchRunner, BatchState, EntryMaker, ingest, open_client, write_request_files
from ..llm.client import (
    ChatClient,
    Completion,
    EndpointUnusable,
    ModelSettings,
    RequestFailed,
    ResponseFormatRefused,
    estimate_tokens,
)
from ..llm.journal import ITEM_HEADER, JOURNAL_NAME, Journal, OutputLock, lock_name, request_key
from ..llm.judge import KIND as JUDGE_KIND
from ..llm.judge import Judge, JudgeEndpoint
from ..llm.runner import Pool
from ..llm.structured import Fallback
from ..llm.usage import Usage
from ..sources.annotations import CONFIGS, GENERATION_REPORT, SPLITS, gc_paused
from ..sources.metadata import CLASS_NAMES_URL, SourceMetadata, open_source_metadata
from . import judge as rubric
from .embedders import check_spec, make_embedder
from .filters import (
    NearDuplicates,
    PhraseFilter,
    Score,
    ScoringStop,
    SimilarityScorer,
    assistant_text,
    default_phrases,
    dialogue_fingerprint,
    other_items,
    read_phrases,
)
from .items import Item, audioset_items, comparison_count, comparison_items, music_items, music_rows_not_built
from .options import GenerateError, GenerateOptions
from .parsing import parse_descriptor, parse_dialogue, response_format
from .prompts import descriptor_messages, templates
from .report import GenerationReport

LOCK_NAME = lock_name("generate")
REPORT_MD = GENERATION_REPORT.replace(".json", ".md")
DESCRIPTORS_NAME = "descriptors.json"
SIMILARITY_CACHE = "similarity_cache.jsonl"
#: Allocations between two collections of the youngest generation while a run sends (Python's default: 700).
#: Hundreds of requests in flight keep thousands of young objects alive, which each collection walks again;
#: 20,000 makes those walks rare while garbage cycles still go within a few hundred requests.
GC_YOUNG = 20_000
#: Every scored dialogue's similarity, margin and verdict, per config and split.
SIMILARITY_SCORES = "similarity_scores.jsonl"
#: Completion tokens a finished answer usually takes, for the dry-run estimate (four turns vs one pair).
EXPECTED_COMPLETION_TOKENS = {"audioset": 320, "music": 320, "comparison": 140, "descriptor": 12}


#: A dialogue every filter before the judge kept: its item, turns, journal entry and similarity score.
Candidate = tuple[Item, tuple, dict, Score | None]


@dataclass(frozen=True)
class Job:
    """One request: what it is for and the messages it sends."""

    kind: str  # "dialogue" or "descriptor"
    name: str  # the item key, or the sound class
    config: str
    split: str
    messages: list[dict[str, str]]
    key: str


# --- sources -> items ---------------------------------------------------------------------------


def strong_label_splits(specs: Iterable[str]) -> dict[str, list[str]]:
    """Files per split: ``test=PATH``/``train=PATH``, else a file name containing "eval" is test."""
    files: dict[str, list[str]] = {split: [] for split in SPLITS}
    for spec in specs:
        prefix, _, rest = spec.partition("=")
        if prefix in SPLITS and rest:
            files[prefix].append(rest)
        else:
            name = spec.rstrip("/").rsplit("/", 1)[-1].lower()
            files["test" if "eval" in name else "train"].append(spec)
    return files


@dataclass
class Sources:
    strong: dict[str, SourceMetadata]
    names: dict[str, str]
    music: SourceMetadata | None


def _read_metadata(sources: dict[str, list[str]]) -> SourceMetadata:
    """:func:`open_source_metadata` of sources that name files, which always reads some."""
    metadata = open_source_metadata(sources)
    assert metadata is not None  # None only for no sources at all
    return metadata


def read_sources(options: GenerateOptions) -> Sources:
    needs_strong = bool({"audioset", "comparison"} & set(options.configs))
    if needs_strong and not options.strong_labels:
        raise GenerateError("audioset and comparison are built from AudioSet strong labels: give --strong-labels")
    if needs_strong and not options.ontology:
        raise GenerateError("strong labels name classes by id: give --ontology to name them")
    if "music" in options.configs and not options.musiccaps_csv:
        raise GenerateError("music is built from MusicCaps: give --musiccaps-csv")
    strong: dict[str, SourceMetadata] = {}
    if needs_strong:
        for split, files in strong_label_splits(options.strong_labels).items():
            strong[split] = _read_metadata({"strong_labels": files}) if files else SourceMetadata()
    names = _read_metadata({"ontology": list(options.ontology)}).label_names if needs_strong else {}
    _check_named(strong, names, options.ontology)
    mixed = "comparison" in options.configs and options.comparison_music_fraction > 0
    wants_music = "music" in options.configs or mixed
    music = _read_metadata({"musiccaps_csv": list(options.musiccaps_csv)}) if wants_music else None
    return Sources(strong, names, music)


def _check_named(strong: dict[str, SourceMetadata], names: dict[str, str], ontology: Sequence[str]) -> None:
    """Refuse events whose class the ontology files do not name: their prompts would show machine ids.

    ontology.json alone does not name every class of the strong labels; the release's own
    mid_to_display_name.tsv does, and ``--ontology`` takes it beside ontology.json.
    """
    unnamed = Counter(e.label for meta in strong.values() for by_start in meta.strong.values()
                      for _, events in by_start.values() for e in events if e.label not in names)
    if unnamed:
        shown = ", ".join(f"{label} ({n:,} events)" for label, n in unnamed.most_common(5))
        raise GenerateError(
            f"{unnamed.total():,} strong-label events use {len(unnamed):,} class ids that the ontology files "
            f"({', '.join(ontology)}) do not name: {shown}{', ...' if len(unnamed) > 5 else ''}. Their prompts would "
            f"show the ids instead of sound names. Add the strong-label release's class names, "
            f"--ontology mid_to_display_name.tsv ({CLASS_NAMES_URL}), beside ontology.json")


def _segments(meta: SourceMetadata) -> list[tuple[Any, list]]:
    """(clip, events) of every strong-labelled segment, in a stable order (by clip key)."""
    out = [segment for by_start in meta.strong.values() for segment in by_start.values()]
    out.sort(key=lambda s: s[0].key)
    return out


def build_items(
    options: GenerateOptions, sources: Sources, descriptors: dict[str, str] | None = None
) -> dict[tuple[str, str], list[Item]]:
    """The items of every requested config and split, ``--limit`` applied, comparison groups drawn."""
    items: dict[tuple[str, str], list[Item]] = {}
    limit = options.limit
    music_by_split: dict[str, list[Item]] = {split: [] for split in SPLITS}
    if sources.music is not None:
        all_music = sorted(music_items(sources.music.music.values()), key=lambda i: i.key)
        for item in all_music:
            music_by_split[item.split].append(item)
    for split in SPLITS:
        pool: list[Item] = []
        if sources.strong:
            pool = audioset_items(_segments(sources.strong[split]), split, sources.names, descriptors)
        if "audioset" in options.configs:
            items["audioset", split] = pool[:limit]
        if "music" in options.configs:
            items["music", split] = music_by_split[split][:limit]
        if "comparison" in options.configs:
            mixed = music_by_split[split] if options.comparison_music_fraction > 0 else []
            count = comparison_count(split, len(pool), limit, options.comparison_groups)
            items["comparison", split] = comparison_items(
                pool, split, count, seed=options.seed, music=mixed,
                music_fraction=options.comparison_music_fraction)
    return {key: value for key, value in items.items() if value}


def classes_in(items: dict[tuple[str, str], list[Item]]) -> list[str]:
    """Sound classes named by the items (comparison groups included)."""
    return sorted({label for group in items.values() for item in group for label in item.labels})


# --- requests -----------------------------------------------------------------------------------


def _entry(job: Job, completion: Completion, settings: ModelSettings, base_url: str,
           form: str | None) -> dict[str, Any]:
    """The journal line of one answer: raw text, the parse result or the reject reason, usage, the endpoint, and
    whether it was asked with the answer's JSON schema (``structured``), in which ``response_format`` spelling
    (``form``, :data:`~audio_dialogues.llm.structured.FORMS`; None: free text)."""
    entry: dict[str, Any] = {
        "key": job.key, "kind": job.kind, "name": job.name, "config": job.config, "split": job.split,
        "model": completion.model or settings.model, "base_url": base_url, "text": completion.text,
        "finish_reason": completion.finish_reason, "structured": form is not None, "response_format": form,
        "usage": completion.usage.to_dict(),
        "attempts": completion.attempts, "latency_s": round(completion.latency_s, 4), "at": time.time(),
    }
    if job.kind == "descriptor":
        entry["parsed"] = parse_descriptor(completion.text)
        entry["reject"] = None if entry["parsed"] else "no descriptor in the answer"
    else:
        turns, reason = _judge(job.config, completion.text, completion.finish_reason)
        entry["parsed"] = [{"user": u, "assistant": a} for u, a in turns] if turns else None
        entry["reject"] = reason
    return entry


@functools.cache  # an answer is parsed for its journal line, then again by finish(): parsed once (the text is
# the journal's own string, whose hash Python keeps); generate() clears it, so it holds one run's answers at most
def _judge(config: str, text: str | None, finish_reason: str | None) -> tuple[tuple, str | None]:
    if finish_reason == "length":
        return (), "truncated at max_tokens"
    parsed = parse_dialogue(text, config)
    return parsed.turns, parsed.reason


def unusable_endpoint(error: EndpointUnusable, options: GenerateOptions) -> GenerateError:
    """One paragraph for an endpoint that cannot serve the run: where, what it answered and the likely fix."""
    failure, var = error.failure, options.api_key_env
    if failure.status in (401, 403):
        state = ("is not set" if not os.environ.get(var) else
                 "is set, so the key it holds is wrong, expired or not allowed this model")
        fix = (f"the endpoint refuses the API key: the variable {var} {state}; export a valid key in it, or name "
               "the variable that holds one with --api-key-env")
    elif failure.status == 404:
        fix = (f"nothing serves chat completions at {error.base_url}/chat/completions: the base URL usually ends "
               f"with /v1 (e.g. http://127.0.0.1:8000/v1); if it does, check that the endpoint serves the model "
               f"{options.model!r}")
    elif "response_format" in failure.label:
        fix = ("the endpoint does not take response_format (structured outputs) for this model: run with "
               "--structured auto, which then asks for free text, or --structured off")
    elif failure.status is not None:
        fix = ("the endpoint rejects the requests themselves (see its message): check --model, --max-tokens and "
               "--temperature against what it accepts")
    elif failure.kind == "connection refused":
        fix = "nothing listens at that host and port: start the server (and wait until it is up), or correct --base-url"
    elif failure.kind == "host name not resolved":
        fix = "the host name in --base-url does not resolve: check its spelling, and the network or proxy"
    else:
        fix = "the TLS handshake failed: a local server usually speaks http://, not https://"
    return GenerateError(
        f"stopped: the endpoint {error.base_url} cannot serve this run: the first {error.attempts} attempts all "
        f"failed with {failure.label}, and none succeeded. Likely fix: {fix}. Nothing was paid for; answers "
        "already in the journal are kept, and the same command resumes once this is fixed.")


class _Runner:
    """Sends the jobs with ``concurrency`` workers (:class:`~audio_dialogues.llm.runner.Pool`: the first Ctrl-C
    drains in-flight requests, a second abandons them).

    An endpoint that fails every attempt in a way that will not pass (see :class:`EndpointWatch`) stops the
    run at once with :func:`unusable_endpoint`'s message instead of failing each item after its retries;
    once it has answered for this model (:func:`endpoint_proven`), only failures about the endpoint do.
    """

    def __init__(self, options: GenerateOptions, journal: Journal, report: GenerationReport,
                 settings: ModelSettings, log: Callable[[str], None]) -> None:
        self.options, self.journal, self.report, self.settings, self.log = options, journal, report, settings, log
        self.fallback = Fallback(log)  # the spellings of response_format the endpoint has not refused
        self._spellings = {config: functools.partial(response_format, config) for config in CONFIGS}

    async def run(self, jobs: Sequence[Job], known: Iterable[str] = ()) -> None:
        """Send ``jobs``; ``known`` are the keys of every request of this phase, answered or not."""
        if not jobs:
            return
        client = self.options.client(self.settings)
        if client.watch is not None and endpoint_proven(self.journal, set(known), self.settings.model,
                                                        client.base_url):
            client.watch.endpoint_only = True
        bar = tqdm(total=len(jobs), unit="req", desc="requests", disable=not self.options.progress,
                   mininterval=1.0, file=sys.stderr)

        async def work(job: Job) -> None:
            try:
                completion, form = await self.complete(client, job)
            except RequestFailed as e:
                self.report.failed_requests[str(e)] += 1
            else:
                self.journal.append(_entry(job, completion, self.settings, client.base_url, form))
                self.report.this_run.add(completion.prompt_tokens, completion.completion_tokens,
                                         completion.cached_prompt_tokens)
            bar.update()

        try:
            outcome = await Pool(work, self.options.concurrency, self.log).run(jobs)
        finally:
            bar.close()
            self.report.add_client_stats(client.stats)
            await client.close()
        self.report.interrupted = self.report.interrupted or outcome.interrupted
        unusable, watch = outcome.unusable, client.watch
        if (unusable is None and not self.report.interrupted and watch and watch.every_attempt_failed
                and watch.first is not None and watch.first.about_endpoint):
            # Fewer attempts than the watch needs were made (a small run), and every one failed the same way,
            # a way that blames the endpoint (a 400 blames the item: those are counted as failed requests).
            unusable = EndpointUnusable(watch.first, watch.failed_attempts, client.base_url)
        if unusable is not None:
            raise unusable_endpoint(unusable, self.options)

    async def complete(self, client: ChatClient, job: Job) -> tuple[Completion, str | None]:
        """The answer to ``job`` and the ``response_format`` spelling it was asked in (None: free text).

        Dialogues are asked with their JSON schema (:func:`~.parsing.dialogue_schema`) unless ``--structured off``: in
        OpenAI's and vLLM's spelling, then in llama-cpp-python's (:class:`~audio_dialogues.llm.structured.Fallback`).
        A refusal is no answer and no endpoint failure: each is said once, and once every spelling is refused
        it is recorded in the report and the job is asked again as free text (``--structured on``: the run
        stops instead, nothing paid).
        """
        headers = {ITEM_HEADER: f"{job.kind}:{job.name}"}
        structured = self.report.structured
        if job.kind != "dialogue" or structured["mode"] == "off":
            return await client.complete(job.messages, headers), None
        try:
            completion, form = await self.fallback.complete(
                client, job.messages, headers, self._spellings[job.config], free_text=structured["mode"] != "on")
        except ResponseFormatRefused as e:
            raise EndpointUnusable(e.failure, 1, client.base_url) from None
        if form is None and structured["refused"] is None and self.fallback.refused is not None:
            structured["refused"] = self.fallback.refused.failure.label
        return completion, form


def endpoint_proven(journal: Journal, known: set[str], model: str, base_url: str) -> bool:
    """Whether the journal holds an answer this endpoint gave for this model, in this run or an earlier one.

    Then the endpoint has shown it can serve: a failure that is not about the endpoint itself (a 400, say)
    is about its item, and the run goes on and counts it instead of stopping as :func:`unusable_endpoint`;
    a refused key or a server gone still stop it. Answers count, not their token usage, which some
    servers never report. An answer is for this model when its request is one of ``known`` (the key covers
    the model asked for) or the server named the model so; answers journaled before entries named their
    endpoint count for any endpoint.
    """
    for key, entry in journal.entries.items():
        if entry.get("base_url", base_url) == base_url and (key in known or entry.get("model") == model):
            return True
    return False


def _send(jobs: Sequence[Job], options: GenerateOptions, journal: Journal, report: GenerationReport,
          settings: ModelSettings, log: Callable[[str], None]) -> None:
    """Ask what the journal has not answered: one by one, by batch, or offline (write the requests, or ingest
    the answers); requests in a batch not yet collected are left to ``--batch`` (never paid twice)."""
    pending = [job for job in jobs if job.key not in journal]
    if options.batch_ingest:
        _ingest(pending, options, journal, report, settings, log)
    elif options.batch:
        if pending:
            asyncio.run(_batch(pending, options, journal, report, settings, log))
    else:
        state = options.output_dir / BATCH_STATE
        in_batches = BatchState(state).in_flight() if state.exists() else set()
        if in_batches & {job.key for job in pending}:
            log(f"{len(in_batches & {job.key for job in pending}):,} requests are in batches not yet collected "
                f"({state}): they are not sent again; run with --batch to collect them")
            pending = [job for job in pending if job.key not in in_batches]
        if options.batch_write is not None:
            if pending:
                paths = write_request_files(options.batch_write, f"{pending[0].kind}-requests",
                                            _batch_bodies(pending, settings, options),
                                            options.batch_max_requests, options.batch_max_bytes)
                log(f"wrote {len(pending):,} {pending[0].kind} requests to {len(paths)} batch files in "
                    f"{options.batch_write}; no model was called")
        elif pending:
            asyncio.run(_Runner(options, journal, report, settings, log).run(pending, (job.key for job in jobs)))
    report.pending += sum(1 for job in jobs if job.key not in journal)


def _batch_structured(job: Job, options: GenerateOptions) -> bool:
    """Whether a batch asks ``job`` with its JSON schema: a dialogue, unless ``--structured off`` (a batch cannot
    fall back request by request; an endpoint that refuses the schema returns error lines, asked again with
    ``--structured off``)."""
    return job.kind == "dialogue" and options.structured != "off"


def _batch_bodies(jobs: Sequence[Job], settings: ModelSettings, options: GenerateOptions) -> dict[str, dict[str, Any]]:
    """Each job's request body, by journal key, as a batch file line carries it."""
    bodies = {}
    for job in jobs:
        body = settings.body(job.messages)
        if _batch_structured(job, options):
            body["response_format"] = response_format(job.config)
        bodies[job.key] = body
    return bodies


def _batch_entries(jobs: Sequence[Job], settings: ModelSettings, options: GenerateOptions, base_url: str,
                   report: GenerationReport) -> EntryMaker:
    """The journal entry of a batch answer: a synchronous one's, plus the batch (or output file) it came from."""
    by_key = {job.key: job for job in jobs}

    def entry(custom_id: str, completion: Completion, source: str) -> dict[str, Any]:
        job = by_key[custom_id]
        report.this_run.add(completion.prompt_tokens, completion.completion_tokens, completion.cached_prompt_tokens,
                            batch=True)
        form = "json_schema" if _batch_structured(job, options) else None
        return {**_entry(job, completion, settings, base_url, form), "batch": source}

    return entry


async def _batch(jobs: Sequence[Job], options: GenerateOptions, journal: Journal, report: GenerationReport,
                 settings: ModelSettings, log: Callable[[str], None]) -> None:
    client = open_client(options.base_url, os.environ.get(options.api_key_env), options.timeout_s,
                         options.max_attempts)
    runner = BatchRunner(client, BatchState(options.output_dir / BATCH_STATE), journal,
                         max_requests=options.batch_max_requests, max_bytes=options.batch_max_bytes,
                         poll_s=options.batch_poll_s, wait_s=options.batch_wait_s, log=log)
    try:
        outcome = await runner.run(_batch_bodies(jobs, settings, options),
                                   _batch_entries(jobs, settings, options, str(client.base_url).rstrip("/"), report))
    finally:
        await client.close()
    report.interrupted = report.interrupted or outcome.interrupted
    report.add_batches(outcome)


def _ingest(jobs: Sequence[Job], options: GenerateOptions, journal: Journal, report: GenerationReport,
            settings: ModelSettings, log: Callable[[str], None]) -> None:
    """Journal the lines of the ``--batch-ingest`` files that answer ``jobs``."""
    answers, errors = ingest([Path(p) for p in options.batch_ingest], journal, {job.key for job in jobs},
                             _batch_entries(jobs, settings, options, "offline", report))
    if jobs:
        log(f"ingested {answers:,} {jobs[0].kind} answers and {errors:,} error lines; no model was called")


# --- descriptors --------------------------------------------------------------------------------


def resolve_descriptors(options: GenerateOptions, classes: Sequence[str], journal: Journal,
                        report: GenerationReport, settings: ModelSettings,
                        log: Callable[[str], None]) -> tuple[dict[str, str], set[str]]:
    """Descriptors per class from the user's file, from the LLM (cached beside the output), or none.

    Returns them and the journal keys of the descriptor requests this run makes (answered or not), whose
    journaled answers the report counts under ``descriptors``. A dry run sends and writes nothing.
    """
    if options.descriptors == "none":
        return {}, set()
    if options.descriptors != "llm":
        path = Path(options.descriptors)
        data = load_json(path, GenerateError)
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise GenerateError(f"{path}: descriptors must be a JSON object mapping class names to strings")
        return data, set()
    cache_path = options.output_dir / DESCRIPTORS_NAME
    rebuilt = "delete it: the journal keeps every answer, so it is rebuilt at no cost"
    try:
        cache = load_json(cache_path, GenerateError) if cache_path.exists() else {}
    except GenerateError as e:
        raise GenerateError(f"{e}; the descriptor cache cannot be read: {rebuilt}") from None
    if not isinstance(cache, dict) or not all(isinstance(v, str) for v in cache.values()):
        raise GenerateError(f"{cache_path}: the descriptor cache is not a JSON object mapping class names to "
                            f"strings: {rebuilt}")
    jobs = []
    for name in classes:
        messages = descriptor_messages(name)
        key = request_key(settings.body(messages), f"descriptor:{name}")
        jobs.append(Job("descriptor", name, "descriptor", "-", messages, key))
    needed = [job for job in jobs if job.name not in cache and job.key not in journal]
    if needed and not options.dry_run:
        _send(needed, options, journal, report, settings, log)
    learned = False
    for job in jobs:
        entry = journal.get(job.key)
        if entry is None:
            continue
        report.descriptor_usage.add_answer(entry)
        if job.name not in cache and entry.get("parsed"):
            cache[job.name] = entry["parsed"]
            learned = True
    if learned and not options.dry_run:
        _write_atomic(cache_path, json.dumps(cache, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    report.descriptors = {"classes": len(classes), "described": sum(1 for c in classes if c in cache),
                          "requested": 0 if options.dry_run else len(needed)}
    return {name: cache[name] for name in classes if name in cache}, {job.key for job in jobs}


def count_unused(journal: Journal, used: set[str], report: GenerationReport) -> None:
    """Add the journaled answers no current request uses to the report, so its total covers the whole journal.

    The judge's replies are counted apart: they were paid at the judge's prices, which this run may not know.
    """
    for key, entry in journal.entries.items():
        if key not in used:
            judged = entry.get("kind") == JUDGE_KIND
            report.unused_answers += not judged
            report.unused_judge_replies += judged
            (report.unused_judge_usage if judged else report.unused_usage).add_answer(entry)


# --- outputs ------------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def _record(item: Item, turns: Sequence[tuple[str, str]], entry: dict, provenance: dict,
            score: Score | None) -> dict:
    similarity = None if score is None or score.own is None else round(score.own, 4)
    margin = None if score is None or score.margin is None else round(score.margin, 3)
    meta = {**item.record_meta(), "generation": {**provenance, "model": entry.get("model") or provenance["model"],
                                                 "similarity": similarity, "similarity_margin": margin}}
    return {"id": item.key, "clips": [c.to_dict() for c in item.clips],
            "turns": [{"user": u, "assistant": a} for u, a in turns], "meta": meta}


def phrases(options: GenerateOptions) -> list[str]:
    """The low-confidence phrases in use: Audio Flamingo's lists and/or the user's file."""
    chosen = [] if options.replace_phrases else default_phrases()
    if options.phrases_file:
        try:
            chosen += read_phrases(options.phrases_file)
        except (OSError, UnicodeDecodeError) as e:
            raise GenerateError(f"{options.phrases_file}: cannot read the phrases file: {e}") from None
    return chosen


def filters(options: GenerateOptions) -> tuple[PhraseFilter, SimilarityScorer | None]:
    """The phrase filter and the similarity scorer, made before any request so that a bad option costs nothing."""
    scorer = None
    if options.embedder != "none":
        embedder = make_embedder(options.embedder, base_url=options.embedding_base_url or options.base_url,
                                 api_key_env=options.api_key_env, timeout_s=options.timeout_s,
                                 max_attempts=options.max_attempts, resolve_audio=_audio_resolver(options))
        assert embedder is not None  # only the spec "none" makes none
        scorer = SimilarityScorer(embedder, Journal(options.output_dir / SIMILARITY_CACHE))
    return PhraseFilter(phrases(options)), scorer


def finish(options: GenerateOptions, items: dict[tuple[str, str], list[Item]], jobs: dict[tuple[str, str, str], Job],
           journal: Journal, report: GenerationReport, prompt_hashes: dict[str, str],
           phrase_filter: PhraseFilter, scorer: SimilarityScorer | None, log: Callable[[str], None]) -> None:
    """Parse, filter and write every config/split from the journal; fill the report's stages.

    Ctrl-C while scoring stops the scoring (see :class:`ScoringStop`); the dialogues left unscored are
    counted, not written, and the run is reported as interrupted.
    """
    stop = ScoringStop(log)
    scored: list[dict] = []
    #: What passed every filter before the judge, per config and split, in item order.
    candidates: dict[tuple[str, str], list[Candidate]] = {}
    with stop if scorer is not None else contextlib.nullcontext():
        for config in CONFIGS:
            seen: set[str] = set()
            near = NearDuplicates(options.near_duplicate_threshold) if options.near_duplicate_threshold else None
            for split in SPLITS:
                group = items.get((config, split))
                if not group:
                    continue
                stats = report.split(config, split)
                stats.stages["items"] = len(group)
                candidates[config, split] = []
                kept: list[tuple[Item, tuple, dict]] = []
                for item in group:
                    entry = journal.get(jobs[config, split, item.key].key)
                    if entry is None:
                        continue
                    stats.stages["answered"] += 1
                    stats.usage.add_answer(entry)
                    asked = stats.answers["structured" if entry.get("structured") else "free_text"]
                    asked["answered"] += 1
                    turns, reason = _judge(config, entry.get("text"), entry.get("finish_reason"))
                    if reason:
                        asked["rejected"] += 1
                        stats.reject(reason)
                        continue
                    stats.stages["parsed"] += 1
                    phrase = phrase_filter.match(turns)
                    if phrase:
                        stats.reject(f"low-confidence phrase {phrase!r}")
                        continue
                    stats.stages["phrases"] += 1
                    kept.append((item, turns, entry))
                scores: dict[int, Score] = {}
                if scorer is not None and kept:
                    if not stop.stopped:
                        log(f"scoring {len(kept)} {config}/{split} dialogues with {scorer.embedder.name} "
                            f"({options.similarity_test} test)")
                    scores = _score(options, scorer, group, kept, stop)
                for index, (item, turns, entry) in enumerate(kept):
                    score = scores.get(index)
                    if scorer is not None:
                        if score is None:
                            stats.unscored += 1
                            continue
                        if score.own is None:
                            stats.reject("similarity could not be scored (no local audio)")
                            continue
                        reason = _similarity_reject(options, score)
                        stats.similarity.append(score.own)
                        if score.margin is not None:
                            stats.margins.append(score.margin)
                        scored.append({"config": config, "split": split, "id": item.key, "score": round(score.own, 6),
                                       "margin": None if score.margin is None else round(score.margin, 4),
                                       "kept": reason is None})
                        if reason:
                            stats.reject(reason)
                            continue
                    stats.stages["similarity"] += 1
                    fingerprint = dialogue_fingerprint(turns)
                    if fingerprint in seen:
                        stats.reject("exact duplicate of an earlier dialogue")
                        continue
                    seen.add(fingerprint)
                    stats.stages["duplicates"] += 1
                    if near is not None:
                        jaccard = near.seen(turns)
                        if jaccard is not None:
                            stats.reject(f"near-duplicate of an earlier dialogue (Jaccard >= "
                                         f"{options.near_duplicate_threshold:g})")
                            continue
                    stats.stages["near_duplicates"] += 1
                    candidates[config, split].append((item, turns, entry, score))
    judge = _ask_judge(options, candidates, journal, report, log, asking=not (stop.stopped or report.interrupted))
    for (config, split), passed in candidates.items():
        stats = report.split(config, split)
        records = []
        for item, turns, entry, score in passed:
            provenance = {**report.settings["model_settings"], "prompt_hash": prompt_hashes[config],
                          "embedder": scorer.embedder.name if scorer else None}
            if judge is not None:
                question = rubric.question(item, turns)
                if judge.answer(question) is None:
                    stats.unscored += 1
                    continue
                points = judge.scores(question)
                reason = rubric.reject(points, options.judge_threshold)
                if reason:
                    stats.reject(reason)
                    continue
                assert points is not None  # rubric.reject refuses a reply without scores
                stats.judge_scores.append(rubric.mean(points))
                stats.stages["judge"] += 1
                provenance["judge"] = {**points, "mean": round(rubric.mean(points), 4)}
            stats.turns[len(turns)] += 1
            records.append(_record(item, turns, entry, provenance, score))
        path = options.output_dir / f"{config}_{split}.jsonl"
        _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        report.outputs.append(path.name)
    if scorer is not None:
        path = options.output_dir / SIMILARITY_SCORES
        _write_atomic(path, "".join(json.dumps(r) + "\n" for r in scored))
    if stop.stopped and report.unscored_total():  # a stop asked once all was scored changed nothing
        report.interrupted = True
    if scorer is not None:
        scorer.cache.close()


def _ask_judge(options: GenerateOptions, candidates: dict[tuple[str, str], list[Candidate]], journal: Journal,
               report: GenerationReport, log: Callable[[str], None], asking: bool) -> Judge | None:
    """The judge over every dialogue the filters kept, having asked it what the journal lacks (unless ``asking``
    is off: a run stopped before asks nothing more); its usage, cost and failures go into the report."""
    if options.judge is None:
        return None
    judge = Judge(options.judge, rubric.SCALE, journal, log)
    questions = [rubric.question(item, turns) for passed in candidates.values() for item, turns, _, _ in passed]
    if asking and questions:
        log(f"judging {len(questions)} dialogues with {options.judge.model}")
        journaled = {judge.key(q) for q in questions if judge.answer(q) is not None}
        asked = judge.ask(questions)
        report.judge_this_run = judge.usage([q for q in questions if judge.key(q) not in journaled])
        report.interrupted = report.interrupted or asked.interrupted
        report.failed_requests.update({f"judge: {reason}": n for reason, n in asked.failures.items()})
        report.judge_requests_sent += asked.sent
    report.pending += sum(1 for q in questions if judge.answer(q) is None)
    report.judge_usage = judge.usage(questions)
    report.judge_keys = {judge.key(q) for q in questions}
    return judge


def _score(options: GenerateOptions, scorer: SimilarityScorer, group: Sequence[Item],
           kept: Sequence[tuple[Item, tuple, dict]], stop: ScoringStop) -> dict[int, Score]:
    """Each kept dialogue's score with its item and, for the relative test, with other items of the split."""
    fit = getattr(scorer.embedder, "fit", None)
    if fit is not None:
        fit([item.description for item in group], [assistant_text(turns) for _, turns, _ in kept])
    others = None
    if options.similarity_test == "relative":
        others = [other_items(item, group) for item, _, _ in kept]
    return scorer.scores([(item, assistant_text(turns)) for item, turns, _ in kept], stop, others)


def _similarity_reject(options: GenerateOptions, score: Score) -> str | None:
    """Why a scored dialogue fails the similarity test, or None."""
    if options.similarity_test == "absolute":
        if score.own is not None and score.own < options.similarity_threshold:
            return f"similarity below {options.similarity_threshold}"
        return None
    if score.margin is None:
        return None  # fewer than two other items in the split: nothing to compare with
    if score.margin < options.similarity_margin:
        return f"no closer to its own item than to others (margin below {options.similarity_margin:g})"
    return None


def _audio_resolver(options: GenerateOptions) -> Callable[[Item], list[Path | None]] | None:
    if not options.embedder.startswith("clap:"):
        return None
    from ..audio.cache import resolve_cache_dir
    from ..audio.resolver import AudioResolver

    resolver = AudioResolver([Path(d) for d in options.audio_dirs], resolve_cache_dir(None))
    return lambda item: [resolver.resolve(clip) for clip in item.clips]


# --- the run ------------------------------------------------------------------------------------


def _dry_run(options: GenerateOptions, items: dict[tuple[str, str], list[Item]], jobs: dict[tuple[str, str, str], Job],
             journal: Journal, descriptor_classes: int, out: Callable[[str], None]) -> dict[str, Any]:
    """Print rendered prompts and the token and cost estimate of the requests not yet answered, in each mode.

    The modes: synchronous requests at the listed prices; a batch (``1 - batch_discount`` of them); and
    synchronous with the expected prompt-cache hits: each subset's shared prefix (instruction and worked
    examples, everything but the item) read from the cache by every request of the subset after its first,
    at ``--price-cached-in``.
    """
    shown: set[str] = set()
    totals: dict[str, float] = {"requests": 0, "already_answered": 0, "prompt_tokens": 0, "completion_tokens": 0,
              "completion_tokens_max": 0, "cached_prompt_tokens": 0}
    prefixes: dict[str, tuple[int, int]] = {}  # config -> (prefix tokens, requests to send)
    for (config, split), group in items.items():
        for item in group:
            job = jobs[config, split, item.key]
            if job.key in journal:
                totals["already_answered"] += 1
                continue
            totals["requests"] += 1
            totals["prompt_tokens"] += estimate_tokens(job.messages)
            totals["completion_tokens"] += EXPECTED_COMPLETION_TOKENS[config]
            totals["completion_tokens_max"] += options.max_tokens
            prefix, sent = prefixes.get(config, (estimate_tokens(job.messages[:-1]), 0))
            prefixes[config] = (prefix, sent + 1)
        if config not in shown and group and len(shown) < len(CONFIGS) and options.show_prompts:
            shown.add(config)
            out(f"=== {config}/{split}: the prompt of item {group[0].key} ===")
            for message in jobs[config, split, group[0].key].messages:
                out(f"--- {message['role']} ---\n{message['content']}")
    if descriptor_classes:
        totals["requests"] += descriptor_classes
        totals["prompt_tokens"] += descriptor_classes * 60
        totals["completion_tokens"] += descriptor_classes * EXPECTED_COMPLETION_TOKENS["descriptor"]
        totals["completion_tokens_max"] += descriptor_classes * options.max_tokens
    totals["cached_prompt_tokens"] = sum(prefix * (sent - 1) for prefix, sent in prefixes.values())
    prompt, cached = int(totals["prompt_tokens"]), int(totals["cached_prompt_tokens"])
    prices = (options.price_in, options.price_out, options.price_cached_in)
    expected = {"": Usage(prompt, int(totals["completion_tokens"])),
                "_max": Usage(prompt, int(totals["completion_tokens_max"]))}
    for bound, usage in expected.items():
        synchronous = usage.cost(*prices)
        totals[f"cost_usd{bound}"] = round(synchronous, 4)
        totals[f"cost_usd_batch{bound}"] = round(synchronous * (1 - options.batch_discount), 4)
        totals[f"cost_usd_cached{bound}"] = round(Usage(prompt, usage.completion_tokens, cached).cost(*prices), 4)
    out("=== estimate (no model was called) ===")
    for (config, split), group in items.items():
        out(f"{config}/{split}: {len(group):,} items")
    out(f"requests to send: {totals['requests']:,} (already answered in the journal: {totals['already_answered']:,})")
    out(f"prompt tokens ~{prompt:,} (4 characters per token); completion tokens "
        f"~{totals['completion_tokens']:,} expected, at most {totals['completion_tokens_max']:,} (max_tokens)")
    shared = ", ".join(f"{config} {prefix:,} x {sent - 1:,}" for config, (prefix, sent) in prefixes.items())
    out(f"prompt tokens a prefix cache would serve: ~{cached:,} (each subset's shared prefix times its requests "
        f"after the first: {shared or 'none'})")
    cached_price = options.price_in if options.price_cached_in is None else options.price_cached_in
    out(f"cost at ${options.price_in:g}/M in, ${cached_price:g}/M cached in and ${options.price_out:g}/M out, "
        "expected (at most, every answer max_tokens long):")
    modes = {"synchronous": "cost_usd", f"batch ({1 - options.batch_discount:.0%} of synchronous)": "cost_usd_batch",
             "synchronous with the expected cache hits": "cost_usd_cached"}
    for mode, key in modes.items():
        out(f"  {mode}: ~${totals[key]:,.2f} (at most ${totals[key + '_max']:,.2f})")
    if options.judge is not None:
        j = _judge_estimate(options.judge, items, jobs, journal)
        out(f"judge {options.judge.model}: at most {j['requests']:,} requests (one per dialogue still to judge, "
            f"if every one passed the filters), prompt tokens ~{j['prompt_tokens']:,}, completion tokens at most "
            f"{j['completion_tokens_max']:,}; cost at most ${j['cost_usd_max']:,.2f}, at ${options.judge.price_in}/M "
            f"in and ${options.judge.price_out}/M out")
        return {**totals, "judge": j}
    return totals


def _judge_estimate(judge: JudgeEndpoint, items: dict[tuple[str, str], list[Item]],
                    jobs: dict[tuple[str, str, str], Job], journal: Journal) -> dict[str, float]:
    """The judge's requests and tokens at most: one per item whose dialogue it has not judged (the journaled
    dialogue's own request, or, for an item not answered yet, its expected length in place of the dialogue)."""
    asker = Judge(judge, rubric.SCALE, journal)
    totals: dict[str, float] = {"requests": 0, "prompt_tokens": 0, "completion_tokens_max": 0}
    for (config, split), group in items.items():
        for item in group:
            entry = journal.get(jobs[config, split, item.key].key)
            turns = _judge(config, entry.get("text"), entry.get("finish_reason"))[0] if entry else ()
            question = rubric.question(item, turns)
            if turns and asker.answer(question) is not None:
                continue
            totals["requests"] += 1
            totals["prompt_tokens"] += estimate_tokens(question.messages) + (
                0 if turns else EXPECTED_COMPLETION_TOKENS[config])
            totals["completion_tokens_max"] += judge.max_tokens
    totals["cost_usd_max"] = round((totals["prompt_tokens"] * judge.price_in
                                    + totals["completion_tokens_max"] * judge.price_out) / 1e6, 4)
    return totals


def generate(options: GenerateOptions, out: Callable[[str], None] = print) -> GenerationReport | dict:
    """Run (or with ``dry_run``, estimate) a generation; returns the report (the estimate for a dry run)."""
    started = time.perf_counter()
    _check(options)
    options.output_dir = Path(options.output_dir)
    assert options.model  # _check refused a missing model
    settings = options.model_settings()
    chosen = templates(options.prompt_files)
    prompt_hashes = {config: chosen[config].digest for config in CONFIGS}
    report = GenerationReport(
        settings={"model_settings": {"model": settings.model, "temperature": settings.temperature,
                                     "max_tokens": settings.max_tokens, "seed": settings.seed},
                  "base_url": options.base_url, "configs": list(options.configs), "limit": options.limit,
                  "descriptors": options.descriptors, "embedder": options.embedder,
                  "similarity_test": options.similarity_test, "similarity_margin": options.similarity_margin,
                  "similarity_threshold": options.similarity_threshold,
                  "near_duplicate_threshold": options.near_duplicate_threshold, "prompt_hashes": prompt_hashes,
                  "concurrency": options.concurrency, "rpm": options.rpm, "tpm": options.tpm,
                  "judge": None if options.judge is None else {
                      "model": options.judge.model, "base_url": options.judge.base_url,
                      "temperature": options.judge.temperature, "max_tokens": options.judge.max_tokens,
                      "threshold": options.judge_threshold, "prompt_sha256": rubric.PROMPT_SHA256}},
        price_in=options.price_in, price_out=options.price_out, price_cached_in=options.price_cached_in,
        batch_discount=options.batch_discount,
        structured={"mode": options.structured, "refused": None},
        judge_prices=None if options.judge is None else (options.judge.price_in, options.judge.price_out))
    log = (lambda message: print(message, file=sys.stderr)) if options.progress else (lambda message: None)
    with contextlib.ExitStack() as stack:
        if options.dry_run:  # reads the journal if there is one; creates, locks and writes nothing
            journal = stack.enter_context(Journal(options.output_dir / JOURNAL_NAME, read_only=True))
        else:
            make_output_dir(options.output_dir)
            stack.enter_context(OutputLock(options.output_dir))
            journal = stack.enter_context(Journal(options.output_dir / JOURNAL_NAME))
        if journal.torn_bytes:
            log(f"journal: cut a torn last line ({journal.torn_bytes} bytes) left by an interrupted run")
        with gc_paused():  # millions of small acyclic objects: collections would rescan them all, for nothing
            sources = read_sources(options)
            items = build_items(options, sources)
        if "music" in options.configs and sources.music is not None:
            not_built = music_rows_not_built(sources.music.music.values(), sources.music.music_repeats)
            for split, reasons in not_built.items():
                if reasons:
                    report.split("music", split).not_built.update(reasons)
        phrase_filter, scorer = (None, None) if options.dry_run else filters(options)
        descriptors: dict[str, str] = {}
        descriptor_keys: set[str] = set()
        if options.descriptors != "none":
            classes = classes_in(items)
            descriptors, descriptor_keys = resolve_descriptors(options, classes, journal, report, settings, log)
            if descriptors:
                items = build_items(options, sources, descriptors)
        stack.callback(_judge.cache_clear)  # the dry run reads journaled answers through it too
        jobs = {}
        for (config, split), group in items.items():
            for item in group:
                messages = chosen[config].render(item)
                key = request_key(settings.body(messages), f"dialogue:{item.key}")
                jobs[config, split, item.key] = Job("dialogue", item.key, config, split, messages, key)
        if options.dry_run:
            missing = report.descriptors.get("classes", 0) - report.descriptors.get("described", 0)
            return _dry_run(options, items, jobs, journal, missing, out)
        # The items, jobs and journal live until the end and hold no cycle: frozen out of the collector's sight,
        # the collections the requests trigger no longer walk them again and again (with GC_YOUNG, the
        # collector's CPU per request fell from 0.25 to 0.06-0.08 ms). The caller gets its collector back; one
        # that froze objects itself keeps them frozen (unfreeze() would release them too), and this run's unfrozen.
        if gc.get_freeze_count() == 0:
            gc.freeze()
            stack.callback(gc.unfreeze)
        stack.callback(gc.set_threshold, *gc.get_threshold())
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
        # By batch or offline, the dialogue prompts wait for every descriptor (a later run sends them).
        waiting = report.pending and (options.batch or options.batch_write is not None or options.batch_ingest)
        if waiting:
            log("the dialogue requests wait for the descriptor answers; run the same command again once they are in")
        if not report.interrupted and not waiting:
            _send(list(jobs.values()), options, journal, report, settings, log)
        else:
            report.pending += sum(1 for job in jobs.values() if job.key not in journal)
        assert phrase_filter is not None  # made by filters() whenever this is no dry run
        finish(options, items, jobs, journal, report, prompt_hashes, phrase_filter, scorer, log)
        count_unused(journal, descriptor_keys | report.judge_keys | {job.key for job in jobs.values()}, report)
        report.wall_time_s = time.perf_counter() - started
        _write_atomic(options.output_dir / GENERATION_REPORT, report.to_json())
        _write_atomic(options.output_dir / REPORT_MD, report.to_markdown())
    out(report.summary())
    return report


def make_output_dir(path: Path) -> None:
    """Create the output folder (or take up an earlier run's), or say in one line why it cannot be.

    A non-empty folder that is not an earlier run's output (a project, another command's output) is
    refused before anything is written: a run writes ``{config}_{split}.jsonl`` and its reports there.
    """
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: the output folder is a file, not a folder; choose another --output-dir")
    claim_output_folder(path, "generate", previous=(JOURNAL_NAME, LOCK_NAME, DESCRIPTORS_NAME, SIMILARITY_CACHE,
                                                    GENERATION_REPORT, BATCH_STATE))


def _check(options: GenerateOptions) -> None:
    unknown = [c for c in options.configs if c not in CONFIGS]
    if unknown:
        raise GenerateError(f"unknown config(s) {unknown}; expected some of {', '.join(CONFIGS)}")
    if not options.model:
        raise GenerateError("give --model (the model name the endpoint serves)" + (
            "; a dry run needs it too: journaled answers are keyed by the model, so what is left to pay depends "
            "on it" if options.dry_run else ""))
    options.validate()  # again: fields may have changed since the options were made
    if options.judge is not None and (options.batch_write is not None or options.batch_ingest):
        raise GenerateError("--judge-model asks its endpoint, and the offline form (--batch-write, --batch-ingest) "
                            "calls no model: judge with a run without them afterwards (the dialogues are journaled)")
    # What the filters would refuse, refused before the sources are read, and in a dry run too.
    check_spec(options.embedder)
    phrases(options)
