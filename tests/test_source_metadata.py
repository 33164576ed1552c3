"""Source metadata fetched from URLs through the datasets download manager, and cached.

The official hosts cannot be reached from tests; the same files are served over HTTP on 127.0.0.1
(tests/media_server.py), which exercises the same download path the official URLs take.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import pytest

import audio_dialogues
from audio_dialogues.sources.clips import Clip
from audio_dialogues.sources.metadata import (
    CLASS_NAMES_URL,
    MUSICCAPS_URL,
    ONTOLOGY_URL,
    STRONG_LABELS_URLS,
    MetadataError,
    load_source_metadata,
    metadata_sources,
    read_musiccaps,
)
from tests.media_server import MediaServer

SAMPLE = audio_dialogues.sample_paths()


@pytest.fixture()
def online(monkeypatch: pytest.MonkeyPatch):
    """Let datasets download (tests run offline by default), from the loopback server only."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    with MediaServer() as server:
        yield server


def test_metadata_urls_are_downloaded_once_and_cached(online: MediaServer, tmp_path: Path) -> None:
    strong = online.add("audioset_train_strong.tsv", Path(SAMPLE["strong_labels"]))
    ontology = online.add("ontology.json", Path(SAMPLE["ontology"]))
    data = tmp_path / "data"
    shutil.copytree(SAMPLE["data_dir"], data)
    kwargs = {"data_dir": str(data), "audio_dir": SAMPLE["audio_dir"], "strong_labels": [strong],
              "ontology": ontology, "cache_dir": str(tmp_path / "hf")}
    train = audio_dialogues.load("audioset", split="train", **kwargs)
    assert train[2]["clip"] == {"ytid": "q_W_e_R_t_Y", "start_s": 120.5, "end_s": 130.5}
    assert [e["label"] for e in train[2]["sound_events"]] == ["Hum", "Tick", "Tick"]
    fetched = online.bytes_sent["audioset_train_strong.tsv"]
    assert fetched == Path(SAMPLE["strong_labels"]).stat().st_size

    # A changed annotation file forces a new prepare; the metadata comes from the download cache.
    annotation = data / "audioset_train.json"
    annotation.write_text(annotation.read_text().replace("high electronic beeps", "electronic beeps"))
    again = audio_dialogues.load("audioset", split="train", **kwargs)
    assert "A series of short, electronic beeps." == again[0]["turns"][0]["assistant"]
    assert online.bytes_sent["audioset_train_strong.tsv"] == fetched


def test_download_metadata_fills_only_what_is_missing_with_official_urls() -> None:
    assert metadata_sources("audioset", download_metadata=True) == {
        "strong_labels": list(STRONG_LABELS_URLS), "ontology": [ONTOLOGY_URL, CLASS_NAMES_URL]}
    assert metadata_sources("comparison", strong_labels="local.tsv", download_metadata=True) == {
        "strong_labels": ["local.tsv"], "ontology": [ONTOLOGY_URL, CLASS_NAMES_URL]}
    assert metadata_sources("music", download_metadata=True, strong_labels="ignored.tsv") == {
        "musiccaps_csv": [MUSICCAPS_URL]}
    assert metadata_sources("music") == {}


def test_musiccaps_aspects_are_parsed_as_literals_not_evaluated(tmp_path: Path) -> None:
    csv = tmp_path / "mc.csv"
    csv.write_text('ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption\n'
                   'abc_DEF-123,30,40,"/m/04rlf","[\'soft piano\', \'sad, slow\']","A caption, with a comma."\n')
    entry = read_musiccaps(csv).music["abc_DEF-123"]
    assert entry.aspects == ("soft piano", "sad, slow")
    assert entry.caption == "A caption, with a comma." and (entry.clip.start_s, entry.clip.end_s) == (30.0, 40.0)


# ---- the published file shapes, read as published ------------------------------------------------

STRONG_HEADER = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel"


def test_framed_posneg_strong_labels_keep_only_present_frames_merged_into_events(tmp_path: Path) -> None:
    """audioset_eval_strong_framed_posneg.tsv: 0.96 s frames, each PRESENT or NOT_PRESENT for a label."""
    tsv = tmp_path / "audioset_eval_strong_framed_posneg.tsv"
    tsv.write_text(f"{STRONG_HEADER}\tpresent\n"
                   "YxlGt805lTA_30000\t0.000\t0.960\t/m/04rlf\tPRESENT\n"
                   "YxlGt805lTA_30000\t0.000\t0.960\t/m/07rgkc5\tNOT_PRESENT\n"
                   "YxlGt805lTA_30000\t0.960\t1.920\t/m/04rlf\tPRESENT\n"
                   "YxlGt805lTA_30000\t3.840\t4.800\t/m/04rlf\tPRESENT\n"
                   "YxlGt805lTA_30000\t8.640\t9.600\t/m/07rgkc5\tNOT_PRESENT\n"
                   "a_b_c_d_e_f_0\t0.000\t0.960\t/m/09x0r\tNOT_PRESENT\n")
    meta = load_source_metadata(strong_labels=[tsv])
    clip = meta.clip_for("audioset", "YxlGt805lTA")
    assert (clip.start_s, clip.end_s) == (30.0, 40.0)
    assert meta.sound_events(clip) == [{"label": "/m/04rlf", "start_s": 0.0, "end_s": 1.92},
                                       {"label": "/m/04rlf", "start_s": 3.84, "end_s": 4.8}]
    # a segment whose frames are all NOT_PRESENT is still a known clip, with no events
    silent = meta.clip_for("audioset", "a_b_c_d_e_f")
    assert silent is not None and meta.sound_events(silent) == []


def test_event_list_strong_labels_accept_times_at_the_clip_edges(tmp_path: Path) -> None:
    tsv = tmp_path / "audioset_train_strong.tsv"
    tsv.write_text(f"{STRONG_HEADER}\nYxlGt805lTA_30000\t0.000\t10.000\t/m/053hz1\n"
                   "YxlGt805lTA_30000\t9.5\t10.02\t/m/09x0r\n")
    events = load_source_metadata(strong_labels=[tsv]).sound_events(Clip("YxlGt805lTA", 30.0, 40.0))
    assert [(e["start_s"], e["end_s"]) for e in events] == [(0.0, 10.0), (9.5, 10.02)]


def test_byte_order_marks_and_crlf_are_accepted_in_every_metadata_file(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    csv = tmp_path / "mc.csv"
    csv.write_bytes(bom + b"ytid,start_s,end_s,aspect_list,caption\r\nabc_DEF-123,30,40,\"['calm']\",Calm.\r\n")
    tsv = tmp_path / "strong.tsv"
    tsv.write_bytes(bom + f"{STRONG_HEADER}\r\nabc_DEF-123_1000\t0\t1\t/m/x\r\n".encode())
    ontology = tmp_path / "ontology.json"
    ontology.write_bytes(bom + b'[{"id": "/m/x", "name": "X"}]')
    meta = load_source_metadata(strong_labels=[tsv], musiccaps_csv=[csv], ontology=[ontology])
    assert meta.music["abc_DEF-123"].caption == "Calm."
    assert meta.sound_events(Clip("abc_DEF-123", 1.0, 11.0)) == [{"label": "X", "start_s": 0.0, "end_s": 1.0}]


def test_musiccaps_rows_are_numbered_by_line_and_an_identical_repeat_is_harmless(tmp_path: Path) -> None:
    row = 'abc_DEF-123,30,40,"[\'calm\']","A calm piece,\nin two lines.",False,True\n'
    csv = tmp_path / "mc.csv"
    csv.write_text("ytid,start_s,end_s,aspect_list,caption,is_balanced_subset,is_audioset_eval\n" + row + row)
    meta = read_musiccaps(csv)
    entry = meta.music["abc_DEF-123"]
    assert entry.origin == f"{csv}:2" and entry.is_audioset_eval is True
    assert entry.caption == "A calm piece,\nin two lines."


def test_framed_and_event_files_of_one_segment_combine_the_same_in_either_order(tmp_path: Path) -> None:
    events_tsv = tmp_path / "audioset_eval_strong.tsv"
    events_tsv.write_text(f"{STRONG_HEADER}\nYxlGt805lTA_30000\t0.500\t1.500\t/m/04rlf\n")
    framed_tsv = tmp_path / "audioset_eval_strong_framed_posneg.tsv"
    framed_tsv.write_text(f"{STRONG_HEADER}\tpresent\nYxlGt805lTA_30000\t0.960\t1.920\t/m/04rlf\tPRESENT\n"
                          "YxlGt805lTA_30000\t1.920\t2.880\t/m/04rlf\tPRESENT\n")
    clip = Clip("YxlGt805lTA", 30.0, 40.0)
    one = load_source_metadata(strong_labels=[events_tsv, framed_tsv]).sound_events(clip)
    other = load_source_metadata(strong_labels=[framed_tsv, events_tsv]).sound_events(clip)
    key = lambda e: (e["start_s"], e["end_s"])  # noqa: E731
    assert sorted(one, key=key) == sorted(other, key=key) == [
        {"label": "/m/04rlf", "start_s": 0.5, "end_s": 1.5}, {"label": "/m/04rlf", "start_s": 0.96, "end_s": 2.88}]


def test_the_strong_label_releases_class_names_name_what_the_ontology_does_not(tmp_path: Path) -> None:
    """``mid_to_display_name.tsv`` (no header, ``id<TAB>name``) is an ``ontology`` file too, told apart by content."""
    strong = tmp_path / "strong.tsv"
    strong.write_text("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
                      "abcdefghijk_30000\t0.5\t2.0\t/m/09x0r\nabcdefghijk_30000\t3.0\t4.0\t/t/dd00134\n")
    ontology = tmp_path / "ontology.json"
    ontology.write_text('[{"id": "/m/09x0r", "name": "Speech"}]')
    names = tmp_path / "cached-download-without-extension"
    names.write_text("\ufeff/m/09x0r\tSpeech\n/t/dd00134\tCar passing by\n")
    clip = Clip("abcdefghijk", 30.0, 40.0)
    alone = load_source_metadata(strong_labels=[strong], ontology=[ontology])
    assert [e["label"] for e in alone.sound_events(clip)] == ["Speech", "/t/dd00134"]
    both = load_source_metadata(strong_labels=[strong], ontology=[ontology, names])
    assert [e["label"] for e in both.sound_events(clip)] == ["Speech", "Car passing by"]

    bad = tmp_path / "names.tsv"
    bad.write_text("/m/09x0r\tSpeech\nSpeech only\n")
    with pytest.raises(MetadataError, match=r"names.tsv:2: expected '<class id>\\t<name>'"):
        load_source_metadata(ontology=[bad])
