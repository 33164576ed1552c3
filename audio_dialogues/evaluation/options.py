"""The options of ``predict``: what the command line fills and the run checks.

Apart from :mod:`.predict` (asyncio and the LLM layer) so that the CLI builds its parser, which every command
does, without importing them: a cached ``fetch`` re-run or a ``--help`` pays for none of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..llm.endpoint import Endpoint
from ..numbers import Number
from ..sources.annotations import CONFIGS

HISTORIES = ("gold", "own")
AUDIO_INPUTS = ("input_audio", "audio_url")
#: Numeric options of ``predict`` beside the endpoint's: field -> (flag, the values it takes).
PREDICT_NUMBERS: dict[str, tuple[str, Number]] = {
    "sample_rate": ("--sample-rate", Number(1000, 384_000, whole=True)),
    "limit": ("--limit", Number(1, whole=True, none="no limit")),
}


@dataclass
class PredictOptions(Endpoint):
    """What to ask (a config's split, its audio) and where to write; the endpoint's options are
    :class:`~audio_dialogues.llm.endpoint.Endpoint`'s, given by keyword."""

    config: str
    output: Path
    data_dir: Path
    split: str = "test"
    audio_dirs: list[str] = field(default_factory=list)
    audio_cache_dir: str | None = None
    #: ``strong_labels``, ``musiccaps_csv``, ``ontology``, ``download_metadata``, as for loading.
    source_metadata: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None
    history: str = "gold"
    audio_input: str = "input_audio"
    sample_rate: int = 16000
    #: At most this many dialogues (the first ones of the split).
    limit: int | None = None
    dry_run: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if self.config not in CONFIGS:
            raise UsageError(f"unknown config {self.config!r}; expected one of {', '.join(CONFIGS)}")
        if self.history not in HISTORIES:
            raise UsageError(f"unknown history {self.history!r}; expected one of {', '.join(HISTORIES)}")
        if self.audio_input not in AUDIO_INPUTS:
            raise UsageError(f"unknown audio input {self.audio_input!r}; expected one of {', '.join(AUDIO_INPUTS)}")
        self.check_endpoint()
        for name, (flag, spec) in PREDICT_NUMBERS.items():
            spec.check(flag, getattr(self, name))
        if not self.model:
            raise UsageError("give --model: answers are journaled by model, so a dry run needs it too")
        if not self.base_url and not self.dry_run:
            raise UsageError("give --base-url, the OpenAI-compatible endpoint serving the model "
                             "(e.g. http://127.0.0.1:8000/v1)")

    @property
    def journal_path(self) -> Path:
        return self.output.with_name(self.output.name + ".journal.jsonl")

    @property
    def report_path(self) -> Path:
        return self.output.with_name(self.output.name + ".report.json")

    @property
    def audio_copy_dir(self) -> Path:
        """Where ``audio_url`` mode writes the WAV copies the endpoint reads."""
        return self.output.with_name(self.output.name + ".audio")

    def request_settings(self) -> dict[str, Any]:
        """What shaped every request, recorded with every prediction (never the API key)."""
        return {"system_prompt": self.system_prompt, "temperature": self.temperature, "max_tokens": self.max_tokens,
                "seed": self.seed, "history": self.history, "audio_input": self.audio_input,
                "sample_rate": self.sample_rate}
