"""The optional-tool helpers: a missing tool skips a test on a developer's machine and fails it in CI."""

from __future__ import annotations

import pytest

from tests import tools


@pytest.mark.parametrize(("in_ci", "outcome"), [(False, pytest.skip.Exception), (True, pytest.fail.Exception)])
def test_a_missing_tool_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch, in_ci: bool, outcome: type) -> None:
    monkeypatch.setattr(tools, "IN_CI", in_ci)
    with pytest.raises(outcome, match="no 'no-such-tool-here' on PATH"):
        tools.require_tool("no-such-tool-here")
    with pytest.raises(outcome, match="no Python module 'no_such_module_here'"):
        tools.require_module("no_such_module_here")


def test_a_present_tool_is_returned() -> None:
    assert tools.require_tool("sh").endswith("/sh")
    assert tools.require_module("json").dumps([]) == "[]"
