"""``load_dataset(..., download_audio=True)``: prepare fills the clip cache through the real fetcher.

YouTube cannot be reached from tests: the source videos are served over HTTP on 127.0.0.1
(tests/media_server.py, with Range support) and yt-dlp's generic extractor downloads them, exactly as
it would a YouTube audio stream, through ``fetch_options={"url_template": ...}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audio_dialogues
from audio_dialogues.dataset.builder import MissingAudioError
from tests.media_server import MediaServer, chirp, write_media

WINDOWS = {"a_b-c_d-e_f": (3.0, 8.0), "-leadingDsh": (0.0, 5.0), "Zx3_kQ9-LmA": (12.5, 17.5)}
SOURCE_RATE = 32_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("videos")
    with MediaServer() as server:
        for ytid in WINDOWS:
            server.add(f"{ytid}.flac", write_media(root / f"{ytid}.flac", 20.0, SOURCE_RATE))
        yield server


def _annotations(folder: Path, ytids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "audioset_test.jsonl", "w") as f:
        for ytid in ytids:
            start, end = WINDOWS[ytid]
            f.write(json.dumps({"id": ytid, "clips": [{"ytid": ytid, "start_s": start, "end_s": end}],
                                "turns": [{"user": "What is it?", "assistant": "A rising tone."}]}) + "\n")
    return folder


def test_download_audio_fills_the_cache_during_prepare(served: MediaServer, tmp_path: Path) -> None:
    kwargs = {
        "data_dir": str(_annotations(tmp_path / "data", list(WINDOWS))),
        "audio_cache_dir": str(tmp_path / "clips"),
        "fetch_options": {"url_template": served.url_template("flac"), "workers": 2},
    }
    with pytest.raises(MissingAudioError, match=r"audioset/test: no audio for any of its 3 records"):
        audio_dialogues.load("audioset", split="test", cache_dir=str(tmp_path / "hf"), **kwargs)
    assert served.total_bytes == 0  # nothing local and nothing fetched unless asked

    ds = audio_dialogues.load("audioset", split="test", cache_dir=str(tmp_path / "hf"), download_audio=True,
                              **kwargs)
    assert sorted(ds["id"]) == sorted(WINDOWS)
    reference = chirp(20.0, SOURCE_RATE)
    for row in ds:
        start, end = WINDOWS[row["id"]]
        audio = row["audio"]
        assert audio["sampling_rate"] == 16_000 and len(audio["array"]) == round((end - start) * 16_000)
        # the cached file is the requested window of the source, sample for sample at the source rate
        cut, rate = sf.read(audio["path"], dtype="float32")
        assert rate == 16_000
        expected = reference[round(start * SOURCE_RATE): round(end * SOURCE_RATE)][::2]
        assert np.corrcoef(cut[:len(expected)], expected[:len(cut)])[0, 1] > 0.99

    # A fresh datasets cache finds every clip in the clip cache: nothing is downloaded again.
    sent = served.total_bytes
    again = audio_dialogues.load("audioset", split="test", cache_dir=str(tmp_path / "hf2"), download_audio=True,
                                 **kwargs)
    assert again.num_rows == len(WINDOWS) and served.total_bytes == sent


def test_local_audio_is_used_before_downloading(served: MediaServer, tmp_path: Path) -> None:
    local = tmp_path / "audio"
    local.mkdir()
    sf.write(local / "Ya_b-c_d-e_f.wav", chirp(5.0, 16_000), 16_000)
    served.reset_counters()
    ds = audio_dialogues.load("audioset", split="test", cache_dir=str(tmp_path / "hf"), audio_dir=str(local),
                              data_dir=str(_annotations(tmp_path / "data", ["a_b-c_d-e_f", "-leadingDsh"])),
                              audio_cache_dir=str(tmp_path / "clips"), download_audio=True,
                              fetch_options={"url_template": served.url_template("flac"), "workers": 2},
                              decoder="none")
    paths = {row["id"]: row["audio"]["path"] for row in ds}
    assert paths["a_b-c_d-e_f"] == str(local / "Ya_b-c_d-e_f.wav")
    assert paths["-leadingDsh"].startswith(str(tmp_path / "clips"))
    assert set(served.requests) == {"-leadingDsh.flac"}


def test_native_rate_datasets_fetch_at_the_source_rate(served: MediaServer, tmp_path: Path) -> None:
    ds = audio_dialogues.load("audioset", split="test", cache_dir=str(tmp_path / "hf"), sampling_rate=None,
                              data_dir=str(_annotations(tmp_path / "data", ["Zx3_kQ9-LmA"])),
                              audio_cache_dir=str(tmp_path / "clips"), download_audio=True,
                              fetch_options={"url_template": served.url_template("flac"), "workers": 1})
    audio = ds[0]["audio"]
    assert audio["sampling_rate"] == SOURCE_RATE == sf.info(audio["path"]).samplerate
    assert len(audio["array"]) == 5 * SOURCE_RATE


def test_fetch_failures_reach_the_report_by_their_reason(served: MediaServer, tmp_path: Path) -> None:
    from audio_dialogues.dataset.api import prepare

    served.fail("a_b-c_d-e_f.flac", 429, times=50)  # rate limited (a bot check is transient alike)
    served.fail("-leadingDsh.flac", 404, times=50)
    try:
        _, report = prepare("audioset", cache_dir=str(tmp_path / "hf"), download_audio=True,
                            data_dir=str(_annotations(tmp_path / "data", list(WINDOWS))),
                            audio_cache_dir=str(tmp_path / "clips"), decoder="none",
                            fetch_options={"url_template": served.url_template("flac"), "workers": 2,
                                           "max_attempts": 1})
    finally:
        served.clear_faults()
    dropped = report["test"].dropped
    assert dropped == {"download failed (rate_limited; transient: run again later)": 1,
                       "unavailable (not_found)": 1}, dropped
    assert report["test"].kept == 1
