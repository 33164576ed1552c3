"""Hostile inputs: one table that grows, a row per bad input the package has met or could meet.

Each row names the files to write, the call that reads them and what its message must say. The error
must be one of the package's own (never a bare TypeError, OverflowError or a decoder's message), name
the file and the line or record (``where``) and say what is wrong (``fragments``). CLI rows run
``python -m audio_dialogues.cli`` in a subprocess: a clean exit 1 with the message on stderr and no
traceback, end to end. Option rows name the option instead of a file.

Add a row whenever a new kind of bad input turns up; keep the files tiny so the table stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pytest

import audio_dialogues
from audio_dialogues.audio import cache as clip_cache
from audio_dialogues.audio.resolver import AudioResolver
from audio_dialogues.dataset.options import ConfigError
from audio_dialogues.errors import AudioDialoguesError
from audio_dialogues.evaluation.scoring import EvaluationError, read_predictions
from audio_dialogues.fetch import journal
from audio_dialogues.fetch.options import FetchOptions
from audio_dialogues.generate import GenerateError, GenerateOptions
from audio_dialogues.generate.embedders import openai_embedder
from audio_dialogues.generate.prompts import load_template
from audio_dialogues.sources.annotations import read_split
from audio_dialogues.sources.clips import Clip
from audio_dialogues.sources.metadata import (
    MetadataError,
    load_source_metadata,
    metadata_download,
    open_source_metadata,
)
from tests.generate_sources import write_sources
from tests.media_server import MediaServer, make_clips, source_server, write_annotations
from tests.openai_server import OpenAIServer
from tests.tools import needs_unshare

PACKAGE_ERRORS = (AudioDialoguesError,)
REPO = Path(__file__).resolve().parents[1]

TURNS = [{"user": "What is it?", "assistant": "A dog barking."}]
CLIP = {"ytid": "abc_DEF-123", "start_s": 30.0, "end_s": 40.0}
RECORD = {"id": "r1", "clips": [CLIP], "turns": TURNS}
STRONG = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
POSNEG = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\tpresent\n"
MUSICCAPS = ("ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,"
             "is_audioset_eval\n")
MC_ROW = "abc_DEF-123,30,40,/m/04rlf,\"['calm', 'piano']\",\"Soft piano, slow.\",1,False,True\n"
NESTED = "[" * 100_000 + "]" * 100_000
LONG_NUMBER = "9" * 5000


def record(**changes: Any) -> dict:
    return {**RECORD, **changes}


def with_meta(meta: Any) -> dict:
    return record(meta=meta)


def event(**changes: Any) -> dict:
    return {"sound_events": [{"label": "Dog", "start_s": 1.0, "end_s": 2.0, **changes}]}


# ---- calls ----------------------------------------------------------------------------------------


def read(config: str = "music", split: str = "train") -> Callable[[Path], Any]:
    return lambda d: read_split(config, split, data_dir=d)


def metadata(kind: str, name: str) -> Callable[[Path], Any]:
    return lambda d: load_source_metadata(**{kind: [d / name]})


def generate_options(**options: Any) -> Callable[[Path], Any]:
    """The generate options of the Python API: they check their ranges when made, as the CLI does."""
    return lambda d: GenerateOptions(d / "out", **options)


def generate_cli(*args: str, status: int = 1) -> Cli:
    """``generate`` with the least it needs to reach option checks (no sources: those are read later)."""
    return Cli(("generate", "--output-dir", "{d}/out", "--model", "m", "--quiet", *args), status)


def load(config: str = "music", **options: Any) -> Callable[[Path], Any]:
    """The public entry point, as a user calls it (text only: no audio needed to reach the error)."""
    options = {"missing_audio": "keep", **options}
    return lambda d: audio_dialogues.load(config, data_dir=str(d), cache_dir=str(d / "hf"), **options)


@dataclass(frozen=True)
class Cli:
    """``python -m audio_dialogues.cli ARGS``; ``{d}`` in an argument is the row's folder."""

    args: tuple[str, ...]
    #: 1: bad input, unreadable input, unwritable output; 2: a usage error (errors.EXIT_CODES)
    status: int = 1


def cli(*args: str, status: int = 1) -> Cli:
    return Cli(args, status)


# ---- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    #: file name (below the row's folder) -> content: text, bytes, or records (JSON array / JSON Lines by suffix)
    files: dict[str, Any]
    call: Callable[[Path], Any] | Cli
    #: the file and line (``f:3``) or record (``f[2]``) the message must name, relative to the row's folder;
    #: the bare file when the whole file is the problem, None for option rows (the option is named instead)
    where: str | None
    #: what else the message must say
    fragments: tuple[str, ...] = field(default=())


CASES = [
    # -- annotation files: shape of the file
    Case("empty .jsonl file", {"music_train.jsonl": ""}, read(), "music_train.jsonl", ("the file is empty",)),
    Case("blank .json file", {"music_train.json": "\n  \n"}, read(), "music_train.json", ("the file is empty",)),
    Case("empty JSON array", {"music_train.json": "[]"}, read(), "music_train.json", ("JSON array is empty",)),
    Case("JSON array in a .jsonl file", {"music_train.jsonl": json.dumps([RECORD])}, read(), "music_train.jsonl:1",
         ("JSON array where a JSON Lines record belongs", "name it .json")),
    Case("pretty-printed array in a .jsonl file", {"music_train.jsonl": json.dumps([RECORD], indent=2)}, read(),
         "music_train.jsonl:1", ("looks like a JSON array",)),
    Case("a record that is a string", {"music_train.jsonl": ['"r1"']}, read(), "music_train.jsonl:1",
         ("a record must be a JSON object, got str",)),
    Case("deeply nested JSON Lines", {"music_train.jsonl": [RECORD, NESTED]}, read(), "music_train.jsonl:2",
         ("nested too deeply",)),
    Case("deeply nested JSON array", {"music_train.json": NESTED}, read(), "music_train.json",
         ("nested too deeply",)),
    Case("5000-digit number in JSON Lines", {"music_train.jsonl": ['{"id": ' + LONG_NUMBER + "}"]}, read(),
         "music_train.jsonl:1", ("too long to read",)),
    Case("5000-digit number in a JSON array", {"music_train.json": '[\n{"id": "a",\n "x": ' + LONG_NUMBER + "}]"},
         read(), "music_train.json:3", ("too long to read",)),
    Case("non-UTF-8 line in a JSON array", {"music_train.json": b'[\n{"id": "a"},\n{"id": "\xff"}]'}, read(),
         "music_train.json:3", ("not UTF-8",)),
    Case("non-UTF-8 line in JSON Lines", {"music_train.jsonl": json.dumps(RECORD).encode() + b'\n{"id": "\xe9"}\n'},
         read(), "music_train.jsonl:2", ("not UTF-8",)),
    Case("canonical and release file for one split", {"audioset_train.jsonl": [RECORD],
         "dialogues_audioset_thresholded.json": [{"audio_id": "Yabc_DEF-123.wav", "dialogue": TURNS}]},
         read("audioset"), "", ("audioset_train.jsonl and dialogues_audioset_thresholded.json", "keep one")),
    Case("empty release file", {"dialogues_musiccaps_thresholded.json": "[]"}, read(),
         "dialogues_musiccaps_thresholded.json", ("JSON array is empty",)),
    # -- annotation records: fields (rows from the first bad-input corpus)
    Case("malformed JSONL line", {"music_train.jsonl": [RECORD, '{"id": "b", "clips": [']}, read(),
         "music_train.jsonl:2", ("malformed JSON Lines record",)),
    Case("pretty-printed object", {"music_train.jsonl": json.dumps(RECORD, indent=2)}, read(), "music_train.jsonl:1",
         ("malformed JSON Lines record", "pretty-printed")),
    Case("malformed JSON array", {"music_train.json": '[{"audio_id": "Yabc_DEF-123.wav",\n "dialogue": ]'}, read(),
         "music_train.json:2:", ("malformed JSON",)),
    Case("missing id", {"music_train.jsonl": [{"clips": [CLIP], "turns": TURNS}]}, read(), "music_train.jsonl:1",
         ("id must be a string",)),
    Case("id not a string", {"music_train.jsonl": [record(id=7)]}, read(), "music_train.jsonl:1",
         ("id must be a string, got int",)),
    Case("empty id", {"music_train.jsonl": [record(id="  ")]}, read(), "music_train.jsonl:1", ("id is empty",)),
    Case("clips not a list", {"music_train.jsonl": [record(clips={"ytid": "x"})]}, read(), "music_train.jsonl:1",
         ("clips must be a list",)),
    Case("clip without ytid", {"music_train.jsonl": [record(clips=[{"start_s": 1}])]}, read(),
         "music_train.jsonl:1", ("(id 'r1'): clips[0] must be an object with 'ytid'",)),
    Case("ytid too short", {"music_train.jsonl": [record(clips=[{**CLIP, "ytid": "abc"}])]}, read(),
         "music_train.jsonl:1", ("clips[0]: ytid 'abc' is not an 11-character YouTube id",)),
    Case("ytid with a slash", {"music_train.jsonl": [record(clips=[{**CLIP, "ytid": "../../etc/p"}])]}, read(),
         "music_train.jsonl:1", ("ytid '../../etc/p' is not an 11-character",)),
    Case("negative time", {"music_train.jsonl": [record(clips=[{**CLIP, "start_s": -1.0}])]}, read(),
         "music_train.jsonl:1", ("start_s must be a finite, non-negative number",)),
    Case("inverted times", {"music_train.jsonl": [record(clips=[{**CLIP, "start_s": 40.0, "end_s": 30.0}])]},
         read(), "music_train.jsonl:1", ("end_s (30.0) must be after start_s (40.0)",)),
    Case("time as a string", {"music_train.jsonl": [record(clips=[{**CLIP, "start_s": "30"}])]}, read(),
         "music_train.jsonl:1", ("start_s must be a number of seconds, got '30'",)),
    Case("only one time", {"music_train.jsonl": [record(clips=[{"ytid": CLIP["ytid"], "start_s": 3.0}])]}, read(),
         "music_train.jsonl:1", ("give both start_s and end_s or neither",)),
    Case("empty turns", {"music_train.jsonl": [record(turns=[])]}, read(), "music_train.jsonl:1",
         ("turns is empty",)),
    Case("turn without assistant", {"music_train.jsonl": [record(turns=[{"user": "hi"}])]}, read(),
         "music_train.jsonl:1", ("turns[0] must be an object with 'user' and 'assistant'",)),
    Case("empty assistant text", {"music_train.jsonl": [record(turns=[{"user": "hi", "assistant": ""}])]}, read(),
         "music_train.jsonl:1", ("turns[0].assistant is empty",)),
    Case("turn text not a string", {"music_train.jsonl": [record(turns=[{"user": 3, "assistant": "x"}])]}, read(),
         "music_train.jsonl:1", ("turns[0].user must be a string, got int",)),
    Case("two clips for music", {"music_train.jsonl": [record(clips=[CLIP, CLIP])]}, read(), "music_train.jsonl:1",
         ("a music record needs 1 clips, got 2",)),
    Case("one clip for comparison", {"comparison_train.jsonl": [RECORD]}, read("comparison"),
         "comparison_train.jsonl:1", ("a comparison record needs 2-4 clips, got 1",)),
    Case("five clips for comparison", {"comparison_train.jsonl": [record(clips=[CLIP] * 5)]}, read("comparison"),
         "comparison_train.jsonl:1", ("needs 2-4 clips, got 5",)),
    Case("duplicate ids", {"music_train.jsonl": [RECORD, RECORD]}, read(), "music_train.jsonl:2",
         ("(id 'r1'): duplicate id 'r1' (first at ", "music_train.jsonl:1")),
    Case("audio_id with a parent path", {"music_train.json": [{"audio_id": "../../x.wav", "dialogue": TURNS}]},
         read(), "music_train.json[0]", ("audio_id '../../x.wav' has a path in it",)),
    Case("absolute audio_id", {"music_train.json": [{"audio_id": "/etc/passwd.wav", "dialogue": TURNS}]}, read(),
         "music_train.json[0]", ("audio_id '/etc/passwd.wav' has a path in it",)),
    Case("audio_id not a YouTube name", {"music_train.json": [{"audio_id": "Ydog.wav", "dialogue": TURNS}]}, read(),
         "music_train.json[0]", ("audio_id 'Ydog.wav': ytid 'Ydog' is not an 11-character",)),
    Case("list of audio ids for music", {"music_train.json": [{"audio_id": ["Yabc_DEF-123.wav"], "dialogue": TURNS}]},
         read(), "music_train.json[0]", ("a music record names one clip in 'audio_id'",)),
    Case("comparison without a list", {"comparison_train.json": [{"audio_id": "Yabc_DEF-123.wav", "dialogue": TURNS}]},
         read("comparison"), "comparison_train.json[0]", ("a comparison record needs a list 'audio_ids'",)),
    Case("unknown shape", {"music_train.jsonl": [{"question": "q", "answer": "a"}]}, read(), "music_train.jsonl:1",
         ("neither a canonical record", "nor a release record")),
    Case("sound event without label", {"audioset_train.jsonl": [with_meta({"sound_events": [{"start_s": 1}]})]},
         read("audioset"), "audioset_train.jsonl:1", ("meta.sound_events[0] must be an object",)),
    Case("aspects not strings", {"music_train.jsonl": [with_meta({"aspects": [1, 2]})]}, read(),
         "music_train.jsonl:1", ("meta.aspects must be a list of strings",)),
    Case("not UTF-8", {"music_train.jsonl": b'{"id": "\xff"}\n'}, read(), "music_train.jsonl:1", ("not UTF-8 text",)),
    # -- annotation records: numbers
    Case("1e400 start time", {"music_train.jsonl": ['{"id": "r1", "clips": [{"ytid": "abc_DEF-123", '
                                                    '"start_s": 1e400, "end_s": 40}], "turns": []}']},
         read(), "music_train.jsonl:1", ("start_s", "finite")),
    Case("NaN end time", {"music_train.jsonl": ['{"id": "r1", "clips": [{"ytid": "abc_DEF-123", '
                                                '"start_s": 0, "end_s": NaN}], "turns": []}']},
         read(), "music_train.jsonl:1", ("end_s", "finite")),
    Case("2**70 clip start", {"music_train.jsonl": [record(clips=[{**CLIP, "start_s": 2**70, "end_s": 2**70 + 10}])]},
         read(), "music_train.jsonl:1", ("clips[0]: start_s", "no video is that long")),
    Case("MusicCaps: start in milliseconds", {"mc.csv": MUSICCAPS + MC_ROW.replace(",30,40,", ",30000000,30010000,")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("start_s", "no video is that long")),
    Case("ytid with a trailing newline", {"music_train.jsonl": [record(clips=[{**CLIP, "ytid": "abc_DEF-123\n"}])]},
         read(), "music_train.jsonl:1", ("clips[0]: ytid", "not an 11-character YouTube id")),
    Case("2**70 event start (int64 overflow in Arrow)",
         {"audioset_train.jsonl": [with_meta(event(start_s=2**70, end_s=2**71))]}, read("audioset"),
         "audioset_train.jsonl:1", ("meta.sound_events[0].start_s", "not within the 10 s clip")),
    Case("event past the end of the clip", {"audioset_train.jsonl": [with_meta(event(end_s=10.5))]},
         read("audioset"), "audioset_train.jsonl:1", ("meta.sound_events[0].end_s", "not within the 10 s clip")),
    Case("event ends before it starts", {"audioset_train.jsonl": [with_meta(event(start_s=5.0, end_s=4.0))]},
         read("audioset"), "audioset_train.jsonl:1", ("meta.sound_events[0] ends (4 s) before it starts",)),
    # -- annotation records: wrong types inside meta
    Case("event time as a string", {"audioset_train.jsonl": [with_meta(event(start_s="1"))]}, read("audioset"),
         "audioset_train.jsonl:1", ("meta.sound_events[0].start_s must be a number of seconds, got '1'",)),
    Case("event time as a bool", {"audioset_train.jsonl": [with_meta(event(end_s=True))]}, read("audioset"),
         "audioset_train.jsonl:1", ("meta.sound_events[0].end_s must be a number",)),
    Case("event time missing", {"audioset_train.jsonl": [with_meta({"sound_events": [{"label": "Dog"}]})]},
         read("audioset"), "audioset_train.jsonl:1", ("meta.sound_events[0].start_s must be a number",)),
    Case("sound_events not a list", {"audioset_train.jsonl": [with_meta({"sound_events": {"label": "Dog"}})]},
         read("audioset"), "audioset_train.jsonl:1", ("meta.sound_events must be a list, got dict",)),
    Case("caption not a string", {"music_train.jsonl": [with_meta({"caption": ["a"]})]}, read(),
         "music_train.jsonl:1", ("meta.caption must be a string, got list",)),
    Case("meta a string", {"music_train.jsonl": [with_meta("calm")]}, read(), "music_train.jsonl:1",
         ("meta must be an object, got str",)),
    # -- where the annotations are
    Case("unknown config", {"music_train.jsonl": [RECORD]}, read("speech"), None, ("unknown config 'speech'",)),
    Case("unknown split", {"music_train.jsonl": [RECORD]}, read("music", "validation"), None,
         ("unknown split 'validation'",)),
    Case("no file for the split", {"music_train.jsonl": [RECORD]}, read("music", "test"), None,
         ("no annotation file for music/test",)),
    Case("data_dir not a folder", {"music_train.jsonl": [RECORD]},
         lambda d: read_split("music", "train", data_dir=d / "nope"), "nope", ("data_dir is not a directory",)),
    Case("data_dir naming the release file", {"dialogues_musiccaps_thresholded.json": [RECORD]},
         lambda d: read_split("music", "train", data_dir=d / "dialogues_musiccaps_thresholded.json"),
         "dialogues_musiccaps_thresholded.json", ("data_dir is a file, not a folder", "pass its folder")),
    Case("no annotations given", {}, lambda d: read_split("music", "train"), None,
         ("no annotations given for config 'music'",)),
    Case("data_files naming a missing file", {},
         lambda d: read_split("music", "train", data_files={"train": d / "absent.jsonl"}), "absent.jsonl",
         ("does not exist",)),
    Case("no file of the config", {"music_train.jsonl": [RECORD]}, read("audioset"), "",
         ("no audioset_train.json[l] or audioset_test.json[l]",)),
    Case("both .json and .jsonl for a split", {"music_train.jsonl": [RECORD], "music_train.json": [RECORD]}, read(),
         "", ("both music_train.jsonl and music_train.json hold the train split of 'music'; keep one",)),
    # -- text that JSON allows but no UTF-8 writer (Arrow) accepts: an escaped lone surrogate
    Case("lone surrogate in a turn", {"music_train.jsonl": ['{"id": "r1", "clips": [{"ytid": "abc_DEF-123", '
                                                            '"start_s": 30, "end_s": 40}], "turns": [{"user": '
                                                            '"hi \\ud800", "assistant": "a"}]}']},
         read(), "music_train.jsonl:1", ("turns[0].user holds a lone UTF-16 surrogate",)),
    Case("lone surrogate in an id", {"music_train.json": '[{"id": "\\udc00", "clips": [], "turns": []}]'}, read(),
         "music_train.json[0].id", ("holds a lone UTF-16 surrogate",)),
    Case("lone surrogate in a release dialogue", {"music_train.json": '[{"audio_id": "Yabc_DEF-123.wav", '
                                                  '"dialogue": [{"user": "q", "assistant": "\\ud83d!"}]}]'},
         read(), "music_train.json[0].dialogue[0].assistant", ("holds a lone UTF-16 surrogate",)),
    Case("lone surrogate in a caption", {"music_train.jsonl": [with_meta({"caption": "\ud83d"})]}, read(),
         "music_train.jsonl:1", ("meta.caption holds a lone UTF-16 surrogate",)),
    Case("lone surrogate in an event label", {"audioset_train.jsonl": [with_meta(event(label="\udfff"))]},
         read("audioset"), "audioset_train.jsonl:1", ("meta.sound_events[0].label holds a lone UTF-16 surrogate",)),
    # -- AudioSet strong labels
    Case("strong labels: empty file", {"strong.tsv": ""}, metadata("strong_labels", "strong.tsv"), "strong.tsv",
         ("empty file", "segment_id")),
    Case("strong labels: unexpected column", {"strong.tsv": STRONG.replace("label", "label\tconfidence")},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:1", ("unexpected columns ['confidence']",)),
    Case("strong labels: weak-label CSV header", {"strong.tsv": "YTID\tstart_seconds\tend_seconds\tpositive_labels\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:1",
         ("unexpected columns ['YTID'", "missing columns ['segment_id'")),
    Case("strong labels: wrong header names", {"strong.tsv": "segment\tstart\tend\tlabel\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:1", ("unexpected columns ['segment', 'start', 'end']",)),
    Case("strong labels: segment id too short", {"strong.tsv": STRONG + "abc_1000\t0\t1\t/m/x\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("segment_id 'abc_1000' is not",)),
    Case("strong labels: inverted event", {"strong.tsv": STRONG + "abc_DEF-123_1000\t5\t1\t/m/x\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("event times 5..1 s do not lie within",)),
    Case("strong labels: short row", {"strong.tsv": STRONG + "abc_DEF-123_1000\t5\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("expected 4 tab-separated fields", "got 2")),
    Case("posneg: short row", {"strong.tsv": POSNEG + "abc_DEF-123_1000\t0.0\t0.96\t/m/09x0r\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("expected 5 tab-separated fields",)),
    Case("posneg: neither PRESENT nor NOT_PRESENT", {"strong.tsv": POSNEG + "abc_DEF-123_1000\t0\t0.96\t/m/x\tYES\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("present 'YES'", "PRESENT nor NOT_PRESENT")),
    Case("strong labels: event past the clip", {"strong.tsv": STRONG + "abc_DEF-123_1000\t2.0\t12.5\t/m/x\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("2..12.5 s do not lie within the 10 s clip",)),
    Case("strong labels: negative start", {"strong.tsv": STRONG + "abc_DEF-123_1000\t-1\t2\t/m/x\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("do not lie within the 10 s clip",)),
    Case("strong labels: 1e400 time", {"strong.tsv": STRONG + "abc_DEF-123_1000\t0\t1e400\t/m/x\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("end_time_seconds '1e400' is not a finite",)),
    Case("strong labels: time not a number", {"strong.tsv": STRONG + "abc_DEF-123_1000\tone\t2\t/m/x\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("start_time_seconds 'one' is not a number",)),
    Case("strong labels: 5000-digit segment start", {"strong.tsv": STRONG + f"abc_DEF-123_{LONG_NUMBER}\t0\t1\t/m/x\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("segment_id",)),
    Case("strong labels: empty label", {"strong.tsv": STRONG + "abc_DEF-123_1000\t0\t1\t \n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:2", ("label is empty",)),
    Case("strong labels: not UTF-8 on line 3",
         {"strong.tsv": (STRONG + "abc_DEF-123_1000\t0\t1\t/m/x\n").encode() + b"abc_DEF-123_1000\t0\t1\t/m/\xff\n"},
         metadata("strong_labels", "strong.tsv"), "strong.tsv:3", ("not UTF-8",)),
    # -- MusicCaps CSV
    Case("MusicCaps: empty file", {"mc.csv": ""}, metadata("musiccaps_csv", "mc.csv"), "mc.csv", ("empty file",)),
    Case("MusicCaps: columns missing", {"mc.csv": "ytid,start_s\nabc_DEF-123,0\n"},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:1", ("MusicCaps CSV lacks the columns ['end_s'",)),
    Case("MusicCaps: inverted window", {"mc.csv": MUSICCAPS + MC_ROW.replace(",30,40,", ",30,20,")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("clip abc_DEF-123: end_s (20.0) must be after",)),
    Case("MusicCaps: code in aspect_list is not run",
         {"mc.csv": MUSICCAPS + MC_ROW.replace("['calm', 'piano']", "__import__('os')")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("aspect_list", "malformed node")),
    Case("MusicCaps: short row", {"mc.csv": MUSICCAPS + MC_ROW + "Zx3_kQ9-LmA,0,10\n"},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:3", ("expected 9 comma-separated fields", "got 3")),
    Case("MusicCaps: unquoted comma in the caption",
         {"mc.csv": MUSICCAPS + MC_ROW.replace('"Soft piano, slow."', "Soft piano, slow.")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("got 10", "quote a field")),
    Case("MusicCaps: ytid twice with different windows",
         {"mc.csv": MUSICCAPS + MC_ROW + MC_ROW.replace(",30,40,", ",0,10,")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:3", ("abc_DEF-123 is listed twice", "mc.csv:2 [30s, 40s)",
                                                           "[0s, 10s)", "keep one")),
    Case("MusicCaps: not UTF-8 after a caption spanning lines",
         {"mc.csv": (MUSICCAPS + MC_ROW.replace("Soft piano, slow.", "Soft piano,\nslow.")).encode()
          + b"Zx3_kQ9-LmA,0,10,,[],caf\xe9,1,False,False\n"},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:4", ("not UTF-8",)),
    Case("MusicCaps: a field beyond the csv size limit",
         {"mc.csv": MUSICCAPS + MC_ROW + f"Zx3_kQ9-LmA,0,10,,[],\"{'a' * 200_000}\",1,False,False\n"},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:3", ("unreadable row", "field larger than field limit")),
    Case("MusicCaps: start not a number", {"mc.csv": MUSICCAPS + MC_ROW.replace(",30,", ",thirty,")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("start_s 'thirty' is not a number",)),
    Case("MusicCaps: 1e400 end", {"mc.csv": MUSICCAPS + MC_ROW.replace(",40,", ",1e400,")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("end_s '1e400' is not a finite number",)),
    Case("MusicCaps: aspect_list not a literal", {"mc.csv": MUSICCAPS + MC_ROW.replace("['calm', 'piano']", "[calm")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("aspect_list '[calm' is not a list literal",)),
    Case("MusicCaps: aspect_list a dict", {"mc.csv": MUSICCAPS + MC_ROW.replace("['calm', 'piano']", "{'a': 1}")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("aspect_list", "not a list of strings")),
    Case("MusicCaps: is_audioset_eval not a bool", {"mc.csv": MUSICCAPS + MC_ROW.replace(",True\n", ",maybe\n")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("is_audioset_eval 'maybe'",)),
    Case("MusicCaps: ytid with a trailing space", {"mc.csv": MUSICCAPS + MC_ROW.replace("abc_DEF-123", "abc_DEF-123 ")},
         metadata("musiccaps_csv", "mc.csv"), "mc.csv:2", ("'abc_DEF-123 ' is not an 11-character YouTube id",)),
    # -- AudioSet ontology
    Case("ontology: an object, not a list", {"ontology.json": '{"id": "/m/x", "name": "X"}'},
         metadata("ontology", "ontology.json"), "ontology.json", ("not an AudioSet ontology", "got a dict")),
    Case("ontology: a class that is a string", {"ontology.json": '["/m/x"]'}, metadata("ontology", "ontology.json"),
         "ontology.json[0]", ("a class must be an object",)),
    Case("ontology: name not a string", {"ontology.json": '[{"id": "/m/a", "name": "A"}, {"id": "/m/x", "name": 7}]'},
         metadata("ontology", "ontology.json"), "ontology.json[1]", ("name must be a non-empty string, got 7",)),
    Case("ontology: child_ids a string", {"ontology.json": '[{"id": "/m/x", "name": "X", "child_ids": "/m/y"}]'},
         metadata("ontology", "ontology.json"), "ontology.json[0]", ("child_ids must be a list of class ids",)),
    Case("ontology: lone surrogate in a name", {"ontology.json": '[{"id": "/m/x", "name": "Dog \\ud800"}]'},
         metadata("ontology", "ontology.json"), "ontology.json[0].name", ("holds a lone UTF-16 surrogate",)),
    Case("ontology: deeply nested", {"ontology.json": NESTED}, metadata("ontology", "ontology.json"),
         "ontology.json", ("nested too deeply",)),
    Case("ontology: not UTF-8 on line 2", {"ontology.json": b'[\n{"id": "/m/x", "name": "\xff"}]'},
         metadata("ontology", "ontology.json"), "ontology.json:2", ("not UTF-8",)),
    # -- options of load()/load_dataset(): the option is named instead of a file
    Case("num_shards as a string", {"music_train.jsonl": [RECORD]}, load(num_shards="8"), None,
         ("num_shards must be", "got '8' (str)", "whole number")),
    Case("num_shards zero", {"music_train.jsonl": [RECORD]}, load(num_shards=0), None, ("num_shards must be", "got 0")),
    Case("num_shards a bool", {"music_train.jsonl": [RECORD]}, load(num_shards=True), None,
         ("num_shards must be", "got True")),
    Case("sampling_rate a bool", {"music_train.jsonl": [RECORD]}, load(sampling_rate=True), None,
         ("sampling_rate must be", "got True (bool)", "'native'")),
    Case("sampling_rate a string", {"music_train.jsonl": [RECORD]}, load(sampling_rate="16000"), None,
         ("sampling_rate must be", "got '16000' (str)")),
    Case("sampling_rate 2**70", {"music_train.jsonl": [RECORD]}, load(sampling_rate=2**70), None,
         ("sampling_rate must be", "got 1180591620717411303424")),
    Case("sampling_rate a float", {"music_train.jsonl": [RECORD]}, load(sampling_rate=16000.0), None,
         ("sampling_rate must be", "got 16000.0 (float)")),
    Case("decoder unknown", {"music_train.jsonl": [RECORD]}, load(decoder="ffmpeg"), None,
         ("decoder must be", "got 'ffmpeg'", "'soundfile'")),
    Case("decoder not a string", {"music_train.jsonl": [RECORD]}, load(decoder=["soundfile"]), None,
         ("decoder must be", "got ['soundfile'] (list)")),
    Case("missing_audio unknown", {"music_train.jsonl": [RECORD]}, load(missing_audio="skip"), None,
         ("missing_audio must be", "got 'skip'", "'drop'")),
    Case("audio_dir a number", {"music_train.jsonl": [RECORD]}, load(audio_dir=5), None,
         ("audio_dir must be", "got 5 (int)")),
    Case("audio_dir list with a number", {"music_train.jsonl": [RECORD]}, load(audio_dir=["a", 5]), None,
         ("audio_dir must be", "got ['a', 5]")),
    Case("audio_cache_dir a number", {"music_train.jsonl": [RECORD]}, load(audio_cache_dir=3), None,
         ("audio_cache_dir must be", "got 3")),
    Case("strong_labels a number", {"audioset_train.jsonl": [RECORD]}, load("audioset", strong_labels=7), None,
         ("strong_labels must be", "got 7 (int)")),
    Case("musiccaps_csv a dict", {"music_train.jsonl": [RECORD]}, load(musiccaps_csv={"a": 1}), None,
         ("musiccaps_csv must be", "got {'a': 1} (dict)")),
    Case("ontology empty string", {"audioset_train.jsonl": [RECORD]}, load("audioset", ontology=""), None,
         ("ontology must be", "got ''")),
    Case("download_audio a string", {"music_train.jsonl": [RECORD]},  # a regression fails offline, fast
         load(download_audio="yes", fetch_options={"url_template": "http://127.0.0.1:9/{ytid}"}), None,
         ("download_audio must be", "got 'yes' (str)", "True or False")),
    Case("download_metadata a number", {"music_train.jsonl": [RECORD]}, load(download_metadata=1), None,
         ("download_metadata must be", "got 1 (int)")),
    Case("fetch_options a string", {"music_train.jsonl": [RECORD]}, load(fetch_options="fast"), None,
         ("fetch_options must be", "got 'fast' (str)")),
    Case("fetch_options with an unknown key", {"music_train.jsonl": [RECORD]}, load(fetch_options={"wrokers": 2}),
         None, ("fetch_options: unknown keys ['wrokers']",)),
    Case("fetch_options with a bad value", {"music_train.jsonl": [RECORD]}, load(fetch_options={"format": "mp9"}),
         None, ("fetch_options: format must be one of",)),
    Case("fetch_options with a value of the wrong type", {"music_train.jsonl": [RECORD]},
         load(fetch_options={"workers": "4"}), None,
         ("fetch_options: workers must be", "got '4' (str)", "a whole number")),
    Case("fetch_options with a bool for a number", {"music_train.jsonl": [RECORD]},
         load(fetch_options={"sleep": True}), None, ("fetch_options: sleep must be", "got True (bool)")),
    Case("data_files a number", {"music_train.jsonl": [RECORD]},
         lambda d: audio_dialogues.load("music", data_files=5, cache_dir=str(d / "hf")), None, ("data_files=5",)),
    Case("data_dir a number", {},
         lambda d: audio_dialogues.load("music", data_dir=3, cache_dir=str(d / "hf")), None,
         ("data_dir must be", "got 3")),
    Case("misspelt option", {"music_train.jsonl": [RECORD]}, load(sampling_rat=16000), None,
         ("unknown option 'sampling_rat'", "sampling_rate")),
    Case("num_shards as a string through load_dataset", {"music_train.jsonl": [RECORD]},
         lambda d: datasets.load_dataset("audio_dialogues", "music", data_dir=str(d), cache_dir=str(d / "hf"),
                                         num_shards="8"), None, ("num_shards must be", "got '8' (str)")),
    Case("empty annotation file, streaming", {"music_train.jsonl": ""},
         lambda d: next(iter(audio_dialogues.load("music", split="train", streaming=True, data_dir=str(d),
                                                  missing_audio="keep", cache_dir=str(d / "hf")))),
         "music_train.jsonl", ("the file is empty",)),
    # -- end to end through the command line: exit 1, the message on stderr, no traceback
    Case("CLI: empty annotation file", {"music_train.jsonl": ""},
         cli("prepare", "music", "--data-dir", "{d}", "--missing-audio", "keep"), "music_train.jsonl",
         ("the file is empty",)),
    Case("CLI: nested JSON in a release file", {"dialogues_musiccaps_thresholded.json": NESTED},
         cli("prepare", "music", "--data-dir", "{d}"), "dialogues_musiccaps_thresholded.json", ("nested too deeply",)),
    Case("CLI: posneg TSV with a bad present value",
         {"dialogues_audioset_thresholded.json": [{"audio_id": "Yabc_DEF-123.wav", "dialogue": TURNS}],
          "posneg.tsv": POSNEG + "abc_DEF-123_1000\t0\t0.96\t/m/x\tpresent\n"},
         cli("prepare", "audioset", "--data-dir", "{d}", "--strong-labels", "{d}/posneg.tsv"), "posneg.tsv:2",
         ("present 'present'",)),
    Case("CLI: MusicCaps not UTF-8",
         {"music_train.jsonl": [RECORD], "mc.csv": (MUSICCAPS + MC_ROW).encode() + b"Zx3_kQ9-LmA,0,10,,[],\xff,1,,\n"},
         cli("prepare", "music", "--data-dir", "{d}", "--musiccaps-csv", "{d}/mc.csv"), "mc.csv:3", ("not UTF-8",)),
    Case("CLI: MusicCaps ytid twice",
         {"music_train.jsonl": [RECORD], "mc.csv": MUSICCAPS + MC_ROW + MC_ROW.replace(",30,40,", ",50,60,")},
         cli("prepare", "music", "--data-dir", "{d}", "--musiccaps-csv", "{d}/mc.csv"), "mc.csv:3",
         ("listed twice",)),
    Case("CLI: meta event time of the wrong type", {"audioset_train.jsonl": [with_meta(event(start_s=[1]))]},
         cli("prepare", "audioset", "--data-dir", "{d}"), "audioset_train.jsonl:1",
         ("meta.sound_events[0].start_s must be a number",)),
    # -- generate: numeric options out of range (Python API and command line), checks a dry run skipped
    # -- FetchOptions of the Python API: every field checked by the same table, not only the numbers
    Case("fetch: reverify a string", {}, lambda d: FetchOptions(reverify="no"), None,
         ("reverify must be True or False, got 'no' (str)",)),
    Case("fetch: retry_failed a number", {}, lambda d: FetchOptions(retry_failed=1), None,
         ("retry_failed must be True or False, got 1 (int)",)),
    Case("fetch: cookies a number", {}, lambda d: FetchOptions(cookies=3), None,
         ("cookies must be the path of a Netscape cookies file, got 3 (int)",)),
    Case("fetch: format unknown", {}, lambda d: FetchOptions(format="mp3"), None,
         ("format must be one of 'flac', 'wav', got 'mp3' (str)",)),
    Case("generate: tpm negative", {}, generate_options(tpm=-1), None, ("--tpm must be a number from", "got -1")),
    Case("generate: tpm NaN", {}, generate_options(tpm=float("nan")), None, ("--tpm", "got nan")),
    Case("generate: rpm zero", {}, generate_options(rpm=0), None, ("--rpm must be a number from", "got 0")),
    Case("generate: max_attempts zero", {}, generate_options(max_attempts=0), None,
         ("--max-attempts must be a whole number from 1", "got 0")),
    Case("generate: max_tokens negative", {}, generate_options(max_tokens=-5), None,
         ("--max-tokens must be a whole number from 1", "got -5")),
    Case("generate: temperature negative", {}, generate_options(temperature=-3), None,
         ("--temperature must be a number from 0 to 2, got -3",)),
    Case("generate: timeout zero", {}, generate_options(timeout_s=0), None,
         ("--timeout must be a number greater than 0", "got 0")),
    Case("generate: price negative", {}, generate_options(price_in=-1), None,
         ("--price-in must be a number from 0", "got -1")),
    Case("generate: similarity threshold 7", {}, generate_options(similarity_threshold=7), None,
         ("--similarity-threshold must be a number from -1 to 1, got 7",)),
    Case("generate: concurrency zero", {}, generate_options(concurrency=0), None,
         ("--concurrency must be a whole number from 1", "got 0")),
    Case("generate: concurrency a string", {}, generate_options(concurrency="8"), None, ("--concurrency", "got '8'")),
    Case("generate: music fraction without MusicCaps", {}, generate_options(comparison_music_fraction=0.5), None,
         ("--comparison-music-fraction 0.5", "give --musiccaps-csv")),
    Case("generate: comparison groups negative", {}, generate_options(comparison_groups={"train": 5, "test": -1}),
         None, ("--comparison-groups test must be a whole number from 0", "got -1")),
    Case("generate: comparison groups not whole", {}, generate_options(comparison_groups={"train": 2.5}), None,
         ("--comparison-groups train must be a whole number", "got 2.5")),
    Case("generate: comparison groups of a split that is not one", {},
         generate_options(comparison_groups={"validation": 3}), None, ("--comparison-groups", "'validation'")),
    Case("CLI: generate --comparison-groups -1", {}, generate_cli("--comparison-groups", "-1", status=2), None,
         ("argument --comparison-groups: must be a whole number from 0", "got '-1'")),
    Case("CLI: generate --comparison-groups train=-2", {}, generate_cli("--comparison-groups", "train=-2", status=2),
         None, ("argument --comparison-groups: must be a whole number from 0", "got '-2'")),
    Case("CLI: generate --limit 0", {}, generate_cli("--limit", "0", status=2), None,
         ("argument --limit: must be a whole number of at least 1",)),
    Case("CLI: generate --tpm -1", {}, generate_cli("--tpm", "-1", status=2), None,
         ("argument --tpm: must be a number from", "got '-1'")),
    Case("CLI: generate --max-attempts 0", {}, generate_cli("--max-attempts", "0", status=2), None,
         ("argument --max-attempts: must be a whole number from 1",)),
    Case("CLI: generate --comparison-music-fraction without MusicCaps", {},
         generate_cli("--comparison-music-fraction", "0.5"), None, ("give --musiccaps-csv",)),
    Case("CLI: generate --dry-run with an unknown embedder", {}, generate_cli("--dry-run", "--embedder", "bogus"),
         None, ("unknown embedder 'bogus'",)),
    Case("CLI: generate --prompt-file nested too deep", {"deep.json": NESTED},
         generate_cli("--dry-run", "--prompt-file", "audioset={d}/deep.json"), "deep.json", ("nested too deeply",)),
    Case("CLI: generate --prompt-file with a 5000-digit number",
         {"big.json": '{"system": "x", "n": ' + LONG_NUMBER + "}"},
         generate_cli("--dry-run", "--prompt-file", "audioset={d}/big.json"), "big.json:1", ("too long to read",)),
    Case("CLI: generate --comparison-groups inf", {}, generate_cli("--comparison-groups", "train=inf", status=2), None,
         ("argument --comparison-groups: must be a whole number from 0 to 1000000000, got 'inf'",)),
    Case("CLI: fetch --sleep inf", {"audioset_test.jsonl": [RECORD]},
         cli("fetch", "audioset", "--data-dir", "{d}", "--sleep", "inf", status=2), None,
         ("argument --sleep: must be a number from 0 to 86400, got 'inf'",)),
    Case("CLI: fetch --url-template file://", {"audioset_test.jsonl": [RECORD]},
         cli("fetch", "audioset", "--data-dir", "{d}", "--url-template", "file:///{{ytid}}.m4a", status=2), None,
         ("must be an http:// or https:// URL",)),
    Case("CLI: generate --dry-run with a missing phrases file", {},
         generate_cli("--dry-run", "--phrases-file", "{d}/missing.txt"), "missing.txt",
         ("cannot read the phrases file",)),
    # -- clip ids and windows, and the clip cache
    Case("ytid with a zero-width space",
         {"audioset_train.jsonl": [record(clips=[{**CLIP, "ytid": "abc_DEF-12\u200b"}])]}, read("audioset"),
         "audioset_train.jsonl:1", ("U+200B",)),
    Case("a window too short to be a clip", {"audioset_train.jsonl": [record(clips=[{**CLIP, "end_s": 30.2}])]},
         read("audioset"), "audioset_train.jsonl:1", ("a clip is at least 0.5 s",)),
    Case("CLI: clip cache that is a file", {"audioset_test.jsonl": [RECORD], "cache": "not a folder"},
         cli("fetch", "audioset", "--data-dir", "{d}", "--audio-cache-dir", "{d}/cache", "--url-template",
             "http://127.0.0.1:9/{{ytid}}.m4a", "--no-progress"), "cache", ("a file stands where a folder should be",)),
]


def write(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join((c if isinstance(c, str) else json.dumps(c)) + "\n" for c in content))
    else:
        path.write_text(json.dumps(content))


def run_cli(args: tuple[str, ...], folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    argv = [a.format(d=folder) for a in args]
    if argv[0] == "prepare":
        argv += ["--cache-dir", str(folder / "hf")]
    return subprocess.run([sys.executable, "-m", "audio_dialogues.cli", *argv], capture_output=True, text=True,
                          env=env, cwd=folder, timeout=120)


def test_the_table_is_broad() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_a_clear_message(tmp_path: Path, case: Case) -> None:
    for name, content in case.files.items():
        write(tmp_path / name, content)
    if isinstance(case.call, Cli):
        done = run_cli(case.call.args, tmp_path)
        assert done.returncode == case.call.status, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        message = done.stderr
    else:
        with pytest.raises(Exception) as raised:
            case.call(tmp_path)
        assert isinstance(raised.value, PACKAGE_ERRORS), repr(raised.value)
        message = str(raised.value)
    if case.where is not None:  # the file, with the line or record when the problem has one
        assert f"{tmp_path / case.where}" in message, message
    for fragment in case.fragments:
        assert fragment in message, message


# ---- classes: one check over every member of a class ---------------------------------------------------
# A peer that trickles its answer (200 headers, then a byte now and then) trips no per-read timeout: every
# HTTP client of the package must bound the whole request.

TRICKLE_TIMEOUT_S = 1.0


def trickled_chat(tmp_path: Path, server: OpenAIServer, media: MediaServer) -> str:
    """``generate`` from the command line, its chat requests trickled, 2 attempts of 1 s each."""
    sources = write_sources(tmp_path / "src", train=1, test=1, music=0)
    server.trickle = True
    args = ["generate", "--output-dir", "{d}/out", "--model", "m", "--base-url", server.base_url, "--embedder",
            "none", "--config", "audioset", "--timeout", f"{TRICKLE_TIMEOUT_S:g}", "--max-attempts", "2",
            "--ontology", sources["ontology"][0]]
    for path in sources["strong_labels"]:
        args += ["--strong-labels", path]
    done = run_cli(tuple(args), tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def trickled_embeddings(tmp_path: Path, server: OpenAIServer, media: MediaServer) -> str:
    server.trickle = True
    embedder = openai_embedder("emb", server.base_url, timeout_s=TRICKLE_TIMEOUT_S, max_attempts=2)
    with pytest.raises(GenerateError) as raised:
        embedder.embed(["a dog barks"])
    return str(raised.value)


def trickled_metadata(tmp_path: Path, server: OpenAIServer, media: MediaServer) -> str:
    url = media.add("ontology.json", json.dumps([{"id": "/m/x", "name": "X" * 500}]).encode())
    media.trickle("ontology.json")
    download = metadata_download(timeout_s=TRICKLE_TIMEOUT_S)
    with pytest.raises(MetadataError) as raised:
        open_source_metadata({"ontology": [url]}, download=download)
    assert url in str(raised.value)
    return str(raised.value)


HUB_METADATA = """
import json, sys
from audio_dialogues.errors import AudioDialoguesError
from audio_dialogues.sources.metadata import metadata_download, open_source_metadata
try:
    open_source_metadata({"ontology": [sys.argv[1]]}, download=metadata_download())
except AudioDialoguesError as e:
    print(json.dumps(str(e)))
"""


def trickled_hub_metadata(tmp_path: Path, server: OpenAIServer, media: MediaServer) -> str:
    """A metadata URL on the Hub (huggingface_hub's client, not aiohttp), in a process whose ``HF_ENDPOINT`` is
    the stand-in; ``AUDIO_DIALOGUES_HUB_TIMEOUT`` is the Hub's deadline."""
    import base64

    from tests.hub_server import HubServer

    with HubServer() as hub:
        body = json.dumps([{"id": "/m/x", "name": "X" * 500}]).encode()
        content = base64.b64encode(body).decode()
        hub.apply_commit(hub.create_repo("tester/meta", private=False), "main",
                         [{"key": "file", "value": {"path": "ontology.json", "content": content}}])
        hub.trickle(r"ontology\.json")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("HF_")}, "HF_ENDPOINT": hub.url,
               "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "ds"), "HF_HUB_OFFLINE": "0",
               "HF_DATASETS_OFFLINE": "0", "AUDIO_DIALOGUES_HUB_TIMEOUT": f"{TRICKLE_TIMEOUT_S:g}"}
        messages = []
        for url in ("hf://datasets/tester/meta/ontology.json",
                    f"{hub.url}/datasets/tester/meta/resolve/main/ontology.json"):
            done = subprocess.run([sys.executable, "-c", HUB_METADATA, url], capture_output=True, text=True,
                                  env=env, timeout=120)
            assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
            assert done.stdout.strip(), f"{url}: read to its end, no deadline"
            messages.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert all("ontology.json" in m and f"within {TRICKLE_TIMEOUT_S:g} s" in m for m in messages), messages
    return messages[0]


@pytest.mark.parametrize("client", [trickled_chat, trickled_embeddings, trickled_metadata, trickled_hub_metadata],
                         ids=["chat", "embeddings", "metadata download", "hub metadata download"])
def test_every_http_client_bounds_a_whole_request(tmp_path: Path, client: Callable[..., str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # datasets downloads from the loopback server only (tests run offline), into this test's folder
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "downloads")
    with OpenAIServer() as server, MediaServer() as media:
        started = time.monotonic()
        message = client(tmp_path, server, media)
        elapsed = time.monotonic() - started
    assert f"within {TRICKLE_TIMEOUT_S:g} s" in message, message
    assert elapsed < 30, elapsed  # the trickle lasts a minute or more; startup and backoff take a few seconds


# A special file where an input file belongs: a FIFO would block an open forever, /dev/zero never end a read.
# Each is refused by name (read as an input) or skipped with a warning naming it (listed in an audio_dir).


def fifo(path: Path) -> None:
    os.mkfifo(path)


def unix_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the socket file stays after the socket is closed


def link_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def link_to_fifo(path: Path) -> None:
    os.mkfifo(path.with_name(path.name + ".pipe"))
    path.symlink_to(path.name + ".pipe")


def char_device(path: Path) -> None:
    try:
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("making a device file needs CAP_MKNOD")


SPECIAL = {"FIFO": (fifo, "a FIFO"), "socket": (unix_socket, "a socket"),
           "symlink to /dev/zero": (link_to_dev_zero, "a character device (a symbolic link to /dev/zero)"),
           "symlink to a FIFO": (link_to_fifo, "a FIFO (named pipe) (a symbolic link to"),
           "character device": (char_device, "a character device")}


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``'s result or exception, failing the test if it has not returned within ``seconds`` (its thread is
    left behind: a blocked ``open`` cannot be interrupted)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("result")


READERS = {
    "annotation file (data_files)": ("music_train.jsonl",
                                     lambda p: read_split("music", "train", data_files={"train": str(p)})),
    "annotation file (data_dir)": ("music_train.jsonl", lambda p: read_split("music", "train", data_dir=p.parent)),
    "metadata file": ("ontology.json", lambda p: open_source_metadata({"ontology": [str(p)]})),
    "prompt template": ("prompt.json", lambda p: load_template(p)),
    "predictions file": ("predictions.jsonl", lambda p: read_predictions(p)),
}


@pytest.mark.parametrize("reader", READERS, ids=list(READERS))
@pytest.mark.parametrize("kind", SPECIAL, ids=list(SPECIAL))
def test_a_special_input_file_is_refused_by_name(tmp_path: Path, kind: str, reader: str) -> None:
    make, what = SPECIAL[kind]
    name, call = READERS[reader]
    make(tmp_path / name)
    with pytest.raises(Exception) as raised:
        within(10, lambda: call(tmp_path / name))
    assert isinstance(raised.value, (*PACKAGE_ERRORS, EvaluationError)), repr(raised.value)
    assert f"{tmp_path / name}: " in str(raised.value) and what in str(raised.value), str(raised.value)
    assert "does not exist" not in str(raised.value)


@pytest.mark.parametrize("kind", SPECIAL, ids=list(SPECIAL))
def test_a_special_file_named_like_a_clip_is_skipped_with_a_warning(tmp_path: Path, kind: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    make, what = SPECIAL[kind]
    audio = tmp_path / "audio"
    audio.mkdir()
    make(audio / "Yabc_DEF-123.wav")
    clip = Clip("abc_DEF-123", 30.0, 40.0)
    with caplog.at_level(logging.WARNING):
        found = within(10, lambda: AudioResolver([audio], cache_dir=tmp_path / "cache").resolve(clip))
    assert found is None
    assert f"skipped {audio / 'Yabc_DEF-123.wav'}: it is {what}" in caplog.text, caplog.text


# A clip cache that stops taking writes midway: the run stops with exit 1 naming the cause, and no clip it could not
# write is journaled (they are fetched again once there is room). A real fault in a user namespace: a small tmpfs
# over the cache fills up (ENOSPC) between clips or inside one, depending on the clips' size. A bind mount cannot
# be remounted read-only while the run holds its journal open, nor can a quota (EDQUOT; tmpfs here has none) or a
# failing disk (EIO) be made without privileges; every such error takes the same path (audio.cache.cache_fault).
CACHE_FAULTS = {
    "ENOSPC midway, FLAC clips": ("700k", "flac"),
    "ENOSPC in the first clip, WAV": ("100k", "wav"),
}


@needs_unshare
@pytest.mark.parametrize("fault", CACHE_FAULTS, ids=list(CACHE_FAULTS))
def test_a_cache_that_stops_taking_writes_stops_the_fetch_and_journals_nothing_it_could_not_write(
        tmp_path: Path, fault: str) -> None:
    size, fmt = CACHE_FAULTS[fault]
    (tmp_path / "media").mkdir()
    cache, after = tmp_path / "cache", tmp_path / "after"
    cache.mkdir()
    with source_server(tmp_path / "media") as server:
        clips = make_clips(server, "wfault", 8)
        data = write_annotations(tmp_path / "data", clips)
        fetch = [sys.executable, "-m", "audio_dialogues.cli", "fetch", "audioset", "--data-dir", str(data),
                 "--audio-cache-dir", str(cache), "--url-template", server.url_template("m4a"), "--workers", "1",
                 "--no-progress", "--format", fmt]
        # The tmpfs goes away with the namespace: its content is copied out first.
        script = (f"set -e; mount -t tmpfs -o size={size} tmpfs {cache}; set +e; {shlex.join(fetch)}; rc=$?; "
                  f"mkdir -p {after}; cp -a {cache}/. {after}/; exit $rc")
        done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 1, done.stdout + done.stderr
        assert "the disk is full" in done.stderr and str(cache) in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        statuses = [e.status for e in journal.read_entries(journal.journal_files(after))]
        assert set(statuses) <= {"ok"}, statuses  # no clip blamed for the cache's fault
        assert len(statuses) < len(clips)
        # With room again, the same command fetches every clip the stopped run could not write.
        fetch[fetch.index(str(cache))] = str(after)
        again = subprocess.run(fetch, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(clip_cache.cached_clip(after, c) is not None for c in clips)


# ---- classes, not instances: every numeric option, every command -------------------------------------------

#: What a hostile user types for a number: not a number, not finite, beyond float or int conversion, negative,
#: zero, fractional, tiny, and spelt in ways Python's int() or float() take but mean nothing here.
HOSTILE_NUMBERS = ("nan", "inf", "-inf", "1e400", LONG_NUMBER, "-1", "0", "2.5", "abc", "", " ", "1e-300", "0x10",
                   "True", "1_000", "١٢")


def numeric_options() -> list[tuple[str, Any]]:
    """(command, argparse action) for every option of every command that takes a number."""
    from audio_dialogues import cli

    commands = next(a for a in cli.build_parser()._actions if a.choices and a.dest == "command").choices
    found = []
    for command, parser in commands.items():
        for action in parser._actions:
            default_is_number = isinstance(action.default, (int, float)) and not isinstance(action.default, bool)
            if action.option_strings and (default_is_number or action.type in (int, float)
                                          or hasattr(action.type, "number")):
                found.append((command, action))
    return found


NUMERIC_OPTIONS = numeric_options()
#: Options taking more than one number in one argument, each checked by a Number of their own.
COMPOSITE = {"--comparison-groups"}


def test_every_numeric_option_is_parsed_by_the_one_numeric_parser() -> None:
    assert len(NUMERIC_OPTIONS) >= 20, [a.option_strings for _, a in NUMERIC_OPTIONS]
    plain = [f"{command} {action.option_strings[0]}" for command, action in NUMERIC_OPTIONS
             if not hasattr(action.type, "number") and action.option_strings[0] not in COMPOSITE]
    assert plain == []


@pytest.mark.parametrize("command, action", NUMERIC_OPTIONS,
                         ids=[f"{c} {a.option_strings[0]}" for c, a in NUMERIC_OPTIONS])
def test_every_numeric_option_refuses_hostile_numbers_as_a_usage_error(command: str, action: Any, capsys) -> None:
    from audio_dialogues import cli

    flag = action.option_strings[0]
    spec = getattr(action.type, "number", None)
    refused = [v for v in HOSTILE_NUMBERS if spec is None or not _parses(spec, v)]
    assert {"nan", "inf", "1e400", LONG_NUMBER, "abc", ""} <= set(refused)
    for value in refused:
        with pytest.raises(SystemExit) as usage:
            cli.main([command, f"{flag}={value}"])
        err = capsys.readouterr().err
        assert usage.value.code == 2 and f"argument {flag}" in err and "Traceback" not in err, (value, err)
        if spec is not None:  # the message says what the option takes
            assert spec.describe() in err, err


def _parses(spec: Any, text: str) -> bool:
    try:
        spec.parse("x", text)
    except AudioDialoguesError:
        return False
    return True


def api_numbers() -> list[tuple[str, str, Any]]:
    """(API, field, its Number) for every numeric field of the options the public functions take."""
    from audio_dialogues.fetch.options import NUMBERS as FETCH
    from audio_dialogues.generate.options import NUMBERS as GENERATE

    return ([("FetchOptions", name, spec) for name, spec in FETCH.items()]
            + [("GenerateOptions", name, spec) for name, (_, spec) in GENERATE.items()])


HOSTILE_VALUES = (float("nan"), float("inf"), float("-inf"), 10**400, -(10**400), 1e300, -1, 0, 2.5, True, "1", [1])


@pytest.mark.parametrize("api, name, spec", api_numbers(), ids=[f"{a}.{n}" for a, n, _ in api_numbers()])
def test_every_numeric_api_option_refuses_hostile_values_with_a_package_error(tmp_path: Path, api: str, name: str,
                                                                            spec: Any) -> None:
    from audio_dialogues.fetch import FetchOptions
    from audio_dialogues.fetch.options import FetchError
    from audio_dialogues.generate.options import NUMBERS as GENERATE
    from audio_dialogues.generate.options import GenerateError

    make, error, named = ((lambda **kw: FetchOptions(**kw)), FetchError, name) if api == "FetchOptions" else \
        ((lambda **kw: GenerateOptions(tmp_path, **kw)), GenerateError, GENERATE[name][0])
    refused = [v for v in HOSTILE_VALUES if not spec.accepts(v)]
    assert len(refused) >= 8 and all(v in refused for v in HOSTILE_VALUES[:3])
    for value in refused:
        with pytest.raises(error) as raised:
            make(**{name: value})
        assert f"{named} must be {spec.describe()}" in str(raised.value), str(raised.value)


@pytest.mark.parametrize("option", ["sampling_rate", "num_shards"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, 1e300, -1, 0, 2.5, True, "16000"])
def test_numeric_builder_options_refuse_hostile_values(tmp_path: Path, option: str, value: Any) -> None:

    with pytest.raises(ConfigError, match=f"option {option} must be .*, got "):
        audio_dialogues.load("music", cache_dir=str(tmp_path), **{option: value}, **audio_dialogues.sample_paths())


# ---- data loss: a command never deletes or overwrites what it did not write ----------------------------------

SAMPLE = audio_dialogues.sample_paths()
SOURCES = ("--musiccaps-csv", SAMPLE["musiccaps_csv"], "--strong-labels", SAMPLE["strong_labels"])

#: What a user may already have where an output folder is asked for (relative path -> bytes; "->" marks a symlink).
USER_CONTENT: dict[str, dict[str, Any]] = {
    # the issue's case: a project holding exactly the names a push writes, its annotations among them
    "project": {"README.md": b"# my project\n", "data/music_train.jsonl": json.dumps(RECORD).encode() + b"\n",
                "images/figure.png": b"\x89PNG mine"},
    "one file": {"notes.txt": b"mine"},
    "hidden only": {".git/config": b"[core]\n"},
    "nested": {"a/b/c/deep.bin": os.urandom(64)},
    "symlink out": {"elsewhere": "->../outside"},
    "another command's output": {".audio-dialogues-output.json": b'{"command": "somebody-else"}',
                                 "report.md": b"theirs"},
}

#: Every command that writes a folder, with ``{out}`` where the user's folder goes.
FOLDER_WRITERS = {
    "push --output-dir": ("push", "me/x", "--data-dir", SAMPLE["data_dir"], "--config", "music", *SOURCES,
                          "--output-dir", "{out}"),
    "push --output-dir, --data-dir inside": ("push", "me/x", "--data-dir", "{out}/data", "--config", "music",
                                             *SOURCES, "--output-dir", "{out}"),
    "generate --output-dir": ("generate", "--output-dir", "{out}", "--model", "m", "--base-url",
                              "http://127.0.0.1:9/v1", "--quiet", *SOURCES),
    "export --output": ("export", "music", "--data-dir", SAMPLE["data_dir"], *SOURCES, "--audio-dir",
                        SAMPLE["audio_dir"], "--format", "af3-chat", "--output", "{out}"),
}


def _tree(root: Path) -> dict[str, Any]:
    """Every entry under ``root``: a file's bytes, a symlink's target, a folder's mode; not followed."""
    out: dict[str, Any] = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(parent) / name
            key = path.relative_to(root).as_posix()
            out[key] = (f"-> {os.readlink(path)}" if path.is_symlink() else
                        path.read_bytes() if path.is_file() else f"dir {path.stat().st_mode:o}")
    return out


def _user_folder(root: Path, content: dict[str, Any]) -> Path:
    """``root/proj`` holding ``content``, and ``root/outside`` (a symlink's target) holding a file."""
    (root / "outside").mkdir()
    (root / "outside" / "keep.txt").write_text("outside")
    proj = root / "proj"
    for name, value in content.items():
        path = proj / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, str) and value.startswith("->"):
            path.symlink_to(value[2:])
        else:
            path.write_bytes(value)
    return proj


@pytest.mark.parametrize("content", USER_CONTENT, ids=list(USER_CONTENT))
@pytest.mark.parametrize("command", FOLDER_WRITERS, ids=list(FOLDER_WRITERS))
def test_no_command_writes_into_or_deletes_a_users_folder(tmp_path: Path, command: str, content: str) -> None:
    """Any folder-writing command x any content already there: refused before anything is touched.

    (A push once deleted a project's README.md, data/ and images/, then failed on its --data-dir.)
    """
    proj = _user_folder(tmp_path, USER_CONTENT[content])
    before = _tree(tmp_path)
    args = tuple(a.format(out=proj) for a in FOLDER_WRITERS[command])
    done = run_cli(args, tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert str(proj) in done.stderr, done.stderr
    assert _tree(tmp_path) == before


def test_push_replaces_its_own_output_whole_and_nothing_else(tmp_path: Path) -> None:
    """An earlier --output-dir folder is replaced (built beside it, renamed in); one with a user's file added is not."""
    out = tmp_path / "repo"
    args = ("push", "me/x", "--data-dir", SAMPLE["data_dir"], "--config", "music", *SOURCES, "--output-dir", str(out))
    assert run_cli(args, tmp_path).returncode == 0
    first = _tree(out)
    assert "README.md" in first and any(k.startswith("data/music/") for k in first)
    assert run_cli(args, tmp_path).returncode == 0  # the earlier output: replaced, same bytes
    assert _tree(out) == first and sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no leftovers
    (out / "data" / "mine.txt").write_text("mine")
    done = run_cli(args, tmp_path)
    assert done.returncode == 1 and "data/mine.txt" in done.stderr and "Traceback" not in done.stderr
    assert _tree(out) == {**first, "data/mine.txt": b"mine"}


def test_clean_deletes_only_what_datasets_and_the_builder_wrote(tmp_path: Path) -> None:
    """``clean`` x content it did not write: a folder shaped like a copy, a user's file inside a superseded copy."""
    from audio_dialogues.dataset.api import prepared_copies

    root = tmp_path / "hf" / "audio_dialogues"
    theirs = root / "my-saved-dataset" / "1.0.0" / "train"  # e.g. a save_to_disk output that happens to sit here
    stale = root / f"music-{'a' * 16}-{'b' * 16}-{'c' * 16}" / "1.0.0" / "0123456789abcdef"  # other code's copy
    for folder in (theirs, stale):
        folder.mkdir(parents=True)
        (folder / "dataset_info.json").write_text("{}")
    (theirs / "data-00000-of-00001.arrow").write_bytes(b"theirs")
    (stale / "audio_dialogues-train.arrow").write_bytes(b"ours")
    (stale / "notes.txt").write_text("mine")
    assert [c.path for c in prepared_copies(tmp_path / "hf")] == [stale]
    done = run_cli(("clean", "--cache-dir", str(tmp_path / "hf")), tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in stale.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in theirs.iterdir()) == ["data-00000-of-00001.arrow", "dataset_info.json"]


@pytest.mark.parametrize("repo_id", ["not valid!!", "a/b/c", "../../x", "me/x.git", "me/-x", ""])
@pytest.mark.parametrize("mode", ["--output-dir", "upload"])
def test_push_refuses_a_repo_id_the_hub_would_refuse(tmp_path: Path, repo_id: str, mode: str) -> None:
    """The same check in both modes, before anything is built (the id went into the card's usage lines)."""
    extra = ("--output-dir", str(tmp_path / "out")) if mode == "--output-dir" else ()
    done = run_cli(("push", repo_id, "--data-dir", SAMPLE["data_dir"], "--config", "music", *SOURCES, *extra),
                   tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{repo_id!r} is not a Hub repo id" in done.stderr
    assert not (tmp_path / "out").exists()
