"""The one check of option values, for the builder, ``fetch`` and ``generate`` alike.

Each module declares what every option takes as a table of specs (a :class:`~audio_dialogues.numbers.Number`,
a :class:`OneOf` or a :class:`Rule`); :func:`check_options` walks the table and refuses the first value a
spec does not accept with one message: the option, what it takes and the value with its type
(``sampling_rate must be ..., got '16000' (str)``). Kept free of imports: every command imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class Spec(Protocol):
    """What an option takes: a test of a value and the same in words (``describe``, after "must be")."""

    def accepts(self, value: Any) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class OneOf:
    """One of a few names (a format, a policy, a decoder)."""

    choices: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def describe(self) -> str:
        return f"one of {', '.join(map(repr, self.choices))}"


@dataclass(frozen=True)
class Rule:
    """Any other test of a value, and what it accepts in words (``a folder path``)."""

    test: Callable[[Any], bool]
    description: str

    def accepts(self, value: Any) -> bool:
        return bool(self.test(value))

    def describe(self) -> str:
        return self.description


#: True or False (not 1, not "yes").
BOOL = Rule(lambda v: isinstance(v, bool), "True or False")


def refusal(name: str, value: Any, spec: Spec) -> str:
    """The message for ``value`` of option ``name``, which ``spec`` does not accept."""
    return f"{name} must be {spec.describe()}, got {value!r:.60} ({type(value).__name__})"


def check_options(values: Mapping[str, Any], specs: Mapping[str, Spec], error: type[Exception], *,
                  name: Callable[[str], str] = str, optional: Collection[str] = ()) -> None:
    """Raise ``error`` for the first of ``values`` that its spec refuses, named as ``name(key)`` says.

    Keys without a spec are left to their owners; ``None`` passes for the keys in ``optional`` (where it
    means "not given").
    """
    for key, value in values.items():
        spec = specs.get(key)
        if spec is None or (value is None and key in optional):
            continue
        if not spec.accepts(value):
            raise error(refusal(name(key), value, spec))
