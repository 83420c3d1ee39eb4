from __future__ import annotations

import io
import sys

import pytest

from dedup import progress as progress_module
from dedup.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("CI", raising=False)
    assert list(progress(range(3), total=3, desc="work")) == [0, 1, 2]
    assert "work" in terminal.getvalue()  # tqdm drew a bar

    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    monkeypatch.setenv("CI", "true")
    assert list(progress(range(3), desc="work")) == [0, 1, 2] and quiet.getvalue() == ""


def test_quiet_inside_a_prefect_flow_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress_module, "_inside_prefect_run", lambda: True)
    assert not progress_module.wanted()
