"""Regenerating the three subsets from AudioSet strong labels and MusicCaps with an OpenAI-compatible LLM.

:func:`generate` runs the pipeline (items, prompts, journaled requests, parsing, filters, outputs and
report); :class:`GenerateOptions` holds its options. See docs/generate.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .options import GenerateError, GenerateOptions


def generate(options: GenerateOptions, out: Callable[[str], None] = print) -> Any:
    """Run a generation; ``openai`` is imported only now, so the package works without the extra."""
    try:
        from .run import generate as run_generate
    except ImportError as e:
        hint = "pip install 'audio-dialogues[generate]'"
        raise GenerateError(f"generation needs the `generate` extra ({e}): {hint}") from None

    return run_generate(options, out)


__all__ = ["generate", "GenerateOptions", "GenerateError"]
