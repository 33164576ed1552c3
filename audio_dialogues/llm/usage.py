"""Tokens and dollars: what a run of requests cost, at prices per million tokens.

Endpoints that cache prompt prefixes (OpenAI, vLLM with prefix caching) report how many of a request's prompt
tokens they served from the cache (``usage.prompt_tokens_details.cached_tokens``) and may bill those at a
lower price; they are part of ``prompt_tokens``, so the uncached ones are ``prompt_tokens -
cached_prompt_tokens``.
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

    def add(self, prompt: int, completion: int, cached: int = 0) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cached_prompt_tokens += cached

    def add_dict(self, usage: Mapping[str, Any]) -> None:
        """Add a journal entry's ``usage`` (:meth:`to_dict`); entries written before caching was recorded have
        no ``cached_prompt_tokens`` and count as uncached."""
        self.add(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0,
                 usage.get("cached_prompt_tokens") or 0)

    def cost(self, price_in: float, price_out: float, price_cached_in: float | None = None) -> float:
        """Dollars, at prices per million tokens; cached prompt tokens at ``price_cached_in`` (``None``: at
        ``price_in``, as an endpoint without a cache discount bills them)."""
        cached_price = price_in if price_cached_in is None else price_cached_in
        uncached = self.prompt_tokens - self.cached_prompt_tokens
        return (uncached * price_in + self.cached_prompt_tokens * cached_price
                + self.completion_tokens * price_out) / 1e6

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cached_prompt_tokens": self.cached_prompt_tokens}
