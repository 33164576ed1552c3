"""The dataset card: YAML metadata and prose rendered from the ``dataset_card/`` template.

One function renders both cards the project ships: the card of a pushed version (its configs, shards,
measured statistics next to the paper's, figures, clip availability and provenance) and the card of
``loading_script/`` (every subset, nothing measured). Descriptions, paper figures and citations come
from :data:`audio_dialogues.cards.CARDS`, so each is written once.

The YAML is built through ``huggingface_hub.DatasetCardData`` and ``datasets``' own ``DatasetInfo``
serialisation, so the Hub and plain ``datasets`` read back exactly the features and splits written.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dataset.cards import (
    AUDIO_DIALOGUES_CITATION,
    CARDS,
    HOMEPAGE,
    LICENSE,
    REGENERATED_LICENSE,
    REGENERATED_LICENSE_ID,
    SubsetCard,
)
from ..errors import AudioDialoguesError
from ..fetch.availability import Availability
from ..sources.annotations import CONFIGS
from ..sources.repo_layout import audio_column
from ..version import __version__
from .provenance import Provenance
from .stats import SplitStats

if TYPE_CHECKING:
    import datasets

TEMPLATE_NAME = "template.md"
LICENSE_NAME = "audio-dialogues-annotations"
DEFAULT_CONFIG = "music"
_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"))


def template_path() -> Path:
    """``dataset_card/template.md``: in the source tree, else where the wheel installed it (``share/``)."""
    candidates = [Path(__file__).resolve().parents[2] / "dataset_card" / TEMPLATE_NAME]
    for prefix in {sysconfig.get_path("data"), sys.prefix}:
        candidates.append(Path(prefix) / "share" / "audio-dialogues" / "dataset_card" / TEMPLATE_NAME)
    for path in candidates:
        if path.is_file():
            return path
    raise AudioDialoguesError(f"dataset card template not found (looked in {', '.join(map(str, candidates))}); "
                            "reinstall audio-dialogues")


@dataclass
class CardInputs:
    """What a card says. Empty ``stats`` renders the generic card (no measured section, no ``configs:``)."""

    configs: list[str] = field(default_factory=lambda: list(CONFIGS))
    stats: dict[str, dict[str, SplitStats]] = field(default_factory=dict)
    #: ``config -> split -> SplitOutput`` (rows, shards, sizes) of the parquet shards written.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    plots: dict[str, dict[str, str]] = field(default_factory=dict)
    availability: dict[str, Availability] = field(default_factory=dict)
    provenance: Provenance | None = None
    repo_id: str | None = None
    embed_audio: bool = False


def citations(cards: list[SubsetCard]) -> list[str]:
    """The paper's citation, then each source dataset's, every entry once."""
    out = [AUDIO_DIALOGUES_CITATION]
    for card in cards:
        if card.source_citation not in out:
            out.append(card.source_citation)
    return out


def size_category(n: int) -> str:
    for limit, name in _SIZE_CATEGORIES:
        if n < limit:
            return name
    return "n>10M"


def license_text(provenance: Provenance | None) -> str:
    """The card's licence section: the authors' terms, or, for a regenerated version (one with a generation
    report), what made it and the terms of the public metadata it derives from."""
    if provenance is None:
        return LICENSE
    made_with = f" (model {provenance.model}, per its {provenance.source})" if provenance.model else ""
    return REGENERATED_LICENSE.format(made_with=made_with)


def default_config(configs: list[str]) -> str:
    return DEFAULT_CONFIG if DEFAULT_CONFIG in configs else configs[0]


def published_features(config: str, embed_audio: bool) -> datasets.Features:
    """The builder's features with standard types only: no audio column, or a plain ``Audio`` one."""
    import datasets

    from ..dataset.builder import AudioDialoguesConfig, config_features, list_feature

    features = config_features(AudioDialoguesConfig(name=config, decoder="none"))
    column = audio_column(config)
    out = {}
    for name, feature in features.items():
        if name != column:
            out[name] = feature
        elif embed_audio:
            out[name] = list_feature(datasets.Audio()) if config == "comparison" else datasets.Audio()
    return datasets.Features(out)


def card_data(inputs: CardInputs):
    """The YAML header as ``DatasetCardData``: license, tasks, sizes, ``configs`` and ``dataset_info``."""
    import datasets
    from huggingface_hub import DatasetCardData

    from ..sources.repo_layout import DATA_DIR

    cards = [CARDS[c] for c in inputs.configs]
    extra: dict[str, Any] = {}
    if inputs.outputs:
        total = sum(o.rows for splits in inputs.outputs.values() for o in splits.values())
        extra["size_categories"] = [size_category(total)]
        default = default_config(list(inputs.outputs))
        extra["configs"] = [
            {"config_name": config,
             "data_files": [{"split": split, "path": f"{DATA_DIR}/{config}/{split}-*.parquet"} for split in splits],
             **({"default": True} if config == default else {})}
            for config, splits in inputs.outputs.items()
        ]
    licence: dict[str, Any] = ({"license": REGENERATED_LICENSE_ID} if inputs.provenance is not None
                               else {"license": "other", "license_name": LICENSE_NAME, "license_link": HOMEPAGE})
    data = DatasetCardData(
        pretty_name="Audio Dialogues",
        **licence,
        language=["en"],
        task_categories=["audio-text-to-text", "question-answering"],
        tags=["audio", "music", "dialogue", "audioset", "musiccaps"],
        source_datasets=sorted({card.source_dataset for card in cards}),
        **extra,
    )
    if inputs.outputs:
        infos = {}
        for config, splits in inputs.outputs.items():
            split_dict = datasets.SplitDict()
            for split, out in splits.items():
                split_dict.add(datasets.SplitInfo(name=split, num_bytes=out.arrow_bytes, num_examples=out.rows))
            infos[config] = datasets.DatasetInfo(
                features=published_features(config, inputs.embed_audio), splits=split_dict,
                download_size=sum(o.parquet_bytes for o in splits.values()),
                dataset_size=sum(o.arrow_bytes for o in splits.values()))
        datasets.info.DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def _paper_size(card: SubsetCard, split: str) -> str:
    n = card.paper_sizes.get(split)
    return f"{n:,}" if n is not None else "-"


def _measured_rows(inputs: CardInputs) -> list[dict]:
    """One row per config and split: measured figures and the paper's, for the statistics table."""
    rows = []
    for config in inputs.configs:
        card = CARDS[config]
        for split, s in inputs.stats.get(config, {}).items():
            rows.append({
                "config": config, "split": split, "dialogues": f"{s.dialogues:,}",
                "paper_dialogues": _paper_size(card, split), "turns_mean": f"{s.turns_mean:.2f}",
                "turns_range": s.turns_range, "paper_turns": card.paper_turns,
                "words_user": f"{s.words_per_turn_user:.1f}", "words_assistant": f"{s.words_per_turn_assistant:.1f}",
                "clips": f"{s.distinct_clips:,}",
            })
    return rows


def render_card(inputs: CardInputs) -> str:
    """The card as markdown with a YAML header, validated by ``huggingface_hub.DatasetCard`` on the way."""
    from huggingface_hub import DatasetCard

    cards = [CARDS[c] for c in inputs.configs]
    card = DatasetCard.from_template(
        card_data(inputs),
        template_path=str(template_path()),
        cards=cards,
        homepage=HOMEPAGE,
        license=license_text(inputs.provenance),
        repo_id=inputs.repo_id or "<user>/<repo>",
        published=bool(inputs.outputs),
        embed_audio=inputs.embed_audio,
        default_config=default_config(inputs.configs),
        measured=_measured_rows(inputs),
        stats=inputs.stats,
        plots=inputs.plots,
        availability=inputs.availability,
        provenance=inputs.provenance,
        citations=citations(cards),
        package_version=__version__,
    )
    text = re.sub(r"\n{3,}", "\n\n", str(card))  # the template's optional sections leave blank runs
    DatasetCard(text)  # raises on YAML the Hub would refuse to parse
    return text


def render_dataset_card() -> str:
    """The card of ``loading_script/`` (all subsets, no measured data), from the same code a push renders."""
    return render_card(CardInputs())
