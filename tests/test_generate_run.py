"""``generate`` end to end through the real ``openai`` client and real HTTP.

Hosted LLMs cannot be reached from tests, so ``tests/openai_server.py`` (aiohttp on 127.0.0.1) speaks the
chat-completions and embeddings protocol with deterministic answers, injected faults and counters of what
it was asked. Runs use the server's embeddings (``openai:`` embedder) because they are instant; the
offline default embedder has its own test.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest

import audio_dialogues
from audio_dialogues.cli import main
from audio_dialogues.generate import GenerateError, GenerateOptions, generate
from audio_dialogues.generate.prompts import DEFAULT_TEMPLATES
from audio_dialogues.llm.journal import JOURNAL_NAME, OutputLock
from tests.generate_sources import write_sources
from tests.openai_server import OpenAIServer
from tests.tools import needs_unshare

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def sources(tmp_path: Path) -> dict:
    return write_sources(tmp_path / "src")


def options(tmp_path: Path, server: OpenAIServer, sources: dict, **overrides) -> GenerateOptions:
    values = dict(output_dir=tmp_path / "out", model="test-model", base_url=server.base_url, embedder="openai:emb",
                  comparison_groups={"train": 6, "test": 3}, backoff_s=0.01, progress=False, seed=3,
                  similarity_threshold=0.0, price_in=1.0, price_out=2.0,
                  similarity_test="absolute", near_duplicate_threshold=0.0)
    values.update(overrides)
    return GenerateOptions(**{**values, **sources})


def journal_lines(folder: Path) -> int:
    path = folder / JOURNAL_NAME
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def kill_when(command: list[str], ready: Callable[[], bool], timeout_s: float = 90) -> None:
    """Start ``command``, SIGKILL it once ``ready()`` holds (it must not end first), and reap it."""
    proc = subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def cli(out: Path, server: OpenAIServer, sources: dict, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "audio_dialogues.cli", "generate", "--output-dir", str(out), "--model", "m",
            "--base-url", server.base_url, "--embedder", "none", "--config", "audioset",
            "--near-duplicate-threshold", "0"]
    for path in sources["strong_labels"]:
        args += ["--strong-labels", path]
    return args + ["--ontology", sources["ontology"][0], *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test-secret"}


def test_outputs_load_through_the_builder_with_provenance(tmp_path: Path, server: OpenAIServer, sources: dict,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-secret")
    report = generate(options(tmp_path, server, sources, api_key_env="MY_LLM_KEY"))
    assert server.authorization == "Bearer sk-test-secret"  # the named variable reached the endpoint...
    out = tmp_path / "out"
    assert report.complete and server.repeated == 0
    expected = {"audioset_train": 12, "audioset_test": 4, "music_train": 4, "music_test": 2,
                "comparison_train": 6, "comparison_test": 3}
    assert sorted(report.outputs) == sorted(f"{name}.jsonl" for name in expected)
    data = json.loads((out / "generation_report.json").read_text())
    for name, n in expected.items():
        split = data["splits"][name]
        assert split["stages"] == dict.fromkeys(split["stages"], n)
        assert split["turns_histogram"] == ({"1": n} if name.startswith("comparison") else {"4": n})
        assert split["usage"]["prompt_tokens"] > 0
    assert data["splits"]["audioset_train"]["paper"] == 76_642
    assert data["package_version"] == audio_dialogues.__version__  # the published card's provenance names it
    assert data["usage"]["prompt_tokens"] == report.this_run.prompt_tokens
    expected_cost = (data["usage"]["prompt_tokens"] * 1.0 + data["usage"]["completion_tokens"] * 2.0) / 1e6
    assert data["cost_usd"] == pytest.approx(expected_cost, abs=1e-6)
    markdown = (out / "generation_report.md").read_text()
    assert "| audioset_train | 12 | 12 | 12 | 12 | 12 | 12 | 12 | 76,642 |" in markdown
    assert "sk-test-secret" not in "".join(p.read_text() for p in out.iterdir() if p.is_file())  # ...and no file

    record = json.loads((out / "audioset_train.jsonl").read_text().splitlines()[0])
    provenance = record["meta"]["generation"]
    assert provenance["model"] == "test-model" and provenance["seed"] == 3
    assert provenance["prompt_hash"] == DEFAULT_TEMPLATES["audioset"].digest
    assert provenance["temperature"] == 1.0 and provenance["max_tokens"] == 1024
    assert isinstance(provenance["similarity"], float)

    cache = tmp_path / "hf"
    for config, n_train, n_test in (("audioset", 12, 4), ("music", 4, 2), ("comparison", 6, 3)):
        ds = datasets.load_dataset("audio_dialogues", config, data_dir=str(out), missing_audio="keep",
                                   cache_dir=str(cache), trust_remote_code=None)
        assert (ds["train"].num_rows, ds["test"].num_rows) == (n_train, n_test)
        row = ds["train"][0]
        assert row["turns"][0]["user"] and row["turns"][0]["assistant"]
    assert ds["train"][0]["clips"][0]["ytid"]
    music = datasets.load_dataset("audio_dialogues", "music", data_dir=str(out), missing_audio="keep",
                                  cache_dir=str(cache))
    assert music["test"][0]["caption"].startswith("A calm piano piece")

    # A second run finds every answer in the journal: nothing is sent, the outputs are the same.
    before = server.requests
    first = (out / "comparison_train.jsonl").read_text()
    again = generate(options(tmp_path, server, sources))
    assert server.requests == before and again.this_run.prompt_tokens == 0
    assert (out / "comparison_train.jsonl").read_text() == first


def test_faults_are_retried_or_kept_with_a_reason_and_never_paid_twice(tmp_path: Path, server: OpenAIServer,
                                                                      sources: dict) -> None:
    server.retry_after_s = 0.4
    server.fault("T0000", "429", "429")
    server.fault("T0001", "500")
    server.fault("T0002", "timeout")
    server.fault("T0003", "drop")
    server.fault("T0004", "empty")
    server.fault("T0005", "malformed")
    server.fault("T0006", "long")
    started = time.perf_counter()
    report = generate(options(tmp_path, server, sources, configs=("audioset",), timeout_s=1.5))
    assert report.complete
    client = report.client
    reasons = client["retry_reasons"]
    assert client["retries"] == 5 and reasons["HTTP 429"] == 2 and reasons["HTTP 500"] == 1
    # The transport names them: a timeout, and the dropped connection (aiohttp: ServerDisconnectedError).
    assert any(r.startswith("timeout (") and "Disconnect" not in r for r in reasons)
    assert any("Disconnect" in r or "RemoteProtocol" in r for r in reasons), reasons
    assert client["backoff_waited_s"] >= 0.8 and time.perf_counter() - started >= 0.8  # Retry-After honoured
    train = report.to_dict()["splits"]["audioset_train"]
    assert train["stages"]["answered"] == 12 and train["stages"]["parsed"] == 9
    assert train["rejects"] == {"empty completion": 1, "truncated at max_tokens": 1,
                                "no dialogue found (neither JSON turns nor a User:/Assistant: transcript)": 1}
    journal = [json.loads(line) for line in (tmp_path / "out" / JOURNAL_NAME).read_text().splitlines()]
    rejected = {e["name"][:5]: e for e in journal if e["reject"]}
    assert set(rejected) == {"T0004", "T0005", "T0006"}
    assert rejected["T0005"]["text"].startswith("Sure! Here is") and rejected["T0005"]["parsed"] is None
    assert server.repeated == 0
    before = server.requests
    generate(options(tmp_path, server, sources, configs=("audioset",)))
    assert server.requests == before  # rejected answers were paid for: they are not asked again


def test_the_configured_concurrency_is_reached(tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    server.latency_s = 0.25
    generate(options(tmp_path, server, sources, configs=("audioset",), concurrency=8, embedder="none"))
    assert server.max_in_flight == 8 and server.requests == 16


def test_a_run_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, server: OpenAIServer,
                                                          sources: dict) -> None:
    """generate freezes its items and journal out of the collector's sight and widens the young generation
    while it sends; the process it runs in (a notebook, a caller's program) gets its collector back, and no
    parsed answer stays cached after a run or a dry run."""
    from audio_dialogues.generate.run import _judge
    from audio_dialogues.llm.judge import JudgeEndpoint

    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    generate(options(tmp_path, server, sources, configs=("audioset",), embedder="none"))
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen) and _judge.cache_info().currsize == 0
    judge = JudgeEndpoint(model="j", base_url=server.base_url)  # its estimate parses the journaled dialogues
    assert generate(options(tmp_path, server, sources, configs=("audioset",), dry_run=True,
                            judge=judge))["already_answered"] == 16
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen) and _judge.cache_info().currsize == 0
    gc.freeze()  # a caller that froze its own objects keeps them frozen (the run unfroze them all before)
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        generate(options(tmp_path, server, sources, configs=("audioset",), embedder="none"))
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_filters_are_counted_stages(tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    same = json.dumps({"user": "What is this?", "assistant": "The sound of speech and of a dog, with some rain."})
    server.fault("T0000", json.dumps({"user": "Who?", "assistant": "Based on the events, a dog."}))
    server.fault("T0001", json.dumps({"user": "Colour?", "assistant": "Purple elephants dance quietly."}))
    server.fault("T0002", same)
    server.fault("T0003", same)
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("# extra phrases\nwith some rain\n")
    report = generate(options(tmp_path, server, sources, configs=("audioset",), similarity_threshold=0.2))
    train = report.to_dict()["splits"]["audioset_train"]
    assert train["stages"] == {"items": 12, "answered": 12, "parsed": 12, "phrases": 11, "similarity": 10,
                               "duplicates": 9, "near_duplicates": 9}
    assert train["rejects"] == {"low-confidence phrase 'based on'": 1, "similarity below 0.2": 1,
                                "exact duplicate of an earlier dialogue": 1}
    assert train["turns_histogram"] == {"1": 1, "4": 8}
    # A user list extends the defaults (or replaces them); filters re-run from the journal without requests.
    before = server.requests
    report = generate(options(tmp_path, server, sources, configs=("audioset",), similarity_threshold=0.2,
                              phrases_file=str(phrases)))
    assert report.to_dict()["splits"]["audioset_train"]["rejects"]["low-confidence phrase 'with some rain'"] == 2
    report = generate(options(tmp_path, server, sources, configs=("audioset",), embedder="none",
                              phrases_file=str(phrases), replace_phrases=True))
    assert "low-confidence phrase 'based on'" not in report.to_dict()["splits"]["audioset_train"]["rejects"]
    assert server.requests == before


def test_sigkill_mid_run_then_resume_repeats_no_request(tmp_path: Path, server: OpenAIServer,
                                                        sources: dict) -> None:
    out = tmp_path / "out"
    server.hold_after = 6  # six answers, then requests stay in flight until the kill
    kill_when(cli(out, server, sources, "--concurrency", "3", "--quiet"),
              lambda: journal_lines(out) >= 6 and server.in_flight >= 3)
    assert journal_lines(out) == 6
    server.hold_after = None
    assert main(cli(out, server, sources, "--quiet")[3:]) == 0
    assert server.repeated == 0
    assert len(server.answered) == 16 and set(server.answered.values()) == {1}
    assert len((out / "audioset_train.jsonl").read_text().splitlines()) == 12


def test_ctrl_c_drains_in_flight_answers_and_prints_the_summary(tmp_path: Path, server: OpenAIServer,
                                                                sources: dict) -> None:
    out = tmp_path / "out"
    server.latency_s = 0.3
    proc = subprocess.Popen(cli(out, server, sources, "--concurrency", "2"), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while journal_lines(out) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "NOT COMPLETE" in stdout and "interrupted" in stdout and "stopping:" in stderr
    report = json.loads((out / "generation_report.json").read_text())
    assert report["interrupted"] and not report["complete"]
    assert journal_lines(out) == server.stats()["answered"]  # every answer that came back was kept
    server.latency_s = 0.0
    assert main(cli(out, server, sources, "--quiet")[3:]) == 0
    assert server.repeated == 0 and len(server.answered) == 16


def test_a_second_run_on_a_busy_folder_is_refused(tmp_path: Path, server: OpenAIServer, sources: dict,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):  # another run (another process in real life; the lock is per open file)
        assert main(cli(out, server, sources, "--quiet")[3:]) == 1
    err = capsys.readouterr().err
    assert "another `audio-dialogues generate` run is using this output folder" in err
    assert "Traceback" not in err and server.requests == 0


@pytest.mark.parametrize("limit", ["rpm", "tpm"])
def test_rate_limits_spread_the_requests(tmp_path: Path, server: OpenAIServer, sources: dict, limit: str) -> None:
    from audio_dialogues.llm.client import estimate_tokens

    first = DEFAULT_TEMPLATES["audioset"].messages("Sound of Dog: [0.25s-1.0s]")
    per_request = estimate_tokens(first) + 64  # prompt estimate + max_tokens, as hosted APIs count
    # 8 requests per second: the first second's bucket (8) goes at once, the other 8 follow over ~1 s.
    value = {"rpm": 480.0, "tpm": 480.0 * per_request}[limit]
    started = time.perf_counter()
    generate(options(tmp_path, server, sources, configs=("audioset",), embedder="none", concurrency=16,
                     max_tokens=64, **{limit: value}))
    elapsed = time.perf_counter() - started
    assert server.stats()["answered"] == 16
    span = server.last_answer_at - server.first_request_at
    assert span >= 0.7, span
    assert elapsed < 30


def test_llm_descriptors_are_asked_once_per_class_and_cached(tmp_path: Path, server: OpenAIServer,
                                                             sources: dict) -> None:
    out = tmp_path / "out"
    generate(options(tmp_path, server, sources, configs=("audioset",), descriptors="llm", embedder="none"))
    cache = json.loads((out / "descriptors.json").read_text())
    assert cache == dict.fromkeys(["Bell", "Dog", "Rain", "Siren", "Speech"], "soft, steady and mid-pitched")
    assert server.requests == 5 + 16
    record = json.loads((out / "audioset_train.jsonl").read_text().splitlines()[0])
    assert "Dog (soft, steady and mid-pitched)" in record["turns"][0]["assistant"]  # the prompt carried it
    (out / "descriptors.json").unlink()  # even without the cache file, the journal has every answer
    generate(options(tmp_path, server, sources, configs=("audioset",), descriptors="llm", embedder="none"))
    assert server.requests == 21 and json.loads((out / "descriptors.json").read_text()) == cache


@pytest.mark.parametrize(("text", "expected"), [
    ('{"Dog": "loud",\n  "Bell": }', "descriptors.json:2: malformed JSON"),
    ('["Dog"]', "descriptors.json: the descriptor cache is not a JSON object"),
])
def test_a_damaged_descriptor_cache_is_named_by_file_and_line_before_any_request(
        tmp_path: Path, server: OpenAIServer, sources: dict, text: str, expected: str) -> None:
    """Stand-in server; the cache beside the outputs is damaged: one error naming it and how to recover."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "descriptors.json").write_text(text)
    with pytest.raises(GenerateError) as caught:
        generate(options(tmp_path, server, sources, configs=("audioset",), descriptors="llm", embedder="none"))
    assert expected in str(caught.value) and "delete it" in str(caught.value), caught.value
    assert server.requests == 0


def test_a_bad_filter_option_fails_before_any_request(tmp_path: Path, server: OpenAIServer, sources: dict,
                                                      capsys: pytest.CaptureFixture) -> None:
    args = cli(tmp_path / "out", server, sources, "--quiet")[3:]
    assert main([*args, "--embedder", "sentence-transformers:/no/such/model"]) == 1
    assert main([*args, "--phrases-file", str(tmp_path / "missing.txt")]) == 1
    err = capsys.readouterr().err
    assert "/no/such/model: sentence-transformers model folder does not exist" in err
    assert "missing.txt: cannot read the phrases file" in err and "Traceback" not in err
    assert server.requests == 0


def test_the_total_covers_every_journaled_answer_descriptors_included(tmp_path: Path, server: OpenAIServer,
                                                                      sources: dict) -> None:
    """The total is the whole journal (dialogues, descriptors, answers no current item uses), on every run."""
    first = generate(options(tmp_path, server, sources, configs=("audioset",), descriptors="llm", embedder="none"))
    journal = [json.loads(line) for line in (tmp_path / "out" / JOURNAL_NAME).read_text().splitlines()]
    paid = {name: sum(e["usage"][name] for e in journal)
            for name in ("prompt_tokens", "completion_tokens", "cached_prompt_tokens")}
    described = [e for e in journal if e["kind"] == "descriptor"]
    assert len(described) == 5 and all(e["usage"]["prompt_tokens"] > 0 for e in described)
    data = first.to_dict()
    assert data["usage"] == paid == first.this_run.to_dict()  # this process paid for every answer there is
    assert data["cost_usd"] == data["this_run"]["cost_usd"] == pytest.approx(
        (paid["prompt_tokens"] * 1.0 + paid["completion_tokens"] * 2.0) / 1e6, abs=1e-6)
    assert data["descriptors"]["usage"]["prompt_tokens"] == sum(e["usage"]["prompt_tokens"] for e in described)
    # The re-run pays nothing and reports the same total, descriptors included (the cache file answers them).
    again = generate(options(tmp_path, server, sources, configs=("audioset",), descriptors="llm", embedder="none"))
    assert again.this_run.to_dict() == {"prompt_tokens": 0, "completion_tokens": 0, "cached_prompt_tokens": 0}
    assert again.to_dict()["usage"] == paid
    assert again.to_dict()["descriptors"]["usage"] == data["descriptors"]["usage"]
    # A smaller run over the same folder still counts what the folder cost, its unused answers shown apart.
    fewer = generate(options(tmp_path, server, sources, configs=("audioset",), descriptors="llm", limit=2,
                             embedder="none"))
    fewer_data = fewer.to_dict()
    unused = 5 + 16 - 4 - fewer_data["descriptors"]["classes"]
    assert fewer_data["usage"] == paid and fewer_data["unused_answers"]["answers"] == unused > 12
    parts = [*(s["usage"] for s in fewer_data["splits"].values()), fewer_data["descriptors"]["usage"],
             fewer_data["unused_answers"]["usage"]]
    assert sum(p["prompt_tokens"] for p in parts) == paid["prompt_tokens"]
    markdown = (tmp_path / "out" / "generation_report.md").read_text()
    assert f"| **total** | {paid['prompt_tokens']:,} |" in markdown and f"| unused answers ({unused}) |" in markdown
    assert server.requests == 5 + 16


def test_a_dry_run_counts_the_journaled_answers_and_writes_nothing(tmp_path: Path, server: OpenAIServer,
                                                                  sources: dict, capsys: pytest.CaptureFixture
                                                                  ) -> None:
    out = tmp_path / "out"
    args = cli(out, server, sources, "--quiet", "--descriptors", "llm")[3:]
    assert main([*args, "--dry-run"]) == 0
    assert "requests to send: 21 (already answered in the journal: 0)" in capsys.readouterr().out
    assert not out.exists()  # no folder, no lock, no journal
    assert main(args) == 0
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    (out / "descriptors.json").unlink()  # the journal still answers every class
    assert main([*args, "--dry-run"]) == 0
    assert "requests to send: 0 (already answered in the journal: 16)" in capsys.readouterr().out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == [
        entry for entry in before if entry[0] != "descriptors.json"]
    no_model = [a for a in args if a != "m" and a != "--model"]
    assert main([*no_model, "--dry-run"]) == 1
    assert "a dry run needs it too" in capsys.readouterr().err


# --- output folders that cannot be written: one clear error, exit 1, the journal intact -----------------------


def in_namespace(setup: str, cmd: list[str], after: str = "") -> subprocess.CompletedProcess:
    """Run ``cmd`` in a user and mount namespace (``unshare -rm``) after ``setup``; ``after`` runs there too."""
    script = f"set -e; {setup}; set +e; {shlex.join(cmd)}; rc=$?; {after or 'true'}; exit $rc"
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env(),
                          timeout=120, cwd=ROOT)


def test_an_output_dir_blocked_by_a_file_is_one_clear_error(tmp_path: Path, server: OpenAIServer, sources: dict,
                                                            capsys: pytest.CaptureFixture) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert main(cli(afile, server, sources, "--quiet")[3:]) == 1
    assert main(cli(afile / "sub", server, sources, "--quiet")[3:]) == 1
    err = capsys.readouterr().err
    assert f"{afile}: the output folder is a file, not a folder" in err
    assert f"{afile / 'sub'}: a file stands where a folder should be" in err
    assert "Traceback" not in err and server.requests == 0 and afile.read_text() == "not a folder"


@needs_unshare
def test_a_read_only_output_dir_is_named_and_a_dry_run_still_works(tmp_path: Path, server: OpenAIServer,
                                                                   sources: dict) -> None:
    """A read-only bind mount (EROFS, as a real read-only file system gives) over the outputs' parent."""
    ro = tmp_path / "ro"
    (ro / "existing").mkdir(parents=True)
    mount = f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro}"
    for out in (ro / "new", ro / "existing"):
        done = in_namespace(mount, cli(out, server, sources, "--quiet"))
        assert done.returncode == 1, done.stdout + done.stderr
        assert "the file system is read-only" in done.stderr and str(out) in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
        dry = in_namespace(mount, cli(out, server, sources, "--quiet", "--dry-run"))
        assert dry.returncode == 0 and "requests to send: 16" in dry.stdout, dry.stderr
    assert server.requests == 0 and sorted(p.name for p in ro.iterdir()) == ["existing"]


@needs_unshare
def test_a_full_disk_stops_the_run_with_the_journal_intact_and_the_re_run_resumes(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    """A 12 kB tmpfs (really full: ENOSPC, short writes) holds a few answers; the run must stop cleanly there."""
    out, kept = tmp_path / "out", tmp_path / "kept"
    out.mkdir()
    kept.mkdir()
    done = in_namespace(f"mount -t tmpfs -o size=12k tmpfs {out}", cli(out, server, sources, "--concurrency", "1"),
                        after=f"cp -a {out}/. {kept}/")  # the tmpfs goes away with the namespace
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{out / JOURNAL_NAME}: the disk is full" in done.stderr and "run the same command again" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = (kept / JOURNAL_NAME).read_bytes().splitlines(keepends=True)
    assert 0 < len(lines) < 16 and all(line.endswith(b"\n") and json.loads(line) for line in lines)
    answered = server.stats()["answered"]
    assert main(cli(kept, server, sources, "--quiet")[3:]) == 0  # resumes where the disk filled up
    assert server.repeated == answered - len(lines) and len(server.answered) == 16  # only the unjournaled one
    assert len((kept / "audioset_train.jsonl").read_text().splitlines()) == 12


def test_music_rows_with_an_empty_caption_or_repeated_are_counted_as_not_built(
        tmp_path: Path, server: OpenAIServer, sources: dict, capsys: pytest.CaptureFixture) -> None:
    csv_path = Path(sources["musiccaps_csv"][0])
    rows = csv_path.read_text().splitlines()
    rows += [rows[2], rows[2], rows[1],  # M0001 (train) twice more, M0000 (test) once more
             "Mempty0000x,0,10,/m/04rlf,\"['quiet']\",\"  \",0,False,False",
             "Mempty0001x,0,10,/m/04rlf,\"[]\",,0,False,True"]
    csv_path.write_text("\n".join(rows) + "\n")
    report = generate(options(tmp_path, server, sources, configs=("music",), embedder="none"), out=print)
    splits = report.to_dict()["splits"]
    empty, repeated = ("empty caption (nothing to describe)",
                       "duplicate row (the same clip listed again; built once)")
    assert splits["music_train"]["not_built"] == {repeated: 2, empty: 1}
    assert splits["music_test"]["not_built"] == {empty: 1, repeated: 1}
    assert splits["music_train"]["stages"]["items"] == 4 and splits["music_test"]["stages"]["items"] == 2
    summary = capsys.readouterr().out
    assert f"music_train: 4 items -> 4 answered -> 4 parsed -> 4 phrases -> 4 similarity -> 4 duplicates -> " \
        f"4 near_duplicates (paper 3,358); source rows not built: 2 x {repeated}, " \
           f"1 x {empty}" in summary
    markdown = (tmp_path / "out" / "generation_report.md").read_text()
    assert f"## Source rows not built into items\n\n- music_test: 1 x {empty}" in markdown


def test_ctrl_c_while_scoring_keeps_the_scores_and_writes_the_outputs(tmp_path: Path, server: OpenAIServer) -> None:
    """A slow embedder (each embeddings request of the stand-in server takes 0.4 s): SIGINT once some batches
    are scored stops after the batch in progress; what is scored is cached, written and reported."""
    sources = write_sources(tmp_path / "src", train=100, test=4)
    out = tmp_path / "out"
    server.embedding_latency_s = 0.4
    args = [*cli(out, server, sources, "--concurrency", "8"), "--embedder", "openai:emb",
            "--similarity-threshold", "0", "--similarity-test", "absolute"]
    cache = out / "similarity_cache.jsonl"
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while journal_lines(cache.parent) < 104 or not cache.exists() or not cache.read_bytes().count(b"\n"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopping: finishing the batch being scored" in stderr and "Traceback" not in stderr
    assert "NOT COMPLETE" in stdout and "dialogues not yet scored (interrupted)" in stdout
    assert ("audioset_test: 4 items -> 4 answered -> 4 parsed -> 4 phrases -> 0 similarity -> 0 duplicates -> "
            "0 near_duplicates (paper 1,442); 4 not yet scored") in stdout
    scored = [json.loads(line) for line in cache.read_text().splitlines()]
    assert 0 < len(scored) < 100 and len(scored) % 32 == 0  # whole batches, each cached when it was done
    report = json.loads((out / "generation_report.json").read_text())
    train = report["splits"]["audioset_train"]
    assert report["interrupted"] and train["unscored"] == 100 - len(scored)
    assert report["splits"]["audioset_test"]["unscored"] == 4  # the split after the interrupt is not scored
    assert len((out / "audioset_train.jsonl").read_text().splitlines()) == len(scored) == train["stages"]["duplicates"]
    # The re-run scores only the rest (at most two texts per pair: a text repeated in a batch is embedded once).
    server.embedding_latency_s = 0.0
    before = server.embedded_texts
    assert main(args[3:] + ["--quiet"]) == 0
    assert 0 < server.embedded_texts - before <= 2 * (104 - len(scored)) and server.repeated == 0
    assert len(cache.read_text().splitlines()) == 104
    assert len((out / "audioset_train.jsonl").read_text().splitlines()) == 100


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["wrong key", "no key", "no /v1", "no server", "unknown host"])
def test_an_unusable_endpoint_stops_at_once_naming_the_fix_and_the_rerun_resumes(
        tmp_path: Path, server: OpenAIServer, sources: dict, case: str, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Real client, real HTTP: the stand-in server (401 for a wrong key, 404 off /v1), a closed port on
    127.0.0.1 and a ``.invalid`` host (reserved, never resolves). Three answers are journaled first; the
    broken run stops after the first attempts with one paragraph and exit 1, keeps them, and once the
    cause is fixed the same command resumes without asking any answer twice."""
    out = tmp_path / "out"
    args = cli(out, server, sources, "--quiet", "--concurrency", "3")[3:]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-right")
    server.api_key = "sk-right"
    assert main([*args, "--limit", "3"]) == 0  # answers for three items per split
    journaled = journal_lines(out)
    assert journaled == 6
    broken = {"wrong key": [], "no key": [], "no /v1": ["--base-url", server.base_url[: -len("/v1")]],
              "no server": ["--base-url", f"http://127.0.0.1:{closed_port()}/v1"],
              "unknown host": ["--base-url", "http://audio-dialogues-test.invalid/v1"]}[case]
    if case == "wrong key":
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    elif case == "no key":
        monkeypatch.delenv("OPENAI_API_KEY")
    capsys.readouterr()
    before = server.requests
    started = time.perf_counter()
    assert main([*args, *broken]) == 1
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    expected = {"wrong key": ("HTTP 401: Incorrect API key", "OPENAI_API_KEY is set", "--api-key-env"),
                "no key": ("HTTP 401", "OPENAI_API_KEY is not set"),
                "no /v1": ("HTTP 404", "/v1"),
                "no server": ("connection refused", "start the server"),
                "unknown host": ("host name not resolved", "does not resolve")}[case]
    for fragment in (*expected, "stopped: the endpoint", "cannot serve this run", "the first 5 attempts"):
        assert fragment in err, err
    assert "Traceback" not in err and "run the same command again" not in err
    assert len(err.strip().splitlines()) == 1 and elapsed < 20
    # At most the attempts the check needs, plus what the other workers had already sent.
    assert server.requests - before <= (5 + 2 if case in ("wrong key", "no key", "no /v1") else 0)
    assert journal_lines(out) == journaled
    monkeypatch.setenv("OPENAI_API_KEY", "sk-right")
    assert main(args) == 0
    assert server.repeated == 0 and len(server.answered) == 16


def test_a_small_run_whose_every_attempt_is_refused_says_why(tmp_path: Path, server: OpenAIServer, sources: dict,
                                                             capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in server asking for a key: two items, fewer attempts than the watch waits for, both 401."""
    server.api_key = "sk-right"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    assert main([*cli(tmp_path / "out", server, sources, "--quiet", "--limit", "1")[3:]]) == 1
    err = capsys.readouterr().err
    assert "the first 2 attempts all failed with HTTP 401" in err and "OPENAI_API_KEY is set" in err
    assert server.requests == 2


def test_the_summary_of_an_incomplete_run_names_its_failure_reasons(tmp_path: Path, server: OpenAIServer,
                                                                    sources: dict) -> None:
    """Stand-in server: two items answer 500 until their attempts run out, after other items were answered."""
    server.fault("T0003", "500", "500")
    server.fault("T0007", "500", "500")
    printed: list[str] = []
    report = generate(options(tmp_path, server, sources, configs=("audioset",), embedder="none", max_attempts=2,
                              concurrency=1), out=printed.append)
    assert not report.complete and report.failed_requests == {"HTTP 500 after 2 attempts": 2}
    summary = "\n".join(printed)
    assert "NOT COMPLETE: 2 requests pending, 2 failed (2 x HTTP 500 after 2 attempts)" in summary, summary


@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no usage"])
def test_refusals_after_an_answered_phase_are_counted_not_blamed_on_the_endpoint(
        tmp_path: Path, server: OpenAIServer, sources: dict, usage: bool) -> None:
    """Stand-in server: the descriptor requests are answered, then every dialogue request gets a 400.

    The endpoint has shown that it works, so the run does not stop as unusable: each item fails on its own
    and the summary names the reason. Answers show it, not token counts: a server that reports no usage
    has shown it just as well."""
    server.report_usage = usage
    server.fault("dialogue:", *["400"] * 16)
    printed: list[str] = []
    report = generate(options(tmp_path, server, sources, configs=("audioset",), descriptors="llm", embedder="none",
                              concurrency=2), out=printed.append)
    assert report.failed_requests == {"HTTP 400: refused with 400": 16} and server.requests == 5 + 16
    assert "16 failed (16 x HTTP 400: refused with 400)" in "\n".join(printed)


def test_items_refused_again_on_the_rerun_are_counted_and_the_outputs_rewritten(
        tmp_path: Path, server: OpenAIServer, sources: dict, capsys: pytest.CaptureFixture) -> None:
    """Real ``openai`` client against the stand-in server, through the CLI: two of the 16 items get HTTP 400
    (a request the server refuses for that item) on every attempt. The first run answers 14 and reports two
    failed; the re-run sends only those two, refused again. The journal holds this endpoint's answers for
    this model, so they are counted as failed requests and the outputs and report written again, instead of
    stopping the run as an unusable endpoint (which would leave it forever incomplete)."""
    out = tmp_path / "out"
    args = cli(out, server, sources, "--quiet")[3:]
    server.fault("T0003", "400", "400")  # one per run: a 400 is not retried
    server.fault("E0001", "400", "400")
    assert main(args) == 1  # incomplete
    first = json.loads((out / "generation_report.json").read_text())
    assert first["failed_requests"] == {"HTTP 400: refused with 400": 2} and first["pending_requests"] == 2
    for name in ("generation_report.json", "generation_report.md", "audioset_train.jsonl", "audioset_test.jsonl"):
        (out / name).unlink()
    capsys.readouterr()
    before = server.requests
    assert main(args) == 1
    captured = capsys.readouterr()
    assert server.requests - before == 2  # a 400 is not retried, and the 14 answers are not asked again
    assert "cannot serve this run" not in captured.err and "Traceback" not in captured.err, captured.err
    assert "2 failed (2 x HTTP 400: refused with 400)" in captured.out, captured.out
    again = json.loads((out / "generation_report.json").read_text())
    assert again["failed_requests"] == {"HTTP 400: refused with 400": 2} and again["pending_requests"] == 2
    assert (out / "generation_report.md").exists()
    written = [line for split in ("train", "test")
               for line in (out / f"audioset_{split}.jsonl").read_text().splitlines()]
    assert len(written) == 14 and not any("T0003" in line or "E0001" in line for line in written)
    assert main(args) == 0  # once the server accepts them, the same command completes
    assert server.repeated == 0 and len(server.answered) == 16


def test_a_small_first_run_refused_item_by_item_is_counted_not_blamed_on_the_endpoint(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    """Stand-in server, empty output folder: both items of a run too small for the endpoint watch get a 400.

    A 400 refuses one request, not the endpoint: unlike the 401s of the small-run test above, the failures
    are counted per item and the outputs written."""
    server.fault("dialogue:", "400", "400")
    report = generate(options(tmp_path, server, sources, configs=("audioset",), embedder="none", limit=1))
    assert report.failed_requests == {"HTTP 400: refused with 400": 2} and server.requests == 2
    assert (tmp_path / "out" / "audioset_train.jsonl").read_text() == ""


def test_a_second_ctrl_c_abandons_the_batch_being_scored(tmp_path: Path, server: OpenAIServer) -> None:
    """Real SIGINTs to this process while a batch waits on a slow embeddings endpoint (2 s per request)."""
    import threading

    from audio_dialogues.generate.embedders import openai_embedder
    from audio_dialogues.generate.filters import ScoringStop, SimilarityScorer
    from audio_dialogues.generate.items import Item
    from audio_dialogues.llm.journal import Journal

    server.embedding_latency_s = 2.0
    pairs = [(Item(f"k{i}", "music", "train", (), f"calm piano {i}", f"calm piano {i}"), f"a piano {i}")
             for i in range(40)]
    messages: list[str] = []
    with Journal(tmp_path / "cache.jsonl") as cache, ScoringStop(messages.append) as stop:
        scorer = SimilarityScorer(openai_embedder("emb", server.base_url), cache)
        for delay in (0.3, 0.6):
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        scores = scorer.scores(pairs, stop)
        assert time.monotonic() - started < 1.5  # the batch was abandoned, not waited for
    assert scores == {} and stop.requests == 2 and messages[0].startswith("stopping:")
    assert (tmp_path / "cache.jsonl").read_text() == ""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_the_default_filters_drop_planted_off_topic_answers_and_near_duplicates(tmp_path, server) -> None:
    """Defaults (lexical embedder, relative test, near-duplicates at 0.8): two music items answered about
    something else go, the rest stay; every scored dialogue's score lands in similarity_scores.jsonl and its
    distribution in the report; the summary names each stage."""
    sources = write_sources(tmp_path / "src", music=24)
    off_topic = "\n".join(json.dumps({"user": f"Question {k}?", "assistant": "A helicopter hovers while a chainsaw "
                                      f"cuts wood in a forest, part {k}."}) for k in range(3))
    server.fault("number 4 ", off_topic)
    server.fault("number 7 ", off_topic)
    lines: list[str] = []
    report = generate(options(tmp_path, server, sources, configs=("music", "audioset"), embedder="lexical",
                              similarity_test="relative", near_duplicate_threshold=0.8), out=lines.append)
    train = report.to_dict()["splits"]["music_train"]
    reason = "no closer to its own item than to others (margin below 1.5)"
    assert train["stages"]["phrases"] == 16 and train["stages"]["similarity"] == 14
    assert train["rejects"][reason] == 2
    scores = [json.loads(line) for line in (tmp_path / "out" / "similarity_scores.jsonl").read_text().splitlines()]
    music = {s["id"]: s for s in scores if s["config"] == "music" and s["split"] == "train"}
    assert len(music) == 16 == train["similarity"]["count"] == train["similarity_margin"]["count"]
    dropped = {key for key, s in music.items() if not s["kept"]}
    assert len(dropped) == 2 and all(music[key]["margin"] < 1.5 for key in dropped)
    assert min(s["margin"] for s in music.values() if s["kept"]) >= 1.5
    written = [json.loads(line) for line in (tmp_path / "out" / "music_train.jsonl").read_text().splitlines()]
    assert {r["id"] for r in written} <= set(music) - dropped and len(written) == train["stages"]["near_duplicates"]
    assert all(r["meta"]["generation"]["similarity_margin"] >= 1.5 for r in written)
    # The stand-in server's answers for items with the same events (or captions but for a number) differ only
    # in a word or two: near-duplicates.
    near = "near-duplicate of an earlier dialogue (Jaccard >= 0.8)"
    for split in (train, report.to_dict()["splits"]["audioset_train"]):
        assert split["rejects"][near] == split["stages"]["duplicates"] - split["stages"]["near_duplicates"] > 0
    assert "music_train: 16 items -> 16 answered -> 16 parsed -> 16 phrases -> 14 similarity -> 14 duplicates -> " \
           f"{train['stages']['near_duplicates']} near_duplicates" in "\n".join(lines)
    markdown = (tmp_path / "out" / "generation_report.md").read_text()
    assert "| music_train | similarity_margin | 16 |" in markdown
