"""The similarity test on a planted set, and near-duplicates: filters that filter, with known answers."""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from audio_dialogues.generate.embedders import make_embedder
from audio_dialogues.generate.filters import (
    MIN_MARGIN,
    NearDuplicates,
    PhraseFilter,
    Score,
    SimilarityScorer,
    other_items,
)
from audio_dialogues.llm.journal import Journal
from tests.planted import make_items, planted

#: Varied item descriptions, combined two by two into 250 distinct items (no shared data in tests).
SOUNDS = (
    "Dog barking", "Siren wailing", "Rain falling on a roof", "Thunder rumbling", "Church bell ringing",
    "Baby crying", "Crowd cheering", "Car engine idling", "Train horn", "Birds chirping", "Wind howling",
    "Door slamming", "Footsteps on gravel", "Typing on a keyboard", "Glass breaking", "Cat meowing",
    "Helicopter overhead", "Water dripping", "Chainsaw cutting", "Violin melody", "Electric guitar riff",
    "Jazz saxophone solo", "Hammer pounding nails", "Frogs croaking",
)


def descriptions(n: int = 250, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pairs = sorted({tuple(sorted(rng.sample(SOUNDS, 2))) for _ in range(4 * n)})
    return [f"Sound of {a}; Sound of {b}" for a, b in rng.sample(pairs, n)]


def margins(embedder_spec: str, tmp_path, n: int = 250) -> tuple[list[Score], set[int]]:
    items = make_items(descriptions(n), "audioset")
    dialogues, chosen = planted(items, 0.1, seed=1)
    embedder = make_embedder(embedder_spec)
    pairs = [(item, " ".join(a for _, a in turns)) for item, turns in dialogues]
    embedder.fit([i.description for i in items], [answer for _, answer in pairs])  # as generate fits it
    scorer = SimilarityScorer(embedder, Journal(tmp_path / "cache.jsonl"))
    scores = scorer.scores(pairs, others=[other_items(item, items) for item, _ in dialogues])
    return [scores[i] for i in range(len(pairs))], chosen


def test_the_default_relative_test_drops_planted_off_topic_answers_and_keeps_the_rest(tmp_path) -> None:
    """10% of the dialogues answer about another item: the default drops >= 90% of them, <= 5% of the rest."""
    scores, chosen = margins("lexical", tmp_path)
    dropped = {i for i, s in enumerate(scores) if s.margin is not None and s.margin < MIN_MARGIN}
    assert all(len(s.others) == 31 for s in scores)
    assert len(dropped & chosen) >= 0.9 * len(chosen), len(dropped & chosen)
    assert len(dropped - chosen) <= 0.05 * (len(scores) - len(chosen)), len(dropped - chosen)
    # An absolute threshold cannot tell them apart on this scale: own scores of both kinds overlap.
    planted_best = max(scores[i].own for i in chosen)
    assert sum(1 for i, s in enumerate(scores) if i not in chosen and s.own < planted_best) > 10


def test_the_margin_has_a_floor_and_needs_two_other_scores() -> None:
    assert Score(0.2, (0.0, 0.0, 0.0)).margin == pytest.approx(20.0)
    assert Score(0.2, (0.1,)).margin is None and Score(None, (0.1, 0.2)).margin is None
    assert Score(0.3, (0.1, 0.3)).margin == pytest.approx(1.0)


def test_other_items_are_drawn_the_same_way_and_never_share_the_description() -> None:
    items = make_items(descriptions(60) + ["Sound of Dog barking; Sound of Siren wailing"] * 5)
    first = other_items(items[-1], items)
    assert [i.key for i in first] == [i.key for i in other_items(items[-1], items)]
    assert len(first) == 31 and all(i.description != items[-1].description for i in first)
    assert len({i.description for i in first}) == 31
    assert len(other_items(items[0], items[:3])) == 2


def test_near_duplicates_catch_rewordings_and_keep_different_dialogues() -> None:
    base = (("What do you hear?", "A dog barks twice near a busy road while a siren wails in the distance "
             "and people talk quietly on the pavement nearby."),
            ("Is it close?", "The dog seems close to the microphone, the siren is far away and fading out."))
    reworded = ((base[0][0], base[0][1].replace("twice", "three times")), base[1])
    other = (("What is playing?", "A slow jazz saxophone solo over soft brushed drums in a small club."),
             ("What is the mood?", "Relaxed and late-night, with a warm reverb on the horn."))
    near = NearDuplicates(0.8)
    assert near.seen(base) is None and near.seen(other) is None
    jaccard = near.seen(reworded)
    assert jaccard is not None and 0.8 <= jaccard < 1.0
    assert near.seen(base) == 1.0
    # Tunable: at 0.99 the rewording is a dialogue of its own.
    strict = NearDuplicates(0.99)
    assert strict.seen(base) is None and strict.seen(reworded) is None


def reference_signature(near: NearDuplicates, turns: tuple[tuple[str, str], ...]) -> list[int]:
    """The MinHash signature as the class defines it, written the plain way: the regex's words, their pairs'
    8-byte BLAKE2b digests, each permutation's minimum of (digest xor a) * b modulo 2**64."""
    words = re.findall(r"\w+", " ".join(f"{u} {a}" for u, a in turns).lower())
    shingles = {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)} or set(words) or {""}
    digests = [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in shingles]
    return [min(((d ^ int(x)) * int(m)) % 2**64 for d in digests) for x, m in zip(near._xor, near._mul, strict=True)]


def test_near_duplicate_signatures_equal_the_plain_definition_on_any_text() -> None:
    """The fast paths (ASCII words by str.translate, cached digests) change no signature value: ASCII and
    Unicode words, punctuation, control characters, a lone word, no word at all, and a dialogue seen twice."""
    rng = random.Random(3)
    vocab = ["It", "is", "a", "dog's", "bark", "café", "naïve", "x_y", "3.5s", "über", "ΣΑΣ", "—", "!!", "日本語",
             "\u00a0", "\t", "\x1c", "k9", "(0.0s-1.5s)", "Ⅻ", "²"]
    cases = [(("", ""),), (("Hello", ""),), (("", "!! ?"),)]
    def text(most: int) -> str:
        return " ".join(rng.choices(vocab, k=rng.randint(0, most)))

    cases += [tuple((text(5), text(25)) for _ in range(rng.randint(1, 4))) for _ in range(150)]
    near = NearDuplicates(0.8)
    for turns in cases + cases[:20]:
        assert near.signature(turns).tolist() == reference_signature(near, turns), turns


def test_phrase_filter_finds_the_first_phrase_turn_by_turn_and_none_across_turns() -> None:
    phrases = PhraseFilter(["Cannot Determine", "not sure", "unclear"])
    assert phrases.match((("q", "It is UNCLEAR, I am not sure."), ("q", "I cannot determine it."))) == "not sure"
    assert phrases.match((("q", "A dog barks."), ("q", "I cannot determine the breed."))) == "cannot determine"
    # A phrase whose words end one turn and start the next is in no turn.
    assert phrases.match((("q", "I am not"), ("q", "sure what barks."))) is None
    assert phrases.match((("q", "A dog barks."),)) is None
