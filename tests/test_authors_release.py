"""The authors' release as Audio Flamingo's chat code reads it: a folder, used as is.

The folder holds ``dialogues_audioset_thresholded.json`` / ``dialogues_musiccaps_thresholded.json`` (JSON
arrays of ``{"audio_id": "Y<ytid>.wav", "dialogue": [...]}``) with the ``Y<ytid>.wav`` files beside
them. It must load as the train split with no renaming and no ``audio_dir``. The audio here is
synthetic (soundfile writes it), shaped like the clips in the wild: 10 s, 22.05 kHz mono 16-bit WAV.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

import audio_dialogues
from audio_dialogues.dataset.api import prepare

TURNS = [{"user": "What do you hear?", "assistant": "Rain on a tin roof."},
         {"user": "Is it heavy?", "assistant": "Light, steady rain."}]
YTIDS = ["a_b_c_d_e_f", "-Xy9_Zq8-Wv", "Tq8_Lp2-Xv0"]


def _release(folder: Path, file_name: str, ytids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file_name).write_text(json.dumps([{"audio_id": f"Y{y}.wav", "dialogue": TURNS} for y in ytids]))
    t = np.arange(22_050 * 10) / 22_050
    for i, ytid in enumerate(ytids):
        sf.write(folder / f"Y{ytid}.wav", 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t), 22_050, subtype="PCM_16")
    return folder


def test_audioset_release_folder_loads_as_the_train_split_with_its_audio(tmp_path: Path) -> None:
    folder = _release(tmp_path / "dialog_AudioSetSL", "dialogues_audioset_thresholded.json", YTIDS)
    ds = audio_dialogues.load("audioset", data_dir=str(folder), cache_dir=str(tmp_path / "hf"))
    assert list(ds) == ["train"]
    train = ds["train"]
    assert train.num_rows == 3 and train["id"] == YTIDS
    assert [t["assistant"] for t in train[0]["turns"]] == ["Rain on a tin roof.", "Light, steady rain."]
    audio = train[1]["audio"]
    assert audio["sampling_rate"] == 16_000 and len(audio["array"]) == 160_000  # resampled from 22.05 kHz
    assert train[1]["clip"] == {"ytid": "-Xy9_Zq8-Wv", "start_s": None, "end_s": None}  # no metadata: no window


def test_music_release_with_metadata_reports_records_without_a_metadata_row(tmp_path: Path) -> None:
    folder = _release(tmp_path / "dialog_MusicCaps", "dialogues_musiccaps_thresholded.json", YTIDS)
    csv = tmp_path / "musiccaps-public.csv"
    csv.write_text("ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,"
                   "is_audioset_eval\n"
                   "a_b_c_d_e_f,30,40,/m/04rlf,\"['calm']\",A calm piece.,0,False,True\n"
                   "Tq8_Lp2-Xv0,0,10,/m/04rlf,\"['fast']\",A fast piece.,0,False,False\n")
    splits, report = prepare("music", data_dir=str(folder), musiccaps_csv=str(csv), cache_dir=str(tmp_path / "hf"))
    train = splits["train"]
    assert train.num_rows == 3  # the unlisted clip still has its audio beside the file
    assert train[0]["clip"] == {"ytid": "a_b_c_d_e_f", "start_s": 30.0, "end_s": 40.0}
    assert train[0]["caption"] == "A calm piece." and train[0]["aspects"] == ["calm"]
    assert len(train[0]["audio"]["array"]) == 160_000  # the Y<ytid>.wav file is the 10 s clip itself
    assert report["train"].unlisted == 1
    assert report["train"].first_unlisted == f"{folder}/dialogues_musiccaps_thresholded.json[1]"

    done = subprocess.run(
        [sys.executable, "-m", "audio_dialogues.cli", "prepare", "music", "--data-dir", str(folder),
         "--musiccaps-csv", str(csv), "--cache-dir", str(tmp_path / "hf")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert ("1 release records have no single row in the source metadata (not listed, or in several segments: "
            f"no clip window or labels; first: {folder}/dialogues_musiccaps_thresholded.json[1])") in done.stdout


def test_export_finds_the_audio_beside_the_release_file(tmp_path: Path) -> None:
    """The chat export reads the folder as the builder does: no --audio-dir, names relative to the folder."""
    folder = _release(tmp_path / "dialog_AudioSetSL", "dialogues_audioset_thresholded.json", YTIDS[:2])
    out = tmp_path / "af.json"
    done = subprocess.run(
        [sys.executable, "-m", "audio_dialogues.cli", "export", "audioset", "--data-dir", str(folder), "--split",
         "train", "--format", "af-chat", "--output", str(out), "--audio-cache-dir", str(tmp_path / "clips")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(out.read_text())
    assert manifest["dataset_path"] == str(folder)
    assert sorted(item["name"] for item in manifest["data"].values()) == [f"Y{y}.wav" for y in sorted(YTIDS[:2])]


def test_status_counts_the_audio_beside_the_release_file_as_present(tmp_path: Path) -> None:
    """fetch and status search the same folders as the builder, so the authors' audio is not fetched again."""
    folder = _release(tmp_path / "dialog_MusicCaps", "dialogues_musiccaps_thresholded.json", YTIDS[:2])
    csv = tmp_path / "mc.csv"
    csv.write_text("ytid,start_s,end_s,aspect_list,caption\n"
                   f"{YTIDS[0]},30,40,\"['calm']\",Calm.\n{YTIDS[1]},0,10,\"['fast']\",Fast.\n")
    done = subprocess.run(
        [sys.executable, "-m", "audio_dialogues.cli", "status", "music", "--data-dir", str(folder), "--split", "train",
         "--musiccaps-csv", str(csv), "--audio-cache-dir", str(tmp_path / "clips"),
         "--present-csv", str(tmp_path / "present.csv")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "present: 2 in your audio folders, 0 in the cache" in done.stdout, done.stdout
    rows = (tmp_path / "present.csv").read_text().splitlines()
    assert rows[0] == "ytid,start_s,end_s,key,found_in,path"
    # where they are: beside the release file, not in an --audio-dir (none was given)
    assert sorted(row.split(",")[4:] for row in rows[1:]) == sorted(
        ["release_folder", str(folder / f"Y{ytid}.wav")] for ytid in YTIDS[:2])


def test_export_of_the_test_split_of_a_release_folder_says_the_release_is_train_only(tmp_path: Path) -> None:
    folder = _release(tmp_path / "dialog_MusicCaps", "dialogues_musiccaps_thresholded.json", YTIDS[:1])
    done = subprocess.run(
        [sys.executable, "-m", "audio_dialogues.cli", "export", "music", "--data-dir", str(folder),  # --split test
         "--format", "af-chat", "--output", str(tmp_path / "af.json"), "--audio-cache-dir", str(tmp_path / "clips")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert (f"{folder}: no annotation file for music/test (looked for music_test.json[l]); the authors' release "
            "file dialogues_musiccaps_thresholded.json holds the train split only") in done.stderr, done.stderr
    assert "ask for split 'train'" in done.stderr


def test_a_clip_the_given_csv_lacks_is_dropped_saying_so(tmp_path: Path) -> None:
    """Without audio, a release clip the MusicCaps CSV does not list: the CSV was given, so asking for source
    metadata would not help; the reason says that the CSV lacks it."""
    folder = _release(tmp_path / "dialog_MusicCaps", "dialogues_musiccaps_thresholded.json", YTIDS)
    (folder / f"Y{YTIDS[1]}.wav").unlink()  # the one clip the CSV below does not list
    csv = tmp_path / "musiccaps-public.csv"
    csv.write_text("ytid,start_s,end_s,aspect_list,caption\n"
                   f"{YTIDS[0]},30,40,\"['calm']\",Calm.\n{YTIDS[2]},0,10,\"['fast']\",Fast.\n")
    splits, report = prepare("music", data_dir=str(folder), musiccaps_csv=str(csv), cache_dir=str(tmp_path / "hf"),
                             audio_cache_dir=str(tmp_path / "clips"))
    assert splits["train"].num_rows == 2
    (reason,) = report["train"].dropped
    assert "the source metadata given has no single row for the clip" in reason
    assert "give source metadata" not in reason
    # without any metadata, giving it is the advice
    splits, report = prepare("music", data_dir=str(folder), cache_dir=str(tmp_path / "hf"),
                             audio_cache_dir=str(tmp_path / "clips"))
    assert list(report["train"].dropped) == ["no audio found and no clip times (give source metadata to fetch it)"]
