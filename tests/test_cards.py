"""Subset cards and the Hub dataset card rendered from ``dataset_card/``."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import DatasetCard

import audio_dialogues
from audio_dialogues.dataset import api
from audio_dialogues.dataset.cards import CARDS
from audio_dialogues.publish.card import render_dataset_card

ROOT = Path(__file__).resolve().parents[1]


def test_every_card_cites_the_paper_and_its_source() -> None:
    for card in CARDS.values():
        assert "2404.07616" in card.citation and card.source_citation in card.citation


def test_builder_info_comes_from_the_card(tmp_path: Path) -> None:
    builder = api.builder("comparison", cache_dir=str(tmp_path), **audio_dialogues.sample_paths())
    assert builder.info.citation == CARDS["comparison"].citation
    assert "2-4 AudioSet clips" in builder.info.description


def test_loading_script_card_is_rendered_from_the_template() -> None:
    rendered = render_dataset_card()
    committed = (ROOT / "loading_script" / "README.md").read_text()
    assert committed == rendered, "re-render loading_script/README.md from dataset_card/template.md"
    card = DatasetCard(rendered)
    assert card.data.pretty_name == "Audio Dialogues"
    assert "| `comparison` | AudioSet Comparison |" in card.text and "64,085" in card.text
    # each citation once, although two subsets share the AudioSet one
    assert card.text.count("@article{goel2024audiodialogues") == 1
    assert card.text.count("@inproceedings{hershey2021strong") == 1
