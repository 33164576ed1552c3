"""What ``generate`` costs: cached prompt prefixes priced on their own, exactly as the endpoint bills them.

The test server (``tests/openai_server.py``) caches prompt prefixes as OpenAI and vLLM do, reports the cached
tokens in ``usage.prompt_tokens_details.cached_tokens`` and keeps its own invoice (:meth:`OpenAIServer.bill`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from audio_dialogues.generate import GenerateError, GenerateOptions, generate
from audio_dialogues.generate.prompts import DEFAULT_TEMPLATES
from audio_dialogues.llm.client import ModelSettings
from audio_dialogues.llm.journal import JOURNAL_NAME
from tests.generate_sources import write_sources
from tests.openai_server import OpenAIServer

#: Whole dollars per million tokens: every bill then has at most six decimals, as the report rounds it.
PRICES = {"price_in": 3.0, "price_cached_in": 1.0, "price_out": 12.0}


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def sources(tmp_path: Path) -> dict:
    return write_sources(tmp_path / "src")


def options(tmp_path: Path, server: OpenAIServer, sources: dict, **overrides: object) -> GenerateOptions:
    values = dict(output_dir=tmp_path / "out", model="test-model", base_url=server.base_url, embedder="none",
                  comparison_groups={"train": 6, "test": 3}, backoff_s=0.01, progress=False, seed=3,
                  near_duplicate_threshold=0.0, **PRICES)
    values.update(overrides)
    return GenerateOptions(**{**values, **sources})  # type: ignore[arg-type]


@pytest.mark.parametrize("config", sorted(DEFAULT_TEMPLATES))
def test_two_items_share_the_request_byte_for_byte_up_to_the_item(config: str) -> None:
    """The instruction and worked examples come first and are the same bytes for every item, so an endpoint's
    prefix cache serves all of it: the requests of two items differ from the first byte of the item on."""
    template = DEFAULT_TEMPLATES[config]
    first, second = (json.dumps(ModelSettings("m").body(template.messages(text)), ensure_ascii=False)
                     for text in ("Sound of Dog: [0.0s-1.0s]", "Music description: a slow waltz"))
    shared = os.path.commonprefix([first, second])
    item_starts = first.rindex("Sound of Dog")
    assert len(shared) == item_starts, (shared[-80:], first[item_starts - 40:item_starts + 20])
    assert shared.endswith(f'"content": "Example {len(template.examples) + 1}:\\n')


def test_the_report_costs_cached_prompt_tokens_as_the_server_bills_them(tmp_path: Path, server: OpenAIServer,
                                                                         sources: dict) -> None:
    report = generate(options(tmp_path, server, sources, descriptors="llm"))
    data = report.to_dict()
    journal = [json.loads(line) for line in (tmp_path / "out" / JOURNAL_NAME).read_text().splitlines()]
    cached = sum(entry["usage"]["cached_prompt_tokens"] for entry in journal)
    assert report.complete and server.repeated == 0 and len(server.usages) == len(journal)
    assert data["usage"]["cached_prompt_tokens"] == cached == sum(c for _, c, _ in server.usages)
    # most of each prompt is the shared prefix: every request after a config's first reads it from the cache
    assert cached > data["usage"]["prompt_tokens"] / 2
    assert data["cost_usd"] == float(server.bill(3.0, 1.0, 12.0)) == data["this_run"]["cost_usd"]
    assert data["cost_usd"] < float(server.bill(3.0, 3.0, 12.0))  # what it would cost without the discount
    assert data["prices_per_million"] == {"input": 3.0, "output": 12.0, "cached_input": 1.0,
                                          "batch_discount": 0.5}
    parts = [*(s["cost_usd"] for s in data["splits"].values()), data["descriptors"]["cost_usd"]]
    assert sum(parts) == pytest.approx(data["cost_usd"], abs=1e-6)
    markdown = (tmp_path / "out" / "generation_report.md").read_text()
    assert f"({cached:,} of them cached)" in markdown and "$1/M cached in" in markdown
    # Without --price-cached-in, cached tokens cost what the others do.
    undiscounted = generate(options(tmp_path, server, sources, descriptors="llm", price_cached_in=None)).to_dict()
    assert undiscounted["cost_usd"] == float(server.bill(3.0, 3.0, 12.0))
    assert undiscounted["prices_per_million"]["cached_input"] == 3.0


def journal(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / JOURNAL_NAME).read_text().splitlines()]


def test_dialogues_are_asked_for_their_json_schema_and_parsed_with_the_usual_checks(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    server.fault("T0006", "long")  # cut at max_tokens: no valid JSON, rejected even when structured
    report = generate(options(tmp_path, server, sources, descriptors="llm"))
    data = report.to_dict()
    entries = journal(tmp_path)
    dialogues = [e for e in entries if e["kind"] == "dialogue"]
    assert all(e["structured"] for e in dialogues) and not any(e["structured"] for e in entries if e not in dialogues)
    assert all(json.loads(e["text"])["turns"] for e in dialogues if e["finish_reason"] == "stop")
    assert len(server.response_formats) == len(dialogues) == 31  # descriptors are a phrase, asked as free text
    shapes = {f["json_schema"]["name"]: f["json_schema"]["schema"]["properties"]["turns"]
              for f in server.response_formats}
    assert {name: (s["minItems"], s["maxItems"]) for name, s in shapes.items()} == {
        "audioset_dialogue": (1, 4), "music_dialogue": (1, 4), "comparison_dialogue": (1, 1)}
    assert all(f["json_schema"]["strict"] for f in server.response_formats)
    answers = {name: split["answers"] for name, split in data["splits"].items()}
    assert sum(a["structured"]["rejected"] for a in answers.values()) == 1  # the one cut short
    assert all(a["structured"]["answered"] == split["stages"]["answered"] and a["free_text"]["answered"] == 0
               for a, split in zip(answers.values(), data["splits"].values(), strict=True))
    assert data["structured_outputs"] == {"mode": "auto", "refused": None}
    assert "| audioset_train | 12 | 1 | 0 | 0 |" in (tmp_path / "out" / "generation_report.md").read_text()


def test_a_refused_response_format_is_said_once_then_free_text_and_neither_paid_nor_a_failure(
        tmp_path: Path, server: OpenAIServer, sources: dict, capsys: pytest.CaptureFixture) -> None:
    """The first requests all go out at once and are all refused, in both spellings: as many as stop a run whose
    endpoint never answered (``max(concurrency, 5)``), yet the run goes on, since the refusal is about the
    parameter (OpenAI's 400 for a model without structured outputs)."""
    server.refuse_response_format, server.latency_s = True, 0.3
    server.fault("Music description:", "no dialogue here")  # a free-text answer the parser rejects
    report = generate(options(tmp_path, server, sources, concurrency=8, progress=True))
    err = capsys.readouterr().err
    assert report.complete and not report.failed_requests and server.repeated == 0
    assert server.statuses["400"] == 16 == len(server.response_formats)  # the 8 first in flight, in 2 spellings
    assert err.count("the endpoint refuses response_format 'json_schema' (HTTP 400") == 1
    assert err.count("the endpoint refuses response_format 'json_object' (HTTP 400") == 1
    assert "asking for free text" in err
    entries = journal(tmp_path)
    assert len(entries) == 31 == len(server.usages) and not any(e["structured"] for e in entries)
    data = report.to_dict()
    assert "response_format" in data["structured_outputs"]["refused"]
    rejected = {name: split["answers"]["free_text"]["rejected"] for name, split in data["splits"].items()}
    assert sum(rejected.values()) == 1 and sum(s["answers"]["structured"]["answered"]
                                               for s in data["splits"].values()) == 0
    assert "structured outputs refused by the endpoint" in report.summary()


def test_llama_cpp_servers_get_the_schema_in_their_own_spelling(
        tmp_path: Path, server: OpenAIServer, sources: dict, capsys: pytest.CaptureFixture) -> None:
    """llama-cpp-python's server refuses the ``json_schema`` spelling with a 500 (not retried) and constrains its
    grammar to ``{"type": "json_object", "schema": ...}``: every dialogue is then asked that way (it went to
    free text before), said once, and the report records no refusal of structured outputs."""
    server.refuse_response_format, server.latency_s = "llama.cpp", 0.3
    server.fault("Music description:", "no dialogue here")
    report = generate(options(tmp_path, server, sources, concurrency=8, progress=True))
    err = capsys.readouterr().err
    assert report.complete and not report.failed_requests and server.repeated == 0
    assert server.statuses["500"] == 8  # only the first in flight, in the refused spelling
    assert err.count("the endpoint refuses response_format 'json_schema' (HTTP 500") == 1
    assert "asking with 'json_object'" in err and "free text" not in err
    entries = journal(tmp_path)
    dialogues = [e for e in entries if e["kind"] == "dialogue"]
    assert dialogues and all(e["structured"] and e["response_format"] == "json_object" for e in dialogues)
    assert not any(e["structured"] for e in entries if e["kind"] != "dialogue")
    assert {f["type"] for f in server.response_formats} == {"json_schema", "json_object"}
    data = report.to_dict()
    assert data["structured_outputs"]["refused"] is None
    assert sum(s["answers"]["structured"]["rejected"] for s in data["splits"].values()) == 1
    assert "structured outputs refused" not in report.summary()


def test_on_stops_at_a_refusal_and_the_journal_key_ignores_response_format(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    server.refuse_response_format = True
    with pytest.raises(GenerateError, match="--structured auto") as caught:
        generate(options(tmp_path, server, sources, structured="on", configs=("music",)))
    assert "response_format" in str(caught.value) and server.usages == []
    assert not (tmp_path / "out" / JOURNAL_NAME).exists() or journal(tmp_path) == []
    # Answers asked as free text are the same requests to the journal as structured ones: none is asked again.
    server.refuse_response_format = False
    generate(options(tmp_path, server, sources, structured="off", configs=("music",)))
    answered = server.stats()["answered_keys"]
    assert sorted(e["key"] for e in journal(tmp_path)) == answered and len(answered) == 6
    requests = server.requests
    again = generate(options(tmp_path, server, sources, structured="auto", configs=("music",)))
    assert server.requests == requests and again.complete


def test_the_dry_run_estimates_each_mode_and_the_cache_hits_a_caching_server_gives(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    printed: list[str] = []
    estimate = generate(options(tmp_path, server, sources, dry_run=True, show_prompts=0), out=printed.append)
    assert isinstance(estimate, dict) and server.requests == 0
    prompt, completion, cached = (estimate[k] for k in ("prompt_tokens", "completion_tokens", "cached_prompt_tokens"))
    synchronous = (prompt * 3.0 + completion * 12.0) / 1e6
    assert estimate["cost_usd"] == round(synchronous, 4)
    assert estimate["cost_usd_batch"] == round(synchronous / 2, 4)
    assert estimate["cost_usd_cached"] == round(((prompt - cached) * 3.0 + cached * 1.0 + completion * 12.0) / 1e6, 4)
    assert estimate["cost_usd_cached"] < estimate["cost_usd"]
    assert estimate["cost_usd_batch_max"] < estimate["cost_usd_max"]
    text = "\n".join(printed)
    for line in ("  synchronous: ~$", "  batch (50% of synchronous): ~$",
                 "  synchronous with the expected cache hits: ~$",
                 f"prompt tokens a prefix cache would serve: ~{cached:,}", "$1/M cached in"):
        assert line in text, text
    # The shared prefix after each subset's first request is what a prefix-caching endpoint serves from its cache.
    served = generate(options(tmp_path, server, sources)).to_dict()["usage"]["cached_prompt_tokens"]
    assert abs(served - cached) <= 0.05 * cached, (served, cached)
