"""``generate --batch`` and the offline form (``--batch-write``, ``--batch-ingest``) through the real ``openai``
client and real HTTP: ``tests/openai_server.py`` serves Files and Batches, bills what it answers and counts
every request by key, alone or in a batch."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import openai
import pytest

from audio_dialogues.cli import main
from audio_dialogues.generate import GenerateError, generate
from audio_dialogues.generate.run import SIMILARITY_SCORES
from audio_dialogues.llm.batch import STATE_NAME, BatchError
from audio_dialogues.llm.journal import JOURNAL_NAME, Journal
from audio_dialogues.sources.annotations import CONFIGS
from tests.generate_sources import write_sources
from tests.openai_server import OpenAIServer
from tests.test_generate_run import cli, env, kill_when, options


def billed(server: OpenAIServer) -> float:
    """What the server bills at the prices options() gives: $1/M in (cached too), $2/M out."""
    return float(server.bill(1.0, 1.0, 2.0))


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def sources(tmp_path: Path) -> dict:
    return write_sources(tmp_path / "src")


def outputs(folder: Path) -> dict[str, str]:
    """The subsets' files ``{config}_{split}.jsonl`` and the similarity scores."""
    return {p.name: p.read_text() for p in sorted(folder.glob("*_*.jsonl"))
            if p.name.split("_")[0] in CONFIGS or p.name == SIMILARITY_SCORES}


def batch_options(tmp_path: Path, server: OpenAIServer, sources: dict, out: str, **extra):
    values = dict(output_dir=tmp_path / out, batch=True, batch_poll_s=0.01, batch_max_requests=5)
    return options(tmp_path, server, sources, **{**values, **extra})


def test_a_batch_run_writes_what_a_synchronous_run_writes_at_the_price_the_server_bills(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    sync = generate(options(tmp_path, server, sources, output_dir=tmp_path / "sync", descriptors="llm"))
    assert sync.complete and sync.to_dict()["cost_usd"] == pytest.approx(billed(server), abs=1e-6)
    sync_cost = billed(server)
    server.reset()
    server.batch_step = 3  # each look at a batch answers 3 more lines: progress shows
    server.batch_max_requests = 5  # as the client's limit: a file over it would be refused
    logged: list[str] = []
    report = generate(batch_options(tmp_path, server, sources, "batch", descriptors="llm", progress=True),
                      out=logged.append)
    assert report.complete and server.requests == 0  # nothing went out one by one
    assert outputs(tmp_path / "batch") == outputs(tmp_path / "sync") != {}
    data = report.to_dict()
    # 5 descriptor classes in one file, then 31 dialogues in files of at most 5: split, none refused for size.
    assert len(server.batches) == 1 + 7 and "400" not in server.statuses
    assert all(b["request_counts"]["total"] <= 5 for b in server.batches.values())
    assert max(server.seen.values()) == 1 and len(server.seen) == 36
    assert data["batches"] == {"batches_created": 8, "requests_submitted": 36, "collected": 8, "in_flight": 0}
    assert data["usage"]["batch_prompt_tokens"] == data["usage"]["prompt_tokens"] > 0
    assert data["cost_usd"] == pytest.approx(billed(server), abs=1e-6)
    assert data["cost_usd"] == pytest.approx(sync_cost / 2, abs=1e-6)  # the same tokens at half price
    assert data["prices_per_million"]["batch_discount"] == 0.5


def test_expired_failed_and_refused_requests_are_journaled_as_errors_and_asked_again(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    server.batch_faults.extend(["expire", "fail"])  # the first batch expires half done, the second fails
    server.fault("number 3 with", "400")  # one music item gets an error line
    opts = batch_options(tmp_path, server, sources, "out", configs=("audioset", "music"))
    first = generate(opts)
    assert not first.complete
    journal = Journal(tmp_path / "out" / JOURNAL_NAME, read_only=True)
    reasons = sorted({e["error"].split(":")[0] for e in journal.errors.values()})
    # 5 per file: the first keeps 2 answers and loses 3 to expiry, the second loses all 5, one line is refused.
    assert len(journal.errors) == first.pending == 3 + 5 + 1
    assert reasons == ["HTTP 400", "batch_expired", "no result"]
    failed = first.to_dict()["failed_requests"]
    assert failed["HTTP 400: refused with 400"] == 1 and sum(failed.values()) == 9
    assert "NOT COMPLETE: 9 requests pending, 9 failed" in first.summary()
    assert len(journal.entries) == 22 - 9 and all(server.answered[k] == 1 for k in journal.entries)

    second = generate(opts)
    assert second.complete and second.to_dict()["batches"]["requests_submitted"] == 9
    assert set(server.answered.values()) == {1} and len(server.answered) == 22  # no answer paid twice
    with Journal(tmp_path / "out" / JOURNAL_NAME, read_only=True) as journal:
        assert len(journal.entries) == 22
    assert second.to_dict()["cost_usd"] == pytest.approx(billed(server), abs=1e-6)


def test_a_run_that_stops_waiting_is_collected_later_and_a_synchronous_run_asks_only_what_is_missing(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    server.hold_batches = True
    opts = batch_options(tmp_path, server, sources, "out", configs=("audioset",), batch_wait_s=0)
    first = generate(opts)
    assert first.pending == 16 and first.to_dict()["batches"]["in_flight"] == 16
    assert json.loads((tmp_path / "out" / STATE_NAME).read_text())["batches"][0]["batch_id"] == "batch_0001"
    assert generate(options(tmp_path, server, sources, configs=("audioset",))).pending == 16
    assert server.requests == 0  # the synchronous run left the batched requests alone
    assert openai.OpenAI(base_url=server.base_url, api_key="k").batches.cancel("batch_0001").status == "cancelled"
    server.hold_batches = False
    second = generate(opts)  # collects the three that complete and the cancelled one, whose 5 go unanswered
    assert second.pending == 5 and len(server.batches) == 4 and max(server.seen.values()) == 1
    with Journal(tmp_path / "out" / JOURNAL_NAME, read_only=True) as journal:
        assert len(journal.entries) == 11 and len(journal.errors) == 5
        assert {e["error"] for e in journal.errors.values()} == {"no result: the batch cancelled"}
    # A synchronous run now asks for those five and nothing else.
    assert generate(options(tmp_path, server, sources, configs=("audioset",))).complete and server.requests == 5


def test_a_rerun_asking_fewer_requests_collects_its_own_and_leaves_the_others_in_their_batches(
        tmp_path: Path, server: OpenAIServer, sources: dict, capsys: pytest.CaptureFixture) -> None:
    """A run with a smaller --limit collects the answers it asks for from batches that also hold an earlier
    run's other requests, and leaves those in the batches (it could not journal them as that run's), where the
    full run then finds them: nothing lost, nothing submitted twice (this raised a KeyError before)."""
    server.hold_batches = True
    opts = batch_options(tmp_path, server, sources, "out", configs=("audioset",), batch_wait_s=0)
    assert generate(opts).pending == 16 and len(server.batches) == 4
    server.hold_batches = False
    fewer = generate(batch_options(tmp_path, server, sources, "out", configs=("audioset",), limit=2, progress=True))
    assert fewer.complete and len(server.batches) == 4
    assert "they stay in the batch for a run that asks them" in capsys.readouterr().err
    with Journal(tmp_path / "out" / JOURNAL_NAME, read_only=True) as journal:
        assert len(journal.entries) == 4 and not journal.errors  # 2 items of each split
    full = generate(opts)
    assert full.complete and len(server.batches) == 4 and max(server.seen.values()) == 1
    with Journal(tmp_path / "out" / JOURNAL_NAME, read_only=True) as journal:
        assert len(journal.entries) == 16 and not journal.errors
    assert all(r["collected"] for r in json.loads((tmp_path / "out" / STATE_NAME).read_text())["batches"])


def test_a_line_that_is_no_result_is_skipped_and_the_answers_after_it_land(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    """One cut line in a provider's output file: counted, its request asked again, the paid answers after it
    journaled (before, the whole batch stayed uncollected and every re-run stopped at the same line)."""
    server.batch_faults.append("garble")
    first = generate(batch_options(tmp_path, server, sources, "out", configs=("audioset",)))
    assert first.pending == 1
    assert first.to_dict()["failed_requests"] == {"no result: the batch completed, 1 of its lines unreadable": 1}
    with Journal(tmp_path / "out" / JOURNAL_NAME, read_only=True) as journal:
        assert len(journal.entries) == 15 and len(journal.errors) == 1
    assert all(r["collected"] for r in json.loads((tmp_path / "out" / STATE_NAME).read_text())["batches"])
    second = generate(batch_options(tmp_path, server, sources, "out", configs=("audioset",)))
    assert second.complete and second.to_dict()["batches"]["requests_submitted"] == 1


def test_sigkill_while_batches_are_in_flight_then_rerun_submits_nothing_twice(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    out = tmp_path / "out"
    server.hold_batches = True
    server.hold_creates_after = 2  # the third create call is made at the server but never answered
    args = cli(out, server, sources, "--batch", "--batch-max-requests", "4", "--batch-poll", "0.05")
    kill_when(args, lambda: len(server.batches) >= 3, timeout_s=60)
    state = json.loads((out / STATE_NAME).read_text())["batches"]
    assert [r["batch_id"] for r in state] == ["batch_0001", "batch_0002", None]  # the third: file up, id unknown
    server.hold_creates_after, server.hold_batches = None, False
    rerun = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "4/0/4 completed/failed/total" in rerun.stderr  # polling shows progress
    assert len(server.batches) == 4  # the third was found at the server, only the fourth created
    assert len(server.seen) == 16 and max(server.seen.values()) == 1 and server.requests == 0
    assert len((out / "audioset_train.jsonl").read_text().splitlines()) == 12


def recorded(out: Path) -> list[str]:
    """The batch ids ``batches.json`` records (none before the file exists)."""
    path = out / STATE_NAME
    return [r["batch_id"] for r in json.loads(path.read_text())["batches"] if r["batch_id"]] if path.exists() else []


def test_ctrl_c_while_waiting_leaves_the_batches_running_and_the_rerun_collects_them(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    out = tmp_path / "out"
    server.hold_batches = True
    args = cli(out, server, sources, "--batch", "--batch-poll", "0.05")
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not server.batches or not recorded(out):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # a few looks at the batch
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopping: the batches keep running" in stderr and "0/0/16 completed/failed/total" in stderr
    assert "16 requests pending (16 in batches in flight)" in stdout
    server.hold_batches = False
    assert main(args[3:] + ["--quiet"]) == 0
    assert len(server.batches) == 1 and max(server.seen.values()) == 1


def run_batch_files(server: OpenAIServer, requests: list[Path], folder: Path) -> list[Path]:
    """What ``vllm run-batch`` does offline, done by the test server: an output file per request file."""
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    folder.mkdir()
    paths = []
    for path in requests:
        uploaded = client.files.create(file=(path.name, path.read_bytes()), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "completed" and batch.output_file_id
        paths.append(folder / path.name.replace("requests", "results"))
        paths[-1].write_bytes(client.files.content(batch.output_file_id).content)
    return paths


def test_the_offline_write_and_ingest_round_trip_writes_what_a_synchronous_run_writes(
        tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    assert generate(options(tmp_path, server, sources, output_dir=tmp_path / "sync")).complete
    server.reset()
    written = generate(options(tmp_path, server, sources, batch_write=tmp_path / "requests", batch_max_requests=10))
    assert written.pending == 31 and server.requests == 0 and not server.batches
    files = sorted((tmp_path / "requests").glob("*.jsonl"))
    assert [p.name for p in files] == [f"dialogue-requests-000{n}.jsonl" for n in range(1, 5)]
    line = json.loads(files[0].read_text().splitlines()[0])
    assert line["url"] == "/v1/chat/completions" and line["body"]["model"] == "test-model"
    assert line["body"]["response_format"]["type"] == "json_schema"  # structured outputs, as the synchronous run
    results = run_batch_files(server, files, tmp_path / "results")
    assert main(["generate", "--output-dir", str(tmp_path / "out"), "--model", "test-model", "--base-url",
                 "http://127.0.0.1:9/v1", "--embedder", "openai:emb", "--embedding-base-url", server.base_url,
                 "--comparison-groups", "train=6,test=3", "--seed", "3", "--similarity-test", "absolute",
                 "--similarity-threshold", "0", "--near-duplicate-threshold", "0", "--quiet",
                 *(f"--strong-labels={p}" for p in sources["strong_labels"]), "--ontology", sources["ontology"][0],
                 "--musiccaps-csv", sources["musiccaps_csv"][0], "--batch-ingest", *map(str, results)]) == 0
    assert outputs(tmp_path / "out") == outputs(tmp_path / "sync")
    usage = json.loads((tmp_path / "out" / "generation_report.json").read_text())["usage"]
    assert usage["batch_prompt_tokens"] == usage["prompt_tokens"] > 0  # priced as batch answers
    # Then a normal run finds every answer journaled: it asks nothing and writes the same files.
    requests = server.requests
    assert generate(options(tmp_path, server, sources)).complete and server.requests == requests


def test_two_ways_of_sending_at_once_are_refused(tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    with pytest.raises(GenerateError, match="--batch and --batch-write are different ways"):
        options(tmp_path, server, sources, batch=True, batch_write=tmp_path / "r")


def test_a_dry_run_estimates_the_batch_price_too(tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    printed: list[str] = []
    estimate = generate(options(tmp_path, server, sources, dry_run=True, price_in=30.0, price_out=60.0,
                                batch_discount=0.4), out=printed.append)
    assert estimate["cost_usd"] > 0 and estimate["cost_usd_batch"] == pytest.approx(estimate["cost_usd"] * 0.6,
                                                                                    abs=1e-4)
    assert f"  batch (60% of synchronous): ~${estimate['cost_usd_batch']:,.2f}" in "\n".join(printed)


def test_a_file_the_server_refuses_is_not_left_in_flight(tmp_path: Path, server: OpenAIServer, sources: dict) -> None:
    server.batch_max_requests = 5
    opts = batch_options(tmp_path, server, sources, "out", configs=("audioset",), batch_max_requests=6)
    with pytest.raises(BatchError, match="Batch API at .* failed: .*6 requests are over the limit of 5"):
        generate(opts)
    assert json.loads((tmp_path / "out" / STATE_NAME).read_text()) == {"batches": []}  # no batch was made
    opts.batch_max_requests = 5
    assert generate(opts).complete and max(server.seen.values()) == 1
