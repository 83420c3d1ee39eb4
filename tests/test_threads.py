from __future__ import annotations

import pytest
import torch

from dedup import threads
from dedup.threads import available_cores, limited, run_with_threads, share


def test_share_divides_the_cores_and_honours_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEDUP_THREADS", raising=False)
    cores = available_cores()
    assert share() == cores and share(cores) == 1 and share(cores * 4) == 1
    monkeypatch.setenv("DEDUP_THREADS", "3")
    assert share(2) == 3
    monkeypatch.setenv("DEDUP_THREADS", "many")
    with pytest.raises(ValueError, match="DEDUP_THREADS must be a whole number"):
        share()


def test_a_piece_runs_on_its_share_and_the_process_gets_its_threads_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEDUP_THREADS", raising=False)
    before = torch.get_num_threads()
    assert run_with_threads(1, torch.get_num_threads) == 1
    assert run_with_threads(0, torch.get_num_threads) == 1  # on a worker, without the setting: one
    monkeypatch.setenv("DEDUP_THREADS", "2")
    assert run_with_threads(0, torch.get_num_threads) == 2
    with limited(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_lanes_follow_the_cores_up_to_two_and_honour_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.LANES_ENV, raising=False)
    assert threads.lanes(1) == 1 and threads.lanes(2) == 2 and threads.lanes(16) == 2
    monkeypatch.setenv(threads.LANES_ENV, "3")
    assert threads.lanes(2) == 3
    monkeypatch.setenv(threads.LANES_ENV, "0")  # not a count: the default
    assert threads.lanes(2) == 2
    monkeypatch.setenv(threads.LANES_ENV, "two")
    with pytest.raises(ValueError, match="DEDUP_LANES must be a whole number of pieces"):
        threads.lanes(2)


def test_a_piece_runs_as_many_tasks_side_by_side_as_it_has_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.LANES_ENV, raising=False)
    with limited(1):  # a piece on one of two lanes: its columns one after another
        assert threads.side_by_side() == 1
    with limited(2):
        assert threads.side_by_side() == 2
    with limited(8):  # never more than the lanes
        assert threads.side_by_side() == threads.LANES
    monkeypatch.setenv(threads.LANES_ENV, "1")
    with limited(2):
        assert threads.side_by_side() == 1


def test_map_side_by_side_keeps_the_order_and_raises_a_call_s_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.LANES_ENV, "2")
    assert list(threads.map_side_by_side(lambda a, b: a * b, [1, 2, 3], [4, 5, 6])) == [4, 10, 18]

    def fails_on_two(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    with pytest.raises(ValueError, match="two"):
        list(threads.map_side_by_side(fails_on_two, [1, 2, 3]))
