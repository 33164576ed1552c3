"""Asking a model judge for scores: what ``evaluate``'s answer grades and ``generate``'s dialogue rubric share.

A judge question is a prompt whose reply must be a JSON object of named scores on a :class:`Scale` (``{"answer_1":
7, "answer_2": 4}``, ``{"faithful": 5, ...}``), asked with that object's JSON schema where the endpoint takes
structured outputs (:mod:`.structured`; as free text where it refuses them). :class:`Judge` sends the questions
its journal has not answered, ``concurrency`` at a time through :class:`~audio_dialogues.llm.runner.Pool` (the
first Ctrl-C lets the requests in flight land), and journals every reply the moment it arrives, keyed by
:func:`~audio_dialogues.llm.journal.request_key` of the request (``response_format`` is no part of it) and the
question's name: a re-run after a Ctrl-C, a crash or a SIGKILL asks only what is missing and never pays twice.
Scores are parsed from the journaled text when read, so a reply is judged the same way whichever run received it;
what it cost comes from the journaled usage at the endpoint's prices.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import AudioDialoguesError, UsageError
from .endpoint import Endpoint
from .usage import Usage

if TYPE_CHECKING:  # the journal needs filelock, which listing the commands' options should not load
    from .journal import Journal

#: The ``kind`` of a judge's journal entries (a journal may hold other answers too, as ``generate``'s does).
KIND = "judge"


class JudgeError(AudioDialoguesError, ValueError):
    """A judge run that cannot start or had to stop; the message names the option or endpoint."""


@dataclass(kw_only=True)
class JudgeEndpoint(Endpoint):
    """A judge's endpoint (the ``--judge-*`` options of ``evaluate`` and ``generate``): a model and the
    OpenAI-compatible endpoint serving it are required; greedy sampling by default."""

    #: Scores are a few tokens; a judge that explains itself first is cut short, and counted as unscored.
    max_tokens: int = 64

    def __post_init__(self) -> None:
        self.check_endpoint("--judge-")
        if not self.model:
            raise UsageError("give --judge-model")
        if not self.base_url:
            raise UsageError("--judge-model needs --judge-base-url, the OpenAI-compatible endpoint serving it")


@dataclass(frozen=True)
class Scale:
    """The scores a judge's reply must hold: each of ``names``, a number from ``low`` to ``high``."""

    names: tuple[str, ...]
    low: float
    high: float

    def parse(self, text: str | None) -> dict[str, float] | None:
        """The scores in ``text`` (``"name": 7`` or ``name = 7``, the first of each name), or None unless every
        name has one within the scale: a judge that explains instead of scoring is unscored, not guessed."""
        if not text:
            return None
        found: dict[str, float] = {}
        for name, value in self._pattern.findall(text):
            found.setdefault(name, float(value))
        if set(found) != set(self.names) or not all(self.low <= v <= self.high for v in found.values()):
            return None
        return {name: found[name] for name in self.names}

    @property
    def _pattern(self) -> re.Pattern[str]:
        names = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
        return re.compile(rf'"?({names})"?\s*[:=]\s*"?(\d+(?:\.\d+)?)')

    def schema(self) -> dict[str, Any]:
        """The reply's JSON schema, for endpoints with structured outputs (bounds are checked by :meth:`parse`,
        since strict schemas do not take them everywhere)."""
        return {"type": "object", "properties": {name: {"type": "integer"} for name in self.names},
                "required": list(self.names), "additionalProperties": False}

    def reply_format(self) -> str:
        """The instruction's last line: the reply's exact shape."""
        fields = ", ".join(f'"{name}": <score>' for name in self.names)
        return f"Reply with only a JSON object: {{{fields}}}."


@dataclass(frozen=True)
class Question:
    """One request to the judge: its name (the journal's and the request header's), messages and the fields
    its journal entry carries besides the reply (which dialogue, turn, order...)."""

    name: str
    messages: list[dict[str, str]]
    fields: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class Asked:
    """What one :meth:`Judge.ask` did: requests sent (retries included), failures by reason, and whether a
    Ctrl-C stopped it before every question was asked."""

    sent: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False


class Judge:
    """Asks ``endpoint`` the questions ``journal`` has not answered, and reads scores and usage back from it."""

    def __init__(self, endpoint: Endpoint, scale: Scale, journal: Journal,
                 log: Callable[[str], None] | None = None) -> None:
        self.endpoint, self.scale, self.journal = endpoint, scale, journal
        self.settings = endpoint.model_settings()
        self.log = log or (lambda text: print(text, file=sys.stderr))

    def key(self, question: Question) -> str:
        from .journal import request_key

        return request_key(self.settings.body(question.messages), question.name)

    def ask(self, questions: Sequence[Question]) -> Asked:
        """Send the questions not journaled yet; raises :class:`JudgeError` when the endpoint cannot serve."""
        import asyncio  # here, not at the top: the CLI imports this module to list the judge's options

        todo = [q for q in questions if self.key(q) not in self.journal]
        asked = Asked()
        if todo:
            asyncio.run(self._send(todo, asked))
        return asked

    async def _send(self, todo: Sequence[Question], asked: Asked) -> None:
        from .client import EndpointUnusable, RequestFailed
        from .journal import ITEM_HEADER
        from .runner import Pool
        from .structured import FORMS, Fallback, response_format

        client = self.endpoint.client(self.settings)
        schema, structured = self.scale.schema(), Fallback(self.log)
        spellings = {form: response_format(schema, "scores", form) for form in FORMS}

        async def one(question: Question) -> None:
            try:
                completion, form = await structured.complete(client, question.messages,
                                                             {ITEM_HEADER: question.name}, spellings.__getitem__)
            except RequestFailed as e:
                asked.failures[str(e)] += 1
                return
            self.journal.append({
                "key": self.key(question), "kind": KIND, "name": question.name, **question.fields,
                "model": completion.model or self.settings.model, "base_url": client.base_url,
                "text": completion.text, "scores": self.scale.parse(completion.text), "response_format": form,
                "usage": completion.usage.to_dict(), "at": time.time()})

        try:
            outcome = await Pool(one, self.endpoint.concurrency, self.log).run(todo)
        finally:
            asked.sent = client.stats.requests
            await client.close()
        asked.interrupted = outcome.interrupted
        watch = client.watch
        error: EndpointUnusable | None = outcome.unusable
        if error is None and not asked.interrupted and watch and watch.every_attempt_failed and watch.first:
            error = EndpointUnusable(watch.first, watch.failed_attempts, client.base_url)
        if error is not None:
            raise JudgeError(f"stopped: the judge's endpoint {error.base_url} cannot serve this run: the first "
                             f"{error.attempts} attempts all failed with {error.failure.label}; check "
                             "--judge-base-url, --judge-model and --judge-api-key-env. Answers already "
                             "journaled are kept.")

    def answer(self, question: Question) -> dict[str, Any] | None:
        """The journaled reply to ``question``, or None when it was not answered (yet)."""
        return self.journal.get(self.key(question))

    def scores(self, question: Question) -> dict[str, float] | None:
        """The scores of the journaled reply (None: not answered, or no scores in the reply)."""
        entry = self.answer(question)
        return None if entry is None else self.scale.parse(entry.get("text"))

    def usage(self, questions: Sequence[Question]) -> Usage:
        """The tokens of every journaled reply to ``questions``, whichever run paid for it."""
        usage = Usage()
        for question in questions:
            entry = self.answer(question)
            if entry is not None:
                usage.add_answer(entry)
        return usage

    def cost(self, usage: Usage) -> float:
        return round(usage.cost(self.endpoint.price_in, self.endpoint.price_out), 6)
