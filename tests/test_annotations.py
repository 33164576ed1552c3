"""Annotation reading: both record shapes, and the bad-input corpus.

Every bad input must fail with an error that names the file, the record (line or array index) and
the problem; the corpus below checks all three parts of each message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import audio_dialogues
from audio_dialogues.sources.annotations import AnnotationError, read_split, split_files
from audio_dialogues.sources.clips import Clip, ClipError, parse_segment_id
from audio_dialogues.sources.metadata import MetadataError, load_source_metadata

CLIP = {"ytid": "abc_DEF-123", "start_s": 30.0, "end_s": 40.0}
TURNS = [{"user": "What is it?", "assistant": "A dog barking."}]


def canonical(record_id: str = "r1", clips: list | None = None, turns: list | None = None, **extra) -> dict:
    return {"id": record_id, "clips": clips if clips is not None else [CLIP],
            "turns": turns if turns is not None else TURNS, **extra}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# ---- clip ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("segment_id,ytid,start_ms", [
    ("YxlGt805lTA_30000", "YxlGt805lTA", 30000),
    ("a_b_c_d_e_f_120500", "a_b_c_d_e_f", 120500),   # the id itself is full of '_'
    ("-leading-Da_0", "-leading-Da", 0),              # leading '-'
    ("____________10", "___________", 10),
])
def test_segment_ids_are_split_after_eleven_characters(segment_id: str, ytid: str, start_ms: int) -> None:
    assert parse_segment_id(segment_id) == (ytid, start_ms)
    clip = Clip.from_segment_id(segment_id)
    assert (clip.ytid, clip.start_s, clip.end_s) == (ytid, start_ms / 1000, start_ms / 1000 + 10)


@pytest.mark.parametrize("segment_id", ["short_1000", "abc_DEF-123-1000", "abc_DEF-123_", "abc_DEF-123_1.5",
                                        "abc DEF 123_1000", "abc_DEF-123_-100"])
def test_bad_segment_ids(segment_id: str) -> None:
    with pytest.raises(ClipError, match="segment_id"):
        parse_segment_id(segment_id)


# ---- both shapes ----------------------------------------------------------------------------------


def test_canonical_and_release_shapes_read_to_the_same_records(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "comparison_train.jsonl", [canonical("c1", clips=[CLIP, {**CLIP, "ytid": "Zx3_kQ9-LmA"}])])
    (tmp_path / "comparison_test.json").write_text(json.dumps([
        {"audio_ids": ["Yabc_DEF-123.wav", "Zx3_kQ9-LmA.flac"], "dialogue": TURNS},
        {"audio_id": ["Yabc_DEF-123.wav", "Zx3_kQ9-LmA.flac"], "dialogue": TURNS},  # list under audio_id
    ]))
    train = read_split("comparison", "train", data_dir=tmp_path)
    test = read_split("comparison", "test", data_dir=tmp_path)
    assert [c.ytid for c in train[0].clips] == [c.ytid for c in test[0].clips] == ["abc_DEF-123", "Zx3_kQ9-LmA"]
    assert train[0].turns == test[0].turns
    # release ids derive from the clips and stay unique and stable
    assert [r.id for r in test] == ["abc_DEF-123+Zx3_kQ9-LmA", "abc_DEF-123+Zx3_kQ9-LmA#2"]
    assert [r.id for r in read_split("comparison", "test", data_dir=tmp_path)] == [r.id for r in test]
    assert test[1].origin == f"{tmp_path / 'comparison_test.json'}[1]"


def test_explicit_data_files_and_several_files_per_split(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "part-a.jsonl", [canonical("a")])
    b = write_jsonl(tmp_path / "part-b.jsonl", [canonical("b")])
    records = read_split("music", "train", data_files={"train": [a, b]})
    assert [r.id for r in records] == ["a", "b"]


def test_release_records_take_times_and_meta_from_source_metadata(tmp_path: Path) -> None:
    tsv = tmp_path / "strong.tsv"
    tsv.write_text("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
                   "a_b_c_d_e_f_120500\t0.000\t2.500\t/m/dog\n"
                   "a_b_c_d_e_f_120500\t3.000\t4.000\t/m/cat\n")
    ontology = tmp_path / "ontology.json"
    ontology.write_text(json.dumps([{"id": "/m/dog", "name": "Dog"}]))
    (tmp_path / "audioset_train.json").write_text(json.dumps([{"audio_id": "Ya_b_c_d_e_f.wav", "dialogue": TURNS}]))
    meta = load_source_metadata(strong_labels=[tsv], ontology=[ontology])
    (record,) = read_split("audioset", "train", data_dir=tmp_path, metadata=meta)
    assert record.clips == [Clip("a_b_c_d_e_f", 120.5, 130.5)]
    assert record.meta["sound_events"] == [{"label": "Dog", "start_s": 0.0, "end_s": 2.5},
                                           {"label": "/m/cat", "start_s": 3.0, "end_s": 4.0}]


# ---- the bad-input corpus -------------------------------------------------------------------------

BAD_RECORDS = [
    # (name, config, file name, file content (list of records/lines, or raw text), message fragment)
    ("malformed JSONL line", "music", "music_train.jsonl", [canonical("a"), '{"id": "b", "clips": ['],
     r":2: malformed JSON Lines record"),
    ("pretty-printed object", "music", "music_train.jsonl", json.dumps(canonical(), indent=2),
     r":1: malformed JSON Lines record.*pretty-printed"),
    ("malformed JSON array", "music", "music_train.json", '[{"audio_id": "Yabc_DEF-123.wav",\n "dialogue": ]',
     r":2:\d+: malformed JSON"),
    ("record not an object", "music", "music_train.jsonl", ['["a", "b"]'], r":1: a record must be a JSON object"),
    ("missing id", "music", "music_train.jsonl", [{"clips": [CLIP], "turns": TURNS}], r":1: id must be a string"),
    ("id not a string", "music", "music_train.jsonl", [canonical(7)], r":1: id must be a string, got int"),
    ("empty id", "music", "music_train.jsonl", [canonical("  ")], r":1: id is empty"),
    ("clips not a list", "music", "music_train.jsonl", [canonical(clips={"ytid": "x"})], r"clips must be a list"),
    ("clip without ytid", "music", "music_train.jsonl", [canonical(clips=[{"start_s": 1}])],
     r"'r1'\): clips\[0\] must be an object with 'ytid'"),
    ("ytid too short", "music", "music_train.jsonl", [canonical(clips=[{**CLIP, "ytid": "abc"}])],
     r"clips\[0\]: ytid 'abc' is not an 11-character YouTube id"),
    ("ytid with a slash", "music", "music_train.jsonl", [canonical(clips=[{**CLIP, "ytid": "../../etc/p"}])],
     r"ytid '\.\./\.\./etc/p' is not an 11-character"),
    ("negative time", "music", "music_train.jsonl", [canonical(clips=[{**CLIP, "start_s": -1.0}])],
     r"start_s must be a finite, non-negative number"),
    ("inverted times", "music", "music_train.jsonl", [canonical(clips=[{**CLIP, "start_s": 40.0, "end_s": 30.0}])],
     r"end_s \(30.0\) must be after start_s \(40.0\)"),
    ("time as a string", "music", "music_train.jsonl", [canonical(clips=[{**CLIP, "start_s": "30"}])],
     r"start_s must be a number of seconds, got '30'"),
    ("only one time", "music", "music_train.jsonl", [canonical(clips=[{"ytid": CLIP["ytid"], "start_s": 3.0}])],
     r"give both start_s and end_s or neither"),
    ("empty turns", "music", "music_train.jsonl", [canonical(turns=[])], r"turns is empty"),
    ("turn without assistant", "music", "music_train.jsonl", [canonical(turns=[{"user": "hi"}])],
     r"turns\[0\] must be an object with 'user' and 'assistant'"),
    ("empty assistant text", "music", "music_train.jsonl", [canonical(turns=[{"user": "hi", "assistant": ""}])],
     r"turns\[0\]\.assistant is empty"),
    ("turn text not a string", "music", "music_train.jsonl", [canonical(turns=[{"user": 3, "assistant": "x"}])],
     r"turns\[0\]\.user must be a string, got int"),
    ("two clips for music", "music", "music_train.jsonl", [canonical(clips=[CLIP, CLIP])],
     r"a music record needs 1 clips, got 2"),
    ("one clip for comparison", "comparison", "comparison_train.jsonl", [canonical()],
     r"a comparison record needs 2-4 clips, got 1"),
    ("five clips for comparison", "comparison", "comparison_train.jsonl", [canonical(clips=[CLIP] * 5)],
     r"needs 2-4 clips, got 5"),
    ("duplicate ids", "music", "music_train.jsonl", [canonical("same"), canonical("same")],
     r":2 \(id 'same'\): duplicate id 'same' \(first at .*music_train.jsonl:1"),
    ("audio_id with a parent path", "music", "music_train.json", [{"audio_id": "../../x.wav", "dialogue": TURNS}],
     r"\[0\]: audio_id '\.\./\.\./x\.wav' has a path in it"),
    ("absolute audio_id", "music", "music_train.json", [{"audio_id": "/etc/passwd.wav", "dialogue": TURNS}],
     r"audio_id '/etc/passwd.wav' has a path in it"),
    ("audio_id not a YouTube name", "music", "music_train.json", [{"audio_id": "Ydog.wav", "dialogue": TURNS}],
     r"audio_id 'Ydog.wav': ytid 'Ydog' is not an 11-character"),
    ("list of audio ids for music", "music", "music_train.json",
     [{"audio_id": ["Yabc_DEF-123.wav"], "dialogue": TURNS}], r"a music record names one clip in 'audio_id'"),
    ("comparison without a list", "comparison", "comparison_train.json",
     [{"audio_id": "Yabc_DEF-123.wav", "dialogue": TURNS}], r"a comparison record needs a list 'audio_ids'"),
    ("unknown shape", "music", "music_train.jsonl", [{"question": "q", "answer": "a"}],
     r"neither a canonical record .* nor a release record"),
    ("meta not an object", "audioset", "audioset_train.jsonl", [canonical(meta=[1])], r"meta must be an object"),
    ("sound event without label", "audioset", "audioset_train.jsonl",
     [canonical(meta={"sound_events": [{"start_s": 1}]})], r"meta.sound_events\[0\] must be an object"),
    ("aspects not strings", "music", "music_train.jsonl", [canonical(meta={"aspects": [1, 2]})],
     r"meta.aspects must be a list of strings"),
    ("not UTF-8", "music", "music_train.jsonl", b'{"id": "\xff"}\n', r"not UTF-8 text"),
]


@pytest.mark.parametrize("name,config,file_name,content,message", BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_bad_input_names_file_record_and_problem(tmp_path: Path, name: str, config: str, file_name: str,
                                                 content, message: str) -> None:
    path = tmp_path / file_name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif file_name.endswith(".json"):
        path.write_text(json.dumps(content))
    else:
        write_jsonl(path, content)
    with pytest.raises(AnnotationError) as raised:
        read_split(config, "train", data_dir=tmp_path)
    text = str(raised.value)
    assert text.startswith(str(path)), text  # the file comes first, then line or index
    assert pytest.importorskip("re").search(message, text), text


@pytest.mark.parametrize("call,message", [
    (lambda d: read_split("speech", "train", data_dir=d), r"unknown config 'speech'"),
    (lambda d: read_split("music", "validation", data_dir=d), r"unknown split 'validation'"),
    (lambda d: read_split("music", "test", data_dir=d), r"no annotation file for music/test"),
    (lambda d: read_split("music", "train", data_dir=d / "nope"), r"nope: data_dir is not a directory"),
    (lambda d: read_split("music", "train"), r"no annotations given for config 'music'"),
    (lambda d: read_split("music", "train", data_files={"train": d / "absent.jsonl"}), r"absent.jsonl: .* not exist"),
    (lambda d: read_split("audioset", "train", data_dir=d), r"no audioset_train.json\[l\] or audioset_test"),
])
def test_bad_locations(tmp_path: Path, call, message: str) -> None:
    write_jsonl(tmp_path / "music_train.jsonl", [canonical()])
    with pytest.raises(AnnotationError, match=message):
        call(tmp_path)


def test_both_json_and_jsonl_for_one_split_is_ambiguous(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "music_train.jsonl", [canonical()])
    (tmp_path / "music_train.json").write_text("[]")
    with pytest.raises(AnnotationError, match="both music_train.jsonl and music_train.json exist"):
        split_files("music", data_dir=tmp_path)


BAD_METADATA = [
    ("strong_labels", "strong.tsv", "segment\tstart\tend\tlabel\n", r"strong.tsv:1: expected the header"),
    ("strong_labels", "strong.tsv", "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\nabc_1000\t0\t1\t/m/x\n",
     r"strong.tsv:2: segment_id 'abc_1000' is not"),
    ("strong_labels", "strong.tsv",
     "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\nabc_DEF-123_1000\t5\t1\t/m/x\n",
     r"strong.tsv:2: event times 5.0..1.0 are negative or inverted"),
    ("strong_labels", "strong.tsv", "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\nabc_DEF-123_1000\t5\n",
     r"strong.tsv:2: expected 4 tab-separated columns"),
    ("musiccaps_csv", "mc.csv", "ytid,start_s\nabc_DEF-123,0\n", r"mc.csv:1: MusicCaps CSV lacks the columns"),
    ("musiccaps_csv", "mc.csv", 'ytid,start_s,end_s,aspect_list,caption\nabc_DEF-123,30,20,"[]",x\n',
     r"mc.csv:2: clip abc_DEF-123: end_s \(20.0\) must be after"),
    ("musiccaps_csv", "mc.csv", 'ytid,start_s,end_s,aspect_list,caption\nabc_DEF-123,0,10,"__import__(\'os\')",x\n',
     r"mc.csv:2: malformed node"),
    ("ontology", "ontology.json", '{"id": 1}', r"ontology.json: not an AudioSet ontology"),
]


@pytest.mark.parametrize("kind,file_name,content,message", BAD_METADATA)
def test_bad_metadata_names_file_row_and_problem(tmp_path: Path, kind: str, file_name: str, content: str,
                                                 message: str) -> None:
    path = tmp_path / file_name
    path.write_text(content)
    with pytest.raises(MetadataError, match=message):
        load_source_metadata(**{kind: [path]})


def test_bad_input_through_load_dataset_keeps_the_message(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "music_train.jsonl", [canonical("a"), canonical("a")])
    with pytest.raises(AnnotationError, match=r"music_train.jsonl:2 \(id 'a'\): duplicate id"):
        audio_dialogues.load("music", data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "hf"))
    assert not any((tmp_path / "hf").rglob("*.arrow"))  # nothing half-prepared left behind
