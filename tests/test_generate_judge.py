"""``generate --judge-model``: a model scores each dialogue on the rubric, through the real client and HTTP.

tests/openai_server.py answers the judge's requests with scores computed from the dialogue (see its
``judge_scores``): answers about something the recording does not hold score low, answers giving seconds
score 1 on ``no_timestamps``; a queued fault makes it reply without scores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from audio_dialogues.cli import main
from audio_dialogues.generate import generate
from audio_dialogues.generate.judge import NO_SCORE
from audio_dialogues.llm.journal import JOURNAL_NAME
from audio_dialogues.llm.judge import JudgeEndpoint
from tests.generate_sources import write_sources
from tests.openai_server import OpenAIServer
from tests.test_generate_run import cli, journal_lines, kill_when, options


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


def turns(*answers: str) -> str:
    return "\n".join(json.dumps({"user": f"Question {k}?", "assistant": a}) for k, a in enumerate(answers))


def test_the_judge_drops_low_scores_and_replies_without_scores_and_keeps_its_scores_in_meta(
        tmp_path: Path, server: OpenAIServer) -> None:
    sources = write_sources(tmp_path / "src", music=12)
    server.fault("number 4 ", turns("A helicopter hovers while a chainsaw cuts wood in a forest."))
    server.fault("number 7 ", turns("A calm piano piece with soft chords, from 2.5 s to 7 s."))
    server.fault("number 8 ", turns("A calm piano piece with soft chords, marked for the judge."))
    server.fault("marked for the judge", "I would rather not score this dialogue.")
    judge = JudgeEndpoint(model="judge-m", base_url=server.base_url, price_in=3.0, price_out=5.0)
    lines: list[str] = []
    report = generate(options(tmp_path, server, sources, configs=("music",), embedder="none", judge=judge,
                              judge_threshold=3.0), out=lines.append)
    data = report.to_dict()
    train = data["splits"]["music_train"]
    assert train["stages"]["near_duplicates"] == 8 and train["stages"]["judge"] == 6
    assert train["rejects"] == {"judge's mean score below 3": 1, NO_SCORE: 1}
    assert "8 near_duplicates -> 6 judge" in "\n".join(lines)
    records = {r["meta"]["caption"]: r for r in map(json.loads, (tmp_path / "out" / "music_train.jsonl").open())}
    assert len(records) == 6 and not any("number 4 " in c or "number 8 " in c for c in records)
    scores = {c: r["meta"]["generation"]["judge"] for c, r in records.items()}
    assert all(set(s) == {"faithful", "no_timestamps", "refers_back", "specific", "mean"} for s in scores.values())
    timestamped = next(s for c, s in scores.items() if "number 7 " in c)
    assert timestamped["no_timestamps"] == 1 and all(s["no_timestamps"] == 5 for s in scores.values()
                                                     if s is not timestamped)
    assert min(s["mean"] for s in scores.values()) >= 3.0
    assert train["judge_score"]["count"] == 6
    # Costed at the judge's prices from the journal, apart from the generator's, and added to the total.
    entries = [json.loads(line) for line in (tmp_path / "out" / JOURNAL_NAME).open()]
    judged = [e for e in entries if e["kind"] == "judge"]
    assert len(judged) == 12 == data["judge"]["requests_sent"]  # every dialogue that reached the judge, once
    names = ("prompt_tokens", "completion_tokens", "cached_prompt_tokens")
    tokens = [sum(e["usage"][k] for e in judged) for k in names]
    assert data["judge"]["usage"] == dict(zip(names, tokens, strict=True))
    assert tokens[2] > 0  # the server serves the rubric from its prompt cache; billed here at --judge-price-in
    assert data["judge"]["cost_usd"] == pytest.approx((tokens[0] * 3.0 + tokens[1] * 5.0) / 1e6, abs=1e-6)
    generator = (data["usage"]["prompt_tokens"] * 1.0 + data["usage"]["completion_tokens"] * 2.0) / 1e6
    assert data["cost_usd"] == pytest.approx(generator + data["judge"]["cost_usd"], abs=1e-6)
    assert data["this_run"]["cost_usd"] == pytest.approx(data["cost_usd"], abs=1e-6)  # the judge paid here too
    assert data["unused_answers"]["answers"] == 0 and data["settings"]["judge"]["model"] == "judge-m"
    # A re-run asks nothing: the judge's replies, with or without scores, are journaled.
    before = server.requests
    again = generate(options(tmp_path, server, sources, configs=("music",), embedder="none", judge=judge))
    assert server.requests == before and again.to_dict()["splits"]["music_train"]["stages"]["judge"] == 6
    # A stricter threshold re-judges nothing either: it reads the journaled scores.
    strict = generate(options(tmp_path, server, sources, configs=("music",), embedder="none", judge=judge,
                              judge_threshold=4.5))
    assert server.requests == before and strict.to_dict()["splits"]["music_train"]["stages"]["judge"] < 6
    assert strict.to_dict()["this_run"]["cost_usd"] == 0
    # Without a judge, its replies are listed apart, not priced as the generator's answers.
    plain = generate(options(tmp_path, server, sources, configs=("music",), embedder="none")).to_dict()
    assert plain["unused_judge_replies"]["replies"] == 12 and plain["unused_judge_replies"]["cost_usd"] is None
    assert plain["unused_answers"]["answers"] == 0 and plain["cost_usd"] == pytest.approx(generator, abs=1e-6)


def test_a_dry_run_estimates_the_judge_and_counts_what_it_already_judged(tmp_path: Path, server: OpenAIServer,
                                                                        capsys: pytest.CaptureFixture) -> None:
    sources = write_sources(tmp_path / "src")
    args = [*cli(tmp_path / "out", server, sources, "--quiet", "--judge-model", "j", "--judge-base-url",
                 server.base_url, "--judge-price-in", "1000000", "--judge-price-out", "0")[3:]]
    assert main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "judge j: at most 16 requests" in printed and server.requests == 0
    assert main(args) == 0  # every dialogue answered and judged
    assert main([*args, "--dry-run"]) == 0
    assert "judge j: at most 0 requests" in capsys.readouterr().out
    estimate = re.search(r"judge j: .*prompt tokens ~([\d,]+).*cost at most \$([\d,.]+)", printed)
    assert estimate is not None, printed
    tokens, cost = (float(x.replace(",", "")) for x in estimate.groups())
    assert tokens > 16 * 150  # a judge prompt holds the instruction (over 150 tokens) and a dialogue
    assert cost == pytest.approx(tokens, rel=0.01)  # $1,000,000 per million prompt tokens, completions free


def test_the_judge_options_are_checked_and_spelled_like_evaluates(tmp_path: Path, server: OpenAIServer,
                                                                   capsys: pytest.CaptureFixture) -> None:
    sources = write_sources(tmp_path / "src")
    base = cli(tmp_path / "out", server, sources)[3:]
    with pytest.raises(SystemExit):
        main([*base, "--judge-base-url", server.base_url])
    assert "--judge-base-url needs --judge-model" in capsys.readouterr().err
    assert main([*base, "--judge-model", "j"]) == 2
    assert "--judge-model needs --judge-base-url" in capsys.readouterr().err
    judged = [*base, "--judge-model", "j", "--judge-base-url", server.base_url]
    assert main([*judged, "--batch-write", str(tmp_path / "requests")]) == 1
    assert "the offline form (--batch-write, --batch-ingest) calls no model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*judged, "--judge-threshold", "6"])
    assert "--judge-threshold" in capsys.readouterr().err
    assert server.requests == 0


def test_sigkill_while_judging_then_resume_pays_no_judge_twice(tmp_path: Path, server: OpenAIServer) -> None:
    sources = write_sources(tmp_path / "src")
    out = tmp_path / "out"
    command = cli(out, server, sources, "--concurrency", "3", "--quiet", "--judge-model", "j",
                  "--judge-base-url", server.base_url, "--judge-concurrency", "3")
    server.hold_after = 16 + 5  # the 16 dialogues, five judge replies, then requests stay in flight
    kill_when(command, lambda: journal_lines(out) >= 21 and server.in_flight >= 3)
    assert journal_lines(out) == 21
    server.hold_after = None
    assert main(command[3:]) == 0
    assert server.repeated == 0 and len(server.answered) == 32 and set(server.answered.values()) == {1}
    report = json.loads((out / "generation_report.json").read_text())
    # The stand-in generator reads the events' time spans aloud: the judge drops every one of them.
    assert report["complete"] and report["splits"]["audioset_train"]["stages"]["judge"] == 0
    assert report["splits"]["audioset_train"]["rejects"] == {"judge's mean score below 3": 12}


@pytest.mark.parametrize(("refusal", "form", "status"),
                         [(False, "json_schema", None), ("llama.cpp", "json_object", "500"), (True, None, "400")])
def test_the_judge_asks_for_its_scores_schema_in_the_spelling_the_endpoint_takes(
        tmp_path: Path, server: OpenAIServer, capsys: pytest.CaptureFixture, refusal: bool | str, form: str | None,
        status: str | None) -> None:
    """OpenAI's and vLLM's json_schema first; llama-cpp-python's server refuses it (500) and takes its own
    json_object spelling; an endpoint refusing both is asked for free text. Each refusal is said once, and a
    refused request is neither journaled nor paid."""
    sources = write_sources(tmp_path / "src", music=12)
    server.refuse_response_format, server.latency_s = refusal, 0.2
    judge = JudgeEndpoint(model="judge-m", base_url=server.base_url)
    report = generate(options(tmp_path, server, sources, configs=("music",), embedder="none", judge=judge,
                              structured="off", progress=True))
    err = capsys.readouterr().err
    judged = [e for e in map(json.loads, (tmp_path / "out" / JOURNAL_NAME).open()) if e["kind"] == "judge"]
    assert report.complete and server.repeated == 0 and len(judged) == 12
    assert {e["response_format"] for e in judged} == {form} and all(e["scores"] for e in judged)
    asked = [rf["type"] for rf in server.response_formats]
    refused = server.statuses[status] if status else 0
    assert refused == len(asked) - (12 if form else 0) and asked.count(form or "-") == (12 if form else 0)
    assert 0 < asked.count("json_schema") <= (12 if form == "json_schema" else 8)  # 8 in flight at once, refused
    assert err.count("the endpoint refuses response_format 'json_schema'") == (status is not None)
    assert err.count("the endpoint refuses response_format 'json_object'") == (status == "400")
