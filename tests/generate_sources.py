"""Small, synthetic source metadata for generation tests: strong labels (train and eval), ontology, MusicCaps.

The class names and captions are invented for the tests; ids have YouTube's shape, ``_`` and ``-`` included.
"""

from __future__ import annotations

import json
from pathlib import Path

CLASSES = {"/t/dog": "Dog", "/t/siren": "Siren", "/t/speech": "Speech", "/t/rain": "Rain", "/t/bell": "Bell"}
_EVENTS = [("/t/dog", 0.25, 1.0), ("/t/siren", 2.0, 9.5), ("/t/dog", 4.0, 4.75), ("/t/speech", 0.0, 3.125),
           ("/t/rain", 0.0, 10.0), ("/t/bell", 6.5, 7.0)]


def ytid(prefix: str, i: int) -> str:
    return f"{prefix}{i:04d}_-ab"[:11].ljust(11, "x")


def write_sources(folder: Path, train: int = 12, test: int = 4, music: int = 6) -> dict[str, list[str]]:
    """Write the three kinds of files; returns GenerateOptions keyword arguments naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n, prefix in (("train", train, "T"), ("eval", test, "E")):
        rows = ["segment_id\tstart_time_seconds\tend_time_seconds\tlabel"]
        for i in range(n):
            for j in range(1 + i % 3):
                label, start, end = _EVENTS[(i + j) % len(_EVENTS)]
                rows.append(f"{ytid(prefix, i)}_{30000 + 1000 * i}\t{start:.3f}\t{end:.3f}\t{label}")
        path = folder / f"audioset_{split}_strong.tsv"
        path.write_text("\n".join(rows) + "\n")
        paths[split] = str(path)
    ontology = folder / "ontology.json"
    ontology.write_text(json.dumps([{"id": k, "name": v} for k, v in CLASSES.items()]))
    rows = ["ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,"
            "is_audioset_eval"]
    for i in range(music):
        rows.append(f"{ytid('M', i)},{10 * i},{10 * i + 10},/m/04rlf,\"['calm', 'piano {i}']\","
                    f"\"A calm piano piece number {i} with soft chords.\",0,False,{'True' if i % 3 == 0 else 'False'}")
    musiccaps = folder / "musiccaps.csv"
    musiccaps.write_text("\n".join(rows) + "\n")
    return {"strong_labels": [paths["train"], paths["eval"]], "ontology": [str(ontology)],
            "musiccaps_csv": [str(musiccaps)]}
