"""Chat export: real annotation files, real audio files found by the real resolver, each format parsed back."""

from __future__ import annotations

import base64
import json
import os
import re
import tracemalloc
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import soundfile as sf

from audio_dialogues.cli import main
from audio_dialogues.dataset.local_audio import AudioResolver
from audio_dialogues.export.chat_formats import FORMATS, ExportError, export_chat
from audio_dialogues.sources.annotations import Record, Turn, read_split
from audio_dialogues.sources.clips import Clip

YTIDS = ["dQw4w9WgXcQ", "_-aBcDeFgHi", "a-_123456_Z", "ZZZZZZZZZZZ", "k9-_k9-_k9-"]
NO_AUDIO = "noAudio0000"

AUDIOSET = [
    {"id": "as-0", "clips": [{"ytid": YTIDS[0], "start_s": 30.0, "end_s": 40.0}],
     "turns": [{"user": "What do you hear?", "assistant": "A dog barking."},
               {"user": "Is it \"loud\"?", "assistant": "Yes, very loud \u2014 and close."}]},
    {"id": "as-1", "clips": [{"ytid": YTIDS[1], "start_s": 0.0, "end_s": 10.0}],
     "turns": [{"user": "Describe the scene.", "assistant": "Rain on a roof."}]},
    {"id": "as-2", "clips": [{"ytid": NO_AUDIO, "start_s": 10.0, "end_s": 20.0}],
     "turns": [{"user": "What is it?", "assistant": "A siren."}]},
    {"id": "as-3", "clips": [{"ytid": YTIDS[2], "start_s": 5.5, "end_s": 15.5}],
     "turns": [{"user": "Q1?", "assistant": "A1."}, {"user": "Q2?", "assistant": "A2."},
               {"user": "Q3?", "assistant": "A3."}]},
]
COMPARISON = [
    {"id": "cmp-0", "clips": [{"ytid": YTIDS[0], "start_s": 30.0, "end_s": 40.0},
                              {"ytid": YTIDS[3], "start_s": 0.0, "end_s": 10.0}],
     "turns": [{"user": "Which clip is louder?", "assistant": "The first one."}]},
    {"id": "cmp-1", "clips": [{"ytid": YTIDS[1], "start_s": 0.0, "end_s": 10.0},
                              {"ytid": YTIDS[4], "start_s": 20.0, "end_s": 30.0},
                              {"ytid": YTIDS[2], "start_s": 5.5, "end_s": 15.5}],
     "turns": [{"user": "Which of the three has speech?", "assistant": "Only the third."}]},
    {"id": "cmp-2", "clips": [{"ytid": YTIDS[0], "start_s": 30.0, "end_s": 40.0},
                              {"ytid": NO_AUDIO, "start_s": 10.0, "end_s": 20.0}],
     "turns": [{"user": "Same source?", "assistant": "No."}]},
]


@pytest.fixture()
def dataset(tmp_path: Path) -> dict:
    """Annotations in ``data/``, audio for every clip but ``NO_AUDIO`` in ``audio/`` (two naming schemes)."""
    data, audio = tmp_path / "data", tmp_path / "audio"
    (audio / "nested").mkdir(parents=True)
    data.mkdir()
    for name, rows in (("audioset_test.jsonl", AUDIOSET), ("comparison_test.jsonl", COMPARISON)):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    tone = (0.1 * np.sin(np.linspace(0, 200, 1600))).astype("float32")
    files = {YTIDS[0]: audio / f"Y{YTIDS[0]}.wav", YTIDS[1]: audio / f"Y{YTIDS[1]}.wav",
             YTIDS[2]: audio / "nested" / f"{YTIDS[2]}_5.5_15.5.flac", YTIDS[3]: audio / f"{YTIDS[3]}.mp3",
             YTIDS[4]: audio / f"Y{YTIDS[4]}.wav"}
    for path in files.values():
        sf.write(path, tone, 16000, format="MP3" if path.suffix == ".mp3" else None)
    return {"data": data, "audio": audio, "files": {k: v.resolve() for k, v in files.items()}, "tmp": tmp_path}


def _export(dataset: dict, config: str, fmt: str, *extra: str) -> tuple[int, Path]:
    output = dataset["tmp"] / "out" / f"{config}-{fmt}.json"
    code = main(["export", config, "--split", "test", "--data-dir", str(dataset["data"]), "--format", fmt,
                 "--output", str(output), "--audio-dir", str(dataset["audio"]), *extra])
    return code, output


def _expected(rows: list[dict], dataset: dict) -> list[dict]:
    """The records whose every clip has audio, in order: what each export must contain."""
    return [r for r in rows if all(c["ytid"] in dataset["files"] for c in r["clips"])]


def test_af_chat_manifest_parses_back_to_its_template(dataset, capsys):
    code, output = _export(dataset, "audioset", "af-chat")
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote 3 dialogues" in out and "dropped 1: 1 no audio found (1 clips without usable audio)" in out
    manifest = json.loads(output.read_text())
    assert set(manifest) == {"dataset_path", "split", "split_path", "flamingo_task", "total_num", "data"}
    assert manifest["flamingo_task"] == "dialog_AudioSetSL-Dialog" and manifest["split"] == "test"
    expected = _expected(AUDIOSET, dataset)
    assert manifest["total_num"] == len(expected) == len(manifest["data"])
    assert list(manifest["data"]) == [str(i) for i in range(len(expected))]
    for i, record in enumerate(expected):
        entry = manifest["data"][str(i)]
        assert set(entry) == {"name", "dialogue"}
        # Audio Flamingo opens os.path.join(dataset_path, split_path, name).
        path = os.path.join(manifest["dataset_path"], manifest["split_path"], entry["name"])
        assert Path(path).resolve() == dataset["files"][record["clips"][0]["ytid"]]
        assert entry["dialogue"] == record["turns"]


def test_af_chat_refuses_comparison_and_writes_nothing(dataset, capsys):
    code, output = _export(dataset, "comparison", "af-chat")
    assert code == 1
    err = capsys.readouterr().err
    assert "af-chat" in err and "'comparison' has several clips per dialogue" in err and "af3-chat" in err
    assert not output.exists() and not list(output.parent.glob(".*tmp"))


@pytest.mark.parametrize("config", ["audioset", "comparison"])
def test_af3_chat_parses_back_to_its_template(dataset, config):
    rows = AUDIOSET if config == "audioset" else COMPARISON
    code, output = _export(dataset, config, "af3-chat")
    assert code == 0
    items = json.loads(output.read_text())
    expected = _expected(rows, dataset)
    assert [item["id"] for item in items] == [r["id"] for r in expected]
    for item, record in zip(items, expected, strict=True):
        files = [str(dataset["files"][c["ytid"]]) for c in record["clips"]]
        conv = item["conversations"]
        assert [m["from"] for m in conv] == ["human", "gpt"] * len(record["turns"])
        assert [m["value"] for m in conv[1::2]] == [t["assistant"] for t in record["turns"]]
        if len(files) == 1:
            assert item["sound"] == files[0] and item["duration"] == 10.0
            assert conv[0]["value"] == "<sound>\n" + record["turns"][0]["user"]
        else:
            assert item["sound"] == files and item["duration"] == [10.0] * len(files)
            tags = re.findall(r"<sound-(\d+)>", conv[0]["value"])
            assert [int(k) for k in tags] == list(range(1, len(files) + 1))  # tag k is sound[k-1]
            assert conv[0]["value"].endswith("\n" + record["turns"][0]["user"])
        assert [m["value"] for m in conv[2::2]] == [t["user"] for t in record["turns"][1:]]
        assert "<sound" not in "".join(m["value"] for m in conv[1:])


CHATML = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)<\|im_end\|>\n", re.S)


@pytest.mark.parametrize("config", ["audioset", "comparison"])
def test_qwen_audio_chatml_parses_back_to_its_template(dataset, config):
    rows = AUDIOSET if config == "audioset" else COMPARISON
    code, output = _export(dataset, config, "qwen-audio")
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    expected = _expected(rows, dataset)
    assert [row["id"] for row in lines] == [r["id"] for r in expected]
    for row, record in zip(lines, expected, strict=True):
        files = [str(dataset["files"][c["ytid"]]) for c in record["clips"]]
        assert row["audio"] == files
        blocks = CHATML.findall(row["text"])
        assert "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in blocks) == row["text"]  # nothing else
        assert blocks[0] == ("system", "You are a helpful assistant.")
        assert [r for r, _ in blocks[1:]] == ["user", "assistant"] * len(record["turns"])
        audio = "".join(f"Audio {k}:<audio>{f}</audio>\n" for k, f in enumerate(files, start=1))
        assert blocks[1][1] == audio + record["turns"][0]["user"]
        assert [c for _, c in blocks[3::2]] == [t["user"] for t in record["turns"][1:]]
        assert [c for _, c in blocks[2::2]] == [t["assistant"] for t in record["turns"]]


@pytest.mark.parametrize("config", ["audioset", "comparison"])
def test_openai_messages_parse_back_with_file_references(dataset, config):
    rows = AUDIOSET if config == "audioset" else COMPARISON
    code, output = _export(dataset, config, "openai-messages", "--system-prompt", "Listen carefully.")
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    expected = _expected(rows, dataset)
    assert [row["id"] for row in lines] == [r["id"] for r in expected]
    for row, record in zip(lines, expected, strict=True):
        messages = row["messages"]
        assert messages[0] == {"role": "system", "content": "Listen carefully."}
        assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * len(record["turns"])
        first = messages[1]["content"]
        audio_parts, text_part = first[:-1], first[-1]
        assert text_part == {"type": "text", "text": record["turns"][0]["user"]}
        assert all(p["type"] == "audio_url" for p in audio_parts)
        urls = [urlparse(p["audio_url"]["url"]) for p in audio_parts]
        assert all(u.scheme == "file" for u in urls)
        assert [Path(unquote(u.path)) for u in urls] == [dataset["files"][c["ytid"]] for c in record["clips"]]
        assert [m["content"] for m in messages[3::2]] == [t["user"] for t in record["turns"][1:]]
        assert [m["content"] for m in messages[2::2]] == [t["assistant"] for t in record["turns"]]


def test_openai_inline_audio_is_the_file_base64_and_refuses_other_formats(dataset):
    records = read_split("audioset", "test", data_dir=dataset["data"])
    resolver = AudioResolver([dataset["audio"]])
    out = dataset["tmp"] / "inline.jsonl"
    wav_only = [r for r in records if r.id in ("as-0", "as-1")]
    report = export_chat(wav_only, "openai-messages", out, config="audioset", split="test", resolver=resolver,
                         openai_audio="inline")
    assert report.written == 2
    for row, record in zip(map(json.loads, out.read_text().splitlines()), wav_only, strict=True):
        part = row["messages"][0]["content"][0]
        assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
        assert base64.b64decode(part["input_audio"]["data"]) == dataset["files"][record.clips[0].ytid].read_bytes()
    flac = [r for r in records if r.id == "as-3"]
    with pytest.raises(ExportError, match=r"'as-3'.*\.flac audio, but OpenAI's input_audio takes wav or mp3"):
        export_chat(flac, "openai-messages", out, config="audioset", split="test", resolver=resolver,
                    openai_audio="inline")
    assert json.loads(out.read_text().splitlines()[0])["id"] == "as-0"  # the earlier export is intact


def test_missing_audio_drop_counts_and_error_names_record_and_clip(dataset, capsys):
    code, output = _export(dataset, "comparison", "af3-chat")
    assert code == 0
    assert "wrote 2 dialogues" in capsys.readouterr().out
    code, output = _export(dataset, "comparison", "qwen-audio", "--missing-audio", "error")
    assert code == 1
    err = capsys.readouterr().err
    assert "comparison_test.jsonl:3" in err and f"{NO_AUDIO}_10000_20000" in err and "'cmp-2'" in err
    assert not output.exists()
    # Nothing resolves at all: an error status, not a silently empty export.
    empty = dataset["tmp"] / "empty"
    empty.mkdir()
    code = main(["export", "audioset", "--data-dir", str(dataset["data"]), "--format", "af3-chat",
                 "--output", str(dataset["tmp"] / "none.json"), "--audio-dir", str(empty),
                 "--audio-cache-dir", str(dataset["tmp"] / "cache")])
    err = capsys.readouterr().err
    assert code == 1 and "no dialogue has usable local audio (dropped 4 no audio found); pass audio folders" in err
    assert "replace the files" not in err


def _records(n: int):
    for i in range(n):
        turns = [Turn(f"Question {i} {k} " + "x" * 200, f"Answer {i} {k} " + "y" * 200) for k in range(3)]
        yield Record(f"rec-{i}", [Clip(YTIDS[i % len(YTIDS)], 10.0 * k, 10.0 * k + 10.0) for k in range(2)],
                     turns, {}, f"gen[{i}]")


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_streams_in_constant_memory(tmp_path: Path, fmt):
    config = "audioset" if fmt == "af-chat" else "comparison"

    def records(n):
        for r in _records(n):
            yield r if config == "comparison" else Record(r.id, r.clips[:1], r.turns, r.meta, r.origin)

    audio = {Clip(ytid, 10.0 * k, 10.0 * k + 10.0): tmp_path / f"{ytid}_{k}.wav" for ytid in YTIDS for k in range(2)}
    peaks = []
    for n in (200, 4000):
        tracemalloc.start()
        # Paths are built outside the measurement: pathlib interns every path component, and the growth of
        # the interpreter's table of interned strings is not the exporter's memory.
        report = export_chat(records(n), fmt, tmp_path / f"{n}.out", config=config, split="train",
                             resolver=audio.get)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert report.written == n
    # 20x the dialogues (about 5 MB more output) must not need more memory.
    assert peaks[1] < peaks[0] * 1.5 + 64 * 1024, peaks
    parsed = (json.loads((tmp_path / "4000.out").read_text()) if fmt in ("af-chat", "af3-chat")
              else [json.loads(line) for line in (tmp_path / "4000.out").read_text().splitlines()])
    assert len(parsed["data"] if fmt == "af-chat" else parsed) == 4000


def test_export_resolves_exactly_as_the_builder(dataset, tmp_path):
    """One resolution for both: same records kept, same drop reasons, and a whole video is cut, never handed over."""
    from audio_dialogues.dataset.api import prepare
    from audio_dialogues.sources.annotations import read_split

    dataset["files"][YTIDS[3]].write_bytes(b"ID3 and nothing a decoder could read")  # undecodable
    sf.write(dataset["audio"] / f"{YTIDS[4]}.wav", np.zeros(16000 * 40, dtype="float32"), 16000)  # whole video
    (dataset["audio"] / f"Y{YTIDS[4]}.wav").unlink()
    cache = tmp_path / "clips"
    splits, report = prepare("comparison", data_dir=str(dataset["data"]), audio_dir=str(dataset["audio"]),
                             audio_cache_dir=str(cache), cache_dir=str(tmp_path / "hf"))
    records = read_split("comparison", "test", data_dir=dataset["data"])
    exported = export_chat(records, "af3-chat", tmp_path / "out.json", config="comparison", split="test",
                           resolver=AudioResolver([dataset["audio"]], cache))
    items = json.loads((tmp_path / "out.json").read_text())
    assert [i["id"] for i in items] == splits["test"]["id"]
    assert [i["id"] for i in items] == ["cmp-1"]
    assert exported.dropped == sum(report["test"].dropped.values()) == 2
    assert exported.missing_clips == report["test"].missing_clips
    assert set(report["test"].dropped) == {"undecodable audio", "no audio found"}
    cut = items[0]["sound"][1]  # the 40 s file is never handed over as the 10 s clip: its window is
    assert cut.startswith(str(cache)) and sf.info(cut).duration == 10.0


def test_export_says_why_dialogues_were_dropped(dataset, capsys):
    """Files that are there but cannot be decoded are called so, not "without local audio"."""
    dataset["files"][YTIDS[1]].write_bytes(b"RIFF and nothing a decoder could read")
    code, _ = _export(dataset, "audioset", "af3-chat")
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote 2 dialogues" in out
    assert "dropped 2: 1 undecodable audio, 1 no audio found (2 clips without usable audio)" in out
    for ytid in (YTIDS[0], YTIDS[2]):
        dataset["files"][ytid].write_bytes(b"")
    code, _ = _export(dataset, "audioset", "af3-chat")
    assert code == 1
    err = capsys.readouterr().err
    assert "audioset/test: no dialogue has usable local audio (dropped 3 undecodable audio, 1 no audio found); " in err
    assert "pass audio folders (--audio-dir) or fetch the clips first; replace the files that cannot serve" in err


def test_export_help_names_the_formats_it_writes(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "qwen-audio: Qwen-Audio-Chat (ChatML, clips as <audio>PATH</audio>)" in text and "Qwen2" not in text
