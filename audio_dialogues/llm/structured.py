"""Structured outputs: asking an OpenAI-compatible endpoint for a reply in a JSON schema's shape.

Servers spell ``response_format`` two ways: OpenAI and vLLM take ``{"type": "json_schema", "json_schema":
{"name", "strict", "schema"}}``; llama-cpp-python's server refuses that (HTTP 500, its request model knows only
``text`` and ``json_object``) but constrains its grammar to ``{"type": "json_object", "schema": ...}``, which
is what lets a small local model (SmolLM2-135M, measured in bench/judge_llm.py) reply with parsable scores.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import ChatClient, Completion, ResponseFormatRefused

#: The spellings, in the order they are tried.
FORMS = ("json_schema", "json_object")


def response_format(schema: dict[str, Any], name: str, form: str = "json_schema") -> dict[str, Any]:
    """``schema`` as the ``response_format`` of a request, spelled as ``form`` (one of :data:`FORMS`)."""
    if form == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    return {"type": "json_object", "schema": schema}


class Fallback:
    """The spellings an endpoint has not refused yet, shared by every request of a run.

    A refusal (:class:`~audio_dialogues.llm.client.ResponseFormatRefused`) is learnt once and said once, and the
    request is asked again in the next spelling, then as free text: the replies are parsed the same way
    whichever way they were asked, and a refusal is no answer, so nothing is paid or journaled twice.
    """

    def __init__(self, log: Callable[[str], None] | None = None) -> None:
        from .client import ResponseFormatRefused  # here, once: the module stays light to import

        self._refusal = ResponseFormatRefused
        self.forms = list(FORMS)
        self.log = log or (lambda text: print(text, file=sys.stderr))
        #: The refusal of the last spelling, once every one was refused.
        self.refused: ResponseFormatRefused | None = None

    async def complete(self, client: ChatClient, messages: list[dict[str, str]], headers: dict[str, str],
                       spell: Callable[[str], dict[str, Any]], *, free_text: bool = True
                       ) -> tuple[Completion, str | None]:
        """The completion of ``messages`` and the spelling it was asked in (None: free text).

        ``spell(form)`` is the ``response_format`` in spelling ``form`` (see :func:`response_format`; a caller
        sending many requests keeps one dict per spelling). With ``free_text`` False (``generate --structured
        on``), the last refusal is raised instead.
        """
        while self.forms:
            form = self.forms[0]
            try:
                return await client.complete(messages, headers, spell(form)), form
            except self._refusal as e:
                if form in self.forms:  # requests in flight together are refused together: learnt once
                    self.forms.remove(form)
                    if not self.forms:
                        self.refused = e
                    then = f"asking with {self.forms[0]!r}" if self.forms else (
                        "asking for free text" if free_text else "stopping")
                    self.log(f"the endpoint refuses response_format {form!r} ({e.failure.label}): {then}")
        if not free_text:
            assert self.refused is not None
            raise self.refused
        return await client.complete(messages, headers), None
