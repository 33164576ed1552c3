"""Chat export: real annotation files, real audio files found by the real resolver, each format parsed back."""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import os
import re
import subprocess
import tracemalloc
from pathlib import Path
from urllib.parse import unquote, urlparse

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from pydantic import ConfigDict, TypeAdapter, ValidationError

from audio_dialogues.audio.resolver import AudioResolver
from audio_dialogues.cli import main
from audio_dialogues.dataset.decoding import decode_file
from audio_dialogues.export.chat_formats import FORMATS, export_chat
from audio_dialogues.sources.annotations import Record, Turn, read_split
from audio_dialogues.sources.clips import Clip

YTIDS = ["dQw4w9WgXcQ", "_-aBcDeFgHi", "a-_123456_Z", "ZZZZZZZZZZZ", "k9-_k9-_k9-", "oggVorbis01", "m4aAac00001"]
NO_AUDIO = "noAudio0000"
CONFIGS = ("audioset", "music", "comparison")

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
    {"id": "cmp-3", "clips": [{"ytid": YTIDS[5], "start_s": 0.0, "end_s": 10.0},
                              {"ytid": YTIDS[6], "start_s": 0.0, "end_s": 10.0},
                              {"ytid": YTIDS[3], "start_s": 0.0, "end_s": 10.0},
                              {"ytid": YTIDS[1], "start_s": 0.0, "end_s": 10.0}],
     "turns": [{"user": "Which one has drums?", "assistant": "The second."},
               {"user": "And the last?", "assistant": "Rain."}]},
]
MUSIC = [
    {"id": "mu-0", "clips": [{"ytid": YTIDS[5], "start_s": 0.0, "end_s": 10.0}],
     "turns": [{"user": "Which instrument?", "assistant": "A violin."}, {"user": "Tempo?", "assistant": "Slow."},
               {"user": "Mood?", "assistant": "Sad."}, {"user": "Era?", "assistant": "Baroque."}]},
    {"id": "mu-1", "clips": [{"ytid": YTIDS[6], "start_s": 0.0, "end_s": 10.0}],
     "turns": [{"user": "Genre?", "assistant": "Jazz."}, {"user": "Vocals?", "assistant": "None."}]},
    {"id": "mu-2", "clips": [{"ytid": YTIDS[2], "start_s": 5.5, "end_s": 15.5}],
     "turns": [{"user": "Key?", "assistant": "D minor."}]},
]
ROWS = {"audioset": AUDIOSET, "music": MUSIC, "comparison": COMPARISON}


@pytest.fixture()
def dataset(tmp_path: Path) -> dict:
    """Annotations in ``data/``, audio for every clip but ``NO_AUDIO`` in ``audio/`` (two naming schemes).

    The clips are WAV, FLAC, MP3, Ogg Vorbis and AAC in m4a, each of its own length (0.1 s, 0.2 s, ..., and the
    FLAC named by its 10 s window holds 10 s), so a consumer that loads the wrong clip or drops one is caught by
    the lengths it reports.
    """
    data, audio = tmp_path / "data", tmp_path / "audio"
    (audio / "nested").mkdir(parents=True)
    data.mkdir()
    for config, rows in ROWS.items():
        (data / f"{config}_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = {YTIDS[0]: audio / f"Y{YTIDS[0]}.wav", YTIDS[1]: audio / f"Y{YTIDS[1]}.wav",
             YTIDS[2]: audio / "nested" / f"{YTIDS[2]}_5.5_15.5.flac", YTIDS[3]: audio / f"{YTIDS[3]}.mp3",
             YTIDS[4]: audio / f"Y{YTIDS[4]}.wav", YTIDS[5]: audio / f"Y{YTIDS[5]}.ogg"}
    for i, path in enumerate(files.values()):
        # a file named by its window holds the whole window (a shorter one is refused as cut short)
        length = 160_000 if path.stem.endswith("_5.5_15.5") else 1600 * (i + 1)
        tone = (0.1 * np.sin(np.linspace(0, 200 * (i + 1), length))).astype("float32")
        sf.write(path, tone, 16000, format="MP3" if path.suffix == ".mp3" else None)
    files[YTIDS[6]] = audio / f"Y{YTIDS[6]}.m4a"  # AAC: libsndfile writes none, ffmpeg encodes it
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(files[YTIDS[0]]), "-c:a", "aac",
                    str(files[YTIDS[6]])], check=True)
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


def _af3_reads(item: dict) -> tuple[list[str], list[dict], int]:
    """What Audio Flamingo 3 trains on from one entry of its training JSON: (audio files, turns, length).

    The shape its loader reads (NVIDIA/audio-flamingo, branch ``audio_flamingo_3``, ``llava/data/dataset.py``;
    AF3 is not on PyPI, so its code cannot run here): ``LazySupervisedDataset.__getitem__`` keeps every turn
    only when ``sound`` is a list, loading for each ``<sound-k>`` tag, in the order the tags appear in the
    turns, the file ``sound[k-1]``; with ``sound`` a string it keeps ``conversations[0]`` and ``[1]`` only.
    ``LazySupervisedDataset.modality_lengths`` groups by ``ceil(duration * 25)``, which needs a number.
    """
    turns = item["conversations"]
    if isinstance(item["sound"], str):
        return [item["sound"]], turns[:2], math.ceil(item["duration"] * 25)
    tags = [int(k) for turn in turns for k in re.findall(r"<sound-(\d+)>", turn["value"])]
    return [item["sound"][k - 1] for k in tags], turns, math.ceil(item["duration"] * 25)


@pytest.mark.parametrize("config", CONFIGS)
def test_af3_chat_reaches_audio_flamingo_3_whole(dataset, config):
    """Every turn and every clip reach AF3's loader, single-clip dialogues included (fails on the old code,
    which wrote one clip as a string, so AF3 read a 3-turn dialogue as its first exchange, and a comparison's
    duration as a list)."""
    code, output = _export(dataset, config, "af3-chat")
    assert code == 0
    items = json.loads(output.read_text())
    expected = _expected(ROWS[config], dataset)
    assert [item["id"] for item in items] == [r["id"] for r in expected]
    assert max(len(r["turns"]) for r in expected) >= 2  # multi-turn dialogues in every config
    for item, record in zip(items, expected, strict=True):
        files = [str(dataset["files"][c["ytid"]]) for c in record["clips"]]
        audio, turns, length = _af3_reads(item)
        assert audio == files  # each clip once, in order
        assert isinstance(item["duration"], float) and item["duration"] == 10.0 * len(files)
        assert length == 250 * len(files)
        assert [m["from"] for m in turns] == ["human", "gpt"] * len(record["turns"])
        assert [m["value"] for m in turns[1::2]] == [t["assistant"] for t in record["turns"]]
        assert turns[0]["value"] == "".join(f"<sound-{k}>\n" for k in range(1, len(files) + 1)) + \
            record["turns"][0]["user"]
        assert [m["value"] for m in turns[2::2]] == [t["user"] for t in record["turns"][1:]]


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


@functools.cache
def _openai_validators() -> tuple[TypeAdapter, TypeAdapter]:
    """The ``openai`` package's own message and content-part types, strict: no extra keys, no coercion."""
    from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam

    strict = ConfigDict(extra="forbid", strict=True)
    return (TypeAdapter(ChatCompletionMessageParam, config=strict),
            TypeAdapter(ChatCompletionContentPartParam, config=strict))


def _validate_openai(messages: list[dict]) -> None:
    message_type, part_type = _openai_validators()
    for message in messages:
        validated = message_type.validate_python(message)
        if not isinstance(message["content"], str):
            list(validated["content"])  # the types declare content an Iterable: validated as it is read
            for part in message["content"]:
                part_type.validate_python(part)


@pytest.mark.parametrize("config", CONFIGS)
def test_openai_messages_are_openai_types_and_carry_each_clip(dataset, config, capsys):
    """By default every message and content part is one of the ``openai`` package's types, and every clip is
    inline: WAV and MP3 files as they are, any other (FLAC, Ogg, m4a) as a WAV holding the clip's samples
    (fails on the old code: audio_url parts by default, FLAC/Ogg/m4a refused inline)."""
    code, output = _export(dataset, config, "openai-messages", "--system-prompt", "Listen carefully.")
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    expected = _expected(ROWS[config], dataset)
    assert [row["id"] for row in lines] == [r["id"] for r in expected]
    converted = 0
    for row, record in zip(lines, expected, strict=True):
        messages = row["messages"]
        _validate_openai(messages)
        assert messages[0] == {"role": "system", "content": "Listen carefully."}
        assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * len(record["turns"])
        *audio_parts, text_part = messages[1]["content"]
        assert text_part == {"type": "text", "text": record["turns"][0]["user"]}
        assert len(audio_parts) == len(record["clips"])
        for part, clip in zip(audio_parts, record["clips"], strict=True):
            source = dataset["files"][clip["ytid"]]
            data = base64.b64decode(part["input_audio"]["data"])
            if source.suffix in (".wav", ".mp3"):
                assert part["input_audio"]["format"] == source.suffix[1:] and data == source.read_bytes()
                continue
            converted += 1
            assert part["input_audio"]["format"] == "wav" and data[:4] == b"RIFF"
            samples, rate = sf.read(io.BytesIO(data), dtype="float32")
            original, original_rate = decode_file(str(source))
            assert rate == original_rate and len(samples) == len(original) > 0
            assert np.abs(samples - original).max() < 1e-4  # 16-bit PCM of the clip's samples
        assert [m["content"] for m in messages[3::2]] == [t["user"] for t in record["turns"][1:]]
        assert [m["content"] for m in messages[2::2]] == [t["assistant"] for t in record["turns"]]
    assert converted > 0
    assert f"{converted} clips converted to WAV for input_audio" in capsys.readouterr().out


def test_openai_audio_url_is_an_explicit_choice_the_openai_types_refuse(dataset):
    """``--openai-audio url`` writes vLLM's file references (the docs name the vLLM flag they need); the
    strict validator above refuses them, so it can tell a non-OpenAI part from an OpenAI one."""
    code, output = _export(dataset, "comparison", "openai-messages", "--openai-audio", "url")
    assert code == 0
    for row, record in zip(map(json.loads, output.read_text().splitlines()), _expected(COMPARISON, dataset),
                           strict=True):
        *audio_parts, _ = row["messages"][0]["content"]
        urls = [urlparse(p["audio_url"]["url"]) for p in audio_parts]
        assert all(p["type"] == "audio_url" and u.scheme == "file" for p, u in zip(audio_parts, urls, strict=True))
        assert [Path(unquote(u.path)) for u in urls] == [dataset["files"][c["ytid"]] for c in record["clips"]]
        with pytest.raises(ValidationError):
            _validate_openai(row["messages"])
        with pytest.raises(ValidationError):
            _openai_validators()[1].validate_python(audio_parts[0])


@pytest.fixture(scope="module")
def qwen2_audio_processor():
    """Qwen2-Audio's processor built offline: Whisper's feature extractor with its defaults, the processor's
    bundled chat template, and a small word-level tokenizer holding the special tokens that template writes."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2AudioProcessor, WhisperFeatureExtractor

    special = ["<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
    tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(["<unk>", *special])}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", additional_special_tokens=special)
    return Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=fast)


@pytest.mark.parametrize("config", CONFIGS)
def test_hf_messages_load_one_set_of_features_per_clip_in_qwen2_audio(dataset, config, qwen2_audio_processor):
    """transformers' own ``apply_chat_template(tokenize=True)`` loads every clip of every dialogue from the
    export, in order: one row of Whisper features per clip, each as long as its clip (the fixture's clips all
    differ in length), and renders every turn."""
    code, output = _export(dataset, config, "hf-messages", "--system-prompt", "Listen.")
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    expected = _expected(ROWS[config], dataset)
    assert [row["id"] for row in lines] == [r["id"] for r in expected]
    for row, record in zip(lines, expected, strict=True):
        files = [dataset["files"][c["ytid"]] for c in record["clips"]]
        assert [p.get("path") for p in row["messages"][1]["content"][:-1]] == [str(f) for f in files]
        out = qwen2_audio_processor.apply_chat_template(row["messages"], tokenize=True, return_dict=True)
        assert out["input_features"].shape[0] == len(files)
        frames = out["feature_attention_mask"].sum(-1).tolist()
        lengths = [len(decode_file(str(f), 16000)[0]) / 160 for f in files]  # Whisper's hop: 160 samples
        assert all(abs(f - n) <= 0.05 * n + 2 for f, n in zip(frames, lengths, strict=True)), (frames, lengths)
        text = qwen2_audio_processor.apply_chat_template(row["messages"], tokenize=False)
        assert text.count("<|audio_bos|>") == len(files) and text.startswith("<|im_start|>system\nListen.<|im_end|>")
        said = [t[k] for t in record["turns"] for k in ("user", "assistant")]
        assert re.findall(r"<\|im_start\|>(?:user|assistant)\n(?:Audio \d+: <\|audio_bos\|>.*?\n)*(.*?)<\|im_end\|>",
                          text, re.S) == said


def _llama_factory_reads(info: dict, row: dict) -> tuple[list[dict], list[str], str]:
    """What LLaMA-Factory reads from one row through its ``dataset_info.json`` entry: (messages, audios, system).

    LLaMA-Factory is too heavy to install here (torch, deepspeed, ...); this is the shape its code reads
    (hiyouga/LLaMA-Factory, ``src/llamafactory/data/converter.py``, ``SharegptDatasetConverter.__call__``: a
    first message with ``system_tag`` is the system prompt, then roles alternate ``user_tag``/``assistant_tag``
    and their number is even, else the row is skipped as broken; ``src/llamafactory/data/mm_plugin.py``,
    ``MMPluginMixin._validate_messages``: the ``<audio>`` placeholders in all messages number the audios).
    ms-swift's custom dataset format (``messages`` of ``role``/``content``, ``audios``, one ``<audio>`` per
    clip) is the same row.
    """
    assert info["formatting"] == "sharegpt"
    columns, tags = info["columns"], info["tags"]
    messages = row[columns["messages"]]
    system = ""
    if tags.get("system_tag") and messages and messages[0][tags["role_tag"]] == tags["system_tag"]:
        system, messages = messages[0][tags["content_tag"]], messages[1:]
    accepted = (tags["user_tag"], tags["assistant_tag"])
    assert all(m[tags["role_tag"]] == accepted[i % 2] for i, m in enumerate(messages)) and len(messages) % 2 == 0
    audios = row[columns["audios"]]
    assert sum(m[tags["content_tag"]].count("<audio>") for m in messages) == len(audios)
    return messages, audios, system


@pytest.mark.parametrize("config", CONFIGS)
def test_llama_factory_rows_and_dataset_info_are_what_it_reads(dataset, config):
    """The rows load with ``datasets``' json loader (what LLaMA-Factory loads a local file with) and read as
    LLaMA-Factory reads them through the ``dataset_info.json`` written beside them."""
    import datasets

    code, output = _export(dataset, config, "llama-factory", "--system-prompt", "Listen.")
    assert code == 0
    info = json.loads((output.parent / "dataset_info.json").read_text())
    entry = info[f"audio_dialogues_{config}_test"]
    assert (output.parent / entry["file_name"]) == output
    rows = datasets.load_dataset("json", data_files=str(output), split="train")
    expected = _expected(ROWS[config], dataset)
    assert rows["id"] == [r["id"] for r in expected]
    for row, record in zip(rows, expected, strict=True):
        messages, audios, system = _llama_factory_reads(entry, row)
        assert system == "Listen."
        assert audios == [str(dataset["files"][c["ytid"]]) for c in record["clips"]]
        assert messages[0]["content"] == "<audio>" * len(audios) + record["turns"][0]["user"]
        assert [m["content"] for m in messages[2::2]] == [t["user"] for t in record["turns"][1:]]
        assert [m["content"] for m in messages[1::2]] == [t["assistant"] for t in record["turns"]]


def test_llama_factory_keeps_other_dataset_info_entries_and_names_a_broken_one(dataset, capsys):
    code, output = _export(dataset, "audioset", "llama-factory")
    assert code == 0
    info_path = output.parent / "dataset_info.json"
    assert f"(and {info_path})" in capsys.readouterr().out
    info = json.loads(info_path.read_text())
    assert "system_tag" not in info["audio_dialogues_audioset_test"]["tags"]  # no system message written
    info["mine"] = {"file_name": "mine.json"}
    info_path.write_text(json.dumps(info))
    code, _ = _export(dataset, "music", "llama-factory")
    assert code == 0
    assert set(json.loads(info_path.read_text())) == {"mine", "audio_dialogues_audioset_test",
                                                       "audio_dialogues_music_test"}
    info_path.write_text("{not json")
    output.unlink()
    code, _ = _export(dataset, "audioset", "llama-factory")
    err = capsys.readouterr().err
    assert code == 1 and str(info_path) in err and "not readable JSON" in err
    assert not output.exists() and info_path.read_text() == "{not json"  # nothing written, nothing touched


@pytest.mark.parametrize(("config", "name"), [("audioset", "cuts.jsonl"), ("music", "cuts.jsonl.gz"),
                                              ("comparison", "cuts.jsonl.gz")])
def test_lhotse_manifest_loads_and_decodes_every_clip(dataset, config, name):
    """lhotse's own ``CutSet.from_file`` loads the export; each cut is a dialogue holding its turns, and its
    audio is its clips one after another, as lhotse decodes them."""
    from lhotse import CutSet
    from lhotse.cut import MixedCut, MonoCut

    output = dataset["tmp"] / "out" / name
    code = main(["export", config, "--split", "test", "--data-dir", str(dataset["data"]), "--format", "lhotse",
                 "--output", str(output), "--audio-dir", str(dataset["audio"])])
    assert code == 0
    cuts = CutSet.from_file(output)
    expected = _expected(ROWS[config], dataset)
    assert [cut.id for cut in cuts] == [r["id"] for r in expected]
    for cut, record in zip(cuts, expected, strict=True):
        files = [dataset["files"][c["ytid"]] for c in record["clips"]]
        assert isinstance(cut, MonoCut if len(files) == 1 else MixedCut)
        supervisions = sorted(cut.supervisions, key=lambda s: s.start)
        assert [s.custom["clip_index"] for s in supervisions] == list(range(len(files)))
        assert all(s.custom["dialogue_id"] == record["id"] and s.custom["turns"] == record["turns"]
                   for s in supervisions)
        clips = [sf.read(f, dtype="float32")[0] if f.suffix in (".wav", ".flac") else None for f in files]
        audio = cut.load_audio()
        assert audio.shape[0] == 1
        assert audio.shape[1] == round(cut.duration * cut.sampling_rate)
        starts = [round(s.start * cut.sampling_rate) for s in supervisions]
        for start, clip, supervision in zip(starts, clips, supervisions, strict=True):
            assert supervision.duration > 0
            if clip is not None:  # lossless clips decode to their exact samples, at their place in the cut
                np.testing.assert_allclose(audio[0, start:start + len(clip)], clip, atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_takes_the_shared_options_alike(dataset, capsys, fmt):
    """--split, --audio-dir and --missing-audio mean the same in every format: drops counted by reason in the
    summary, 'error' naming the record and clip and writing nothing, an export with no audio at all refused."""
    config = "audioset" if fmt == "af-chat" else "comparison"
    code, output = _export(dataset, config, fmt)
    assert code == 0
    out = capsys.readouterr().out
    assert f"{fmt}: wrote 3 dialogues to {output}" in out
    assert "dropped 1: 1 no audio found (1 clips without usable audio)" in out
    output.unlink()
    code, output = _export(dataset, config, fmt, "--missing-audio", "error")
    assert code == 1
    err = capsys.readouterr().err
    record = "as-2" if config == "audioset" else "cmp-2"
    assert f"{config}_test.jsonl:3" in err and f"{NO_AUDIO}_10000_20000" in err and f"'{record}'" in err
    assert not output.exists()
    # Nothing resolves at all: an error status, not a silently empty export.
    empty = dataset["tmp"] / "empty"
    empty.mkdir()
    code = main(["export", config, "--split", "test", "--data-dir", str(dataset["data"]), "--format", fmt,
                 "--output", str(dataset["tmp"] / "none.json"), "--audio-dir", str(empty),
                 "--audio-cache-dir", str(dataset["tmp"] / "cache")])
    err = capsys.readouterr().err
    assert code == 1 and f"no dialogue has usable local audio (dropped {len(ROWS[config])} no audio found); " \
        "pass audio folders" in err
    assert "replace the files" not in err and not (dataset["tmp"] / "none.json").exists()


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
    for path in audio.values():  # real files: openai-messages embeds them, lhotse reads their headers
        sf.write(path, np.zeros(16, dtype="float32"), 16000)
    sizes = (100, 1000) if fmt == "lhotse" else (200, 4000)  # lhotse reads each clip's header: fewer dialogues
    peaks = []
    for n in sizes:
        tracemalloc.start()
        # Paths are built outside the measurement: pathlib interns every path component, and the growth of
        # the interpreter's table of interned strings is not the exporter's memory.
        report = export_chat(records(n), fmt, tmp_path / f"{n}.out", config=config, split="train",
                             resolver=audio.get)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert report.written == n
    if fmt == "lhotse":
        # lhotse's objects leave a few hundred KB in the interpreter's free lists (a full gc returns them), so
        # its peak (0.4-0.6 MB measured) is held to half the output (about 3.9 MB), which an export holding its
        # dialogues would exceed, rather than to the small export's peak.
        assert peaks[1] < (tmp_path / "1000.out").stat().st_size / 2, peaks
    else:  # 20x the dialogues (about 5 MB more output) must not need more memory
        assert peaks[1] < peaks[0] * 1.5 + 64 * 1024, peaks
    text = (tmp_path / f"{sizes[1]}.out").read_text()
    parsed = json.loads(text) if fmt in ("af-chat", "af3-chat") else [json.loads(line) for line in text.splitlines()]
    assert len(parsed["data"] if fmt == "af-chat" else parsed) == sizes[1]


def test_export_resolves_exactly_as_the_builder(dataset, tmp_path):
    """One resolution for both: same records kept, same drop reasons, and a whole video is cut, never handed over."""
    from audio_dialogues.dataset.api import prepare

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
    assert exported.dropped == sum(report["test"].dropped.values()) == 3
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
