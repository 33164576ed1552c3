"""The pure-Python tokenizer against pycocoevalcap's own (CoreNLP 3.4.1 jar, run for real when java exists)."""

from __future__ import annotations

import time

import pytest
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from audio_dialogues.evaluation.tokenizer import (
    TokenizerError,
    clear_cache,
    java_ptb_tokenize,
    python_ptb_tokenize,
    tokenize,
)

needs_java = pytest.mark.usefixtures("java")

# What coco-caption does to text, including its quirks. Each expectation is also checked against the
# jar below, so none of them is our guess.
CASES = [
    ("A dog's barking, can't stop. It's loud!", "a dog 's barking ca n't stop it 's loud"),
    ("The man (twice) said [maybe] {x}.", "the man -lrb- twice -rrb- said -lsb- maybe -rsb- -lcb- x -rcb-"),
    ('He said "yes" and \u2018no\u2019 \u201cok\u201d.', "he said yes and no ok"),
    ("Really?! Wow... ok\u2026 end", "really ?! wow ok end"),
    ("R&B, hip-hop/rap and rock'n'roll from the '80s.", "r&b hip-hop/rap and rock 'n' roll from the '80s"),
    ("gonna wanna gotta cannot", "gon na wan na got ta can not"),
    ("3.5 kHz, 1,000 Hz, 50% of $5 at 10:30 p.m.", "3.5 khz 1,000 hz 50 % of $ 5 at 10:30 p.m."),
    ("e.g., i.e., etc., vs. Mr. Smith", "e.g. i.e. etc. vs. mr. smith"),
    ("Option A. The end; plan b. and then", "option a the end plan b. and then"),
    ("A 4/4 beat \u2014 fast -- really --- fast", "a 4/4 beat fast really fast"),
    ("Caf\u00e9 na\u00efve \u00bd \u00b0 \u00d7 emoji \U0001f3b5 gone",
     "caf\u00e9 na\u00efve 1/2 \u00b0 \u00d7 emoji gone"),
    ("I'm sure they'd've known; we'll see", "i 'm sure they 'd 've known we 'll see"),
]

# Ordinary answers, as models and annotators write them.
ORDINARY = [
    "Yes, there's a dog barking in the background, and it's quite loud.",
    "The music has a 4/4 time signature, with a tempo of about 120 BPM.",
    "No, I don't think there's any speech in this audio clip.",
    "It sounds like a man is speaking (possibly giving a lecture) while cars pass by.",
    "The first audio features a piano; the second one has a guitar.",
    "Both clips contain water sounds, e.g., a stream or rain.",
    "The genre is R&B/soul, typical of the '90s.",
    "I'd say the mood is melancholic - slow, sad, and reflective.",
    "The recording quality is low-fi: there's hiss, noise, etc.",
    "\"Ding-dong\" - that's the doorbell ringing twice.",
    "The singer's voice is high-pitched & breathy... quite emotional!",
    "The sound lasts ~5 seconds, at roughly 3:00 p.m.",
    "It's a 10-second clip; the bird chirps at 2.5s and 7.1s, then stops.",
    "What instrument is playing? It's a violin (or possibly a viola).",
    "Can you hear the crowd cheering? Yes!! They're very excited.",
    "The track uses a Roland TR-808 drum machine and a Moog synthesizer.",
    "The speaker says something like 'hello, how are you?'",
    "There's no music \u2014 only ambient noise from a caf\u00e9.",
    "The engine revs up, then idles (about 1,500 RPM).",
    "It's likely recorded outdoors, e.g. in a park or on a street.",
    "The tempo is fast (around 140-150 bpm), and the key seems to be E minor.",
    "The drums, bass, and guitars create a driving rhythm [typical of punk rock].",
    "The song\u2019s lyrics aren\u2019t in English; they sound Spanish.",
    "Mr. Smith is speaking to Dr. Jones at the U.S. embassy.",
    "There's a 50% chance it's a cat rather than a baby.",
    "Sounds like a vacuum cleaner/hair dryer running continuously.",
    "The clip is mono, 44.1 kHz, 16-bit.",
    "First, a door opens. Then, footsteps approach. Finally, the door closes.",
    "It's an upbeat, danceable EDM track w/ synth leads.",
    "The noisy home recording features a waltz played on an upright piano, with a cello holding long notes "
    "under it. It feels wistful and slow, like music for a rainy afternoon.",
    "['noisy recording', 'upright piano', 'long cello notes', \"a child's humming\", 'no drums']",
    "A female singer carries this lively tune; the tempo is medium-fast with a 4 on the floor kick.",
    "This is a live recording of a rock'n'roll cover, with cheers from the crowd at 0:07.",
]


@needs_java
def test_python_tokenizer_matches_the_jar_on_ordinary_text():
    texts = ORDINARY + [text for text, _ in CASES]
    # In the jar's one-caption-per-line file the next caption's first word can change how the previous one
    # ends (a documented difference, not what is compared here): a neutral line separates the captions.
    java = java_ptb_tokenize([line for text in texts for line in (text, "x")])[::2]
    python = [python_ptb_tokenize(text) for text in texts]
    assert python == java


@needs_java
def test_documented_cases_are_what_the_jar_does():
    assert java_ptb_tokenize([text for text, _ in CASES]) == [expected for _, expected in CASES]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_python_tokenizer_cases(text, expected):
    assert python_ptb_tokenize(text) == expected


@needs_java
def test_java_path_equals_pycocoevalcap_ptbtokenizer():
    # Including the cross-line quirk ("Option A." before "The ..." loses its period) and an empty caption.
    texts = ORDINARY[:10] + ["Option A.", "The end is near.", "", "Yes, it's plan B.", "quiet"]
    direct = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    assert tokenize(texts, "ptb") == [direct[i][0] for i in range(len(texts))]


@needs_java
def test_java_path_keeps_captions_aligned_across_other_line_breaks():
    # pycocoevalcap only replaces "\n": a "\r" or U+2028 inside a caption would shift every later caption.
    texts = ["first\rpart", "second\u2028part", "third"]
    assert java_ptb_tokenize(texts) == ["first part", "second part", "third"]


def test_unknown_tokenizer_and_missing_java(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer 'nltk'"):
        tokenize(["x"], "nltk")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TokenizerError, match="no 'java' is on PATH"):
        java_ptb_tokenize(["x"])



DEGENERATE = ["a,", "ha", "a.", "'a", "<a", "n't", "a.b-", "o'", "\U0001f600", "a'", "$", "a/", "\u00e9-", "dog's"]


def _cpu_seconds(text: str) -> float:
    """Fastest of three cold runs, in CPU time of this process: other jobs on a loaded machine slow the
    wall clock, not the work done here."""
    best = float("inf")
    for _ in range(3):
        clear_cache()
        start = time.process_time()
        python_ptb_tokenize(text)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.timeout(120)
@pytest.mark.parametrize("unit", DEGENERATE, ids=[f"unit{i}" for i in range(len(DEGENERATE))])
def test_degenerate_model_output_tokenizes_in_linear_time(unit):
    # Looping models emit such runs; one backtracking pattern (a rescan from every position) would make each
    # take minutes, not milliseconds. Four times the input must cost about four times the work: a quadratic
    # pattern makes it sixteen. Measured here: 2.4-5.5 across these units.
    small, large = _cpu_seconds(unit * 1000), _cpu_seconds(unit * 4000)
    assert large < 10 * max(small, 1e-3), f"{unit!r}: 1,000 repeats {small:.4f} s, 4,000 repeats {large:.4f} s"


def test_degenerate_model_output_yields_tokens():
    texts = [unit * 5000 for unit in DEGENERATE]
    python = [python_ptb_tokenize(text) for text in texts]
    # every run yields tokens except the emoji one, which Java drops as untokenizable
    assert [unit for unit, out in zip(DEGENERATE, python, strict=True) if not out] == ["\U0001f600"]


@needs_java
def test_degenerate_model_output_tokenizes_as_the_jar_does():
    texts = [unit * 5000 for unit in DEGENERATE]
    assert [python_ptb_tokenize(text) for text in texts] == java_ptb_tokenize(texts)
