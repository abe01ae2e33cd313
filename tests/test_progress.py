"""Long work shows how far it got off a terminal too (a log file, a pipe, CI)."""

from __future__ import annotations

import pytest

from reverie.progress import with_progress


def test_off_a_terminal_progress_is_a_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(with_progress(range(3), "inverting", "vector", every=0)) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "inverting: 1/3 vectors",
        "inverting: 2/3 vectors",
        "inverting: 3/3 vectors",
    ]
    assert "s left" in lines[0] and "s left" not in lines[-1]


def test_progress_is_quiet_when_not_wanted(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(with_progress(iter("ab"), "blends", "blend", enabled=False)) == ["a", "b"]
    assert capsys.readouterr().err == ""
