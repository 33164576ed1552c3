"""Benchmark: score 16,249 synthetic turns (the size of the comparison test split) end to end.

Target: ``audio_dialogues.evaluate`` with the pure-Python tokenizer in <= 30 s, reading the JSONL files
included. The baseline, measured in the same run on the same corpus, is pycocoevalcap's three scorers
alone on text tokenised beforehand: the part of the cost no implementation can avoid. With ``--ptb``
the run also times the Java tokenizer path.

    python bench/evaluate.py [--turns 16249] [--ptb]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from audio_dialogues.evaluation.scoring import evaluate
from audio_dialogues.evaluation.tokenizer import python_ptb_tokenize

TARGET_S = 30.0
SUBJECTS = ["the first audio", "the second clip", "the third recording", "clip 2", "the music", "the speaker",
            "a dog", "the crowd", "the engine", "the woman's voice", "the piano", "the drums"]
VERBS = ["is louder than", "sounds calmer than", "has more reverb than", "is faster than", "contains", "features",
         "doesn't include", "is recorded closer than", "can't be heard over", "overlaps with"]
OBJECTS = ["the other one", "a barking dog", "heavy rain", "an electric guitar (distorted)", "birds chirping",
           "a 4/4 drum beat at ~120 BPM", "people talking, e.g., a crowd", "the R&B track", "traffic noise",
           "a man's voice", "high-pitched beeps", "the 10-second siren"]
TAILS = ["", ", which makes it more energetic", "; it's clearly audible", " - especially at the end",
         ", while the other is quieter", ". Both are recorded outdoors", "... it's hard to tell",
         ", and there's also some background hiss"]


def synthetic_answer(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}."
        sentences.append(s[0].upper() + s[1:])
    return " ".join(sentences)


def perturb(text: str, rng: random.Random) -> str:
    """A plausible model answer: the reference with words dropped, swapped and replaced."""
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < 0.12:
            continue
        if r < 0.22:
            out.append(rng.choice(["sound", "clip", "clearly", "louder", "noise", "music", "also", "very"]))
        else:
            out.append(w)
    if len(out) > 3 and rng.random() < 0.3:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out) or "No."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=16_249)
    parser.add_argument("--ptb", action="store_true", help="also time --tokenizer ptb (needs java)")
    args = parser.parse_args(argv)

    rng = random.Random(1234)
    references = [synthetic_answer(rng) for _ in range(args.turns)]
    predictions = [perturb(r, rng) for r in references]
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        ref_path, pred_path = Path(tmp, "references.jsonl"), Path(tmp, "predictions.jsonl")
        with open(ref_path, "w") as f:
            for i, r in enumerate(references):
                f.write(json.dumps({"id": f"d{i:05d}", "turn": 0, "reference": r}) + "\n")
        with open(pred_path, "w") as f:
            for i, p in enumerate(predictions):
                f.write(json.dumps({"id": f"d{i:05d}", "turn": 0, "prediction": p}) + "\n")

        start = time.perf_counter()  # first, so the tokenizer's cache starts cold
        report = evaluate(pred_path, ref_path, tokenizer="python")
        elapsed = time.perf_counter() - start

        # Baseline: the scorers alone, on text tokenised beforehand (tokenising is not timed).
        gts = {i: [python_ptb_tokenize(r)] for i, r in enumerate(references)}
        res = {i: [python_ptb_tokenize(p)] for i, p in enumerate(predictions)}
        start = time.perf_counter()
        Bleu(4).compute_score(gts, res, verbose=0)
        Cider().compute_score(gts, res)
        Rouge().compute_score(gts, res)
        baseline = time.perf_counter() - start
        overall = report.overall
        verdict = "OK" if elapsed <= TARGET_S else "MISSED"
        print(f"turns: {overall.n}  CIDEr {overall.cider:.4f}  BLEU-4 {overall.bleu4:.4f}  "
              f"ROUGE-L {overall.rouge_l:.4f}")
        print(f"baseline (pycocoevalcap scorers on pre-tokenised text): {baseline:.2f} s")
        print(f"evaluate, python tokenizer, from JSONL:                 {elapsed:.2f} s  "
              f"(x{elapsed / baseline:.2f} baseline; target <= {TARGET_S:.0f} s: {verdict})")
        if args.ptb:
            start = time.perf_counter()
            evaluate(pred_path, ref_path, tokenizer="ptb")
            ptb = time.perf_counter() - start
            print(f"evaluate, ptb (Java) tokenizer, from JSONL:            {ptb:.2f} s  "
                  f"(x{ptb / baseline:.2f} baseline)")
    return 0 if elapsed <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
