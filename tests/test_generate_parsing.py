"""Parsing of the shapes real chat models return, and the turn counts each config allows."""

from __future__ import annotations

import json

import pytest

from audio_dialogues.generate.parsing import parse_descriptor, parse_dialogue

PAIRS = [("What is making that noise?", "A dog barking near a road."),
         ("Is it close?", "It sounds fairly close, since its barks are loud and clear.")]
LINES = "\n".join(json.dumps({"user": u, "assistant": a}) for u, a in PAIRS)

SHAPES = {
    "json lines": LINES,
    "json array": json.dumps([{"user": u, "assistant": a} for u, a in PAIRS], indent=2),
    "code fence": f"```json\n{LINES}\n```",
    "fence with prose": f"Here is the dialogue you asked for:\n```\n{LINES}\n```\nLet me know if you need more.",
    "extra braces": "\n".join("{" + json.dumps({"user": u, "assistant": a}) + "}" for u, a in PAIRS),
    "prose around": f"Sure! Example 3:\n{LINES}\nI hope these questions are useful.",
    "wrapped list": json.dumps({"dialogue": [{"user": u, "assistant": a} for u, a in PAIRS]}),
    "numbered objects": json.dumps({"1": {"question": PAIRS[0][0], "answer": PAIRS[0][1]}}) + "\n"
                        + json.dumps({"2": {"question": PAIRS[1][0], "answer": PAIRS[1][1]}}),
    "transcript": "\n".join(f"User: {u}\nAssistant: {a}" for u, a in PAIRS),
    "bold transcript": "\n\n".join(f"**User:** {u}\n**Assistant:** {a}" for u, a in PAIRS),
    "q/a transcript": "\n".join(f"Q: {u}\nA: {a}" for u, a in PAIRS),
    "multi-line transcript": f"User: {PAIRS[0][0]}\nAssistant: A dog barking\nnear a road.\n"
                             f"User: {PAIRS[1][0]}\nAssistant: {PAIRS[1][1]}",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_yields_the_same_turns(shape: str) -> None:
    parsed = parse_dialogue(SHAPES[shape], "audioset")
    assert parsed.ok, parsed.reason
    turns = [(u, " ".join(a.split())) for u, a in parsed.turns]
    assert turns == PAIRS


@pytest.mark.parametrize("text,reason", [
    ("", "empty completion"),
    ("   \n", "empty completion"),
    (None, "empty completion"),
    ("I'm sorry, I cannot help with that.", "no dialogue found"),
    ('{"user": "truncated', "no dialogue found"),
    (json.dumps({"user": "", "assistant": "x"}), "turn 1 has an empty"),
    (json.dumps({"user": "a", "assistant": 3}), "turn 1 has an empty or non-text"),
])
def test_unusable_answers_get_a_reason(text: str | None, reason: str) -> None:
    parsed = parse_dialogue(text, "music")
    assert not parsed.ok and not parsed.turns
    assert parsed.reason.startswith(reason)


def test_turn_counts_are_enforced_per_config() -> None:
    five = "\n".join(json.dumps({"user": f"q{i}", "assistant": f"a{i}"}) for i in range(5))
    assert parse_dialogue(five, "audioset").reason == "5 turns where audioset wants 1-4"
    assert parse_dialogue(five, "music").reason == "5 turns where music wants 1-4"
    assert parse_dialogue(LINES, "comparison").reason == "2 turns where comparison wants 1"
    one = json.dumps({"user": "Which is louder?", "assistant": "The first."})
    assert parse_dialogue(one, "comparison").turns == (("Which is louder?", "The first."),)
    assert len(parse_dialogue("\n".join(five.splitlines()[:4]), "audioset").turns) == 4


def test_descriptors_are_short_single_phrases() -> None:
    assert parse_descriptor('"High-pitched, wailing tone."\n') == "High-pitched, wailing tone"
    assert parse_descriptor("\nDescriptor: low rumble (continuous)") == "low rumble continuous"
    assert parse_descriptor(" ".join(["word"] * 30)) == " ".join(["word"] * 12)
    assert parse_descriptor("") is None and parse_descriptor(None) is None
