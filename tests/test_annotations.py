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
from audio_dialogues.sources.metadata import load_source_metadata

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


def test_release_records_the_metadata_does_not_place_are_marked(tmp_path: Path) -> None:
    tsv = tmp_path / "strong.tsv"
    tsv.write_text("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
                   "a_b_c_d_e_f_120500\t0.000\t2.500\t/m/dog\n"
                   "Zx3_kQ9-LmA_0\t0.000\t2.500\t/m/dog\n"
                   "Zx3_kQ9-LmA_30000\t1.000\t2.000\t/m/cat\n")  # one video, two segments
    (tmp_path / "audioset_train.json").write_text(json.dumps(
        [{"audio_id": f"Y{y}.wav", "dialogue": TURNS} for y in ("a_b_c_d_e_f", "Zx3_kQ9-LmA", "abc_DEF-123")]))
    records = read_split("audioset", "train", data_dir=tmp_path, metadata=load_source_metadata(strong_labels=[tsv]))
    assert [r.unlisted for r in records] == [(), ("Zx3_kQ9-LmA",), ("abc_DEF-123",)]
    assert [r.clips[0].has_times for r in records] == [True, False, False]
    assert [r.unlisted for r in read_split("audioset", "train", data_dir=tmp_path)] == [(), (), ()]  # no metadata


def test_the_authors_release_files_are_the_train_split(tmp_path: Path) -> None:
    release = [{"audio_id": "Yabc_DEF-123.wav", "dialogue": TURNS}]
    (tmp_path / "dialogues_audioset_thresholded.json").write_text(json.dumps(release))
    (tmp_path / "dialogues_musiccaps_thresholded.json").write_text(json.dumps(release))
    write_jsonl(tmp_path / "music_test.jsonl", [canonical()])
    assert split_files("audioset", data_dir=tmp_path) == {"train": [tmp_path / "dialogues_audioset_thresholded.json"]}
    assert split_files("music", data_dir=tmp_path) == {"train": [tmp_path / "dialogues_musiccaps_thresholded.json"],
                                                       "test": [tmp_path / "music_test.jsonl"]}
    (record,) = read_split("music", "train", data_dir=tmp_path)
    assert record.id == "abc_DEF-123" and record.origin.endswith("dialogues_musiccaps_thresholded.json[0]")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="or dialogues_audioset_thresholded.json found"):
        split_files("audioset", data_dir=tmp_path / "empty")


def test_byte_order_marks_are_accepted_in_json_arrays_and_json_lines(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    (tmp_path / "music_train.json").write_bytes(bom + json.dumps([canonical("a")]).encode())
    (tmp_path / "music_test.jsonl").write_bytes(bom + json.dumps(canonical("b")).encode() + b"\n")
    assert [r.id for r in read_split("music", "train", data_dir=tmp_path)] == ["a"]
    assert [r.id for r in read_split("music", "test", data_dir=tmp_path)] == ["b"]


# ---- bad input: see tests/test_hostile_inputs.py for the table of cases ----------------------------


def test_bad_input_through_load_dataset_keeps_the_message(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "music_train.jsonl", [canonical("a"), canonical("a")])
    with pytest.raises(AnnotationError, match=r"music_train.jsonl:2 \(id 'a'\): duplicate id"):
        audio_dialogues.load("music", data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "hf"))
    assert not any((tmp_path / "hf").rglob("*.arrow"))  # nothing half-prepared left behind
