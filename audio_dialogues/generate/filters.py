"""The filters applied to parsed dialogues, each a counted stage of the report.

- phrases: a whole dialogue goes when any assistant turn contains a low-confidence phrase (lower-cased
  substring match), as Audio Flamingo's chat loader does; its lists ship as ``phrases.json``;
- similarity: the cosine similarity between the item's description and the dialogue's assistant text
  must reach a threshold (0.3 by default; what it means depends on the embedder);
- duplicates: a dialogue whose turns repeat an earlier one exactly (after whitespace and case folding).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from .embedders import Embedder
from .items import Item
from .journal import Journal

Turns = tuple[tuple[str, str], ...]


def default_phrases() -> list[str]:
    """Audio Flamingo's lists (from LLARK, from LTU, and its own), in their order."""
    data = json.loads(resources.files(__package__).joinpath("phrases.json").read_text(encoding="utf-8"))
    return [p for key in ("llark", "ltu", "audio_flamingo") for p in data[key]]


def read_phrases(path: str | Path) -> list[str]:
    """One phrase per line; blank lines and lines starting with ``#`` are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


class PhraseFilter:
    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases = tuple(dict.fromkeys(p.lower() for p in phrases if p))

    def match(self, turns: Turns) -> str | None:
        """The first phrase found in an assistant turn, or None."""
        for _, assistant in turns:
            lowered = assistant.lower()
            for phrase in self.phrases:
                if phrase in lowered:
                    return phrase
        return None


def assistant_text(turns: Turns) -> str:
    return " ".join(assistant for _, assistant in turns)


class SimilarityScorer:
    """Scores through an embedder, caching each score in an append-only file so a re-run reuses it."""

    def __init__(self, embedder: Embedder, cache: Journal) -> None:
        self.embedder = embedder
        self.cache = cache

    def _key(self, item: Item, text: str) -> str:
        canonical = json.dumps([self.embedder.name, item.description, [str(c.key) for c in item.clips], text])
        return hashlib.sha256(canonical.encode()).hexdigest()

    def scores(self, pairs: Sequence[tuple[Item, str]]) -> list[float | None]:
        keys = [self._key(item, text) for item, text in pairs]
        todo = [i for i, key in enumerate(keys) if key not in self.cache]
        if todo:
            computed = self.embedder.scores([pairs[i][0] for i in todo], [pairs[i][1] for i in todo])
            for i, score in zip(todo, computed, strict=True):
                self.cache.append({"key": keys[i], "embedder": self.embedder.name, "score": score})
        return [self.cache.get(key)["score"] for key in keys]


def dialogue_fingerprint(turns: Turns) -> str:
    """Equal for dialogues whose turns differ only in whitespace or case."""
    canonical = json.dumps([[" ".join(u.lower().split()), " ".join(a.lower().split())] for u, a in turns])
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()
