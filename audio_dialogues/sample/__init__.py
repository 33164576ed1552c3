"""The embedded sample release: a few records of each config with their audio and source metadata.

Small enough to ship in the wheel, and shaped like the real thing, so that the demo and the tests run
the whole pipeline (annotations, metadata joins, local audio, decoding) without any download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def sample_paths() -> dict[str, Any]:
    """Keyword arguments that point any config at the embedded sample release (annotations, audio, metadata)."""
    return {
        "data_dir": str(ROOT / "data"),
        "audio_dir": str(ROOT / "audio"),
        "strong_labels": str(ROOT / "metadata" / "audioset_strong.tsv"),
        "ontology": str(ROOT / "metadata" / "ontology.json"),
        "musiccaps_csv": str(ROOT / "metadata" / "musiccaps.csv"),
    }
