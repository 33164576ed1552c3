"""``status``: clips present, gone for good (by class) and still to try, per config and split; the verdict
against what others measured; ``status --json``; one count shared with the card a push writes.

The journal is written through the package's own journal API, each entry's status and reason given by the
classifier from yt-dlp's own wording; present clips are real audio files in a user's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from audio_dialogues.fetch import journal
from audio_dialogues.fetch.availability import REFERENCES, Availability
from audio_dialogues.sources.clips import Clip
from tests.media_server import chirp

ROOT = Path(__file__).resolve().parents[1]

# One message per failure class, worded as yt-dlp words them (see tests/test_journal.py for more).
FAILURES = {
    "private": "[youtube] {id}: Private video. Sign in if you've been granted access to this video",
    "removed": "[youtube] {id}: Video unavailable. This video has been removed by the uploader",
    "account_terminated": "[youtube] {id}: Video unavailable. This video is no longer available because the YouTube "
                          "account associated with this video has been terminated.",
    "unavailable": "[youtube] {id}: Video unavailable",
    "not_found": "[generic] {id}: Unable to download webpage: HTTP Error 404: Not Found",
    "region": "[youtube] {id}: The uploader has not made this video available in your country",
    "age_restricted": "[youtube] {id}: Sign in to confirm your age. This video may be inappropriate for some users.",
    "copyright": "[youtube] {id}: Video unavailable. This video contains content from SME, who has blocked it on "
                 "copyright grounds.",
    "members_only": "[youtube] {id}: Join this channel to get access to members-only content like this video",
    "bot_check": "[youtube] {id}: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies",
    "rate_limited": "[youtube] {id}: Unable to download API page: HTTP Error 429: Too Many Requests",
    "forbidden": "unable to download video data: HTTP Error 403: Forbidden",
    "format_unavailable": "[youtube] {id}: Requested format is not available. Use --list-formats for a list",
    "network": "[youtube] {id}: Unable to download webpage: The read operation timed out",
    "unknown": "something nobody has seen before",
}


def clip(prefix: str, i: int) -> Clip:
    return Clip(f"{prefix}{i:03d}".ljust(11, "x"), 30.0, 31.0)


def write_split(data: Path, split: str, clips: list[Clip]) -> None:
    data.mkdir(parents=True, exist_ok=True)
    with open(data / f"audioset_{split}.jsonl", "w") as f:
        for i, c in enumerate(clips):
            f.write(json.dumps({"id": f"{split}{i}", "clips": [c.to_dict()],
                                "turns": [{"user": "What is it?", "assistant": "A sweep."}]}) + "\n")


@pytest.fixture()
def every_class(tmp_path: Path) -> dict:
    """train: 20 clips in the user's folder, one per failure class in the journal, 2 never tried, 1 local file
    that does not hold its window; test: 3 present, 1 private."""
    audio, cache, data = tmp_path / "audio", tmp_path / "cache", tmp_path / "data"
    audio.mkdir()
    present = [clip("ok", i) for i in range(20)]
    failed = {reason: clip(f"f{n:02d}", 0) for n, reason in enumerate(FAILURES)}
    never = [clip("nv", i) for i in range(2)]
    unusable = clip("un", 0)
    test_present, test_private = [clip("tp", i) for i in range(3)], clip("tq", 0)
    for c in [*present, *test_present]:
        sf.write(audio / f"{c.ytid}_{c.start_s}_{c.end_s}.flac", chirp(1.0, 8000), 8000)
    sf.write(audio / f"Y{unusable.ytid}.flac", chirp(5.0, 8000), 8000)  # a whole video too short for 30-31 s
    entries = []
    for reason, c in failed.items():
        status, got = journal.classify(FAILURES[reason].format(id=c.ytid))
        assert got == reason, (reason, got)
        entries.append(journal.JournalEntry.for_clip(c, status, reason=got, message=FAILURES[reason], attempts=3))
    status, reason = journal.classify(FAILURES["private"])
    entries.append(journal.JournalEntry.for_clip(test_private, status, reason=reason, attempts=1))
    journal.host_journal(cache).append_many(entries)
    write_split(data, "train", [*present, *failed.values(), *never, unusable])
    write_split(data, "test", [*test_present, test_private])
    return {"audio": audio, "cache": cache, "data": data}


def status(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audio_dialogues.cli", "status", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_status_json_counts_every_failure_class_per_split(every_class: dict, tmp_path: Path) -> None:
    done = status(["audioset", "--data-dir", str(every_class["data"]), "--audio-dir", str(every_class["audio"]),
                   "--audio-cache-dir", str(every_class["cache"]), "--json", "--missing-csv",
                   str(tmp_path / "missing.csv")], tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # stdout is the JSON document alone
    assert "missing clips written" in done.stderr
    assert report["schema_version"] == 1 and report["config"] == "audioset" and len(report["journals"]) == 1
    train, test, total = report["splits"]["train"], report["splits"]["test"], report["total"]
    assert (train["clips"], train["present"], train["local"], train["cached"]) == (38, 20, 20, 0)
    assert train["gone_by_class"] == {"private": 1, "removed": 4, "region": 1, "age_restricted": 1, "copyright": 1,
                                      "other": 1}
    assert train["to_try_by_class"] == {"blocked": 3, "setup": 1, "other_transient": 2, "never_tried": 2,
                                        "unusable_local": 1}
    assert (train["gone"], train["to_try"]) == (9, 9)
    assert train["share_present_of_settled"] == round(20 / 29, 6)
    assert {"status": "transient", "reason": "bot_check", "clips": 1} in train["by_reason"]
    assert {"status": "unusable", "reason": "audio file does not hold the clip's window", "clips": 1} \
        in train["by_reason"]
    assert (test["clips"], test["present"], test["gone_by_class"]["private"], test["to_try"]) == (4, 3, 1, 0)
    assert (total["clips"], total["present"], total["gone"], total["to_try"]) == (42, 23, 10, 9)
    # 3 blocked of 35 tried is under a tenth; the share present of settled clips is 69% < 74%: low.
    assert train["health"]["verdict"] == "low" and "84.3% of AudioSet balanced train" in train["health"]["advice"]
    assert [r["share"] for r in report["references"]] == [0.8432, 0.8415, 0.9276]
    assert report["shards"] is None
    assert sum(1 for _ in open(tmp_path / "missing.csv")) == 1 + 9 + 9 + 1


def test_many_bot_checks_are_called_a_block_with_the_fix(every_class: dict, tmp_path: Path) -> None:
    """A fourth blocked clip (a captcha) makes blocked failures a tenth of the clips tried: the run is blocked."""
    c = clip("cap", 0)
    status_, reason = journal.classify("[youtube] x: Video unavailable. YouTube is requiring a captcha challenge")
    journal.host_journal(every_class["cache"]).append(journal.JournalEntry.for_clip(c, status_, reason=reason))
    data = every_class["data"]
    write_split(data, "test", [c])
    done = status(["audioset", "--split", "test", "--data-dir", str(data), "--audio-dir", str(every_class["audio"]),
                   "--audio-cache-dir", str(every_class["cache"])], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "audioset test: 1 clips: 0 present (0.0%), 0 gone for good, 1 still to try" in done.stdout
    assert "health: blocked: YouTube is blocking this machine: 1 of 1 clips tried" in done.stdout
    assert "docs/fetch.md, YouTube set-up" in done.stdout


@pytest.mark.parametrize("present,missing,verdict", [
    (0, {}, "not_started"),
    (0, {("pending", ""): 5}, "not_started"),
    (85, {("transient", "rate_limited"): 12, ("transient", "network"): 8}, "blocked"),
    (85, {("transient", "format_unavailable"): 10}, "setup"),
    (5, {("permanent", "private"): 2}, "too_few"),
    (85, {("permanent", "removed"): 15, ("transient", "bot_check"): 1}, "healthy"),
    (85, {("permanent", "removed"): 60}, "low"),
])
def test_health_verdicts(present: int, missing: dict, verdict: str) -> None:
    a = Availability(clips=present + sum(missing.values()), cached=present, missing=missing)
    assert a.health()[0] == verdict


def test_references_are_the_published_counts() -> None:
    assert [f"{r.share:.1%}" for r in REFERENCES] == ["84.3%", "84.1%", "92.8%"]
