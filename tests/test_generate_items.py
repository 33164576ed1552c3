"""Items from sources, prompt rendering and hashing, and the dry run's estimate (no model is called)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audio_dialogues.generate import GenerateError, GenerateOptions, generate
from audio_dialogues.generate.items import comparison_count, comparison_items, events_line, format_seconds
from audio_dialogues.generate.prompts import DEFAULT_TEMPLATES, PromptError, load_template, templates
from audio_dialogues.generate.run import build_items, read_sources, strong_label_splits
from audio_dialogues.sources.clips import Clip
from tests.generate_sources import write_sources


@pytest.fixture
def sources(tmp_path: Path) -> dict:
    return write_sources(tmp_path / "src")


def test_events_line_groups_by_class_in_onset_order() -> None:
    events = [("Siren", 2.0, 9.5), ("Dog", 0.25, 1.0), ("Dog", 4.0, 4.75), ("Bell", 6.5, 7.0)]
    line, description = events_line(events, {"Siren": "high, wailing"})
    assert line == ("Sound of Dog: [0.25s-1.0s], [4.0s-4.75s]; Sound of Siren (high, wailing): [2.0s-9.5s]; "
                    "Sound of Bell: [6.5s-7.0s]")
    assert description == "Sound of Dog; Sound of Siren (high, wailing); Sound of Bell"
    assert [format_seconds(v) for v in (0, 1.5, 0.1234, 3.1259, 10)] == ["0.0", "1.5", "0.123", "3.126", "10.0"]


def test_items_follow_the_sources_splits(sources: dict, tmp_path: Path) -> None:
    options = GenerateOptions(tmp_path / "out", **sources)
    items = build_items(options, read_sources(options))
    assert len(items["audioset", "train"]) == 12 and len(items["audioset", "test"]) == 4
    assert all(i.clips[0].ytid.startswith("E") for i in items["audioset", "test"])
    # MusicCaps rows flagged is_audioset_eval (every third one here) are test.
    assert [i.clips[0].ytid[:5] for i in items["music", "test"]] == ["M0000", "M0003"]
    assert len(items["music", "train"]) == 4
    first = items["audioset", "train"][0]
    assert first.text == "Sound of Dog: [0.25s-1.0s]"
    assert first.record_meta() == {"sound_events": [{"label": "Dog", "start_s": 0.25, "end_s": 1.0}]}
    assert first.clips[0] == Clip(first.clips[0].ytid, 30.0, 40.0)
    music = items["music", "test"][0]
    assert music.text == "Music description: A calm piano piece number 0 with soft chords."
    assert music.record_meta() == {"caption": "A calm piano piece number 0 with soft chords.",
                                   "aspects": ["calm", "piano 0"]}


def test_limit_and_split_specs(sources: dict, tmp_path: Path) -> None:
    options = GenerateOptions(tmp_path / "out", limit=3, comparison_groups={"train": 5, "test": 2}, **sources)
    items = build_items(options, read_sources(options))
    assert {k: len(v) for k, v in items.items()} == {
        ("audioset", "train"): 3, ("audioset", "test"): 3, ("music", "train"): 3, ("music", "test"): 2,
        ("comparison", "train"): 3, ("comparison", "test"): 2}
    assert strong_label_splits(["a/x_eval.tsv", "test=b/y.tsv", "train=c/eval.tsv", "d/train.tsv"]) == {
        "train": ["c/eval.tsv", "d/train.tsv"], "test": ["a/x_eval.tsv", "b/y.tsv"]}


def test_comparison_groups_are_deterministic_and_distinct(sources: dict, tmp_path: Path) -> None:
    options = GenerateOptions(tmp_path / "out", configs=("audioset", "music"), **sources)
    items = build_items(options, read_sources(options))
    pool, music = items["audioset", "train"], items["music", "train"]
    a = comparison_items(pool, "train", 40, seed=7, music=music, music_fraction=0.3)
    b = comparison_items(pool, "train", 40, seed=7, music=music, music_fraction=0.3)
    c = comparison_items(pool, "train", 40, seed=8, music=music, music_fraction=0.3)
    assert [g.key for g in a] == [g.key for g in b] and [g.key for g in a] != [g.key for g in c]
    assert len({frozenset(g.key.split("+")) for g in a}) == 40
    for group in a:
        assert 2 <= len(group.clips) <= 4
        assert len({clip.ytid for clip in group.clips}) == len(group.clips)
        assert group.text.startswith("Audio 1: ")
        assert f"Audio {len(group.clips)}: " in group.text
    assert any("Music description" in g.text for g in a) and any("Sound of" in g.text for g in a)
    # Two clips make one distinct pair at most: fewer groups, not an endless loop.
    assert len(comparison_items(pool[:2], "train", 10, seed=1)) == 1


def test_prompts_render_examples_then_the_item_and_hash_the_template(tmp_path: Path) -> None:
    template = DEFAULT_TEMPLATES["audioset"]
    messages = template.messages("Sound of Dog: [0.0s-1.0s]")
    assert messages[0]["role"] == "system" and "JSON object" in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * len(template.examples) + ["user"]
    assert messages[-1]["content"] == f"Example {len(template.examples) + 1}:\nSound of Dog: [0.0s-1.0s]"
    for answer in messages[2:-1:2]:
        assert all(set(json.loads(line)) == {"user", "assistant"} for line in answer["content"].splitlines())
    assert len(DEFAULT_TEMPLATES["comparison"].examples) == 3
    assert all(len(e.turns) == 1 for e in DEFAULT_TEMPLATES["comparison"].examples)
    assert len({t.digest for t in DEFAULT_TEMPLATES.values()}) == 3
    user = tmp_path / "mine.json"
    user.write_text(json.dumps({"system": "Talk about the sounds.",
                                "examples": [{"item": "Sound of Bell: [0.0s-1.0s]",
                                              "turns": [{"user": "What rings?", "assistant": "A bell."}]}]}))
    mine = templates({"music": str(user)})
    assert mine["music"].system == "Talk about the sounds." and mine["audioset"] is DEFAULT_TEMPLATES["audioset"]
    assert mine["music"].digest != DEFAULT_TEMPLATES["music"].digest
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"system": "x", "examples": [{"item": "y", "turns": []}]}))
    with pytest.raises(PromptError, match=r"bad.json: examples\[0\] needs"):
        load_template(bad)


def test_dry_run_prints_prompts_and_an_estimate_and_writes_nothing(sources: dict, tmp_path: Path) -> None:
    printed: list[str] = []
    with pytest.raises(GenerateError, match="a dry run needs it too: journaled answers are keyed by the model"):
        generate(GenerateOptions(tmp_path / "out", dry_run=True, progress=False, **sources))
    options = GenerateOptions(tmp_path / "out", model="m", dry_run=True, price_in=2.0, price_out=8.0, limit=4,
                              comparison_groups={"train": 4, "test": 4}, progress=False, **sources)
    estimate = generate(options, out=printed.append)
    text = "\n".join(printed)
    assert "=== audioset/train: the prompt of item" in text and "Example 3:\nSound of Dog" in text
    assert estimate["requests"] == 4 + 4 + 4 + 2 + 4 + 4
    assert estimate["prompt_tokens"] > 0 and estimate["completion_tokens_max"] == estimate["requests"] * 1024
    expected = (estimate["prompt_tokens"] * 2.0 + estimate["completion_tokens"] * 8.0) / 1e6
    assert estimate["cost_usd"] == round(expected, 4)
    assert not (tmp_path / "out").exists()  # no folder, lock or journal: a dry run writes nothing


def test_missing_sources_are_clear_errors(sources: dict, tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="give --strong-labels"):
        generate(GenerateOptions(tmp_path / "o", model="m", musiccaps_csv=sources["musiccaps_csv"]))
    with pytest.raises(GenerateError, match="give --model"):
        generate(GenerateOptions(tmp_path / "o", **sources))


def test_classes_the_ontology_does_not_name_are_refused_before_any_prompt(sources: dict, tmp_path: Path) -> None:
    """ontology.json alone leaves some strong-label classes unnamed; the release's class-name TSV names them."""
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([{"id": "/t/dog", "name": "Dog"}, {"id": "/t/siren", "name": "Siren"}]))
    options = GenerateOptions(tmp_path / "out", model="m", dry_run=True, **{**sources, "ontology": [str(partial)]})
    with pytest.raises(GenerateError, match=r"use 3 class ids that the ontology files .* do not name: "
                                            r"/t/\w+ \(\d+ events\).*mid_to_display_name.tsv") as refused:
        generate(options, out=lambda _: None)
    assert "/t/dog" not in str(refused.value)
    names = tmp_path / "mid_to_display_name.tsv"
    names.write_text("/t/speech\tSpeech\n/t/rain\tRain\n/t/bell\tBell\n")
    named = GenerateOptions(tmp_path / "out", **{**sources, "ontology": [str(partial), str(names)]})
    texts = [i.text for group in build_items(named, read_sources(named)).values() for i in group]
    assert any("Sound of Rain" in t for t in texts) and not any("/t/" in t for t in texts)


def test_default_comparison_groups_are_the_papers_or_one_per_clip_of_a_smaller_pool(
        sources: dict, tmp_path: Path) -> None:
    """12 train and 4 test clips make 12 and 4 groups by default, not the paper's 64,085 / 16,249."""
    options = GenerateOptions(tmp_path / "out", configs=("comparison",), **sources)
    items = build_items(options, read_sources(options))
    assert (len(items["comparison", "train"]), len(items["comparison", "test"])) == (12, 4)
    given = GenerateOptions(tmp_path / "out", configs=("comparison",), comparison_groups={"train": 30}, **sources)
    items = build_items(given, read_sources(given))
    assert (len(items["comparison", "train"]), len(items["comparison", "test"])) == (30, 4)
    assert comparison_count("train", 200_000, None) == 64_085 and comparison_count("test", 20_000, 100) == 100


def test_comparison_alone_mixes_music_when_asked(sources: dict, tmp_path: Path) -> None:
    """``--config comparison --comparison-music-fraction P`` reads MusicCaps too (it was silently left out)."""
    options = GenerateOptions(tmp_path / "out", configs=("comparison",), comparison_music_fraction=0.5,
                              comparison_groups={"train": 20, "test": 0}, **sources)
    items = build_items(options, read_sources(options))
    members = [clip.ytid for item in items["comparison", "train"] for clip in item.clips]
    assert any(ytid.startswith("M") for ytid in members) and any(ytid.startswith("T") for ytid in members)
    with pytest.raises(GenerateError, match="--comparison-music-fraction 0.5 mixes MusicCaps clips"):
        GenerateOptions(tmp_path / "out", configs=("comparison",), comparison_music_fraction=0.5,
                        strong_labels=sources["strong_labels"], ontology=sources["ontology"])


def test_dry_run_refuses_what_the_real_run_would(sources: dict, tmp_path: Path) -> None:
    """A bad embedder or a missing phrases file fails the dry run too, before anything is read or printed."""
    printed: list[str] = []
    for bad, message in (({"embedder": "bogus"}, "unknown embedder 'bogus'"),
                         ({"embedder": "sentence-transformers:/no/such/model"}, "model folder does not exist"),
                         ({"phrases_file": str(tmp_path / "missing.txt")}, "missing.txt: cannot read the phrases")):
        with pytest.raises(GenerateError, match=message):
            generate(GenerateOptions(tmp_path / "out", model="m", dry_run=True, progress=False, **bad, **sources),
                     out=printed.append)
    assert printed == []
