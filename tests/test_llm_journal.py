"""The answer journal: torn tails from a kill are cut, corruption is named, and one run holds a folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from audio_dialogues.llm.journal import Journal, JournalError, OutputLock, request_key


def test_entries_survive_reopen_and_a_torn_tail_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append({"key": "a", "text": "first"})
        journal.append({"key": "b", "text": "second"})
    with open(path, "ab") as f:
        f.write(b'{"key": "c", "te')  # a kill in the middle of a write
    with Journal(path) as journal:
        assert journal.torn_bytes == len(b'{"key": "c", "te')
        assert set(journal.entries) == {"a", "b"} and "c" not in journal
        journal.append({"key": "c", "text": "third"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b", "c"]


def test_a_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"}')
    with Journal(path) as journal:
        assert set(journal.entries) == {"a"}  # without its newline the write may not have finished
    assert path.read_text() == '{"key": "a"}\n'


def test_corruption_in_the_middle_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(JournalError, match=r"journal.jsonl:2: corrupt journal line"):
        Journal(path)


def test_request_key_ignores_what_does_not_shape_the_answer() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1.0, "max_tokens": 9}
    assert request_key(body) == request_key({**body, "stream": False, "user": "someone"})
    assert request_key(body) != request_key({**body, "temperature": 0.5})
    assert request_key(body) != request_key({**body, "messages": [{"role": "user", "content": "y"}]})
    # Two clips with the same events render the same prompt and still get their own answers.
    assert request_key(body, "dialogue:clip-a") != request_key(body, "dialogue:clip-b")


def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    code = ("import sys, time; from audio_dialogues.llm.journal import OutputLock; "
            "lock = OutputLock(sys.argv[1]).__enter__(); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JournalError, match="another `audio-dialogues generate` run is using this output folder"):
            with OutputLock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with OutputLock(tmp_path):  # the OS released the dead holder's lock
        pass
