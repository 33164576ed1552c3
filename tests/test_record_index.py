"""The record index of the clip cache: a re-run reads one file per shard folder, and still sees every change.

The truth is :func:`audio_dialogues.audio.cache.lookup`, which reads each clip's record file; the index
must give the same answer for every clip after any change a fetch, another process or a user makes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from audio_dialogues.audio import cache as clip_cache
from audio_dialogues.sources.clips import Clip

HOUR_NS = 3600 * 10**9


def make_cache(cache: Path, n: int = 40, rate: int = 16000) -> list[Clip]:
    """``n`` cached clips (audio of a few bytes and their records), spread over several shard folders."""
    clips = [Clip(f"vid{i:04d}-ab_"[:11], 10.0 * (i % 3), 10.0 * (i % 3) + 10.0) for i in range(n)]
    for clip in clips:
        write_clip(cache, clip, rate)
    return clips


def write_clip(cache: Path, clip: Clip, rate: int = 16000, payload: bytes = b"fLaC-and-some-audio") -> None:
    audio = clip_cache.audio_path(cache, clip, "flac")
    audio.parent.mkdir(parents=True, exist_ok=True)
    audio.write_bytes(payload)
    clip_cache.write_record(cache, clip, clip_cache.ClipRecord(
        file=audio.name, size=len(payload), format="flac", sample_rate=rate, channels=1, frames=160000,
        requested_sample_rate=rate, url=f"https://example.org/{clip.ytid}"))


def age(cache: Path, hours: int = 1) -> None:
    """Date every shard folder ``hours`` back, as a cache written by an earlier run is."""
    for folder in cache.glob("[0-9a-f][0-9a-f]"):
        then = folder.stat().st_mtime_ns - hours * HOUR_NS
        os.utime(folder, ns=(then, then))


def indexed(cache: Path, clips: list[Clip]) -> list:
    """A run's worth of lookups through a fresh index, which is then saved."""
    index = clip_cache.RecordIndex(cache)
    found = [index.lookup(clip) for clip in clips]
    index.save()
    return found


@pytest.fixture
def file_reads(monkeypatch):
    """The keys of the clips whose record file was read."""
    reads: list[str] = []
    real = clip_cache.lookup_key

    def counting(folder, key):
        reads.append(key)
        return real(folder, key)

    monkeypatch.setattr(clip_cache, "lookup_key", counting)
    return reads


def truth(cache: Path, clips: list[Clip]) -> list:
    return [clip_cache.lookup(cache, clip) for clip in clips]


def test_a_rerun_reads_no_record_and_finds_the_same(tmp_path, file_reads):
    clips = make_cache(tmp_path)
    age(tmp_path)
    first = indexed(tmp_path, clips)
    assert len(file_reads) == len(clips) and all(first)
    assert len(list((tmp_path / clip_cache.RECORD_INDEX_DIRNAME).glob("*.json"))) == len(
        {clip_cache.shard_of(c.ytid) for c in clips})
    file_reads.clear()
    again = indexed(tmp_path, clips)
    assert file_reads == []
    assert again == first == truth(tmp_path, clips)


def change_record(cache: Path, clip: Clip) -> None:
    write_clip(cache, clip, rate=8000)  # refetched at another rate: a new record renamed into place


def remove_record(cache: Path, clip: Clip) -> None:
    clip_cache.record_path(cache, clip).unlink()


def truncate_audio(cache: Path, clip: Clip) -> None:
    with open(clip_cache.audio_path(cache, clip, "flac"), "r+b") as f:  # in place: the folder is unchanged
        f.truncate(4)


def remove_audio(cache: Path, clip: Clip) -> None:
    clip_cache.audio_path(cache, clip, "flac").unlink()


def add_clip(cache: Path, clip: Clip) -> None:
    write_clip(cache, Clip(clip.ytid, 100.0, 110.0))


@pytest.mark.parametrize("change", [change_record, remove_record, truncate_audio, remove_audio, add_clip])
def test_every_change_after_the_index_is_seen(tmp_path, change):
    clips = make_cache(tmp_path)
    age(tmp_path)
    indexed(tmp_path, clips)
    change(tmp_path, clips[7])
    everything = [*clips, Clip(clips[7].ytid, 100.0, 110.0)]
    assert indexed(tmp_path, everything) == truth(tmp_path, everything)
    assert indexed(tmp_path, everything) == truth(tmp_path, everything)  # and from the index saved since
    if change is change_record:
        found = clip_cache.RecordIndex(tmp_path).lookup(clips[7])
        assert found is not None and found[0].requested_sample_rate == 8000


def test_a_folder_changed_just_before_is_not_indexed(tmp_path, file_reads):
    """Records read in the same tick of the clock as a change could be stale under an mtime that matches."""
    clips = make_cache(tmp_path)  # just written: every folder changed less than RACY_NS ago
    indexed(tmp_path, clips)
    assert not list((tmp_path / clip_cache.RECORD_INDEX_DIRNAME).glob("*.json"))
    file_reads.clear()
    again = indexed(tmp_path, clips)
    assert len(file_reads) == len(clips)
    assert again == truth(tmp_path, clips)


def test_a_folder_that_changes_during_the_run_is_read_again_before_it_is_indexed(tmp_path, file_reads):
    clips = make_cache(tmp_path)
    age(tmp_path)
    index = clip_cache.RecordIndex(tmp_path)
    assert all(index.lookup(c) for c in clips)
    change_record(tmp_path, clips[3])  # e.g. another process refetched it meanwhile
    age(tmp_path, hours=2)
    index.save()
    file_reads.clear()
    after = indexed(tmp_path, clips)
    assert file_reads == [] and after == truth(tmp_path, clips)
    assert after[3][0].requested_sample_rate == 8000


@pytest.mark.parametrize("damage", [
    b"{not json", b"[]", b'{"format": 99, "mtime_ns": 0, "records": {}}',
    "hostile row",
])
def test_a_damaged_or_foreign_index_is_not_believed(tmp_path, damage, file_reads):
    clips = make_cache(tmp_path)
    age(tmp_path)
    indexed(tmp_path, clips)
    shard = clip_cache.shard_of(clips[0].ytid)
    path = tmp_path / clip_cache.RECORD_INDEX_DIRNAME / f"{shard}.json"
    if damage == "hostile row":  # a row naming a file outside its folder, under the folder's true mtime
        stored = json.loads(path.read_text())
        stored["records"][clips[0].key][0] = "../../outside.flac"
        path.write_text(json.dumps(stored))
    else:
        path.write_bytes(damage)
    file_reads.clear()
    found = indexed(tmp_path, clips)
    assert clips[0].key in file_reads
    assert found == truth(tmp_path, clips)


def test_an_index_that_cannot_be_written_is_not_kept(tmp_path):
    clips = make_cache(tmp_path)
    age(tmp_path)
    (tmp_path / "index").mkdir()
    (tmp_path / clip_cache.RECORD_INDEX_DIRNAME).write_text("a file where the folder goes")
    assert indexed(tmp_path, clips) == truth(tmp_path, clips)
