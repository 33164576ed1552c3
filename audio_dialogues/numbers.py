"""The one parser of numeric options, for the command line and the API alike.

Every numeric option (a worker count, a sleep, a rate, a timeout, a temperature) is declared once as a
:class:`Number`: whole or not, its lowest and highest value. :meth:`Number.check` refuses what no run can
use (``True``, ``nan``, ``inf``, ``1e400``, a count of ``2.5``, a sleep longer than a day, which
``threading`` cannot wait for) with a message naming the option, before any file is read or request sent;
:meth:`Number.argument` is the same check as an ``argparse`` type. Kept free of imports: every command
imports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .checks import refusal
from .errors import UsageError

#: The longest wait any option may ask for: one day (``threading`` waits at most about 292 years, but a
#: sleep or timeout beyond a day is a typo, and ``inf`` would overflow).
MAX_SECONDS = 86_400.0


@dataclass(frozen=True)
class Number:
    """The values a numeric option takes; ``None`` is allowed only where it means something (``none``)."""

    low: float
    high: float | None = None
    #: Whether ``low`` itself is allowed (``False``: the value must be greater).
    low_allowed: bool = True
    #: Whole numbers only (counts, seeds); a float such as ``2.0`` is refused from the API, ``2.0`` typed is too.
    whole: bool = False
    #: What ``None`` (the option left out) means, e.g. ``"no limit"``; ``None``: a value is needed.
    none: str | None = None
    #: A word typed for ``None`` on the command line (``--sample-rate native``).
    keyword: str | None = None

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        low, high = _show(self.low), _show(self.high)
        if self.high is not None:
            allowed = f"from {low} to {high}" if self.low_allowed else f"greater than {low} and at most {high}"
        else:
            allowed = f"of at least {low}" if self.low_allowed else f"greater than {low}"
        if self.keyword:
            return f"{kind} {allowed}, or {self.keyword!r} for {self.none}"
        return f"{kind} {allowed}" + (f" (omit it for {self.none})" if self.none else "")

    def accepts(self, value: object) -> bool:
        try:
            self.check("", value)
        except UsageError:
            return False
        return True

    def check(self, name: str, value: object, error: type[Exception] = UsageError) -> int | float | None:
        """``value`` if the option takes it, else ``error`` naming ``name``, the allowed values and the value."""
        if value is None and self.none:
            return None
        number = isinstance(value, int if self.whole else (int, float)) and not isinstance(value, bool)
        if number:
            try:
                inside = (value >= self.low if self.low_allowed else value > self.low) and (  # type: ignore[operator]
                    self.high is None or value <= self.high)  # type: ignore[operator]
            except OverflowError:  # an int beyond float range compared with a float bound
                inside = False
            if inside and (self.whole or math.isfinite(value)):  # type: ignore[arg-type]
                return value  # type: ignore[return-value]
        raise error(refusal(name, value, self))

    def parse(self, name: str, text: str, error: type[Exception] = UsageError) -> int | float | None:
        """The number ``text`` spells (as typed on a command line), checked."""
        if self.keyword is not None and text == self.keyword:
            return None
        try:
            value: int | float = int(text) if self.whole else float(text)
        except ValueError:  # int('2.5'), float('x'), and int() of more than 4300 digits
            value = math.nan
        if not self.accepts(value):  # the message quotes what was typed, not what Python made of it
            raise error(f"{name} must be {self.describe()}, got {text!r:.40}")
        return value

    def argument(self, name: str) -> Callable[[str], int | float | None]:
        """An ``argparse`` type: argparse names the option and exits 2 (a usage error) with this message."""
        import argparse

        def parse(text: str) -> int | float | None:
            try:
                return self.parse(name, text)
            except UsageError as e:
                raise argparse.ArgumentTypeError(str(e).removeprefix(f"{name} ")) from None

        parse.__name__ = name  # argparse names the type in some messages
        parse.number = self  # type: ignore[attr-defined]  # what it takes (tests find every numeric option by it)
        return parse


def _show(bound: float | None) -> str:
    """A bound as a person reads it: ``1000000000``, not ``1e+09``; ``0.000694444`` stays as it is."""
    if bound is None:
        return ""
    if float(bound).is_integer() and abs(bound) < 1e16:
        return str(int(bound))
    return f"{bound:g}"


#: Common kinds of numeric options.
COUNT = Number(1, whole=True)
SECONDS = Number(0, MAX_SECONDS)
POSITIVE_SECONDS = Number(0, MAX_SECONDS, low_allowed=False)
