"""The filters applied to parsed dialogues, each a counted stage of the report.

- phrases: a whole dialogue goes when any assistant turn contains a low-confidence phrase (lower-cased
  substring match), as Audio Flamingo's chat loader does; its lists ship as ``phrases.json``;
- similarity, relative (the default): the dialogue's assistant text must be closer to its own item than to
  the other items of its split it is compared with (:data:`OTHERS` of them, drawn per item), by a margin in
  standard deviations of those other scores (:class:`Score`). An answer about another item is no closer to
  its own than to a random one, whatever the embedder's scale (the default margin is calibrated on the
  default embedder; with another, read the margins' distribution in the report);
- similarity, absolute: the cosine with the item must reach a threshold (the paper's 0.3 belongs to its
  embedder, most likely CLAP audio against text);
- duplicates: a dialogue whose turns repeat an earlier one exactly (after whitespace and case folding);
- near-duplicates: a dialogue whose word shingles overlap an earlier one's by a Jaccard similarity of at least
  a threshold (MinHash with banding finds the candidates, the exact Jaccard decides).

Scores are cached batch by batch, so an interrupted scoring keeps what it computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import signal
import statistics
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..files import read_input
from ..llm.journal import Journal
from .embedders import Embedder
from .items import Item

Turns = tuple[tuple[str, str], ...]


def default_phrases() -> list[str]:
    """Audio Flamingo's lists (from LLARK, from LTU, and its own), in their order."""
    data = json.loads(resources.files(__package__).joinpath("phrases.json").read_text(encoding="utf-8"))
    return [p for key in ("llark", "ltu", "audio_flamingo") for p in data[key]]


def read_phrases(path: str | Path) -> list[str]:
    """One phrase per line; blank lines and lines starting with ``#`` are skipped."""
    lines = read_input(path, OSError).decode("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


class PhraseFilter:
    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases = tuple(dict.fromkeys(p.lower() for p in phrases if p))

    def match(self, turns: Turns) -> str | None:
        """The first phrase found in an assistant turn, or None."""
        lowered_turns = [assistant.lower() for _, assistant in turns]
        # Most dialogues hold no phrase: one search of all the turns joined says so at a fraction of the cost
        # of searching turn by turn (a phrase in a turn is in the join; one found only across two turns
        # costs the search turn by turn, which decides).
        joined = "\0".join(lowered_turns)
        if not any(phrase in joined for phrase in self.phrases):
            return None
        for lowered in lowered_turns:
            for phrase in self.phrases:
                if phrase in lowered:
                    return phrase
        return None


def assistant_text(turns: Turns) -> str:
    return " ".join(assistant for _, assistant in turns)


#: Pairs scored per embedder call; each batch's scores reach the cache as soon as it is done.
SCORE_BATCH = 32


class ScoringStop:
    """Ctrl-C (or SIGTERM) while scoring: the first stops after the batch being scored, the second abandons it.

    Installed around scoring (main thread only); scores already computed are cached either way, and the
    run goes on to write the outputs and the report, as a Ctrl-C while sending does.
    """

    def __init__(self, log: Callable[[str], None]) -> None:
        self.requests = 0
        self._log = log
        self._abandonable = False
        self._previous: dict[int, Any] = {}

    @property
    def stopped(self) -> bool:
        return self.requests > 0

    def _handle(self, signum: int, frame: object) -> None:
        self.requests += 1
        if self.requests == 1:
            self._log("stopping: finishing the batch being scored (interrupt again to abandon it); the outputs "
                      "and the report are then written from what is scored")
        elif self._abandonable:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        """A second signal inside this block abandons it (raises KeyboardInterrupt there)."""
        self._abandonable = True
        try:
            yield
        finally:
            self._abandonable = False

    def __enter__(self) -> ScoringStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


#: Other items of the split each dialogue is compared with by the relative test.
OTHERS = 31
#: The relative test's default margin, in standard deviations of the scores with other items; chosen on
#: bench/similarity.py's planted sets (10% of answers about another item) drawn with its tuning seeds, where
#: the default embedder (fitted on the split's descriptions and answers) drops 91.4% of the planted and 1.9%
#: of the rest on MusicCaps captions, 94.6% and 4.4% on event lists; docs/generate.md gives the figures on
#: the bench's reported seeds.
MIN_MARGIN = 1.5


@dataclass(frozen=True)
class Score:
    """A dialogue's similarity with its own item (None: cannot be scored) and with other items of its split."""

    own: float | None
    others: tuple[float, ...] = ()

    @property
    def margin(self) -> float | None:
        """How far above the other items' mean the own item scores, in their standard deviations.

        None without at least two other scores. The spread has a floor (0.01) so that others all scoring the
        same (for instance all 0: no word in common) do not turn a tiny lead into an infinite margin.
        """
        if self.own is None or len(self.others) < 2:
            return None
        spread = max(statistics.pstdev(self.others), 0.01)
        return (self.own - statistics.fmean(self.others)) / spread


def other_items(item: Item, pool: Sequence[Item], k: int = OTHERS) -> list[Item]:
    """``k`` items of ``pool`` with another description than ``item``'s, drawn the same way in every run."""
    rng = random.Random(item.key)
    picked: list[Item] = []
    seen = {item.description}
    for index in rng.sample(range(len(pool)), min(len(pool), 3 * k + 3)):
        if pool[index].description not in seen:
            seen.add(pool[index].description)
            picked.append(pool[index])
            if len(picked) == k:
                break
    return picked


class SimilarityScorer:
    """Scores through an embedder, caching each dialogue's scores in an append-only file so a re-run reuses them."""

    def __init__(self, embedder: Embedder, cache: Journal) -> None:
        self.embedder = embedder
        self.cache = cache

    def _key(self, item: Item, text: str, others: Sequence[Item]) -> str:
        canonical = json.dumps([self.embedder.name, item.description, [str(c.key) for c in item.clips], text,
                                [[o.description, [str(c.key) for c in o.clips]] for o in others]])
        return hashlib.sha256(canonical.encode()).hexdigest()

    def scores(self, pairs: Sequence[tuple[Item, str]], stop: ScoringStop | None = None,
               others: Sequence[Sequence[Item]] | None = None) -> dict[int, Score]:
        """Score by index of ``pairs`` (and against ``others[i]``, the other items of pair i, if given):
        cached, else computed batch by batch, each batch cached when done.

        Indices missing from the result were not scored because ``stop`` was asked (own None: an embedder's
        "cannot be scored", e.g. no local audio).
        """
        against = others if others is not None else [()] * len(pairs)
        cacheable = getattr(self.embedder, "cacheable", True)
        keys = [self._key(item, text, against[i]) for i, (item, text) in enumerate(pairs)] if cacheable else []
        out: dict[int, Score] = {}
        for i, key in enumerate(keys):
            entry = self.cache.get(key)
            if entry is not None:
                out[i] = Score(entry["score"], tuple(entry.get("others") or ()))
        todo = [i for i in range(len(pairs)) if i not in out]
        for start in range(0, len(todo), SCORE_BATCH):
            if stop is not None and stop.stopped:
                break
            batch = todo[start : start + SCORE_BATCH]
            items = [x for i in batch for x in (pairs[i][0], *against[i])]
            texts = [pairs[i][1] for i in batch for _ in range(1 + len(against[i]))]
            try:
                with stop.abandonable() if stop is not None else contextlib.nullcontext():
                    computed = iter(self.embedder.scores(items, texts))
            except KeyboardInterrupt:
                if stop is None:
                    raise
                break
            for i in batch:
                own = next(computed)
                rest = [next(computed) for _ in against[i]]
                score = Score(own, tuple(round(x, 6) for x in rest if x is not None))
                if cacheable:
                    self.cache.append({"key": keys[i], "embedder": self.embedder.name, "score": own,
                                       "others": list(score.others)})
                out[i] = score
        return out


def dialogue_fingerprint(turns: Turns) -> str:
    """Equal for dialogues whose turns differ only in whitespace or case."""
    canonical = json.dumps([[" ".join(u.lower().split()), " ".join(a.lower().split())] for u, a in turns])
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


#: Distinct shingles whose digests :class:`NearDuplicates` keeps (about 40 MB).
DIGEST_CACHE = 1 << 18


class NearDuplicates:
    """Dialogues whose word pairs overlap an earlier one's by a Jaccard similarity of at least ``threshold``.

    Each dialogue (its user and assistant turns, case and punctuation folded) becomes the set of its
    consecutive word pairs, summarised by a MinHash signature of ``PERMUTATIONS`` values; banding (``BANDS``
    bands of 8 rows) finds earlier dialogues likely to be similar (a pair at Jaccard 0.8 shares a band with
    probability 0.95, a pair at 0.5 with 0.06, so templated answers do not make every pair a candidate), and
    the share of equal signature values, an estimate of their Jaccard similarity, decides. Memory is the
    signatures (1 KiB a dialogue); time grows with the dialogues and their candidates, not their square.
    """

    PERMUTATIONS = 128
    BANDS = 16

    def __init__(self, threshold: float, seed: int = 0) -> None:
        self.threshold = threshold
        rng = np.random.default_rng(seed)
        self._xor = rng.integers(0, 2**63, self.PERMUTATIONS, dtype=np.uint64)
        self._mul = rng.integers(0, 2**63, self.PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
        self._buckets: list[dict[bytes, list[int]]] = [{} for _ in range(self.BANDS)]
        self._signatures = np.zeros((1024, self.PERMUTATIONS), dtype=np.uint64)
        self._count = 0
        self._digest_cache: dict[tuple[str, ...], bytes] = {}

    def signature(self, turns: Turns) -> np.ndarray:
        text = " ".join(f"{u} {a}" for u, a in turns).lower()
        # ASCII text (nearly every answer) is split by str.translate, seven times faster than the regex and
        # the same words: for ASCII, \w is exactly letters, digits and the underscore.
        words = text.translate(_ASCII_NON_WORD).split() if text.isascii() else _SHINGLE_WORD.findall(text)
        # The shingles as word tuples, each hashed as its words joined by a space ("a b", or the lone word):
        # words hold no space, so these are the word pairs' strings one to one.
        shingles: set[tuple[str, ...]] = set(zip(words, words[1:], strict=False)) or {(w,) for w in words} or {("",)}
        # The digests joined and read as one little-endian array, not an int each; uint64 arrays wrap
        # around silently, so the mixing needs no errstate (both cost more than the hashing at 100/s).
        hashes = np.frombuffer(self._digests(shingles), dtype="<u8")
        mixed = hashes[:, None] ^ self._xor[None, :]
        mixed *= self._mul[None, :]
        return mixed.min(axis=0)

    def _digests(self, shingles: Iterable[tuple[str, ...]]) -> bytes:
        """The 8-byte BLAKE2b digests of the shingles, joined.

        Word pairs repeat across dialogues ("it is", "of the", a class name), so the digests of the first
        :data:`DIGEST_CACHE` distinct ones are kept: a dictionary look-up costs a tenth of hashing again.
        """
        cache = self._digest_cache
        out = []
        for shingle in shingles:
            digest = cache.get(shingle)
            if digest is None:
                digest = hashlib.blake2b(" ".join(shingle).encode(), digest_size=8).digest()
                if len(cache) < DIGEST_CACHE:
                    cache[shingle] = digest
            out.append(digest)
        return b"".join(out)

    def seen(self, turns: Turns) -> float | None:
        """The estimated Jaccard similarity with the closest earlier dialogue at or over the threshold
        (None: not a near-duplicate, and it is remembered for the dialogues after it)."""
        signature = self.signature(turns)
        raw = signature.tobytes()  # sliced as bytes: a tenth of the cost of slicing the array band by band
        width = len(raw) // self.BANDS
        bands = [raw[b * width : (b + 1) * width] for b in range(self.BANDS)]
        candidates = {i for band, key in enumerate(bands) for i in self._buckets[band].get(key, ())}
        if candidates:
            equal = np.count_nonzero(self._signatures[list(candidates)] == signature, axis=1)
            best = int(equal.max()) / self.PERMUTATIONS
            if best >= self.threshold:
                return best
        if self._count == len(self._signatures):
            self._signatures = np.concatenate([self._signatures, np.zeros_like(self._signatures)])
        self._signatures[self._count] = signature
        for band, key in enumerate(bands):
            self._buckets[band].setdefault(key, []).append(self._count)
        self._count += 1
        return None


_SHINGLE_WORD = re.compile(r"\w+")
#: Every ASCII character \w does not match, to a space.
_ASCII_NON_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")})
