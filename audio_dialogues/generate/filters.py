"""The filters applied to parsed dialogues, each a counted stage of the report.

- phrases: a whole dialogue goes when any assistant turn contains a low-confidence phrase (lower-cased
  substring match), as Audio Flamingo's chat loader does; its lists ship as ``phrases.json``;
- similarity: the cosine similarity between the item's description and the dialogue's assistant text
  must reach a threshold (0.3 by default; what it means depends on the embedder);
- duplicates: a dialogue whose turns repeat an earlier one exactly (after whitespace and case folding).

Scores are cached batch by batch, so an interrupted scoring keeps what it computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

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
        for _, assistant in turns:
            lowered = assistant.lower()
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


class SimilarityScorer:
    """Scores through an embedder, caching each score in an append-only file so a re-run reuses it."""

    def __init__(self, embedder: Embedder, cache: Journal) -> None:
        self.embedder = embedder
        self.cache = cache

    def _key(self, item: Item, text: str) -> str:
        canonical = json.dumps([self.embedder.name, item.description, [str(c.key) for c in item.clips], text])
        return hashlib.sha256(canonical.encode()).hexdigest()

    def scores(self, pairs: Sequence[tuple[Item, str]], stop: ScoringStop | None = None) -> dict[int, float | None]:
        """Score by index of ``pairs``: cached, else computed batch by batch, each batch cached when done.

        Indices missing from the result were not scored because ``stop`` was asked (None: an embedder's
        "cannot be scored", e.g. no local audio).
        """
        keys = [self._key(item, text) for item, text in pairs]
        out = {i: entry["score"] for i, key in enumerate(keys) if (entry := self.cache.get(key)) is not None}
        todo = [i for i in range(len(pairs)) if i not in out]
        for start in range(0, len(todo), SCORE_BATCH):
            if stop is not None and stop.stopped:
                break
            batch = todo[start : start + SCORE_BATCH]
            try:
                with stop.abandonable() if stop is not None else contextlib.nullcontext():
                    computed = self.embedder.scores([pairs[i][0] for i in batch], [pairs[i][1] for i in batch])
            except KeyboardInterrupt:
                if stop is None:
                    raise
                break
            for i, score in zip(batch, computed, strict=True):
                self.cache.append({"key": keys[i], "embedder": self.embedder.name, "score": score})
                out[i] = score
        return out


def dialogue_fingerprint(turns: Turns) -> str:
    """Equal for dialogues whose turns differ only in whitespace or case."""
    canonical = json.dumps([[" ".join(u.lower().split()), " ".join(a.lower().split())] for u, a in turns])
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()
