"""The clip list of a config, remembered in the clip cache while its input files stay as they are."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import audio_dialogues
from audio_dialogues.fetch.clip_lists import INDEX_DIRNAME, config_clips
from audio_dialogues.sources.clips import Clip, ClipError


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


def remembered(tmp_path: Path) -> tuple[dict, dict, Path]:
    paths = audio_dialogues.sample_paths()
    kwargs = {"data_dir": paths["data_dir"], "cache_dir": tmp_path / "cache", "musiccaps_csv": paths["musiccaps_csv"]}
    clips = config_clips("music", "all", **kwargs)
    (stored,) = (tmp_path / "cache" / INDEX_DIRNAME).glob("clips-music-*.json")
    return clips, kwargs, stored


@pytest.mark.parametrize("row", [
    ["../../../etc", 1.0, 11.0], ["abcdefghij\n", 1.0, 11.0], ["abcdefghijkl", 1.0, 11.0], ["abcdefghijk", -1.0, 9.0],
    ["abcdefghijk", 5.0, 5.2], ["abcdefghijk", 9.0, 1.0], ["abcdefghijk", 1.0, 1e9], ["abcdefghijk", "1", 11.0],
    ["abcdefghijk", True, 11.0], ["abcdefghijk", 1.0, None], ["abcdefghijk", 1.0], "abcdefghijk", 7,
])
def test_a_stored_list_with_a_bad_row_is_not_believed(tmp_path: Path, row) -> None:
    clips, kwargs, stored = remembered(tmp_path)
    lists = json.loads(stored.read_text())
    lists[next(iter(lists))].append(row)
    stored.write_text(json.dumps(lists))
    assert config_clips("music", "all", **kwargs) == clips  # read from the annotations again


def test_odd_but_valid_rows_are_read_as_the_constructor_reads_them(tmp_path: Path) -> None:
    rows = [["abcdefghijk", 1, 11], ["abcdefghijk", None, None], ["a-_cdefghijk"[:11], 0.0, 0.5],
            ["abcdefghijk", 86399.5, 86400.0], ["abcdefghijk", 0.0005, 10.0015], ["-bcdefghijk", 30.0, 40.0]]
    clips, kwargs, stored = remembered(tmp_path)
    lists = json.loads(stored.read_text())
    lists[next(iter(lists))].extend(rows)
    stored.write_text(json.dumps(lists))
    read = config_clips("music", "all", **kwargs)
    assert read != clips  # the stored list, not the annotations
    made = [Clip(*row) for row in rows]
    assert read[next(iter(lists))][-len(rows):] == made
    assert [c.key for c in read[next(iter(lists))][-len(rows):]] == [c.key for c in made]
    assert [vars(c) for c in Clip.many(rows)] == [vars(c) for c in made]  # every attribute
    assert [[type(v) for v in vars(c).values()] for c in Clip.many(rows)] == [
        [type(v) for v in vars(c).values()] for c in made]


def test_a_row_of_another_shape_is_a_clip_error() -> None:
    for row in (["abcdefghijk", 1.0], 7, "abcdefghijk"):
        with pytest.raises(ClipError, match="a clip row is \\(ytid, start_s, end_s\\)"):
            Clip.many([row])
