"""tfds-style builder tests on the embedded sample: split sizes, feature types, decoded audio.

Run on datasets 5.x (tox env py311) and on datasets 3.6 (tox env datasets36): nothing here may depend
on torchcodec unless it is installed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

import audio_dialogues
from audio_dialogues.dataset.api import prepare
from audio_dialogues.dataset.builder import AudioDialogues, MissingAudioError
from audio_dialogues.dataset.decoding import DecoderUnavailableError, SoundfileAudio
from tests.tools import needs_unshare

SAMPLE = audio_dialogues.sample_paths()
SAMPLE_DATA = Path(SAMPLE["data_dir"])
SAMPLE_AUDIO = Path(SAMPLE["audio_dir"])

# (config, split) -> (records in the annotation file, records with all their audio in the sample)
EXPECTED_SIZES = {
    ("audioset", "train"): (3, 3),
    ("audioset", "test"): (2, 2),
    ("music", "train"): (3, 2),
    ("music", "test"): (2, 2),
    ("comparison", "train"): (3, 2),
    ("comparison", "test"): (2, 2),
}


def _count_records(config: str, split: str) -> int:
    (path,) = [p for p in SAMPLE_DATA.iterdir() if p.stem == f"{config}_{split}"]
    text = path.read_text()
    return len(json.loads(text)) if path.suffix == ".json" else len(text.splitlines())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("hf")
    return {
        config: prepare(config, cache_dir=str(cache), **SAMPLE)
        for config in ("audioset", "music", "comparison")
    }


@pytest.mark.parametrize("config,split", sorted(EXPECTED_SIZES))
def test_split_sizes_match_the_sample_files(prepared: dict, config: str, split: str) -> None:
    records, with_audio = EXPECTED_SIZES[config, split]
    assert _count_records(config, split) == records
    splits, report = prepared[config]
    assert splits[split].num_rows == with_audio
    assert report[split].records == records
    assert report[split].kept == with_audio
    assert sum(report[split].dropped.values()) == records - with_audio


@pytest.mark.parametrize("config", ["audioset", "music", "comparison"])
def test_feature_types(prepared: dict, config: str) -> None:
    features = prepared[config][0]["train"].features
    assert features["id"] == datasets.Value("string")
    turns = features["turns"]
    turn = turns.feature if hasattr(turns, "feature") else turns[0]
    assert turn == {"user": datasets.Value("string"), "assistant": datasets.Value("string")}
    if config == "comparison":
        audios = features["audios"]
        assert isinstance(audios.feature if hasattr(audios, "feature") else audios[0], SoundfileAudio)
        assert set(features["clips"].feature if hasattr(features["clips"], "feature") else features["clips"][0]) == {
            "ytid", "start_s", "end_s"}
    else:
        assert isinstance(features["audio"], SoundfileAudio)
        assert features["clip"]["start_s"] == datasets.Value("float64")
    if config == "audioset":
        assert "sound_events" in features
    if config == "music":
        assert features["caption"] == datasets.Value("string")


@pytest.mark.parametrize("config", ["audioset", "music", "comparison"])
def test_rows_are_typed_and_audio_decodes_to_the_file_length(prepared: dict, config: str) -> None:
    for split, ds in prepared[config][0].items():
        ids = ds["id"]
        assert len(set(ids)) == len(ids), f"{config}/{split} ids are not unique"
        for ex in ds:
            assert ex["turns"] and all(t["user"] and t["assistant"] for t in ex["turns"])
            audios = ex["audios"] if config == "comparison" else [ex["audio"]]
            clips = ex["clips"] if config == "comparison" else [ex["clip"]]
            assert (2 <= len(audios) <= 4) if config == "comparison" else len(audios) == 1
            for audio, clip in zip(audios, clips, strict=True):
                info = sf.info(audio["path"])
                assert clip["ytid"] in Path(audio["path"]).name
                assert audio["sampling_rate"] == 16_000
                assert audio["array"].dtype == np.float32 and audio["array"].ndim == 1
                assert len(audio["array"]) == round(info.frames * 16_000 / info.samplerate)
                assert np.abs(audio["array"]).max() > 0.1  # real content, not silence


def test_release_records_get_times_and_events_from_metadata(prepared: dict) -> None:
    train = prepared["audioset"][0]["train"]
    row = train[train["id"].index("q_W_e_R_t_Y")]
    assert row["clip"] == {"ytid": "q_W_e_R_t_Y", "start_s": 120.5, "end_s": 130.5}
    assert [e["label"] for e in row["sound_events"]] == ["Hum", "Tick", "Tick"]
    music = prepared["music"][0]["test"]
    row = music[music["id"].index("-Po9_Ui8-Ty")]
    assert row["clip"]["start_s"] == 15.0 and row["caption"].startswith("Fast, bright arpeggios")
    assert "energetic" in row["aspects"]
    comparison = prepared["comparison"][0]["train"]
    assert comparison[0]["clips"][1] == {"ytid": "-aB_cD3eF4g", "start_s": 0.0, "end_s": 10.0}


def test_release_records_without_metadata_load_by_name_with_null_times(tmp_path: Path) -> None:
    splits = audio_dialogues.load("comparison", data_dir=SAMPLE["data_dir"], audio_dir=SAMPLE["audio_dir"],
                                  cache_dir=str(tmp_path), decoder="none")
    first = splits["train"][0]
    assert [c["start_s"] for c in first["clips"]] == [None, None]
    assert [Path(a["path"]).name for a in first["audios"]] == ["YZx3_kQ9-LmA.flac", "-aB_cD3eF4g_0.flac"]


def test_native_rate_and_no_decode(tmp_path: Path) -> None:
    native = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path), sampling_rate=None, **SAMPLE)
    assert native[0]["audio"]["sampling_rate"] == 8_000
    paths = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path), decoder="none", **SAMPLE)
    assert set(paths[0]["audio"]) == {"path", "bytes"} and Path(paths[0]["audio"]["path"]).is_file()


@pytest.mark.usefixtures("torchcodec")
@pytest.mark.parametrize("rate", [16_000, None, 22_050])
def test_both_decode_paths_agree(tmp_path: Path, rate: int | None) -> None:
    fast = audio_dialogues.load("audioset", split="train", cache_dir=str(tmp_path), sampling_rate=rate, **SAMPLE)
    slow = audio_dialogues.load("audioset", split="train", cache_dir=str(tmp_path), sampling_rate=rate,
                                decoder="torchcodec", **SAMPLE)
    for a, b in zip(fast, slow, strict=True):
        # Read torchcodec's array once: with resampling, a second get_all_samples() on the same decoder
        # object returns shifted samples (torchcodec 0.13-0.15 keep resampler state between calls).
        x, y = a["audio"]["array"], b["audio"]["array"]
        assert a["audio"]["sampling_rate"] == b["audio"]["sampling_rate"]
        assert y.dtype == np.float32 and y.ndim == 1
        assert len(x) == len(y)
        assert np.corrcoef(x, y)[0, 1] >= 0.99


@pytest.mark.skipif(int(datasets.__version__.split(".")[0]) >= 4, reason="datasets >= 4 decodes with torchcodec")
def test_torchcodec_on_datasets_3_is_refused_not_replaced(tmp_path: Path) -> None:
    """datasets 3.x's Audio decodes with soundfile and librosa (float64): asked for torchcodec, say so and stop."""
    with pytest.raises(DecoderUnavailableError, match=rf"decoder='torchcodec' needs datasets >= 4, .*datasets "
                                          rf"{datasets.__version__} decodes with soundfile and librosa .*float64"):
        audio_dialogues.load("music", split="test", cache_dir=str(tmp_path), decoder="torchcodec", **SAMPLE)
    default = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path), **SAMPLE)[0]["audio"]["array"]
    assert default.dtype == np.float32  # what the message offers instead


def test_missing_audio_policies(tmp_path: Path) -> None:
    kept = audio_dialogues.load("music", split="train", cache_dir=str(tmp_path), missing_audio="keep", **SAMPLE)
    assert kept.num_rows == 3
    lullaby = kept[kept["id"].index("mu-train-lullaby")]
    assert lullaby["audio"] is None and lullaby["caption"].startswith("A gentle lullaby")
    with pytest.raises(MissingAudioError, match=r"music_train.jsonl:3 .*Wd3-Xs2_Za1"):
        audio_dialogues.load("music", cache_dir=str(tmp_path), missing_audio="error", **SAMPLE)


def _copy_sample(tmp_path: Path) -> dict:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    return {**SAMPLE, "data_dir": str(data)}


def test_changed_annotation_contents_are_never_served_from_a_stale_cache(tmp_path: Path) -> None:
    paths = _copy_sample(tmp_path)
    cache = str(tmp_path / "hf")
    first = audio_dialogues.load("audioset", split="test", cache_dir=cache, **paths)
    assert first[0]["turns"][0]["assistant"] == "A single bell-like ding that slowly fades."
    annotation = Path(paths["data_dir"]) / "audioset_test.jsonl"
    annotation.write_text(annotation.read_text().replace("slowly fades", "stops abruptly"))
    second = audio_dialogues.load("audioset", split="test", cache_dir=cache, **paths)
    assert second[0]["turns"][0]["assistant"] == "A single bell-like ding that stops abruptly."
    # unchanged contents: served from the cache that now exists, through load_dataset as well
    third = datasets.load_dataset("audio_dialogues", "audioset", split="test", cache_dir=cache, **paths)
    assert third.cache_files[0]["filename"] == second.cache_files[0]["filename"]


def test_changed_metadata_and_new_audio_invalidate_the_cache(tmp_path: Path) -> None:
    paths = _copy_sample(tmp_path)
    audio = tmp_path / "audio"
    shutil.copytree(SAMPLE_AUDIO, audio)
    meta = tmp_path / "musiccaps.csv"
    shutil.copy(SAMPLE["musiccaps_csv"], meta)
    paths.update(audio_dir=str(audio), musiccaps_csv=str(meta))
    cache = str(tmp_path / "hf")
    assert audio_dialogues.load("music", split="train", cache_dir=cache, **paths).num_rows == 2
    meta.write_text(meta.read_text().replace("calm and meditative", "calm and spacious"))
    shutil.copy(audio / "bN5-hR7_wK1.flac", audio / "YWd3-Xs2_Za1.flac")  # the lullaby's audio arrives
    train = audio_dialogues.load("music", split="train", cache_dir=cache, **paths)
    assert train.num_rows == 3
    assert "calm and spacious" in train[train["id"].index("mu-train-chords")]["caption"]


def test_load_dataset_resolves_the_name_after_import(tmp_path: Path) -> None:
    assert audio_dialogues.LOAD_DATASET_HOOKED
    ds = datasets.load_dataset("audio_dialogues", "music", split="test", cache_dir=str(tmp_path), **SAMPLE)
    assert ds.num_rows == 2 and ds[0]["audio"]["sampling_rate"] == 16_000
    builder = datasets.load_dataset_builder("audio_dialogues", "comparison", cache_dir=str(tmp_path), **SAMPLE)
    assert isinstance(builder, AudioDialogues) and builder.config.name == "comparison"
    # any other name still goes to datasets' own resolution
    local = tmp_path / "plain"
    local.mkdir()
    (local / "train.jsonl").write_text('{"a": 1}\n')
    assert datasets.load_dataset(str(local), split="train", cache_dir=str(tmp_path))[0] == {"a": 1}


def test_default_config_is_music(tmp_path: Path) -> None:
    builder = datasets.load_dataset_builder("audio_dialogues", cache_dir=str(tmp_path), **SAMPLE)
    assert builder.config.name == "music"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"name": "speech"}, "unknown config 'speech'; the configs are: audioset, music, comparison"),
        ({"name": "music", "decoder": "librosa"}, "option decoder must be one of 'soundfile', .*, got 'librosa'"),
        ({"name": "music", "missing_audio": "skip"}, "option missing_audio must be one of 'drop', .*, got 'skip'"),
        ({"name": "music", "num_shards": 0}, "option num_shards must be a whole number from 1 .*, got 0 "),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        audio_dialogues.load(name, cache_dir=str(tmp_path), **SAMPLE, **kwargs)


def test_unknown_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown split \"validation\". Should be one of \['train', 'test'\]"):
        audio_dialogues.load("music", split="validation", cache_dir=str(tmp_path), **SAMPLE)


def _tone(seconds: float, rate: int = 8_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + t / 60)).astype(np.float32)  # loudness grows with time


def _one_record(tmp_path: Path, clip: dict) -> dict:
    data = tmp_path / "data"
    data.mkdir()
    record = {"id": "one", "clips": [clip], "turns": [{"user": "What is it?", "assistant": "A tone."}]}
    (data / "music_test.jsonl").write_text(json.dumps(record) + "\n")
    return {"data_dir": str(data), "audio_dir": str(tmp_path / "audio"), "musiccaps_csv": SAMPLE["musiccaps_csv"],
            "audio_cache_dir": str(tmp_path / "clips")}


@pytest.mark.parametrize("decoder", ["soundfile", "torchcodec"])
@pytest.mark.parametrize("name", ["Ab12Cd34Ef5.wav", "Ab12Cd34Ef5_30_40.flac"])
def test_a_local_file_longer_than_its_clip_gives_the_window(tmp_path: Path, decoder: str, name: str,
                                                            request: pytest.FixtureRequest) -> None:
    if decoder == "torchcodec":
        request.getfixturevalue("torchcodec")  # skips on datasets 3.x, fails in CI without torchcodec
    (tmp_path / "audio").mkdir()
    whole = _tone(60.0)
    sf.write(tmp_path / "audio" / name, whole, 8_000)
    inputs = _one_record(tmp_path, {"ytid": "Ab12Cd34Ef5", "start_s": 30.0, "end_s": 40.0})
    ds = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path / "hf"), sampling_rate=None,
                              decoder=decoder, **inputs)
    audio = ds[0]["audio"]
    array = np.asarray(audio["array"], dtype=np.float32)
    assert audio["sampling_rate"] == 8_000 and len(array) == 80_000
    offset = 30 * 8_000 if "_30_40" not in name else 0  # a whole video starts at 0, a windowed file at the clip
    np.testing.assert_allclose(array[:100], whole[offset : offset + 100], atol=1e-3)


def test_undecodable_local_audio_is_found_at_prepare_with_record_and_clip(tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "YAb12Cd34Ef5.flac").write_bytes(b"fLaC but nothing a decoder could read")
    inputs = _one_record(tmp_path, {"ytid": "Ab12Cd34Ef5", "start_s": 30.0, "end_s": 40.0})
    with pytest.raises(MissingAudioError, match=r"music_test.jsonl:1 \(id 'one'\): undecodable audio for clip "
                                                r"Ab12Cd34Ef5 \[30s, 40s\).*YAb12Cd34Ef5.flac: not readable audio"):
        audio_dialogues.load("music", cache_dir=str(tmp_path / "hf"), missing_audio="error", **inputs)
    kept = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path / "hf"), missing_audio="keep", **inputs)
    assert kept[0]["audio"] is None
    _, report = prepare("music", cache_dir=str(tmp_path / "hf2"), missing_audio="keep", **inputs)
    assert report["test"].missing_clips == 1


@needs_unshare
def test_builds_from_a_read_only_install(tmp_path: Path) -> None:
    """The package on a read-only mount (a container's system site-packages) builds and loads.

    datasets 3.6 created ``<site-packages>/audio_dialogues.lock`` whenever a builder was made, so there every
    load failed with "Read-only file system". The mount is real: a user namespace binds the package's
    parent folder read-only, and a fresh interpreter loads the sample from it.
    """
    parent = Path(audio_dialogues.__file__).resolve().parents[1]
    (parent / "audio_dialogues.lock").unlink(missing_ok=True)
    code = ("import audio_dialogues, datasets, json, sys; "
            "ds = datasets.load_dataset('audio_dialogues', 'music', split='test', cache_dir=sys.argv[1], "
            "**audio_dialogues.sample_paths()); print(json.dumps([ds.num_rows, ds[0]['audio']['sampling_rate']]))")
    script = f"mount --bind -o ro {shlex.quote(str(parent))} {shlex.quote(str(parent))} && exec \"$@\""
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-c", code,
                          str(tmp_path / "hf")], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(parent)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])[0] == EXPECTED_SIZES["music", "test"][1]
    assert not (parent / "audio_dialogues.lock").exists()


def _test_split_without_audio(tmp_path: Path) -> dict:
    """The sample's music train split (2 of 3 dialogues with audio) and a test split whose clips have no audio."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE_DATA / "music_train.jsonl", data)
    with open(data / "music_test.jsonl", "w") as f:
        for i, ytid in enumerate(["Zz99Yy88Xx0", "Zz99Yy88Xx1"]):
            f.write(json.dumps({"id": f"gone-{i}", "clips": [{"ytid": ytid, "start_s": 0.0, "end_s": 10.0}],
                                "turns": [{"user": "What plays?", "assistant": "A flute."}]}) + "\n")
    return {**SAMPLE, "data_dir": str(data), "audio_cache_dir": str(tmp_path / "clips")}


def test_a_split_without_audio_never_blocks_the_split_asked_for(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    inputs = _test_split_without_audio(tmp_path)
    cache = str(tmp_path / "hf")
    train = audio_dialogues.load("music", split="train", cache_dir=cache, **inputs)
    assert train.num_rows == 2
    assert "music/test: no audio for any of its 2 records (no audio found: 2)" in caplog.text
    assert "Prepared as an empty split" in caplog.text
    # every split is prepared (as datasets does); the empty one says why in its report
    splits, report = prepare("music", cache_dir=cache, **inputs)
    assert splits["train"].num_rows == 2 and splits["test"].num_rows == 0
    assert splits["test"].features == splits["train"].features
    assert (report["test"].records, report["test"].kept, report["test"].dropped) == (2, 0, {"no audio found": 2})
    assert report["train"].dropped == {"no audio found": 1}
    # asking for the empty split by name is the clear error, also from the cached copy and through load_dataset
    message = r"music/test: no audio for any of its 2 records \(no audio found: 2\); searched .*sample/audio"
    with pytest.raises(MissingAudioError, match=message):
        audio_dialogues.load("music", split="test", cache_dir=cache, **inputs)
    with pytest.raises(MissingAudioError, match=message):
        prepare("music", "test", cache_dir=cache, **inputs)
    with pytest.raises(MissingAudioError, match=message):
        datasets.load_dataset("audio_dialogues", "music", split="train[:1]+test", cache_dir=cache, **inputs)
    assert datasets.load_dataset("audio_dialogues", "music", split="train", cache_dir=cache, **inputs).num_rows == 2
    # missing_audio="error" stays strict: any record without audio stops the prepare, asked-for split or not
    with pytest.raises(MissingAudioError, match=r"music_train.jsonl:3 .*Wd3-Xs2_Za1"):
        audio_dialogues.load("music", split="test", cache_dir=cache, missing_audio="error", **inputs)


def test_no_split_with_audio_is_an_error_when_all_are_asked_for(tmp_path: Path) -> None:
    inputs = _test_split_without_audio(tmp_path)
    inputs["audio_dir"] = str(tmp_path / "no-audio-here")
    os.mkdir(inputs["audio_dir"])
    with pytest.raises(MissingAudioError, match=r"music/train: no audio for any of its 3 records.*; "
                                                r"music/test: no audio for any of its 2 records"):
        prepare("music", cache_dir=str(tmp_path / "hf"), **inputs)


def test_load_dataset_without_the_import_offline_names_the_fix(tmp_path: Path) -> None:
    """Without ``import audio_dialogues`` nothing of the package runs; offline, datasets falls back to the cache
    folder the package's prepared copies are in, and lists its folders as the available configs: one names
    the fix. The process is fresh, so the name really is unregistered there."""
    cache = str(tmp_path / "hf")
    audio_dialogues.load("music", split="test", cache_dir=cache, **SAMPLE)
    audio_dialogues.load("audioset", split="test", cache_dir=cache, **SAMPLE)  # the hint sorts before it too
    code = ("import sys, datasets; datasets.load_dataset('audio_dialogues', 'music', cache_dir=sys.argv[1], "
            "data_dir=sys.argv[2]); print('audio_dialogues' in sys.modules)")
    # a relative data_dir (an absolute one fails earlier, in datasets' check of data_dir against a Hub repo)
    done = subprocess.run([sys.executable, "-c", code, cache, SAMPLE_DATA.name], capture_output=True, text=True,
                          timeout=300, cwd=SAMPLE_DATA.parent,
                          # no loading script cached by earlier tests: datasets 3.6 would run it (and succeed)
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert done.returncode != 0
    assert "Couldn't find cache for audio_dialogues for config 'music-" in done.stderr
    assert "Available configs in the cache: ['Import-audio_dialogues-before-load_dataset', 'audioset-" in done.stderr
    # the hint is not a prepared copy: nothing counts, cleans or loads it
    from audio_dialogues.dataset.api import clean, prepared_copies

    assert len(prepared_copies(cache)) == 2 and clean(cache) == []


def test_published_without_a_repo_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config that reads no published repo says so (found by mypy: it was a TypeError from os.path.isdir(None))."""
    from audio_dialogues.dataset.builder import AudioDialoguesConfig
    from audio_dialogues.dataset.options import ConfigError

    monkeypatch.delenv("AUDIO_DIALOGUES_REPO", raising=False)
    config = AudioDialoguesConfig(name="audioset", data_dir=str(tmp_path))
    assert config.published_repo() is None
    with pytest.raises(ConfigError, match="config 'audioset' reads no published repo"):
        config.published()
