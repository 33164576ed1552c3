"""The optional judge of ``generate`` (``--judge-model``): each dialogue scored on a short rubric; low ones go.

The filters before it are cheap and blind to meaning: a dialogue can use its item's words and still invent
sounds, read timestamps aloud, ask follow-ups that ignore the turn before, or say what fits any clip. A
judge model reads what the item shows the generator (the events with their times, or the caption) and the
dialogue, and scores four points from 1 to 5; a dialogue whose mean is under ``--judge-threshold`` goes,
one with no scores in the reply goes too (counted on its own), and the kept ones carry their scores in
``meta.generation.judge``. It runs last, on what every other filter kept, so nothing is paid to judge a
dialogue that would go anyway. Requests go through :class:`audio_dialogues.llm.judge.Judge`: journaled in
the run's own journal, never paid twice, costed at ``--judge-price-in``/``--judge-price-out``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..llm.judge import Question, Scale
from .items import Item

#: The rubric's points, in the order the reply names them.
SCALE = Scale(("faithful", "no_timestamps", "refers_back", "specific"), 1.0, 5.0)
INSTRUCTION = (
    "You check dialogues that a model wrote about an audio recording it could not hear. It was told what the "
    "recording holds: sound events that people annotated, with their times in seconds, or a musician's "
    "description of a music clip (for several recordings, each one's). You are told the same, then shown the "
    "dialogue. Score it on four points, each from 1 (fails) to 5 (fully meets):\n"
    "- faithful: the answers say only what the events or the description support, and claim no sound, "
    "instrument or detail they do not hold;\n"
    "- no_timestamps: no answer gives times or time spans in seconds; a listener hears the order of sounds, "
    "not their timestamps;\n"
    "- refers_back: each follow-up question builds on the answers before it (give 5 to a single turn);\n"
    "- specific: the questions and answers are about this recording, not generic ones that fit any clip.\n"
    + SCALE.reply_format()
)
TEMPLATE = "## What the recording holds\n{content}\n\n## The dialogue\n{dialogue}\n"
PROMPT_SHA256 = hashlib.sha256(f"{INSTRUCTION}\0{TEMPLATE}".encode()).hexdigest()
#: The reject reason of a dialogue whose judge reply holds no scores.
NO_SCORE = "the judge gave no scores"


def question(item: Item, turns: Sequence[tuple[str, str]]) -> Question:
    """The judge's request for one dialogue of ``item`` (its key covers the dialogue, so a new one is asked anew)."""
    dialogue = "\n".join(f"User: {u}\nAssistant: {a}" for u, a in turns)
    text = TEMPLATE.format(content=item.text, dialogue=dialogue)
    return Question(f"judge:{item.config}:{item.key}",
                    [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text}],
                    {"config": item.config, "split": item.split, "item": item.key})


def mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def reject(scores: dict[str, float] | None, threshold: float) -> str | None:
    """Why a judged dialogue goes, or None."""
    if scores is None:
        return NO_SCORE
    if mean(scores) < threshold:
        return f"judge's mean score below {threshold:g}"
    return None
