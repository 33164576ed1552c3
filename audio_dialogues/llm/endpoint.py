"""The options of one OpenAI-compatible endpoint and how requests to it are paced: what ``predict`` and
``evaluate``'s judge share (spelled as ``generate`` spells them on the command line).

Free of ``openai``: the client is imported only when one is made.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any

from ..numbers import POSITIVE_SECONDS, SECONDS, Number

if TYPE_CHECKING:
    from .client import ChatClient, ModelSettings

#: OpenAI's limits on one batch input file (requests, bytes): a larger batch goes out as several files.
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 200 * 1024 * 1024

#: The fewest failed attempts (and at least ``concurrency``) that stop a run whose endpoint never answered.
FAIL_FAST_ATTEMPTS = 5

#: Numeric options of an endpoint: field -> (its flag without the leading ``--``, the values it takes). The
#: highest temperature is the one OpenAI's API accepts; a seed is one every OpenAI-compatible server takes.
NUMBERS: dict[str, tuple[str, Number]] = {
    "temperature": ("temperature", Number(0, 2)),
    "seed": ("seed", Number(0, 2**32 - 1, whole=True, none="the endpoint's own sampling")),
    "max_tokens": ("max-tokens", Number(1, 10_000_000, whole=True)),
    "concurrency": ("concurrency", Number(1, 10_000, whole=True)),
    # at least one request (token) per day: the rate limiter waits 1 / rate
    "rpm": ("rpm", Number(1 / 1440, 1e9, none="no limit")),
    "tpm": ("tpm", Number(1 / 1440, 1e12, none="no limit")),
    "timeout_s": ("timeout", POSITIVE_SECONDS),
    "max_attempts": ("max-attempts", Number(1, 1000, whole=True)),
    "backoff_s": ("backoff-s", SECONDS),
    "price_in": ("price-in", Number(0, 1e6)),
    "price_out": ("price-out", Number(0, 1e6)),
}


@dataclass(kw_only=True)
class Endpoint:
    """An endpoint, its model's settings and the pacing of requests; commands subclass it with their own
    defaults (``generate`` samples at temperature 1 with a required seed, the judge answers in 64 tokens)."""

    base_url: str | None = None
    model: str | None = None
    #: The environment variable holding the API key (the key itself is never stored or recorded).
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_s: float = 1.0
    #: Dollars per million prompt and completion tokens, for the report.
    price_in: float = 0.0
    price_out: float = 0.0

    def check_endpoint(self, option_prefix: str = "--") -> None:
        """Refuse values no run can use, naming the option as typed (``--judge-`` for the judge's)."""
        for name, (flag, spec) in NUMBERS.items():
            spec.check(option_prefix + flag, getattr(self, name))

    def model_settings(self) -> ModelSettings:
        from .client import ModelSettings

        return ModelSettings(self.model or "", temperature=self.temperature, max_tokens=self.max_tokens,
                             seed=self.seed)

    def client(self, settings: ModelSettings) -> ChatClient:
        """A client for this endpoint, its key read from ``api_key_env`` now, with the endpoint watch armed."""
        import os

        from .client import ChatClient

        return ChatClient(settings, base_url=self.base_url, api_key=os.environ.get(self.api_key_env),
                          timeout_s=self.timeout_s, max_attempts=self.max_attempts, backoff_s=self.backoff_s,
                          rpm=self.rpm, tpm=self.tpm, fail_fast_after=max(self.concurrency, FAIL_FAST_ATTEMPTS))



#: The command-line options of an endpoint, field -> help, in the order ``--help`` lists them. The seed is not
#: among them: each command says what its seed does (``generate``'s also draws the comparison groups).
HELP = {
    "base_url": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1",
    "model": "model name the endpoint serves",
    "api_key_env": "environment variable holding the API key (never printed or written)",
    "temperature": "the model's sampling temperature",
    "max_tokens": "the longest answer the model may give, in tokens",
    "concurrency": "requests in flight (default {default})",
    "rpm": "at most this many requests per minute",
    "tpm": "at most this many tokens per minute (prompt estimate + max tokens)",
    "timeout_s": "seconds per attempt, up to the answer's last byte",
    "max_attempts": "attempts per request (429/5xx/timeouts)",
    "price_in": "dollars per million prompt tokens",
    "price_out": "dollars per million completion tokens",
}


def add_arguments(parser: argparse._ActionsContainer, options: type[Endpoint] = Endpoint, prefix: str = "", *,
                  client_base_url: bool = False,
                  judges: str = "grade every answer with it, see docs/evaluation.md") -> None:
    """The command-line options of an endpoint (``prefix`` ``judge-`` for the judge's, which ``judges``), one
    per :data:`HELP`.

    Their defaults are those of ``options``, the :class:`Endpoint` subclass they fill, so that the command line
    and the API default alike. ``client_base_url``: a missing ``--base-url`` means the openai client's own.
    """
    dest = prefix.replace("-", "_")
    defaults = {f.name: f.default for f in fields(options) if f.default is not MISSING}
    helps = dict(HELP)
    if prefix:
        helps["base_url"] = "the judge's " + helps["base_url"]
        helps["model"] = f"the judge's {helps['model']} ({judges})"
    if client_base_url:
        helps["base_url"] += " (default: the openai client's, i.e. OPENAI_BASE_URL or OpenAI)"
    for name, text in helps.items():
        flag, kwargs = f"--{prefix}{name.replace('_', '-')}", dict[str, Any]()
        if name in NUMBERS:
            flag = f"--{prefix}{NUMBERS[name][0]}"
            kwargs["type"] = NUMBERS[name][1].argument(flag)
        if name == "api_key_env":
            kwargs["metavar"] = "VAR"
        parser.add_argument(flag, dest=dest + name, default=defaults[name],
                            help=text.format(default=defaults[name]), **kwargs)


def from_arguments(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The values of :func:`add_arguments` as keyword arguments of an :class:`Endpoint` (``prefix`` as given there)."""
    return {name: getattr(args, prefix.replace("-", "_") + name) for name in HELP}
