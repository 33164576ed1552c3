"""Human-readable summaries of prepared configs, for the CLI's ``demo`` and ``prepare``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

    from .builder import SplitReport


def _clip_text(clip: dict) -> str:
    if clip["start_s"] is None:
        return f"{clip['ytid']} (times unknown)"
    return f"{clip['ytid']} [{clip['start_s']:g}s-{clip['end_s']:g}s]"


def _audio_text(audio: dict | None) -> str:
    if audio is None:
        return "no audio"
    return f"{len(audio['array']) / audio['sampling_rate']:.2f} s at {audio['sampling_rate']} Hz"


def sample_gaps_note(report: dict[str, SplitReport]) -> str | None:
    """For the demo: why dialogues of the embedded sample were dropped (its audio is left out on purpose)."""
    dropped = sum(n for r in report.values() for n in r.dropped.values())
    if not dropped:
        return None
    return (f"  note: {dropped} dropped on purpose: the sample leaves out this audio to show what happens to a "
            "dialogue whose audio is not found. With missing_audio='drop' (the default) it is left out and counted; "
            "'error' stops, naming the record and clip; 'keep' keeps it with no audio.")


def summarise(config: str, splits: datasets.DatasetDict, report: dict[str, SplitReport],
              drop_note: str | None = None) -> str:
    """Split sizes (with what was dropped and why, and ``drop_note`` under them), turns per dialogue, and one
    decoded example."""
    lines = [f"== {config} =="]
    for split, ds in splits.items():
        r = report[split]
        dropped = "; ".join(f"{n} {why}" for why, n in r.dropped.items()) or "none"
        turns = [len(t) for t in ds["turns"]]
        spread = f"{sum(turns) / len(turns):.2f} (min {min(turns)}, max {max(turns)})" if turns else "-"
        lines.append(f"{split:>5}: {ds.num_rows} dialogues of {r.records} records; dropped: {dropped}; "
                     f"turns per dialogue {spread}")
        if r.without_audio:
            lines.append(f"       no dialogue has audio, so the split is empty; searched {r.searched}")
        if r.unlisted:
            lines.append(f"       {r.unlisted} release records have no single row in the source metadata (not "
                         f"listed, or in several segments: no clip window or labels; first: {r.first_unlisted})")
    if drop_note:
        lines.append(drop_note)
    split = next((s for s in ("test", "train") if s in splits and splits[s].num_rows), None)
    if split is not None:
        ex = splits[split][0]
        clips = ex["clips"] if "clips" in ex else [ex["clip"]]
        audios = ex["audios"] if "audios" in ex else [ex["audio"]]
        lines.append(f"example ({split}) {ex['id']}:")
        for clip, audio in zip(clips, audios, strict=True):
            lines.append(f"  clip {_clip_text(clip)}: {_audio_text(audio)}")
        if ex.get("sound_events"):
            lines.append("  events: " + ", ".join(f"{e['label']} {e['start_s']:g}-{e['end_s']:g}s"
                                                  for e in ex["sound_events"]))
        if ex.get("caption"):
            lines.append(f"  caption: {ex['caption']}")
        for turn in ex["turns"]:
            lines.append(f"  user: {turn['user']}")
            lines.append(f"  assistant: {turn['assistant']}")
    return "\n".join(lines)
