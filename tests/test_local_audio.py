"""Finding a clip's audio on disk under the naming schemes found in the wild."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio_dialogues.dataset.local_audio import AudioIndex, AudioResolver, listing_fingerprint
from audio_dialogues.sources.clips import Clip

YTID = "a_b-c_d-e_f"  # '_' and '-' everywhere
CLIP = Clip(YTID, 30.0, 40.0)


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


@pytest.mark.parametrize("name", [
    f"Y{YTID}.wav", f"{YTID}.flac", f"{YTID}_30.mp3", f"{YTID}_30.000.ogg", f"{YTID}_30_40.opus",
    f"{YTID}_30.0_40.0.m4a", f"{YTID}_30000.webm", f"Y{YTID}_30000.wav",
])
def test_each_naming_scheme_is_found(tmp_path: Path, name: str) -> None:
    touch(tmp_path, name)
    assert AudioIndex([tmp_path]).find(CLIP) == str(tmp_path / name)


@pytest.mark.parametrize("name", [f"{YTID}_31.wav", f"{YTID}_30_41.wav", f"{YTID}_31000.wav", f"{YTID}.txt",
                                  f"x{YTID}.wav", "Ya_b-c_d-e_.wav"])
def test_other_segments_and_other_files_are_not_taken(tmp_path: Path, name: str) -> None:
    touch(tmp_path, name)
    assert AudioIndex([tmp_path]).find(CLIP) is None


def test_preference_exact_window_then_start_then_whole_clip_then_lossless(tmp_path: Path) -> None:
    touch(tmp_path, f"Y{YTID}.mp3", f"Y{YTID}.flac", f"{YTID}_30.wav", f"{YTID}_30_40.ogg")
    index = AudioIndex([tmp_path])
    assert index.find(CLIP).endswith(f"{YTID}_30_40.ogg")
    (tmp_path / f"{YTID}_30_40.ogg").unlink()
    assert AudioIndex([tmp_path]).find(CLIP).endswith(f"{YTID}_30.wav")
    (tmp_path / f"{YTID}_30.wav").unlink()
    assert AudioIndex([tmp_path]).find(CLIP).endswith(f"Y{YTID}.flac")


def test_earlier_folders_win_and_subfolders_are_searched(tmp_path: Path) -> None:
    touch(tmp_path / "first" / "deep" / "er", f"Y{YTID}.mp3")
    touch(tmp_path / "second", f"Y{YTID}.wav")
    index = AudioIndex([tmp_path / "first", tmp_path / "second"])
    assert index.find(CLIP) == str(tmp_path / "first" / "deep" / "er" / f"Y{YTID}.mp3")


def test_clip_without_times(tmp_path: Path) -> None:
    touch(tmp_path, f"{YTID}_30_40.wav")
    assert AudioIndex([tmp_path]).find(Clip(YTID)) == str(tmp_path / f"{YTID}_30_40.wav")  # the only window
    touch(tmp_path, f"{YTID}_50_60.wav")
    assert AudioIndex([tmp_path]).find(Clip(YTID)) is None  # two windows: which one would be a guess
    touch(tmp_path, f"Y{YTID}.wav")
    assert AudioIndex([tmp_path]).find(Clip(YTID)) == str(tmp_path / f"Y{YTID}.wav")


def test_a_leading_y_that_belongs_to_the_id(tmp_path: Path) -> None:
    ytid = "Yabcdefghij"  # an 11-character id that itself starts with Y
    touch(tmp_path, f"{ytid}.wav", "YYabcdefghij_5.wav")
    index = AudioIndex([tmp_path])
    assert index.find(Clip(ytid)) == str(tmp_path / f"{ytid}.wav")
    assert index.find(Clip(ytid, 5.0, 15.0)) == str(tmp_path / "YYabcdefghij_5.wav")


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="audio_dir .*nowhere is not a directory"):
        AudioIndex([tmp_path / "nowhere"])


def test_resolver_looks_in_the_cache_last(tmp_path: Path) -> None:
    touch(tmp_path / "audio", f"Y{YTID}.wav")
    resolver = AudioResolver([tmp_path / "audio"], cache_dir=tmp_path / "cache")
    assert resolver.resolve(CLIP) == tmp_path / "audio" / f"Y{YTID}.wav"
    assert resolver.resolve(Clip("Zx3_kQ9-LmA", 0.0, 10.0)) is None  # not local, not cached


def test_listing_fingerprint_follows_adds_removals_and_rewrites(tmp_path: Path) -> None:
    touch(tmp_path, "Ya_b-c_d-e_f.wav")
    first = listing_fingerprint(tmp_path)
    assert listing_fingerprint(tmp_path) == first
    (tmp_path / "Ya_b-c_d-e_f.wav").write_bytes(b"longer")
    second = listing_fingerprint(tmp_path)
    touch(tmp_path, "Zx3_kQ9-LmA.wav")
    third = listing_fingerprint(tmp_path)
    assert len({first, second, third}) == 3


def test_relative_folders_give_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "rel", f"Y{YTID}.wav")
    monkeypatch.chdir(tmp_path)
    found = AudioIndex(["rel"]).find(CLIP)
    assert found == str(tmp_path / "rel" / f"Y{YTID}.wav")
