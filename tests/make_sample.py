"""Rebuild the embedded sample release (development tooling): ``python tests/make_sample.py``.

Everything here was written for this project: the dialogues, the captions, the YouTube-shaped ids
(valid in shape, with ``_``, ``-`` and a leading ``-`` to exercise parsing) and the audio, synthesised
from tones so that it is tiny and owes nothing to anyone. The layout mirrors the real inputs:

- ``data/``: annotation files in both shapes (release JSON arrays and canonical JSON Lines);
- ``audio/``: 10 s clips at 8 kHz under the naming schemes found in the wild;
- ``metadata/``: an AudioSet strong-label TSV, a MusicCaps-style CSV and an ontology excerpt with
  the classes used (ids as in AudioSet, descriptions our own).

Two clips named by the annotations have no audio on purpose, so the demo shows what a drop looks like.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parents[1] / "audio_dialogues" / "sample"
RATE = 8_000
SECONDS = 10.0

LABELS = {
    "/m/02fs_r": ("Beep, bleep", "Short electronic tones."),
    "/m/0hdsk": ("Chirp tone", "A tone sweeping in pitch."),
    "/m/07rcgpl": ("Hum", "A low, steady tone."),
    "/m/07qjznt": ("Tick", "A very short, sharp sound."),
    "/m/07phxs1": ("Ding", "A struck, ringing tone that fades."),
    "/m/03kmc9": ("Siren", "A tone alternating or gliding between pitches."),
}

# ytid -> (start_s, audio file name or None, events [(label, start, end)], synthesis recipe)
AUDIOSET = {
    "Zx3_kQ9-LmA": (30.0, "YZx3_kQ9-LmA.flac", [("/m/02fs_r", 0.5, 1.0), ("/m/02fs_r", 2.0, 2.5),
                                                 ("/m/02fs_r", 6.0, 6.5)], "beeps"),
    "-aB_cD3eF4g": (0.0, "-aB_cD3eF4g_0.flac", [("/m/0hdsk", 1.0, 4.0), ("/m/0hdsk", 6.0, 9.0)], "chirps"),
    "q_W_e_R_t_Y": (120.5, "q_W_e_R_t_Y_120500.flac", [("/m/07rcgpl", 0.0, 10.0), ("/m/07qjznt", 3.0, 3.1),
                                                         ("/m/07qjznt", 7.0, 7.1)], "hum_ticks"),
    "Ab12Cd34Ef5": (10.0, "Ab12Cd34Ef5_10_20.flac", [("/m/07phxs1", 2.0, 4.5)], "ding"),
    "M-n_O-p_Q-r": (60.0, "YM-n_O-p_Q-r.ogg", [("/m/03kmc9", 0.0, 10.0)], "siren"),
    "Hh7_Kk8-Ll9": (40.0, None, [("/m/07qjznt", 1.0, 1.2)], None),
}

# ytid -> (start_s, audio file name or None, caption, aspects, recipe)
MUSIC = {
    "Tq8_Lp2-Xv0": (30.0, "YTq8_Lp2-Xv0.flac", "A plucked synthetic melody climbs a major arpeggio at a relaxed tempo.",
                    ["plucked synth", "major arpeggio", "relaxed", "instrumental"], "arpeggio_slow"),
    "bN5-hR7_wK1": (0.0, "bN5-hR7_wK1.flac", "Sustained organ-like chords change slowly; calm and meditative.",
                    ["organ-like chords", "sustained", "calm", "no percussion"], "chords"),
    "Ju4_Ye6-Gz2": (50.0, "Ju4_Ye6-Gz2_50.flac", "A steady pulse of clicks over a low bass note, minimal and hypnotic.",
                    ["clicks", "bass drone", "minimal", "steady pulse"], "pulse"),
    "-Po9_Ui8-Ty": (15.0, "-Po9_Ui8-Ty_15_25.flac", "Fast, bright arpeggios in a high register; energetic.",
                    ["fast arpeggios", "bright", "energetic", "high register"], "arpeggio_fast"),
    "Wd3-Xs2_Za1": (90.0, None, "A gentle lullaby hummed by a synthetic voice.", ["lullaby", "soft"], None),
}


def _tone(t: np.ndarray, freq: float, start: float, end: float, decay: float = 0.0) -> np.ndarray:
    on = (t >= start) & (t < end)
    env = np.where(on, np.exp(-decay * (t - start)) if decay else 1.0, 0.0)
    return env * np.sin(2 * np.pi * freq * t)


def synthesise(recipe: str) -> np.ndarray:
    t = np.arange(int(RATE * SECONDS)) / RATE
    if recipe == "beeps":
        x = sum(_tone(t, 1000, s, s + 0.5) for s in (0.5, 2.0, 6.0))
    elif recipe == "chirps":
        x = sum(np.where((t >= s) & (t < s + 3), np.sin(2 * np.pi * (300 * (t - s) + 150 * (t - s) ** 2)), 0)
                for s in (1.0, 6.0))
    elif recipe == "hum_ticks":
        x = 0.6 * np.sin(2 * np.pi * 110 * t) + sum(_tone(t, 2500, s, s + 0.1, 40) for s in (3.0, 7.0))
    elif recipe == "ding":
        x = _tone(t, 880, 2.0, 4.5, 2.0) + 0.3 * _tone(t, 1760, 2.0, 4.5, 3.0)
    elif recipe == "siren":
        x = np.sin(2 * np.pi * np.cumsum(700 + 250 * np.sign(np.sin(2 * np.pi * 0.5 * t))) / RATE)
    elif recipe.startswith("arpeggio"):
        step = 0.5 if recipe == "arpeggio_slow" else 0.125
        base = 262 if recipe == "arpeggio_slow" else 1047
        notes = [1, 5 / 4, 3 / 2, 2]
        x = sum(_tone(t, base * notes[i % 4], i * step, (i + 1) * step, 3) for i in range(int(SECONDS / step)))
    elif recipe == "chords":
        chords = [(262, 330, 392), (220, 262, 330), (175, 220, 262), (196, 247, 294)]
        x = sum(_tone(t, f, 2.5 * i, 2.5 * (i + 1)) for i, chord in enumerate(chords) for f in chord)
    elif recipe == "pulse":
        x = 0.5 * np.sin(2 * np.pi * 55 * t) + sum(_tone(t, 3000, s, s + 0.05, 60) for s in np.arange(0, 10, 0.5))
    else:
        raise ValueError(recipe)
    x = np.asarray(x, dtype=np.float64)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    return [{"user": u, "assistant": a} for u, a in pairs]


def _canonical(record_id: str, clips: list[tuple[str, float]], turns: list[dict], **meta: object) -> dict:
    record = {"id": record_id, "clips": [{"ytid": y, "start_s": s, "end_s": s + SECONDS} for y, s in clips],
              "turns": turns}
    if meta:
        record["meta"] = meta
    return record


def annotations() -> dict[str, list[dict]]:
    a, m = AUDIOSET, MUSIC
    return {
        # The authors' release shape: clip times come from the strong-label TSV.
        "audioset_train.json": [
            {"audio_id": "YZx3_kQ9-LmA.wav", "dialogue": _turns(
                ("What do you hear in this recording?", "A series of short, high electronic beeps."),
                ("How many beeps are there?", "Three: two close together near the start and one later on."),
                ("Is anything else audible?", "No, the beeps sound over silence."))},
            {"audio_id": "Y-aB_cD3eF4g.wav", "dialogue": _turns(
                ("Describe the sound.", "A tone that sweeps upward in pitch, heard twice."))},
            {"audio_id": "Yq_W_e_R_t_Y.wav", "dialogue": _turns(
                ("Is there a constant sound in the background?", "Yes, a low steady hum runs through the clip."),
                ("Does anything interrupt it?", "Two brief ticks, a few seconds apart."),
                ("Could this be a machine?", "Possibly: a humming appliance with occasional clicks."),
                ("Is anyone speaking?", "No speech can be heard."))},
        ],
        "audioset_test.jsonl": [
            _canonical("as-test-ding", [("Ab12Cd34Ef5", a["Ab12Cd34Ef5"][0])], _turns(
                ("What sound stands out?", "A single bell-like ding that slowly fades."),
                ("When does it happen?", "Around two seconds into the clip."))),
            _canonical("as-test-siren", [("M-n_O-p_Q-r", a["M-n_O-p_Q-r"][0])], _turns(
                ("What is this sound?", "A siren alternating between two pitches.")),
                sound_events=[{"label": "Siren", "start_s": 0.0, "end_s": 10.0}]),
        ],
        # Canonical records without meta: caption and aspects come from the MusicCaps-style CSV.
        "music_train.jsonl": [
            _canonical("mu-train-arpeggio", [("Tq8_Lp2-Xv0", m["Tq8_Lp2-Xv0"][0])], _turns(
                ("What instrument plays here?", "A plucked synthesiser."),
                ("What is the melody like?", "It climbs a major arpeggio, one note at a time, at a relaxed pace."))),
            _canonical("mu-train-chords", [("bN5-hR7_wK1", m["bN5-hR7_wK1"][0])], _turns(
                ("Describe the mood.", "Calm and meditative, built on slowly changing sustained chords."),
                ("Are there drums?", "No, there is no percussion at all."),
                ("What could this accompany?", "A quiet scene, such as a meditation or a slow film opening."))),
            _canonical("mu-train-lullaby", [("Wd3-Xs2_Za1", m["Wd3-Xs2_Za1"][0])], _turns(
                ("Is this a lullaby?", "Yes, a soft hummed lullaby."))),
        ],
        "music_test.json": [
            {"audio_id": "YJu4_Ye6-Gz2.wav", "dialogue": _turns(
                ("What keeps the rhythm?", "A steady pulse of short clicks."),
                ("Is there a bass?", "Yes, one low note held throughout."))},
            {"audio_id": "Y-Po9_Ui8-Ty.wav", "dialogue": _turns(
                ("Is this slow or fast?", "Fast: quick, bright arpeggios in a high register."),
                ("What feeling does it give?", "Energetic and lively."))},
        ],
        "comparison_train.json": [
            {"audio_ids": ["YZx3_kQ9-LmA.wav", "Y-aB_cD3eF4g.wav"], "dialogue": _turns(
                ("Which clip has more separate sound events?",
                 "The first: it has three beeps, the second has two chirps."))},
            {"audio_ids": ["Y-aB_cD3eF4g.wav", "Yq_W_e_R_t_Y.wav", "YAb12Cd34Ef5.wav"], "dialogue": _turns(
                ("Which clip has a sound lasting the whole clip?", "The second, with its continuous hum."))},
            {"audio_ids": ["YHh7_Kk8-Ll9.wav", "YZx3_kQ9-LmA.wav"], "dialogue": _turns(
                ("Do both clips contain ticks?", "Only the first one does."))},
        ],
        "comparison_test.jsonl": [
            _canonical("cmp-test-1", [("Zx3_kQ9-LmA", a["Zx3_kQ9-LmA"][0]), ("M-n_O-p_Q-r", a["M-n_O-p_Q-r"][0])],
                       _turns(("Which clip is continuous?", "The second: the siren never stops."))),
            _canonical("cmp-test-2", [(y, a[y][0]) for y in ("-aB_cD3eF4g", "q_W_e_R_t_Y", "Ab12Cd34Ef5",
                                                              "M-n_O-p_Q-r")],
                       _turns(("Which clips change in pitch?", "The first (rising chirps) and the fourth (siren)."))),
        ],
    }


def main() -> None:
    for sub in ("data", "audio", "metadata"):
        (HERE / sub).mkdir(exist_ok=True)
    for name, records in annotations().items():
        path = HERE / "data" / name
        if name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
        else:
            path.write_text(json.dumps(records, indent=1) + "\n")
    for source in (AUDIOSET, MUSIC):
        for entry in source.values():
            file_name, recipe = entry[1], entry[-1]
            if file_name:
                sf.write(HERE / "audio" / file_name, synthesise(recipe), RATE)
    with open(HERE / "metadata" / "audioset_strong.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["segment_id", "start_time_seconds", "end_time_seconds", "label"])
        for ytid, (start, _file, events, _recipe) in AUDIOSET.items():
            for label, s, e in events:
                w.writerow([f"{ytid}_{round(start * 1000)}", f"{s:.3f}", f"{e:.3f}", label])
    with open(HERE / "metadata" / "musiccaps.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption", "author_id",
                    "is_balanced_subset", "is_audioset_eval"])
        for i, (ytid, (start, _file, caption, aspects, _recipe)) in enumerate(MUSIC.items()):
            w.writerow([ytid, int(start), int(start + SECONDS), "/m/04rlf", repr(aspects), caption, i % 3,
                        "False", "True" if i % 2 else "False"])
    ontology = [{"id": mid, "name": name, "description": text, "citation_uri": "", "positive_examples": [],
                 "child_ids": [], "restrictions": []} for mid, (name, text) in LABELS.items()]
    (HERE / "metadata" / "ontology.json").write_text(json.dumps(ontology, indent=1) + "\n")


if __name__ == "__main__":
    main()
