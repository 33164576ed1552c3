"""The record index of the clip cache: a re-run reads one file per shard folder, and still sees every change.

The truth is :func:`audio_dialogues.audio.cache.lookup`, which reads each clip's record file; the index
must give the same answer for every clip after any change a fetch, another process or a user makes.
Folders count as settled after 50 ms here (``RACY_NS``), not 3 s: a folder's ctime cannot be dated back,
so each test waits for that after changing the cache, as a later run would find it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from audio_dialogues.audio import cache as clip_cache
from audio_dialogues.fetch import fetch_clips
from audio_dialogues.sources.clips import Clip


@pytest.fixture(autouse=True)
def settled_soon(monkeypatch):
    monkeypatch.setattr(clip_cache, "RACY_NS", 50_000_000)


def settle() -> None:
    """Let the folders changed so far stand unchanged for longer than ``RACY_NS``."""
    time.sleep(0.1)


def make_cache(cache: Path, n: int = 40) -> list[Clip]:
    """``n`` cached clips (audio of a few bytes and their records), spread over several shard folders."""
    clips = [Clip(f"vid{i:04d}-ab_"[:11], 10.0 * (i % 3), 10.0 * (i % 3) + 10.0) for i in range(n)]
    for clip in clips:
        write_clip(cache, clip)
    settle()
    return clips


def write_clip(cache: Path, clip: Clip, rate: int = 16000, payload: bytes = b"fLaC-and-some-audio") -> None:
    audio = clip_cache.audio_path(cache, clip, "flac")
    audio.parent.mkdir(parents=True, exist_ok=True)
    audio.write_bytes(payload)
    clip_cache.write_record(cache, clip, clip_cache.ClipRecord(
        file=audio.name, size=len(payload), format="flac", sample_rate=rate, channels=1, frames=160000,
        requested_sample_rate=rate, url=f"https://example.org/{clip.ytid}"))


def indexed(cache: Path, clips: list[Clip]) -> list:
    """A run's worth of lookups through a fresh index, which is then saved."""
    index = clip_cache.RecordIndex(cache)
    found = [index.lookup(clip) for clip in clips]
    index.save()
    return found


def index_files(cache: Path) -> list[Path]:
    return sorted((cache / clip_cache.RECORD_INDEX_DIRNAME).glob("*.json"))


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
    first = indexed(tmp_path, clips)
    assert len(file_reads) == len(clips) and all(first)
    assert len(index_files(tmp_path)) == len({clip_cache.shard_of(c.ytid) for c in clips})
    file_reads.clear()
    again = indexed(tmp_path, clips)
    assert file_reads == []
    assert again == first == truth(tmp_path, clips)


def test_fetch_indexes_a_cache_it_finds_without_an_index(tmp_path, file_reads):
    """A cache written before the index existed: the first re-run reads the records and saves them."""
    clips = make_cache(tmp_path)
    assert fetch_clips(clips, cache_dir=tmp_path, progress=False).skipped == len(clips)
    assert len(file_reads) == len(clips)
    file_reads.clear()
    report = fetch_clips(clips, cache_dir=tmp_path, progress=False)
    assert report.skipped == len(clips) and file_reads == []
    assert [str(o.path) for o in report.outcomes] == [found[1] for found in truth(tmp_path, clips)]


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
def test_every_change_after_the_index_is_seen(tmp_path, change, file_reads):
    clips = make_cache(tmp_path)
    indexed(tmp_path, clips)
    change(tmp_path, clips[7])
    settle()
    everything = [*clips, Clip(clips[7].ytid, 100.0, 110.0)]
    assert indexed(tmp_path, everything) == truth(tmp_path, everything)
    file_reads.clear()
    again = indexed(tmp_path, everything)  # from the index the run after the change saved
    assert set(file_reads) <= {c.key for c in everything if clip_cache.lookup(tmp_path, c) is None}
    assert again == truth(tmp_path, everything)
    if change is change_record:
        assert again[7][0].requested_sample_rate == 8000


def test_a_folder_changed_just_before_is_not_indexed(tmp_path, monkeypatch, file_reads):
    """Records read in the same tick of the clock as a change could be stale under times that match."""
    monkeypatch.setattr(clip_cache, "RACY_NS", 3600 * 10**9)
    clips = make_cache(tmp_path)
    index = clip_cache.RecordIndex(tmp_path)
    assert all(index.lookup(c) for c in clips)
    change_record(tmp_path, clips[3])  # one folder changes during the run as well
    index.save()
    assert index_files(tmp_path) == []
    file_reads.clear()
    again = indexed(tmp_path, clips)
    assert len(file_reads) == len(clips)
    assert again == truth(tmp_path, clips)


def test_a_folder_that_changes_during_the_run_is_read_again_before_it_is_indexed(tmp_path, file_reads):
    clips = make_cache(tmp_path)
    index = clip_cache.RecordIndex(tmp_path)
    assert all(index.lookup(c) for c in clips)
    change_record(tmp_path, clips[3])  # e.g. another process refetched it meanwhile
    settle()
    index.save()
    file_reads.clear()
    after = indexed(tmp_path, clips)
    assert file_reads == [] and after == truth(tmp_path, clips)
    assert after[3][0].requested_sample_rate == 8000


def test_a_record_replaced_while_the_index_reads_the_folder_is_not_believed(tmp_path, monkeypatch):
    """The folder's identity is taken before its records are read: a change during the reads moves it."""
    clips = make_cache(tmp_path)
    target = clips[3]
    shard = clip_cache.shard_of(target.ytid)
    index = clip_cache.RecordIndex(tmp_path)
    assert all(index.lookup(c) for c in clips)
    add_clip(tmp_path, target)  # the folder changed during the run: save reads its records again
    settle()
    real = clip_cache.lookup_key
    read_in_folder: list[str] = []

    def replacing_meanwhile(folder, key):
        found = real(folder, key)
        read_in_folder.append(key)
        if folder.endswith(f"/{shard}/") and key == target.key:
            change_record(tmp_path, target)  # replaced right after the index read the old one
        return found

    monkeypatch.setattr(clip_cache, "lookup_key", replacing_meanwhile)
    index.save()
    monkeypatch.setattr(clip_cache, "lookup_key", real)
    assert target.key in read_in_folder
    after = indexed(tmp_path, clips)
    assert after == truth(tmp_path, clips)
    assert after[3][0].requested_sample_rate == 8000


def rewrite(path: Path, **changes) -> None:
    stored = json.loads(path.read_text())
    stored.update(changes)
    path.write_text(json.dumps(stored))


def set_file(name: str):
    def damage(path: Path, key: str) -> None:
        stored = json.loads(path.read_text())
        stored["records"][key][0] = name
        path.write_text(json.dumps(stored))
    return damage


@pytest.mark.parametrize("damage", [
    lambda path, key: path.write_bytes(b"{not json"),
    lambda path, key: path.write_bytes(b"[]"),
    lambda path, key: rewrite(path, format=99),  # another version's layout, under the folder's true identity
    lambda path, key: rewrite(path, fields=["file", "size"]),  # another version's record fields
    lambda path, key: rewrite(path, records=[]),
    set_file("../../outside.flac"), set_file(".hidden.flac"), set_file("nul\0.flac"), set_file("\ud800.flac"),
    set_file(7),
], ids=["not-json", "list", "format", "fields", "records", "outside", "hidden", "nul", "surrogate", "number"])
def test_a_damaged_or_foreign_index_is_not_believed(tmp_path, damage, file_reads):
    clips = make_cache(tmp_path)
    indexed(tmp_path, clips)
    path = tmp_path / clip_cache.RECORD_INDEX_DIRNAME / f"{clip_cache.shard_of(clips[0].ytid)}.json"
    damage(path, clips[0].key)
    file_reads.clear()
    found = indexed(tmp_path, clips)
    assert clips[0].key in file_reads
    assert found == truth(tmp_path, clips)
    file_reads.clear()
    assert indexed(tmp_path, clips) == found and file_reads == []  # and the damage was replaced


def test_an_index_that_cannot_be_written_is_not_kept(tmp_path):
    clips = make_cache(tmp_path)
    (tmp_path / "index").mkdir()
    (tmp_path / clip_cache.RECORD_INDEX_DIRNAME).write_text("a file where the folder goes")
    assert indexed(tmp_path, clips) == truth(tmp_path, clips)
    assert fetch_clips(clips, cache_dir=tmp_path, progress=False).skipped == len(clips)


def test_what_a_killed_index_write_left_is_swept(tmp_path, monkeypatch):
    clips = make_cache(tmp_path)
    folder = tmp_path / clip_cache.RECORD_INDEX_DIRNAME
    folder.mkdir(parents=True)
    leftover = folder / ".tmp-00-12345-deadbeef"
    leftover.write_text("{half an ind")
    indexed(tmp_path, clips)
    assert leftover.exists()  # younger than a write could take: perhaps another run's, being written
    monkeypatch.setattr(clip_cache, "_STALE_TEMPORARY_NS", -1)
    indexed(tmp_path, clips[:1] + [Clip(clips[0].ytid, 100.0, 110.0)])
    assert not leftover.exists() and index_files(tmp_path)
