"""A planted set for the similarity filter: dialogues about their own item, and a share answering about another.

No LLM is reachable here, so the answers are synthetic: each assistant turn mentions a few of its item's
content words (in another inflection now and then: bark -> barking) among filler words drawn from a
vocabulary of sound and music words that every item shares, so unrelated items overlap by chance as real
ones do. A planted dialogue is built the same way from another item of the same set. What this measures
is whether a filter tells an answer about its own item from one about another, not how an LLM paraphrases.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from audio_dialogues.generate.items import Item
from audio_dialogues.sources.clips import Clip

#: Words any answer may use: mostly commentary, a quarter sound and music words that many items name too.
FILLER = (
    "the a of in with while and then after before it this there is are sounds heard likely probably seems "
    "clearly suggests scene setting listener atmosphere mood quality recording overall would could because "
    "which gives feeling sense impression throughout moment part together creates adds "
    "loud soft low high noise music song melody beat drum guitar voice man woman speech engine dog water wind"
).split()
QUESTIONS = ("What is happening here?", "How would you describe it?", "Where could this be?",
             "What does it make you feel?", "Is there anything unusual?", "Why does it sound like that?")
_WORD = re.compile(r"[A-Za-z]{3,}")
_INFLECT = ("", "", "s", "ing")


def content_words(description: str) -> list[str]:
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(description) if w.lower() not in FILLER))


def dialogue(rng: random.Random, description: str) -> list[tuple[str, str]]:
    """1-4 turns, each answer 12-30 words of which 2-4 come from the description (inflected now and then)."""
    words = content_words(description) or ["something"]
    turns = []
    for _ in range(rng.randint(1, 4)):
        body = rng.choices(FILLER, k=rng.randint(10, 26))
        for _ in range(rng.randint(2, 4)):
            word = rng.choice(words)
            if not word.endswith(("s", "ing", "ed")):
                word += rng.choice(_INFLECT)
            body.insert(rng.randrange(len(body) + 1), word)
        turns.append((rng.choice(QUESTIONS), " ".join(body).capitalize() + "."))
    return turns


def make_items(descriptions: Sequence[str], config: str = "music", split: str = "train") -> list[Item]:
    return [Item(f"{config}-{split}-{i}", config, split, (Clip(f"{i:011d}", 0.0, 10.0),), d, d)
            for i, d in enumerate(descriptions)]


def planted(items: Sequence[Item], fraction: float = 0.1,
            seed: int = 0) -> tuple[list[tuple[Item, list[tuple[str, str]]]], set[int]]:
    """One dialogue per item; ``fraction`` of them (the returned indices) answer about another item."""
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(items)), round(fraction * len(items))))
    out = []
    for i, item in enumerate(items):
        source = item
        if i in chosen:
            while source.description == item.description:
                source = rng.choice(items)
        out.append((item, dialogue(rng, source.description)))
    return out, chosen
