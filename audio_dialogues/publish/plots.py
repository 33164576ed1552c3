"""The card's figures as PNG files: turns per dialogue, top classes and question types, per config.

Figures are drawn with matplotlib's Agg backend (no display needed) and written without a timestamp or
software tag, so the same statistics give byte-identical files and a re-push of unchanged data uploads
nothing.
"""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write
from ..sources.repo_layout import PLOTS_DIR
from .stats import Share, SplitStats

_COLORS = {"train": "#4C72B0", "test": "#DD8452"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        from .errors import PublishError

        raise PublishError("the card's figures need matplotlib: pip install 'audio-dialogues[publish]'") from None

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_write(path, binary=True) as f:  # a failed save leaves no truncated PNG under its name
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})


def _turns_plot(config: str, stats: dict[str, SplitStats], path: Path) -> None:
    plt = _pyplot()
    counts = sorted({n for s in stats.values() for n in s.turns_per_dialogue})
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / max(1, len(stats))
    for i, (split, s) in enumerate(stats.items()):
        shares = [100 * s.turns_per_dialogue.get(n, 0) / s.dialogues if s.dialogues else 0 for n in counts]
        ax.bar([n + (i - (len(stats) - 1) / 2) * width for n in counts], shares, width=width,
               label=f"{split} ({s.dialogues:,})", color=_COLORS.get(split))
    ax.set_xticks(counts)
    ax.set_xlabel("turns per dialogue")
    ax.set_ylabel("% of dialogues")
    ax.set_title(f"{config}: turns per dialogue")
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def _shares_plot(title: str, xlabel: str, shares: list[Share], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(3, len(shares)) + 1))
    names = [s.name for s in reversed(shares)]
    ax.barh(range(len(names)), [100 * s.share for s in reversed(shares)], color="#4C72B0")
    ax.set_yticks(range(len(names)), labels=[n if len(n) <= 40 else n[:39] + "…" for n in names])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)


def write_plots(config: str, stats: dict[str, SplitStats], root: Path) -> dict[str, str]:
    """Draw the figures of ``config`` under ``root/images``; returns ``{kind: path relative to root}``.

    Class and question-type figures show the train split when there is one (the larger), else test.
    """
    out: dict[str, str] = {}
    if not stats:
        return out
    rel = f"{PLOTS_DIR}/{config}_turns.png"
    _turns_plot(config, stats, root / rel)
    out["turns"] = rel
    main = stats.get("train") or next(iter(stats.values()))
    if main.top_classes:
        rel = f"{PLOTS_DIR}/{config}_classes.png"
        _shares_plot(f"{config} ({main.split}): top {main.class_kind} shares", f"% of {main.split} dialogues",
                     main.top_classes, root / rel)
        out["classes"] = rel
    if main.question_types:
        rel = f"{PLOTS_DIR}/{config}_questions.png"
        _shares_plot(f"{config} ({main.split}): question types (first word)", "% of user turns",
                     main.question_types, root / rel)
        out["questions"] = rel
    return out
