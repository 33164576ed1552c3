"""Turning what models really return into dialogue turns, or a reason why not.

Accepted shapes: one JSON object per line; a JSON array; an object holding a list of turns (what
:func:`response_format` asks a structured-outputs endpoint for); code
fences; objects wrapped in extra braces; JSON surrounded by prose; ``User:``/``Assistant:`` transcripts
(also ``Q:``/``A:``, bold or not). Turn counts are enforced per config: 1-4 for audioset and music,
exactly 1 for comparison. A response that yields nothing usable gets a reason, never silence.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from ..llm import structured

TURN_LIMITS = {"audioset": (1, 4), "music": (1, 4), "comparison": (1, 1)}
_USER_KEYS = ("user", "question", "human", "q")
_ASSISTANT_KEYS = ("assistant", "answer", "gpt", "a")
_LIST_KEYS = ("dialogue", "turns", "conversation", "dialog", "qa", "pairs")
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.S)
_SPEAKER = re.compile(
    r"^\s*(?:[-*>]\s*)?(?:\*\*|__)?\s*(user|human|question|q|assistant|answer|a|ai)\s*(?:\*\*|__)?\s*[:：]\s*"
    r"(?:\*\*|__)?",
    re.I | re.M,
)
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Parsed:
    """The turns found in a response, or ``reason`` (then ``turns`` is empty)."""

    turns: tuple[tuple[str, str], ...] = ()
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _pick(obj: dict, keys: tuple[str, ...]) -> object:
    lowered = {k.lower().strip(): v for k, v in obj.items() if isinstance(k, str)}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _turns_from_json(value: object) -> list[tuple[object, object]] | None:
    """Turns in a decoded JSON value (an object, a list of objects, or an object holding such a list)."""
    if isinstance(value, list):
        found = [t for v in value for t in (_turns_from_json(v) or [])]
        return found or None
    if not isinstance(value, dict):
        return None
    user, assistant = _pick(value, _USER_KEYS), _pick(value, _ASSISTANT_KEYS)
    if user is not None and assistant is not None:
        return [(user, assistant)]
    inner = _pick(value, _LIST_KEYS)
    if inner is not None:
        return _turns_from_json(inner)
    if len(value) == 1:  # {"1": {...}} or one wrapping key of another name
        return _turns_from_json(next(iter(value.values())))
    return None


def _scan_json(text: str) -> list[tuple[object, object]]:
    """Every JSON value with turns found anywhere in ``text``, outermost first, scanning left to right.

    Decoding is attempted at each ``{`` or ``[``; a position that fails (prose, an extra wrapping brace,
    a truncated object) is skipped, so inner objects are still found.
    """
    turns: list[tuple[object, object]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] not in "{[":
            i += 1
            continue
        try:
            value, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        found = _turns_from_json(value)
        if found:
            turns.extend(found)
            i = end
        else:
            i += 1
    return turns


def _scan_transcript(text: str) -> list[tuple[object, object]]:
    """``User: ... Assistant: ...`` (or Q/A) blocks, each speaker's text running to the next marker."""
    marks = list(_SPEAKER.finditer(text))
    turns: list[tuple[object, object]] = []
    pending: str | None = None
    for k, mark in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        content = text[mark.end() : end].strip().strip("*_").strip()
        if mark.group(1).lower() in _USER_KEYS:
            pending = content
        elif pending is not None:
            turns.append((pending, content))
            pending = None
    return turns


def _clean(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text or None


def dialogue_schema(config: str) -> dict[str, Any]:
    """The strict JSON schema of ``config``'s answer, ``{"turns": [{"user", "assistant"}, ...]}`` with the
    config's number of turns, for ``response_format`` (:mod:`audio_dialogues.llm.structured` spells it for
    OpenAI and vLLM, or llama-cpp-python's server).

    The answer still goes through :func:`parse_dialogue`: an endpoint may honour the schema loosely, and an
    answer cut at ``max_tokens`` is no valid JSON at all.
    """
    low, high = TURN_LIMITS[config]
    turn = {"type": "object", "properties": {"user": {"type": "string"}, "assistant": {"type": "string"}},
            "required": ["user", "assistant"], "additionalProperties": False}
    return {"type": "object", "properties": {"turns": {"type": "array", "items": turn, "minItems": low,
                                                       "maxItems": high}},
            "required": ["turns"], "additionalProperties": False}


@functools.cache  # one dict per config and spelling, sent as it is with every request (never changed)
def response_format(config: str, form: str = "json_schema") -> dict[str, Any]:
    """``config``'s schema as ``response_format`` in spelling ``form`` (:data:`~audio_dialogues.llm.structured.FORMS`);
    the default, OpenAI's and vLLM's, is the one a batch asks in."""
    return structured.response_format(dialogue_schema(config), f"{config}_dialogue", form)


def parse_dialogue(text: str | None, config: str) -> Parsed:
    """The turns of a completion for ``config``, or the reason it cannot be used."""
    if text is None or not text.strip():
        return Parsed(reason="empty completion")
    fenced = _FENCE.findall(text)
    body = "\n".join(fenced) if fenced else text
    raw = _scan_json(body) or (_scan_json(text) if fenced else []) or _scan_transcript(text)
    if not raw:
        return Parsed(reason="no dialogue found (neither JSON turns nor a User:/Assistant: transcript)")
    turns = []
    for number, (user, assistant) in enumerate(raw, start=1):
        user_text, assistant_text = _clean(user), _clean(assistant)
        if user_text is None or assistant_text is None:
            return Parsed(reason=f"turn {number} has an empty or non-text user or assistant")
        turns.append((user_text, assistant_text))
    low, high = TURN_LIMITS[config]
    if not low <= len(turns) <= high:
        want = str(low) if low == high else f"{low}-{high}"
        return Parsed(reason=f"{len(turns)} turns where {config} wants {want}")
    return Parsed(tuple(turns))


def parse_descriptor(text: str | None, max_words: int = 12) -> str | None:
    """A short acoustic descriptor from a completion: its first non-empty line, unquoted, or None."""
    for line in (text or "").splitlines():
        line = line.strip().strip("\"'`*").strip().rstrip(".").strip()
        if line.lower().startswith("descriptor:"):
            line = line.split(":", 1)[1].strip()
        if line:
            words = line.split()
            return " ".join(words[:max_words]).replace("(", "").replace(")", "")
    return None
