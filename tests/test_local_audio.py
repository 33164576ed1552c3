"""Finding a clip's audio on disk under the naming schemes found in the wild."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audio_dialogues
from audio_dialogues.audio.cache import ClipRecord, audio_path, read_record, write_record
from audio_dialogues.audio.headers import UnusableAudioError
from audio_dialogues.audio.index import AudioIndex
from audio_dialogues.audio.resolver import AudioResolver
from audio_dialogues.dataset.options import ConfigError
from audio_dialogues.dataset.resolution import ResolutionState
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


def test_many_subfolders_are_searched_in_order(tmp_path: Path) -> None:
    for i in range(12):
        touch(tmp_path / "root" / f"part{i:02d}", f"Zx3_kQ9-L{i:02d}.wav")
    touch(tmp_path / "root" / "part05" / "deeper", f"Y{YTID}.flac")
    touch(tmp_path / "later", f"Y{YTID}.wav", f"{YTID}_30_40.mp3")
    index = AudioIndex([tmp_path / "root", tmp_path / "later"])
    assert len(index) == 15
    assert index.find(Clip("Zx3_kQ9-L07", 0.0, 10.0)) == str(tmp_path / "root" / "part07" / "Zx3_kQ9-L07.wav")
    assert index.find(CLIP) == str(tmp_path / "later" / f"{YTID}_30_40.mp3")  # an exact window beats order
    assert index.find(Clip(YTID, 50.0, 60.0)) == str(tmp_path / "root" / "part05" / "deeper" / f"Y{YTID}.flac")


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
    with pytest.raises(ConfigError, match="audio_dir .*nowhere is not there"):  # a package error, not an OSError
        AudioIndex([tmp_path / "nowhere"])
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="audio_dir .*a-file is a file, not a folder"):
        AudioIndex([tmp_path / "a-file"])


def wav(path: Path, seconds: float, rate: int = 8_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


def test_resolver_looks_in_the_cache_last(tmp_path: Path) -> None:
    wav(tmp_path / "audio" / f"Y{YTID}.wav", 10.0)
    resolver = AudioResolver([tmp_path / "audio"], cache_dir=tmp_path / "cache")
    assert resolver.resolve(CLIP) == tmp_path / "audio" / f"Y{YTID}.wav"
    assert resolver.resolve(Clip("Zx3_kQ9-LmA", 0.0, 10.0)) is None  # not local, not cached


def test_resolution_state_follows_its_own_files_only(tmp_path: Path) -> None:
    """The fingerprint changes when a used file is rewritten, a missing clip's audio arrives or a file is
    added to an audio folder, and not when unrelated files appear in the clip cache."""
    used = wav(tmp_path / "audio" / f"Y{YTID}.wav", 10.0)
    cache = tmp_path / "cache"
    resolver = AudioResolver([tmp_path / "audio"], cache_dir=cache)
    missing = Clip("Zx3_kQ9-LmA", 0.0, 10.0)
    assert resolver.resolve(CLIP) == used and resolver.resolve(missing) is None
    state = ResolutionState.from_json(ResolutionState.of(resolver).to_json())
    first = state.fingerprint()
    (cache / "journal").mkdir(parents=True)
    (cache / "journal" / "host.jsonl").write_text('{"clip": "other"}\n')  # another config's fetch
    (cache / "ab").mkdir()
    (cache / "ab" / "Other00000A_0_10000.flac").write_bytes(b"x")
    assert state.fingerprint() == first
    wav(used, 9.0)  # rewritten in place
    second = state.fingerprint()
    assert second != first
    touch(tmp_path / "audio", "unrelated.txt")  # a new file in a folder that was searched
    assert state.fingerprint() != second


def test_a_file_longer_than_its_clip_is_cut_to_the_window(tmp_path: Path) -> None:
    """A whole video named <ytid>.wav and a <ytid>_<start>_<end> file longer than its name both give the window."""
    rate = 8_000
    t = np.arange(60 * rate) / rate
    video = (np.sign(np.sin(2 * np.pi * 0.05 * t)) * 0.1 + t / 1000).astype(np.float32)  # sample value encodes time
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / f"{YTID}.wav", video, rate, subtype="FLOAT")
    resolver = AudioResolver([tmp_path / "audio"], cache_dir=tmp_path / "cache")
    cut = resolver.resolve(CLIP)  # [30, 40) of the 60 s video
    assert cut is not None and cut.parent.parent == tmp_path / "cache" and cut.suffix == ".flac"
    data, got_rate = sf.read(cut, dtype="float32")
    assert got_rate == rate and len(data) == 10 * rate
    np.testing.assert_allclose(data[:10], video[30 * rate : 30 * rate + 10], atol=1e-4)
    assert resolver.resolve(CLIP) == cut  # cut once

    other = tmp_path / "other"
    long_window = wav(other / f"{YTID}_30_40.wav", 25.0)  # says 10 s, holds 25 s
    cut = AudioResolver([other], cache_dir=tmp_path / "cache2").resolve(CLIP)
    assert cut != long_window and sf.info(str(cut)).frames == 10 * 8_000
    exact = wav(tmp_path / "exact" / f"{YTID}_30_40.wav", 10.0)
    assert AudioResolver([tmp_path / "exact"], cache_dir=tmp_path / "cache3").resolve(CLIP) == exact


def test_undecodable_and_too_short_local_files_are_named(tmp_path: Path) -> None:
    touch(tmp_path / "bad", f"Y{YTID}.wav")  # b"x": not audio
    with pytest.raises(UnusableAudioError, match=rf"Y{YTID}.wav: not readable audio"):
        AudioResolver([tmp_path / "bad"], cache_dir=tmp_path / "cache").resolve(CLIP)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / f"Y{YTID}.flac").write_bytes(b"")
    with pytest.raises(UnusableAudioError, match="the file is empty"):
        AudioResolver([tmp_path / "empty"], cache_dir=tmp_path / "cache").resolve(CLIP)
    wav(tmp_path / "short" / f"{YTID}.wav", 20.0)  # longer than the clip, but the window starts at 30 s
    with pytest.raises(UnusableAudioError, match=r"holds 20.00 s, more than the 10 s clip .* but not its window "
                                                 r"\[30 s, 40 s\) of the video, which needs 40.00 s"):
        AudioResolver([tmp_path / "short"], cache_dir=tmp_path / "cache").resolve(CLIP)


def test_relative_folders_give_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "rel", f"Y{YTID}.wav")
    monkeypatch.chdir(tmp_path)
    found = AudioIndex(["rel"]).find(CLIP)
    assert found == str(tmp_path / "rel" / f"Y{YTID}.wav")


RATE = 8_000


def video(path: Path, seconds: float, window_hz: float, window: tuple[float, float] = (30.0, 40.0)) -> Path:
    """A whole-video WAV: a 300 Hz tone, except ``window_hz`` inside ``window`` (so a cut says where it came from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    hz = np.where((t >= window[0]) & (t < window[1]), window_hz, 300.0)
    sf.write(path, (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), RATE, subtype="PCM_16")
    return path


def pitch(samples: np.ndarray, rate: int = RATE) -> float:
    """The dominant frequency of ``samples`` in Hz."""
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))


def test_a_cut_follows_its_source_file(tmp_path: Path) -> None:
    """A cut is reused only while it is a cut of the same, unchanged file: a rewritten source (same size, new
    mtime) and another folder's file of the same clip are both cut again; a downloaded clip is never replaced."""
    clip = Clip("-1LrH01Ei1w", 30.0, 40.0)
    cache = tmp_path / "clips"
    source = video(tmp_path / "w1" / "wavs" / "-1LrH01Ei1w.wav", 60.0, 1000.0)
    cut = AudioResolver([tmp_path / "w1" / "wavs"], cache_dir=cache).resolve(clip)
    assert pitch(sf.read(cut)[0]) == pytest.approx(1000.0, abs=1)
    record = read_record(cache, clip)
    assert record is not None and record.extra["cut_from"] == str(source)
    cut_mtime = cut.stat().st_mtime_ns
    assert AudioResolver([tmp_path / "w1" / "wavs"], cache_dir=cache).resolve(clip) == cut
    assert cut.stat().st_mtime_ns == cut_mtime  # unchanged source: the cut is reused, not made again

    before = source.stat()
    video(source, 60.0, 2000.0)  # rewritten in place: same size, a later mtime
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert source.stat().st_size == before.st_size
    again = AudioResolver([tmp_path / "w1" / "wavs"], cache_dir=cache).resolve(clip)
    assert again == cut and pitch(sf.read(again)[0]) == pytest.approx(2000.0, abs=1)

    video(tmp_path / "w3" / "wavs" / "-1LrH01Ei1w.wav", 60.0, 3000.0)  # another folder's file of the same clip
    other = AudioResolver([tmp_path / "w3" / "wavs"], cache_dir=cache).resolve(clip)
    assert pitch(sf.read(other)[0]) == pytest.approx(3000.0, abs=1)
    assert read_record(cache, clip).extra["cut_from"] == str(tmp_path / "w3" / "wavs" / "-1LrH01Ei1w.wav")

    downloaded = Clip("Zx3_kQ9-LmA", 30.0, 40.0)
    path = audio_path(cache, downloaded, "flac")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(10 * RATE, dtype=np.float32), RATE, format="FLAC")
    write_record(cache, downloaded, ClipRecord(file=path.name, size=path.stat().st_size, format="flac",
                                               sample_rate=RATE, channels=1, frames=10 * RATE,
                                               requested_sample_rate=None))
    video(tmp_path / "w4" / "Zx3_kQ9-LmA.wav", 60.0, 1000.0)
    assert AudioResolver([tmp_path / "w4"], cache_dir=cache).resolve(downloaded) == path
    assert not sf.read(path)[0].any()  # the download stays what it was


def test_a_source_rewritten_with_its_old_size_and_mtime_is_cut_again(tmp_path: Path) -> None:
    """A file rewritten with the same size and its mtime set back (as ``touch -d`` or a copy keeping times does)
    changes its FileIdentity (ctime, and inode when moved into place): the cut, and the prepared copies'
    fingerprint, follow it. A cut record written with the two-field identity of earlier versions is cut again,
    never trusted."""
    clip = Clip("-1LrH01Ei1w", 30.0, 40.0)
    cache, folder = tmp_path / "clips", tmp_path / "wavs"
    source = video(folder / "-1LrH01Ei1w.wav", 60.0, 1000.0)
    resolver = AudioResolver([folder], cache_dir=cache)
    cut = resolver.resolve(clip)
    state = ResolutionState.from_json(ResolutionState.of(resolver).to_json())
    first = state.fingerprint()
    before = source.stat()
    replacement = video(tmp_path / "elsewhere.wav", 60.0, 2000.0)
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, source)  # another file moved to the name: same size, same mtime
    assert (source.stat().st_size, source.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert state.fingerprint() != first
    again = AudioResolver([folder], cache_dir=cache).resolve(clip)
    assert again == cut and pitch(sf.read(again)[0]) == pytest.approx(2000.0, abs=1)

    record = read_record(cache, clip)
    assert record is not None
    now = source.stat()
    del record.extra["source_identity"]
    record.extra.update(source_size=now.st_size, source_mtime_ns=now.st_mtime_ns)  # as earlier versions wrote
    write_record(cache, clip, record)
    video(source, 60.0, 3000.0)
    os.utime(source, ns=(now.st_atime_ns, now.st_mtime_ns))
    third = AudioResolver([folder], cache_dir=cache).resolve(clip)
    assert pitch(sf.read(third)[0]) == pytest.approx(3000.0, abs=1)


def test_a_rewritten_whole_video_gives_the_new_window_on_the_next_load(tmp_path: Path) -> None:
    """Through the real builder: the prepared copy is made again from a fresh cut, and a fresh datasets cache
    over another folder holding a different file of the same video gets that file's window."""
    data = tmp_path / "data"
    data.mkdir()
    record = {"id": "r0", "clips": [{"ytid": "-1LrH01Ei1w", "start_s": 30.0, "end_s": 40.0}],
              "turns": [{"user": "What plays?", "assistant": "A tone."}]}
    (data / "music_test.jsonl").write_text(json.dumps(record) + "\n")
    source = video(tmp_path / "w1" / "wavs" / "-1LrH01Ei1w.wav", 60.0, 1000.0)
    options = {"data_dir": str(data), "audio_cache_dir": str(tmp_path / "clips"),
               "musiccaps_csv": audio_dialogues.sample_paths()["musiccaps_csv"]}

    def load(folder: Path, hf: str) -> float:
        rows = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path / hf), audio_dir=str(folder),
                                    **options)
        return pitch(rows[0]["audio"]["array"], rows[0]["audio"]["sampling_rate"])

    assert load(tmp_path / "w1" / "wavs", "hf") == pytest.approx(1000.0, abs=1)
    before = source.stat()
    video(source, 60.0, 2000.0)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert load(tmp_path / "w1" / "wavs", "hf") == pytest.approx(2000.0, abs=1)
    video(tmp_path / "w3" / "wavs" / "-1LrH01Ei1w.wav", 60.0, 3000.0)
    assert load(tmp_path / "w3" / "wavs", "hf3") == pytest.approx(3000.0, abs=1)
    assert load(tmp_path / "w1" / "wavs", "hf") == pytest.approx(2000.0, abs=1)  # w1's copy is cut again


def test_a_whole_video_too_short_for_the_window_is_refused(tmp_path: Path) -> None:
    """A 35 s video cannot give [30 s, 40 s): refused with both lengths, nothing written to the cache; a video
    short of the window's end by less than the fetch tolerance still gives the clip."""
    clip = Clip("-1OlgJWehn8", 30.0, 40.0)
    video(tmp_path / "short" / "-1OlgJWehn8.wav", 35.0, 1000.0)
    with pytest.raises(UnusableAudioError, match=r"-1OlgJWehn8.wav: holds 35.00 s, .* window \[30 s, 40 s\) of "
                                                 r"the video, which needs 40.00 s") as err:
        AudioResolver([tmp_path / "short"], cache_dir=tmp_path / "clips").resolve(clip)
    assert err.value.reason == "audio file does not hold the clip's window"
    assert read_record(tmp_path / "clips", clip) is None
    video(tmp_path / "nearly" / "-1OlgJWehn8.wav", 39.97, 1000.0)
    cut = AudioResolver([tmp_path / "nearly"], cache_dir=tmp_path / "clips").resolve(clip)
    assert sf.info(str(cut)).frames == int(9.97 * RATE)


def test_a_truncated_wav_is_refused_at_prepare(tmp_path: Path) -> None:
    """A WAV holding fewer bytes than its data header promises is refused when resolved (file size arithmetic,
    nothing decoded), through load() too; a chunk after the data, or a pipe's placeholder size, is no truncation."""
    from audio_dialogues.dataset.resolution import MissingAudioError

    clip = Clip("-1OlgJWehn8", 30.0, 40.0)
    whole = wav(tmp_path / "whole" / "-1OlgJWehn8_30_40.wav", 10.0)
    cut = tmp_path / "cut" / whole.name
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[:100_000])
    with pytest.raises(UnusableAudioError, match=r"-1OlgJWehn8_30_40.wav: truncated: its header promises 10.000 s "
                                                 r"of audio, the file holds 6.247 s") as err:
        AudioResolver([cut.parent], cache_dir=tmp_path / "clips").resolve(clip)
    assert err.value.reason == "undecodable audio"

    trailing = tmp_path / "trailing" / whole.name
    trailing.parent.mkdir()
    trailing.write_bytes(whole.read_bytes() + b"LIST\x04\x00\x00\x00INFO")
    assert AudioResolver([trailing.parent], cache_dir=tmp_path / "clips").resolve(clip) == trailing
    piped = tmp_path / "piped" / whole.name
    piped.parent.mkdir()
    data = bytearray(whole.read_bytes())
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"  # RIFF and data sizes as a writer to a pipe leaves them
    piped.write_bytes(bytes(data))
    assert AudioResolver([piped.parent], cache_dir=tmp_path / "clips").resolve(clip) == piped

    (tmp_path / "data").mkdir()
    record = {"id": "r0", "clips": [{"ytid": clip.ytid, "start_s": 30.0, "end_s": 40.0}],
              "turns": [{"user": "What plays?", "assistant": "A tone."}]}
    (tmp_path / "data" / "music_test.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(MissingAudioError, match=r"music_test.jsonl:1 \(id 'r0'\): undecodable audio for clip "
                                                r".*truncated: its header promises 10.000 s"):
        audio_dialogues.load("music", split="test", cache_dir=str(tmp_path / "hf"), audio_dir=str(cut.parent),
                             data_dir=str(tmp_path / "data"), missing_audio="error",
                             audio_cache_dir=str(tmp_path / "clips"),
                             musiccaps_csv=audio_dialogues.sample_paths()["musiccaps_csv"])


@pytest.mark.parametrize("name", [f"{YTID}_30_40.wav", f"{YTID}_30.wav", f"{YTID}_30000.wav"])
def test_a_windowed_file_shorter_than_its_clip_is_refused(tmp_path: Path, name: str) -> None:
    """A windowed name starts at the clip's start: 5 s of a 10 s clip lacks the window's end, and is refused
    with both lengths; short by less than the fetch tolerance, it still gives the clip."""
    wav(tmp_path / "short" / name, 5.0)
    with pytest.raises(UnusableAudioError, match=rf"{name}: holds 5.00 s, less than the 10 s clip .* lacks the end "
                                                 r"of the window \[30 s, 40 s\)") as err:
        AudioResolver([tmp_path / "short"], cache_dir=tmp_path / "cache").resolve(CLIP)
    assert err.value.reason == "audio file does not hold the clip's window"
    wav(tmp_path / "nearly" / name, 9.97)
    assert AudioResolver([tmp_path / "nearly"], cache_dir=tmp_path / "cache").resolve(CLIP).name == name
