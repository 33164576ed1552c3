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
from audio_dialogues.sources.metadata import (
    MUSICCAPS_URL,
    ONTOLOGY_URL,
    STRONG_LABELS_URLS,
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
        "strong_labels": list(STRONG_LABELS_URLS), "ontology": [ONTOLOGY_URL]}
    assert metadata_sources("comparison", strong_labels="local.tsv", download_metadata=True) == {
        "strong_labels": ["local.tsv"], "ontology": [ONTOLOGY_URL]}
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
