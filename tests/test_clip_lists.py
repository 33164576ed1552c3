"""The clip list of a config, remembered in the clip cache while its input files stay as they are."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import audio_dialogues
from audio_dialogues.fetch.clip_lists import INDEX_DIRNAME, config_clips


def test_the_list_is_remembered_until_an_input_file_changes(tmp_path: Path) -> None:
    """A second call reads the stored list (here altered by hand, to tell it from a fresh read); touching the
    annotation file makes the next call read the annotations again."""
    paths = audio_dialogues.sample_paths()
    data = tmp_path / "data"
    shutil.copytree(paths["data_dir"], data)
    kwargs = {"data_dir": data, "cache_dir": tmp_path / "cache", "musiccaps_csv": paths["musiccaps_csv"]}
    clips = config_clips("music", "all", **kwargs)
    assert clips and all(split_clips and len({c.key for c in split_clips}) == len(split_clips)
                         for split_clips in clips.values())
    (stored,) = (tmp_path / "cache" / INDEX_DIRNAME).glob("clips-music-*.json")
    fewer = {split: split_clips[:1] for split, split_clips in clips.items()}
    stored.write_text(json.dumps({split: [[c.ytid, c.start_s, c.end_s] for c in split_clips]
                                  for split, split_clips in fewer.items()}))
    assert config_clips("music", "all", **kwargs) == fewer  # the stored lists, not the annotations

    annotation = next(data.glob("music_*"))
    st = annotation.stat()
    os.utime(annotation, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert config_clips("music", "all", **kwargs) == clips
    assert len(list((tmp_path / "cache" / INDEX_DIRNAME).glob("clips-music-*.json"))) == 1  # the old one is gone

