"""Tokens and dollars: what a run of requests cost, at prices per million tokens.

Endpoints that cache prompt prefixes (OpenAI, vLLM with prefix caching) report how many of a request's prompt
tokens they served from the cache (``usage.prompt_tokens_details.cached_tokens``) and may bill those at a
lower price; they are part of ``prompt_tokens``, so the uncached ones are ``prompt_tokens -
cached_prompt_tokens``. Answers that came through a batch (OpenAI's Batch API, or an offline run-batch's
output ingested) are counted again in the ``batch_`` fields, and billed at :data:`BATCH_PRICE_FACTOR` of the
price (``generate --batch-discount`` is the share they do not pay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: What OpenAI's Batch API charges of the synchronous price (half, for results within 24 h).
BATCH_PRICE_FACTOR = 0.5


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Of ``prompt_tokens``, those served from the endpoint's prompt cache.
    cached_prompt_tokens: int = 0
    #: Of each of the three above, the tokens of answers that came through a batch.
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0
    batch_cached_prompt_tokens: int = 0

    def add(self, prompt: int, completion: int, cached: int = 0, *, batch: bool = False) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cached_prompt_tokens += cached
        if batch:
            self.batch_prompt_tokens += prompt
            self.batch_completion_tokens += completion
            self.batch_cached_prompt_tokens += cached

    def add_dict(self, usage: Mapping[str, Any], *, batch: bool = False) -> None:
        """Add a journal entry's ``usage`` (:meth:`to_dict`); entries written before caching was recorded have
        no ``cached_prompt_tokens`` and count as uncached."""
        self.add(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0,
                 usage.get("cached_prompt_tokens") or 0, batch=batch)

    def add_answer(self, entry: Mapping[str, Any]) -> None:
        """Add a journaled answer's tokens; one that came through a batch (its ``batch`` names it) as batch tokens."""
        self.add_dict(entry.get("usage") or {}, batch=bool(entry.get("batch")))

    def merge(self, other: Usage) -> None:
        """Add every count of ``other``."""
        self.add(other.prompt_tokens - other.batch_prompt_tokens,
                 other.completion_tokens - other.batch_completion_tokens,
                 other.cached_prompt_tokens - other.batch_cached_prompt_tokens)
        self.add(other.batch_prompt_tokens, other.batch_completion_tokens, other.batch_cached_prompt_tokens,
                 batch=True)

    def cost(self, price_in: float, price_out: float, price_cached_in: float | None = None,
             batch_discount: float = 1 - BATCH_PRICE_FACTOR) -> float:
        """Dollars, at prices per million tokens; cached prompt tokens at ``price_cached_in`` (``None``: at
        ``price_in``, as an endpoint without a cache discount bills them); batch tokens less ``batch_discount``
        of their price."""
        cached_price = price_in if price_cached_in is None else price_cached_in

        def dollars(prompt: int, completion: int, cached: int) -> float:
            return (prompt - cached) * price_in + cached * cached_price + completion * price_out

        full = dollars(self.prompt_tokens, self.completion_tokens, self.cached_prompt_tokens)
        batched = dollars(self.batch_prompt_tokens, self.batch_completion_tokens, self.batch_cached_prompt_tokens)
        return (full - batch_discount * batched) / 1e6

    def to_dict(self) -> dict[str, int]:
        """The token counts; the batch ones only when some answers came through a batch, so that reports without
        any keep their shape."""
        out = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
               "cached_prompt_tokens": self.cached_prompt_tokens}
        if self.batch_prompt_tokens or self.batch_completion_tokens:
            out.update(batch_prompt_tokens=self.batch_prompt_tokens,
                       batch_completion_tokens=self.batch_completion_tokens,
                       batch_cached_prompt_tokens=self.batch_cached_prompt_tokens)
        return out
