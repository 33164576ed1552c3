"""The fetch journal: failure classification, torn lines, merging machines, status and the missing CSV."""

from __future__ import annotations

import csv
import json

import pytest

from audio_dialogues.cli import main
from audio_dialogues.fetch import journal
from audio_dialogues.fetch.journal import PERMANENT, TRANSIENT, JournalEntry, classify
from audio_dialogues.sources.clips import Clip

# Messages as yt-dlp words them (YouTube extractor, generic extractor, HTTP layer, ffmpeg downloader).
MESSAGES = [
    ("[youtube] abcdefghijk: Video unavailable. This video has been removed by the uploader", PERMANENT, "removed"),
    ("[youtube] abcdefghijk: Video unavailable. This video is no longer available because the YouTube account "
     "associated with this video has been terminated.", PERMANENT, "account_terminated"),
    ("[youtube] abcdefghijk: Video unavailable. This video is no longer available because the uploader has "
     "closed their YouTube account.", PERMANENT, "account_terminated"),
    ("[youtube] abcdefghijk: Private video. Sign in if you've been granted access to this video. Use "
     "--cookies-from-browser or --cookies for the authentication.", PERMANENT, "private"),
    ("[youtube] abcdefghijk: Video unavailable. This video is no longer available due to a copyright claim by "
     "Some Label", PERMANENT, "copyright"),
    ("[youtube] abcdefghijk: Video unavailable. This video contains content from SME, who has blocked it on "
     "copyright grounds.", PERMANENT, "copyright"),
    ("[youtube] abcdefghijk: The uploader has not made this video available in your country. This video is "
     "available in US. You might want to use a VPN or a proxy server (with --proxy) to workaround.",
     PERMANENT, "region"),
    ("[youtube] abcdefghijk: Sign in to confirm your age. This video may be inappropriate for some users. Use "
     "--cookies-from-browser or --cookies for the authentication.", PERMANENT, "age_restricted"),
    ("[youtube] abcdefghijk: Join this channel to get access to members-only content like this video, and other "
     "exclusive perks.", PERMANENT, "members_only"),
    ("[youtube] abcdefghijk: This video requires payment to watch.", PERMANENT, "paid"),
    ("[youtube] abcdefghijk: Video unavailable. This video has been removed for violating YouTube's Terms of "
     "Service", PERMANENT, "removed"),
    ("[youtube] abcdefghijk: Video unavailable", PERMANENT, "unavailable"),
    ("[youtube] abcdefghijk: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies for "
     "the authentication.", TRANSIENT, "bot_check"),
    ("[youtube] abcdefghijk: Video unavailable. This content isn't available, try again later. The current "
     "session has been rate-limited by YouTube for up to an hour.", TRANSIENT, "rate_limited"),
    ("[youtube] abcdefghijk: Unable to download API page: HTTP Error 429: Too Many Requests (caused by "
     "<HTTPError 429: Too Many Requests>)", TRANSIENT, "rate_limited"),
    ("[generic] abcdefghijk: Unable to download webpage: HTTP Error 503: Service Unavailable", TRANSIENT,
     "server_error"),
    ("[generic] abcdefghijk: Unable to download webpage: HTTP Error 404: Not Found", PERMANENT, "not_found"),
    ("[generic] abcdefghijk: Unable to download webpage: HTTP Error 410: Gone", PERMANENT, "gone"),
    ("unable to download video data: HTTP Error 403: Forbidden", TRANSIENT, "forbidden"),
    ("[youtube] abcdefghijk: Unable to download webpage: <urlopen error [Errno -3] Temporary failure in name "
     "resolution>", TRANSIENT, "network"),
    ("[generic] abcdefghijk: Unable to download webpage: The read operation timed out", TRANSIENT, "network"),
    ("[youtube] abcdefghijk: Requested format is not available. Use --list-formats for a list of available "
     "formats", TRANSIENT, "format_unavailable"),
    ("ffmpeg exited with code 1", TRANSIENT, "download_failed"),
    ("[youtube] abcdefghijk: This live event will begin in 3 hours.", TRANSIENT, "upcoming"),
    ("something nobody has seen before", TRANSIENT, "unknown"),
]


@pytest.mark.parametrize("message,status,reason", MESSAGES)
def test_known_messages_are_classified(message, status, reason):
    assert classify(message) == (status, reason)


@pytest.mark.parametrize("http,expected", [(404, (PERMANENT, "not_found")), (410, (PERMANENT, "gone")),
                                           (429, (TRANSIENT, "rate_limited")), (500, (TRANSIENT, "server_error")),
                                           (503, (TRANSIENT, "server_error")), (403, (TRANSIENT, "forbidden"))])
def test_http_status_decides_over_a_vague_message(http, expected):
    assert classify("Unable to download webpage", http) == expected


def test_a_403_bot_check_stays_a_bot_check():
    assert classify("Sign in to confirm you're not a bot", 403) == (TRANSIENT, "bot_check")


def entry(ytid="abcdefghijk", start=0.0, status="ok", reason="", t=0.0, host="a", attempts=1, **kw):
    return JournalEntry.for_clip(Clip(ytid, start, start + 10.0), status, reason=reason, time=t, host=host,
                                 attempts=attempts, **kw)


def test_merge_ok_wins_latest_wins_attempts_add_duplicates_once():
    entries = [
        entry(status=TRANSIENT, reason="rate_limited", t=1, host="a", attempts=3),
        entry(status="ok", t=2, host="b", attempts=1),
        entry(status=TRANSIENT, reason="network", t=3, host="a", attempts=2),  # later, but b has the file
        entry(ytid="bbbbbbbbbbb", status=TRANSIENT, reason="network", t=1, attempts=1),
        entry(ytid="bbbbbbbbbbb", status=PERMANENT, reason="private", t=5, attempts=1),
    ]
    state = journal.merge(entries + entries[:2])
    a = state.clips[Clip("abcdefghijk", 0.0, 10.0).key]
    assert (a.status, a.attempts, a.runs, a.latest.host) == ("ok", 6, 3, "b")
    b = state.clips[Clip("bbbbbbbbbbb", 0.0, 10.0).key]
    assert (b.status, b.reason, b.attempts) == (PERMANENT, "private", 2)
    # A private video's other clips are known unavailable without a request; a fetched one is not gone.
    assert state.video_failure("bbbbbbbbbbb").reason == "private"
    assert state.video_failure("abcdefghijk") is None


def test_a_clip_level_failure_does_not_condemn_the_video():
    state = journal.merge([entry(status=PERMANENT, reason="beyond_source_end", t=1)])
    assert state.video_failure("abcdefghijk") is None


def test_torn_lines_are_skipped_and_appends_start_on_a_fresh_line(tmp_path):
    j = journal.FetchJournal(tmp_path / "journal" / "h.jsonl")
    j.append(entry(t=1))
    with open(j.path, "a") as f:
        f.write('{"key": "abcdefghijk_10000_20000", "ytid": "abcd')  # a kill mid-write
    j.append(entry(start=20.0, t=2))
    state = journal.load(tmp_path)
    assert len(state.clips) == 2 and state.stats.bad_lines == 1 and state.stats.lines == 3
    assert j.path.read_text().count("\n") == 3


def test_summary_over_requested_clips_and_missing_csv(tmp_path):
    cached = Clip("ccccccccccc", 0.0, 10.0)
    never = Clip("ddddddddddd", 0.0, 10.0)
    private_other = Clip("bbbbbbbbbbb", 30.0, 40.0)
    state = journal.merge([
        entry(ytid="bbbbbbbbbbb", status=PERMANENT, reason="private", message="Private video", t=5),
        entry(ytid="eeeeeeeeeee", status=TRANSIENT, reason="bot_check", message="not a bot", t=6, attempts=3),
        entry(ytid="fffffffffff", status="ok", t=7),  # journal says ok but this cache does not have it
    ])
    clips = [cached, never, private_other, Clip("eeeeeeeeeee", 0.0, 10.0), Clip("fffffffffff", 0.0, 10.0),
             cached]
    summary = journal.summarize(state, clips, is_cached=lambda c: c == cached)
    assert summary.total == 5
    assert summary.by_status == {"ok": 1, "pending": 2, "permanent": 1, "transient": 1}
    assert summary.by_reason[("pending", "not_in_cache")] == 1
    out = tmp_path / "missing.csv"
    assert journal.write_missing_csv(summary, out) == 4
    rows = {r["ytid"]: r for r in csv.DictReader(open(out))}
    assert set(rows) == {"ddddddddddd", "bbbbbbbbbbb", "eeeeeeeeeee", "fffffffffff"}
    assert (rows["bbbbbbbbbbb"]["status"], rows["bbbbbbbbbbb"]["reason"]) == ("permanent", "private")
    assert (rows["bbbbbbbbbbb"]["start_s"], rows["bbbbbbbbbbb"]["end_s"]) == ("30.0", "40.0")
    assert (rows["eeeeeeeeeee"]["attempts"], rows["eeeeeeeeeee"]["message"]) == ("3", "not a bot")
    assert rows["ddddddddddd"]["status"] == "pending"


def test_status_command_merges_journals_of_several_machines(tmp_path, capsys):
    cache = tmp_path / "cache"
    journal.FetchJournal(cache / "journal" / "machine-a.jsonl").append_many([
        entry(ytid="aaaaaaaaaaa", status="ok", t=1, host="machine-a"),
        entry(ytid="bbbbbbbbbbb", status=TRANSIENT, reason="rate_limited", t=1, host="machine-a"),
    ])
    other = tmp_path / "from-machine-b.jsonl"
    journal.FetchJournal(other).append_many([
        entry(ytid="bbbbbbbbbbb", status="ok", t=2, host="machine-b"),
        entry(ytid="ccccccccccc", status=PERMANENT, reason="removed", message="removed by the uploader", t=2,
              host="machine-b"),
    ])
    merged = tmp_path / "merged.jsonl"
    code = main(["status", "--audio-cache-dir", str(cache), "--journal", str(other), "--missing-csv",
                 str(tmp_path / "missing.csv"), "--write-merged", str(merged)])
    out = capsys.readouterr().out
    assert code == 0
    assert "3 clips" in out and "ok         2" in out and "removed              1" in out
    assert "transient" not in out
    rows = list(csv.DictReader(open(tmp_path / "missing.csv")))
    assert [(r["ytid"], r["reason"]) for r in rows] == [("ccccccccccc", "removed")]
    lines = [json.loads(line) for line in merged.read_text().splitlines()]
    assert len(lines) == 3 and {d["status"] for d in lines} == {"ok", PERMANENT}
    # The merged file is itself a journal: loading it alone gives the same state.
    assert journal.summarize(journal.merge(journal.read_entries([merged]))).by_status == {"ok": 2, PERMANENT: 1}


def test_status_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["status", "audioset", "--audio-cache-dir", str(tmp_path)])
    assert exc.value.code == 2 and "--data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["status", "--journal", str(tmp_path / "nope.jsonl")])
    assert exc.value.code == 2


# --- hand-damaged journals: every line that is not an entry is skipped, counted and named ---------

GOOD = entry(ytid="ggggggggggg", status=PERMANENT, reason="removed", t=5).to_line().strip()
BAD_LINES = [
    ("a number", "5", "not a JSON object but int"),
    ("null", "null", "not a JSON object but NoneType"),
    ("a list", '["ok", 1]', "not a JSON object but list"),
    ("a string", '"ok"', "not a JSON object but str"),
    ("torn", GOOD[:40], "not JSON"),
    ("deeply nested", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("unknown status", GOOD.replace('"permanent"', '"done"'), "status"),
    ("attempts as text", GOOD.replace('"attempts":1', '"attempts":"3"'), "attempts"),
    ("attempts negative", GOOD.replace('"attempts":1', '"attempts":-2'), "attempts"),
    ("attempts a bool", GOOD.replace('"attempts":1', '"attempts":true'), "attempts"),
    ("time as text", GOOD.replace('"time":5', '"time":"yesterday"'), "time"),
    ("time too large", GOOD.replace('"time":5', '"time":1e400'), "time"),
    ("start as text", GOOD.replace('"start_s":0.0', '"start_s":"0"'), "start_s"),
    ("key of another clip", GOOD.replace("ggggggggggg_0_10000", "ggggggggggg_0_20000"), "does not match"),
    ("ytid with a newline", GOOD.replace('"ytid":"ggggggggggg"', '"ytid":"ggggggggggg\\n"'), "ytid"),
    ("message as a list", GOOD.replace('"message":""', '"message":["x"]'), "message"),
    ("host as a number", GOOD.replace('"host":"a"', '"host":7'), "host"),
    ("covers not an object", GOOD.replace('"status"', '"covers":[1],"status"'), "covers"),
]


@pytest.mark.parametrize("name,line,why", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_a_hand_damaged_line_is_skipped_counted_and_named(tmp_path, capsys, name, line, why):
    path = tmp_path / "cache" / "journal" / "host.jsonl"
    path.parent.mkdir(parents=True)
    ok = entry(ytid="okokokokoko", status="ok", t=1).to_line()
    path.write_text(ok + line + "\n" + GOOD + "\n", encoding="utf-8")
    state = journal.load(tmp_path / "cache")
    assert state.stats.bad_lines == 1 and len(state.clips) == 2, state.stats.examples
    assert state.stats.examples[0].startswith(f"{path}:2: ") and why in state.stats.examples[0]
    # The good lines after it still count: the removed video is not retried.
    assert state.video_failure("ggggggggggg").reason == "removed"
    # status: no traceback, exit 0, the line named on stderr.
    assert main(["status", "--audio-cache-dir", str(tmp_path / "cache")]) == 0
    captured = capsys.readouterr()
    assert "2 clips" in captured.out and f"{path}:2" in captured.err and "1 journal line(s) skipped" in captured.err


def test_unreadable_journal_files_do_not_stop_a_read(tmp_path):
    folder = tmp_path / "journal"
    folder.mkdir()
    (folder / "folder.jsonl").mkdir()  # a folder named like a journal
    (folder / "latin1.jsonl").write_bytes(b'\xff\xfe{"x": "\xe9"}\n' + entry(t=1).to_line().encode())
    (folder / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + entry(ytid="bbbbbbbbbbb", t=1).to_line().encode())
    state = journal.load(tmp_path)
    assert sorted(k[:11] for k in state.clips) == ["abcdefghijk", "bbbbbbbbbbb"]
    assert state.stats.bad_lines == 2
    assert any("folder.jsonl" in e and "cannot read" in e for e in state.stats.examples)


def test_merged_journal_read_with_its_originals_counts_every_attempt_once(tmp_path, capsys):
    cache = tmp_path / "cache"
    journal.FetchJournal(cache / "journal" / "a.jsonl").append_many([
        entry(status=TRANSIENT, reason="rate_limited", t=1, host="a", attempts=3),
        entry(status=TRANSIENT, reason="network", t=2, host="a", attempts=2)])
    journal.FetchJournal(cache / "journal" / "b.jsonl").append(entry(status="ok", t=3, host="b", attempts=1))
    merged = tmp_path / "merged.jsonl"
    assert main(["status", "--audio-cache-dir", str(cache), "--write-merged", str(merged)]) == 0
    key = Clip("abcdefghijk", 0.0, 10.0).key
    assert journal.load(cache).get(Clip("abcdefghijk", 0.0, 10.0)).attempts == 6
    # The merged file read beside the journals it summarises, twice, and merged again from both.
    state = journal.load(cache, [merged, merged])
    assert (state.clips[key].attempts, state.clips[key].runs, state.clips[key].status) == (6, 3, "ok")
    again = tmp_path / "again.jsonl"
    journal.write_merged(state, again)
    (cache / "journal" / "merged-copy.jsonl").write_bytes(merged.read_bytes())
    assert journal.load(cache, [again]).clips[key].attempts == 6
    # A later run adds its own attempts on top, once.
    journal.FetchJournal(cache / "journal" / "a.jsonl").append(entry(status=TRANSIENT, reason="network", t=9,
                                                                    attempts=2))
    assert journal.load(cache, [again, merged]).clips[key].attempts == 8
