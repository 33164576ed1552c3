"""The generation report: what each stage kept per config and split, what it cost, and why things went.

Written as ``generation_report.json`` and a markdown twin ``generation_report.md`` beside the outputs.
The total tokens and cost cover every answer the output folder's journal holds, paid in this run or an
earlier one: the dialogues each subset uses, the descriptor answers, and answers no current item uses
(from another ``--limit``, model or prompt), each shown on its own so the parts add up to the total; with
``--judge-model``, the judge's replies at the judge's prices too (those the outputs do not use are listed
apart, and priced only when a judge's prices are given). ``this_run`` says what this invocation itself paid,
the judge's replies included, so it never exceeds the total.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..llm.usage import BATCH_PRICE_FACTOR, Usage
from ..sources.annotations import PAPER_SIZES
from ..version import __version__

if TYPE_CHECKING:
    from ..llm.batch import BatchOutcome
    from ..llm.client import ClientStats

#: How answers were asked for: with the answer's JSON schema (``response_format``), or as free text.
ANSWER_MODES = ("structured", "free_text")
#: Stages in order; each counts the dialogues still in after it.
STAGES = ("items", "answered", "parsed", "phrases", "similarity", "duplicates", "near_duplicates")
STAGE_HELP = {
    "items": "items built from the sources",
    "answered": "items with a journaled answer",
    "parsed": "answers parsed into the allowed number of turns",
    "phrases": "after the low-confidence phrase filter",
    "similarity": "after the similarity filter",
    "duplicates": "after dropping exact duplicates",
    "near_duplicates": "after dropping near-duplicates (written, unless a judge follows)",
}
#: The last stage when a judge is asked (``--judge-model``).
JUDGE_STAGE = "judge"
JUDGE_HELP = "after dropping what the judge scored under the threshold or could not score (written)"


def _distribution(values: list[float]) -> dict[str, Any] | None:
    """Count, min, deciles and max (nearest rank), enough to choose a threshold from."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    points = {"min": ordered[0], **{f"p{q}": ordered[round(q / 100 * last)] for q in (10, 25, 50, 75, 90)},
              "max": ordered[-1]}
    return {"count": len(ordered), **{k: round(v, 4) for k, v in points.items()}}


@dataclass
class SplitGenerationReport:
    config: str
    split: str
    stages: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*STAGES, JUDGE_STAGE), 0))
    turns: Counter = field(default_factory=Counter)
    rejects: Counter = field(default_factory=Counter)
    usage: Usage = field(default_factory=Usage)
    similarity: list[float] = field(default_factory=list)
    #: The relative test's margins (standard deviations above the other items' mean).
    margins: list[float] = field(default_factory=list)
    #: Source rows of this split that became no item, by reason (an empty caption, a repeated row).
    not_built: Counter = field(default_factory=Counter)
    #: Dialogues left out because scoring, or the judge, was interrupted before them (a re-run scores them).
    unscored: int = 0
    #: Per way of asking (``structured``, ``free_text``): answers, and those rejected at parsing.
    answers: dict[str, Counter] = field(default_factory=lambda: {mode: Counter() for mode in ANSWER_MODES})
    #: The judge's mean rubric score of each dialogue it kept.
    judge_scores: list[float] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejects[reason] += 1

    def to_dict(self, price_in: float, price_out: float, price_cached_in: float | None = None,
                batch_discount: float = 1 - BATCH_PRICE_FACTOR, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
        return {
            "stages": {stage: self.stages[stage] for stage in stages},
            "not_built": dict(self.not_built.most_common()),
            "unscored": self.unscored,
            "paper": PAPER_SIZES[self.config][self.split],
            "turns_histogram": {str(k): self.turns[k] for k in sorted(self.turns)},
            "rejects": dict(self.rejects.most_common()),
            "answers": {mode: {"answered": c["answered"], "rejected": c["rejected"]}
                        for mode, c in self.answers.items()},
            "usage": self.usage.to_dict(),
            "cost_usd": round(self.usage.cost(price_in, price_out, price_cached_in, batch_discount), 6),
            "similarity": _distribution(self.similarity),
            "similarity_margin": _distribution(self.margins),
            **({"judge_score": _distribution(self.judge_scores)} if JUDGE_STAGE in stages else {}),
        }


@dataclass
class GenerationReport:
    settings: dict[str, Any]
    price_in: float = 0.0
    price_out: float = 0.0
    #: Dollars per million cached prompt tokens; ``None``: ``price_in``.
    price_cached_in: float | None = None
    #: The share of the prices that answers from a batch do not pay.
    batch_discount: float = 1 - BATCH_PRICE_FACTOR
    splits: dict[str, SplitGenerationReport] = field(default_factory=dict)
    this_run: Usage = field(default_factory=Usage)
    client: dict[str, Any] = field(default_factory=dict)
    #: ``--batch``: batches created, requests submitted, batches collected, requests still in batches in flight.
    batches: dict[str, int] = field(default_factory=dict)
    descriptors: dict[str, int] = field(default_factory=dict)
    #: Tokens of the descriptor answers this run's descriptors come from.
    descriptor_usage: Usage = field(default_factory=Usage)
    #: Journaled answers that no current item or class uses, and their tokens.
    unused_answers: int = 0
    unused_usage: Usage = field(default_factory=Usage)
    failed_requests: Counter = field(default_factory=Counter)
    #: ``--structured`` and, when the endpoint refused ``response_format`` in every spelling in this run, its
    #: last answer.
    structured: dict[str, str | None] = field(default_factory=lambda: {"mode": "auto", "refused": None})
    pending: int = 0
    interrupted: bool = False
    wall_time_s: float = 0.0
    outputs: list[str] = field(default_factory=list)
    #: The judge's prices per million tokens (in, out); None: no judge was asked.
    judge_prices: tuple[float, float] | None = None
    #: Tokens of every journaled judge reply the outputs use, requests this run sent, and their journal keys.
    judge_usage: Usage = field(default_factory=Usage)
    judge_requests_sent: int = 0
    judge_keys: set[str] = field(default_factory=set)
    #: Tokens of the judge's replies this invocation paid for (part of ``this_run``'s cost).
    judge_this_run: Usage = field(default_factory=Usage)
    #: Judge replies in the journal that these outputs do not use (an earlier judge's, a dialogue gone since).
    unused_judge_replies: int = 0
    unused_judge_usage: Usage = field(default_factory=Usage)

    @property
    def stages(self) -> tuple[str, ...]:
        return (*STAGES, JUDGE_STAGE) if self.judge_prices is not None else STAGES

    def judge_cost(self, usage: Usage | None = None) -> float:
        """``usage`` (default: the replies the outputs use) at the judge's prices; 0 without a judge."""
        return (self.judge_usage if usage is None else usage).cost(*self.judge_prices) \
            if self.judge_prices is not None else 0.0

    def split(self, config: str, split: str) -> SplitGenerationReport:
        return self.splits.setdefault(f"{config}_{split}", SplitGenerationReport(config, split))

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.pending == 0 and not self.failed_requests and not self.unscored_total()

    def unscored_total(self) -> int:
        return sum(report.unscored for report in self.splits.values())

    def add_client_stats(self, stats: ClientStats) -> None:
        """Add one request phase's counters (descriptors, then dialogues) to the run's."""
        c = self.client
        c["requests_sent"] = c.get("requests_sent", 0) + stats.requests
        c["retries"] = c.get("retries", 0) + stats.retries
        reasons = c.setdefault("retry_reasons", {})
        for reason, n in stats.retry_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        c["backoff_waited_s"] = round(c.get("backoff_waited_s", 0.0) + stats.waited_s, 3)

    def add_batches(self, outcome: BatchOutcome) -> None:
        """Add one request phase's batch counters (descriptors, then dialogues); requests a batch returned
        without an answer are failed requests, by reason, as synchronous ones are."""
        for name in ("batches_created", "requests_submitted", "collected", "in_flight"):
            self.batches[name] = self.batches.get(name, 0) + getattr(outcome, name)
        self.failed_requests.update(outcome.errors)

    def total_usage(self) -> Usage:
        """Every journaled answer: the subsets' dialogues, the descriptors and the unused answers."""
        total = Usage()
        for usage in [*(report.usage for report in self.splits.values()), self.descriptor_usage, self.unused_usage]:
            total.merge(usage)
        return total

    def cost(self, usage: Usage) -> float:
        """``usage`` in dollars at the run's prices, rounded as the report shows it."""
        return round(usage.cost(self.price_in, self.price_out, self.price_cached_in, self.batch_discount), 6)

    def to_dict(self) -> dict[str, Any]:
        total = self.total_usage()
        return {
            "package_version": __version__,
            "complete": self.complete,
            "interrupted": self.interrupted,
            "pending_requests": self.pending,
            "unscored_dialogues": self.unscored_total(),
            "failed_requests": dict(self.failed_requests.most_common()),
            "structured_outputs": self.structured,
            "settings": self.settings,
            "prices_per_million": {"input": self.price_in, "output": self.price_out,
                                   "cached_input": self.price_in if self.price_cached_in is None
                                   else self.price_cached_in, "batch_discount": self.batch_discount},
            "usage": total.to_dict(),
            "cost_usd": round(self.cost(total) + self.judge_cost() + self.judge_cost(self.unused_judge_usage), 6),
            "judge": None if self.judge_prices is None else {
                "usage": self.judge_usage.to_dict(), "cost_usd": round(self.judge_cost(), 6),
                "prices_per_million": {"input": self.judge_prices[0], "output": self.judge_prices[1]},
                "requests_sent": self.judge_requests_sent},
            "this_run": {**self.this_run.to_dict(),
                         "cost_usd": round(self.cost(self.this_run) + self.judge_cost(self.judge_this_run), 6)},
            "client": self.client,
            "batches": self.batches,
            "descriptors": {**self.descriptors, "usage": self.descriptor_usage.to_dict(),
                            "cost_usd": self.cost(self.descriptor_usage)},
            "unused_judge_replies": {"replies": self.unused_judge_replies,
                                     "usage": self.unused_judge_usage.to_dict(),
                                     "cost_usd": round(self.judge_cost(self.unused_judge_usage), 6)
                                     if self.judge_prices is not None else None},
            "unused_answers": {"answers": self.unused_answers, "usage": self.unused_usage.to_dict(),
                               "cost_usd": self.cost(self.unused_usage)},
            "wall_time_s": round(self.wall_time_s, 3),
            "outputs": self.outputs,
            "stages": {**STAGE_HELP, **({JUDGE_STAGE: JUDGE_HELP} if JUDGE_STAGE in self.stages else {})},
            "splits": {name: r.to_dict(self.price_in, self.price_out, self.price_cached_in, self.batch_discount,
                                       self.stages)
                       for name, r in sorted(self.splits.items())},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        data = self.to_dict()
        status = "complete" if data["complete"] else (
            "INTERRUPTED" if self.interrupted else "INCOMPLETE (run again to finish)")
        lines = [
            "# Generation report", "",
            f"- status: {status}; model `{self.settings['model_settings']['model']}`; "
            f"wall time {self.wall_time_s:.1f} s",
            f"- tokens: {data['usage']['prompt_tokens']:,} in ({data['usage']['cached_prompt_tokens']:,} of them "
            f"cached), {data['usage']['completion_tokens']:,} out; cost ${data['cost_usd']:.4f} (this run "
            f"${data['this_run']['cost_usd']:.4f}) at ${self.price_in:g}/M in, "
            f"${data['prices_per_million']['cached_input']:g}/M cached in, ${self.price_out:g}/M out",
        ]
        if self.pending or self.failed_requests or self.unscored_total():
            failed = ", ".join(f"{n} x {reason}" for reason, n in self.failed_requests.most_common())
            lines.append(f"- pending requests: {self.pending}; failed: {failed or 'none'}; "
                         f"dialogues not yet scored: {self.unscored_total()}")
        lines += ["", "## Counts after each stage", "",
                  "| subset | " + " | ".join(self.stages) + " | paper |", "|---" * (len(self.stages) + 2) + "|"]
        for name, split in data["splits"].items():
            counts = " | ".join(f"{split['stages'][s]:,}" for s in self.stages)
            lines.append(f"| {name} | {counts} | {split['paper']:,} |")
        lines += ["", "Stages: " + "; ".join(f"**{k}**: {v}" for k, v in data["stages"].items()) + ".", "",
                  "## Turns per dialogue", "", "| subset | 1 | 2 | 3 | 4 |", "|---|---|---|---|---|"]
        for name, split in data["splits"].items():
            hist = split["turns_histogram"]
            lines.append(f"| {name} | " + " | ".join(str(hist.get(str(k), 0)) for k in range(1, 5)) + " |")
        not_built = [f"- {name}: {n} x {reason}" for name, split in data["splits"].items()
                     for reason, n in split["not_built"].items()]
        if not_built:
            lines += ["", "## Source rows not built into items", "", *not_built]
        spreads = [(name, key, split[key]) for name, split in data["splits"].items()
                   for key in ("similarity", "similarity_margin", "judge_score") if split.get(key)]
        if spreads:
            lines += ["", "## Scores (similarity: each dialogue's in similarity_scores.jsonl; judge: in each "
                      "record's meta)", "",
                      "| subset | measure | count | min | p10 | p25 | median | p75 | p90 | max |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for name, key, d in spreads:
                lines.append(f"| {name} | {key} | {d['count']} | " + " | ".join(
                    f"{d[k]:.3f}" for k in ("min", "p10", "p25", "p50", "p75", "p90", "max")) + " |")
        lines += ["", "## Answers by way of asking", "",
                  f"Structured outputs: {self.structured['mode']}"
                  + (f"; refused by the endpoint ({self.structured['refused']}), so asked as free text"
                     if self.structured["refused"] else "") + ".", "",
                  "| subset | structured | rejected | free text | rejected |", "|---|---|---|---|---|"]
        for name, split in data["splits"].items():
            asked = [split["answers"][mode][count] for mode in ANSWER_MODES for count in ("answered", "rejected")]
            lines.append(f"| {name} | " + " | ".join(f"{n:,}" for n in asked) + " |")
        lines += ["", "## Rejects by reason", ""]
        for name, split in data["splits"].items():
            for reason, n in split["rejects"].items():
                lines.append(f"- {name}: {n} x {reason}")
        lines += ["", "## Tokens and cost per subset", "",
                  "| subset | prompt tokens | of them cached | completion tokens | cost $ |", "|---|---|---|---|---|"]
        parts = [*data["splits"].items(), ("descriptors", data["descriptors"]),
                 (f"unused answers ({self.unused_answers})", data["unused_answers"]),
                 *([(f"judge `{self.settings['judge']['model']}`", data["judge"])] if data["judge"] else []),
                 ("**total**" + (" (tokens: the generator's; cost: the judge's too)" if data["judge"] else ""), data)]
        for name, part in parts:
            usage = part["usage"]
            if usage["prompt_tokens"] or usage["completion_tokens"] or name in data["splits"] or part is data:
                lines.append(f"| {name} | {usage['prompt_tokens']:,} | {usage['cached_prompt_tokens']:,} | "
                             f"{usage['completion_tokens']:,} | {part['cost_usd']:.4f} |")
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """A few lines for the terminal."""
        data = self.to_dict()
        lines = []
        for name, split in data["splits"].items():
            stages = " -> ".join(f"{split['stages'][s]} {s}" for s in self.stages)
            not_built = ", ".join(f"{n} x {reason}" for reason, n in split["not_built"].items())
            lines.append(f"{name}: {stages} (paper {split['paper']:,})"
                         + (f"; {split['unscored']} not yet scored" if split["unscored"] else "")
                         + (f"; source rows not built: {not_built}" if not_built else ""))
        if self.structured["refused"]:
            lines.append(f"structured outputs refused by the endpoint ({self.structured['refused']}): "
                         "asked as free text")
        lines.append(f"tokens {data['usage']['prompt_tokens']:,} in ({data['usage']['cached_prompt_tokens']:,} "
                     f"cached) / {data['usage']['completion_tokens']:,} out, "
                     f"cost ${data['cost_usd']:.4f} (this run ${data['this_run']['cost_usd']:.4f}), "
                     f"{self.wall_time_s:.1f} s")
        if not data["complete"]:
            unscored = f", {self.unscored_total()} dialogues not yet scored" if self.unscored_total() else ""
            top = "; ".join(f"{n} x {reason}" for reason, n in self.failed_requests.most_common(3))
            in_batches = self.batches.get("in_flight", 0)
            lines.append(f"NOT COMPLETE: {self.pending} requests pending"
                         + (f" ({in_batches} in batches in flight)" if in_batches else "") + ", "
                         f"{sum(self.failed_requests.values())} failed" + (f" ({top})" if top else "") + unscored
                         + (" (interrupted)" if self.interrupted else "")
                         + "; run the same command again to continue without paying twice")
        return "\n".join(lines)
