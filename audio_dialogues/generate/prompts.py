"""Prompt templates: an instruction, worked examples and the item as the next numbered example.

The project's own templates follow the structure of the paper's prompts (an instruction, two or three
examples, then the item); the wording and the examples are this project's. A user template is a JSON
file ``{"system": str, "examples": [{"item": str, "turns": [{"user", "assistant"}, ...]}, ...]}``.

Rendered as chat messages: the instruction is the system message, each example is a user message
(``Example k:`` and its item) answered by an assistant message (its turns, one JSON object per line),
and the item closes as the next numbered user message. The template's hash goes into every record.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..files import load_json
from .items import Item
from .options import GenerateError

_FORMAT_RULE = (
    'Write each question and answer pair on its own line as a JSON object with exactly the keys "user" and '
    '"assistant". Output those lines and nothing else: no numbering, no headings, no commentary.'
)

AUDIOSET_SYSTEM = f"""You create conversations for training an assistant that can hear audio.
You receive the labelled sound events of a 10-second recording. Each entry gives a sound class, sometimes a \
few words in brackets about how it sounds, and the time spans in which it is heard.

Write a conversation of four question and answer pairs between a user and the assistant about the recording:
1. The user begins with a plausible, inventive question about what is going on in the recording.
2. The assistant answers by reasoning from what can be heard. It never mentions times, seconds or timestamps.
3. Each later question follows from the pairs before it and refers back to sounds or sources already \
discussed with pronouns (it, they, them, he, she).
4. Make the questions varied and demanding: ask about causes, the setting, the order of events, the people \
or objects involved, or what is likely to happen next.

{_FORMAT_RULE}"""

MUSIC_SYSTEM = f"""You create conversations for training an assistant that can hear music.
You receive a written description of a short music recording.

Write a conversation of four question and answer pairs between a user and the assistant about the recording:
1. The user begins with a plausible, inventive question about the music.
2. The assistant answers by reasoning from what can be heard, without inventing facts the description \
cannot support. It never mentions times, seconds or timestamps.
3. Each later question follows from the pairs before it and refers back to instruments, voices or parts \
already discussed with pronouns (it, they, them, he, she).
4. Make the questions varied. Topics that work well: whether it is a live or a studio recording; acoustic \
or electric guitar; chords, riffs or solos; genre; key; time signature; tempo (slow, medium or fast); \
whether there are vocals, how high or low they are, how fast the words come, their language and accent; \
the emotion the music carries and how the voice conveys it; the likely age of the singer.

{_FORMAT_RULE}"""

COMPARISON_SYSTEM = f"""You create questions for training an assistant that can hear several recordings at once.
You receive two to four recordings, numbered Audio 1, Audio 2 and so on. Each is given either as labelled \
sound events with their time spans or as a written description of music.

Write exactly one question and answer pair:
1. The user asks about what the recordings have in common or how they differ.
2. The assistant answers by comparing them, explaining its reasoning from what can be heard. It never \
mentions times, seconds or timestamps.

{_FORMAT_RULE}"""

DESCRIPTOR_SYSTEM = (
    "You describe how sound classes typically sound. Answer with a short phrase of at most eight words about "
    "pitch, timbre, loudness or rhythm, and nothing else."
)


@dataclass(frozen=True)
class Example:
    item: str
    turns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PromptTemplate:
    """An instruction and worked examples for one config; ``digest`` identifies it in every output record."""

    system: str
    examples: tuple[Example, ...]

    @property
    def digest(self) -> str:
        canonical = json.dumps(
            {"system": self.system, "examples": [[e.item, [list(t) for t in e.turns]] for e in self.examples]},
            sort_keys=True, ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @functools.cached_property
    def _prefix(self) -> tuple[dict[str, str], ...]:
        """The instruction and worked examples: the same messages (the same objects) for every item."""
        messages = [{"role": "system", "content": self.system}]
        for number, example in enumerate(self.examples, start=1):
            messages.append({"role": "user", "content": f"Example {number}:\n{example.item}"})
            answer = "\n".join(json.dumps({"user": u, "assistant": a}, ensure_ascii=False) for u, a in example.turns)
            messages.append({"role": "assistant", "content": answer})
        return tuple(messages)

    def messages(self, item_text: str) -> list[dict[str, str]]:
        """The chat messages asking for ``item_text`` as the example after the worked ones."""
        return [*self._prefix, {"role": "user", "content": f"Example {len(self.examples) + 1}:\n{item_text}"}]

    def render(self, item: Item) -> list[dict[str, str]]:
        return self.messages(item.text)


class PromptError(GenerateError):
    """A user prompt file that cannot be used; the message names the file and the problem."""


def load_template(path: str | Path) -> PromptTemplate:
    """Read a user template (see the module docstring for the shape)."""
    path = Path(path)
    data = load_json(path, PromptError)  # a regular file (files.read_input), UTF-8, not nested too deep, ...
    if not isinstance(data, dict) or not isinstance(data.get("system"), str) or not data["system"].strip():
        raise PromptError(f"{path}: a prompt template is an object with a non-empty string 'system'")
    examples = []
    for i, ex in enumerate(data.get("examples", [])):
        turns = ex.get("turns") if isinstance(ex, dict) else None
        if not isinstance(ex, dict) or not isinstance(ex.get("item"), str) or not isinstance(turns, list) or not turns:
            raise PromptError(f"{path}: examples[{i}] needs a string 'item' and a non-empty list 'turns'")
        pairs = []
        for j, t in enumerate(turns):
            if not isinstance(t, dict) or not isinstance(t.get("user"), str) or not isinstance(t.get("assistant"), str):
                raise PromptError(f"{path}: examples[{i}].turns[{j}] needs string 'user' and 'assistant'")
            pairs.append((t["user"], t["assistant"]))
        examples.append(Example(ex["item"], tuple(pairs)))
    return PromptTemplate(data["system"], tuple(examples))


_AUDIOSET_EXAMPLES = (
    Example(
        "Sound of Dog (sharp, repeated barks): [0.3s-1.1s], [2.4s-3.0s], [6.8s-7.5s]; "
        "Sound of Vehicle: [0.0s-10.0s]; Sound of Car alarm (shrill, cycling tones): [4.2s-9.6s]",
        (
            ("What kind of place does this recording seem to come from?",
             "It sounds like a street or a driveway: traffic is audible the whole time, a dog barks now and "
             "then, and a car alarm starts partway through, all of which fit an outdoor residential spot."),
            ("Why do you think the dog keeps barking?",
             "It barks in short bursts, and one burst comes right after the alarm starts, so it is most likely "
             "reacting to the passing vehicles and then to the alarm's shrill, changing tones."),
            ("Could it have set the alarm off?",
             "Probably not. The barking starts well before the alarm and is not close or loud enough to trip "
             "a sensor; a bump, a passer-by or a faulty sensor is a more likely trigger."),
            ("How would they both sound if the alarm kept going?",
             "The alarm would keep cycling through its tones until someone switched it off, and the dog would "
             "likely keep answering it with bursts of barks, making the scene noisier and more agitated."),
        ),
    ),
    Example(
        "Sound of Male speech, man speaking: [0.0s-3.2s], [5.1s-8.9s]; Sound of Cutlery, silverware: "
        "[1.5s-2.0s], [4.0s-4.6s]; Sound of Frying (food) (steady sizzle): [0.0s-10.0s]",
        (
            ("What is the man most likely doing while he talks?",
             "He is most likely cooking: something sizzles in a pan throughout, and metal utensils clink "
             "between his sentences, as if he stirs or turns the food while explaining."),
            ("Does he seem to be talking to someone in the room?",
             "It sounds that way. He speaks in two stretches with a pause in which the utensils are used, "
             "which fits a host talking to a guest or to a camera while he works."),
            ("What could they be making?",
             "A steady sizzle suggests something fried in oil, such as vegetables, eggs or meat; the occasional "
             "clinking fits stirring or flipping pieces in a pan."),
        ),
    ),
)

_MUSIC_EXAMPLES = (
    Example(
        "Music description: A slow ballad played on a nylon-string guitar with soft fingerpicked chords. A "
        "female voice sings gently in Spanish over it. The recording is quiet and intimate, with some room "
        "reverb.",
        (
            ("Does this sound like a live recording or a studio one?",
             "It sounds like a close, quiet recording, probably in a small room or home studio: the reverb is "
             "that of a room, and there is no crowd noise or applause."),
            ("What kind of guitar is she accompanied by?",
             "An acoustic nylon-string guitar, which gives the warm, soft attack of the fingerpicked chords."),
            ("What mood does her singing create?",
             "Her gentle, restrained delivery in Spanish over slow chords makes the song tender and a little "
             "melancholic, like a lullaby or a love song."),
            ("Roughly how fast is it?",
             "Slow: the chords change unhurriedly and the voice leaves room between phrases, which suits a "
             "ballad."),
        ),
    ),
    Example(
        "Music description: An energetic rock track with distorted electric guitars playing a driving riff, "
        "a fast drum beat with crash cymbals, and a male vocalist shouting the chorus. Sounds like a live "
        "concert with a cheering crowd.",
        (
            ("What genre would you place this in?",
             "Rock, leaning towards hard rock or punk: distorted electric guitars play a driving riff over fast "
             "drums, and the vocals are shouted rather than sung softly."),
            ("Is it performed in front of an audience?",
             "Yes, the cheering crowd suggests a live concert rather than a studio take."),
            ("How would you describe his voice?",
             "Loud and raw. He shouts the chorus, which adds aggression and excitement and suits the energy of "
             "the band."),
        ),
    ),
)

_COMPARISON_EXAMPLES = (
    Example(
        "Audio 1: Sound of Bird vocalization, bird call, bird song (bright, rapid chirps): [0.0s-4.5s], "
        "[6.0s-10.0s]\nAudio 2: Sound of Bird vocalization, bird call, bird song (low, hooting calls): "
        "[1.0s-2.2s], [5.5s-6.7s]; Sound of Wind: [0.0s-10.0s]",
        (("Are the birds in these two recordings alike?",
          "Both recordings have birds calling, but they differ: the first has bright, fast chirps that go on "
          "almost the whole time, like a small songbird by day, while the second has a few low hoots with wind "
          "around them, more like an owl or a dove outdoors in the open."),),
    ),
    Example(
        "Audio 1: Music description: A man sings a folk song in a low, warm voice over a strummed acoustic "
        "guitar.\nAudio 2: Music description: A woman sings a pop melody in a high, clear voice over "
        "synthesizers and a drum machine.",
        (("How do the singers in these two clips differ?",
          "The first singer is a man with a low, warm voice in a sparse acoustic folk setting; the second is a "
          "woman with a high, clear voice over electronic pop production. Both carry a melody, but the first "
          "feels intimate and the second bright and polished."),),
    ),
    Example(
        "Audio 1: Music description: A solo piano plays a slow, melancholic piece in a minor key.\n"
        "Audio 2: Music description: A string quartet plays a slow, mournful melody.\n"
        "Audio 3: Music description: A cello plays a sustained, sorrowful line over soft piano chords.",
        (("What do these three pieces share, and what sets them apart?",
          "All three are slow and sad, played on acoustic classical instruments. They differ in the ensemble: "
          "the first is piano alone, the second a string quartet, and the third pairs a cello with piano, so "
          "the sound grows from a single instrument to a small group."),),
    ),
)

DEFAULT_TEMPLATES: dict[str, PromptTemplate] = {
    "audioset": PromptTemplate(AUDIOSET_SYSTEM, _AUDIOSET_EXAMPLES),
    "music": PromptTemplate(MUSIC_SYSTEM, _MUSIC_EXAMPLES),
    "comparison": PromptTemplate(COMPARISON_SYSTEM, _COMPARISON_EXAMPLES),
}


def descriptor_messages(class_name: str) -> list[dict[str, str]]:
    """The request for the acoustic descriptor of one sound class (asked once per class, then cached)."""
    return [{"role": "system", "content": DESCRIPTOR_SYSTEM},
            {"role": "user", "content": f"Sound class: {class_name}"}]


def templates(overrides: Mapping[str, str | Path] | None = None) -> dict[str, PromptTemplate]:
    """The default templates, with the configs in ``overrides`` read from the user's files."""
    chosen = dict(DEFAULT_TEMPLATES)
    for config, path in (overrides or {}).items():
        if config not in chosen:
            raise PromptError(f"{path}: prompt override for unknown config {config!r}")
        chosen[config] = load_template(path)
    return chosen
