"""The C data plane's ring top-ups come in slices, so the heartbeat keeps its beat (pure logic)."""

from __future__ import annotations

from k8s_fixtures.netem.cloop import Refill


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_round_visits_every_class_once_in_slices_of_the_budget() -> None:
    clock = _Clock()
    filled: list[int] = []

    def fill(i: int) -> None:  # each class costs 20 ms of Python
        filled.append(i)
        clock.t += 0.02

    r = Refill(200, fill, budget_s=0.05, clock=clock)
    assert not r.busy
    r.start()
    slices = 0
    while r.busy:
        before = clock.t
        r.step()
        slices += 1
        assert clock.t - before <= 0.05 + 0.02  # one class at most over the budget
    assert filled == list(range(200)) and slices == 67  # 3 classes a slice


def test_a_new_round_starts_where_the_last_stopped_and_restarts_a_round_under_way() -> None:
    clock = _Clock()
    filled: list[int] = []

    def fill(i: int) -> None:
        filled.append(i)
        clock.t += 0.03

    r = Refill(5, fill, budget_s=0.05, clock=clock)
    r.start()
    r.step()  # classes 0, 1
    r.start()  # a ring dropped again: every class once more, from class 2
    while r.busy:
        r.step()
    assert filled == [0, 1, 2, 3, 4, 0, 1]
    r.start()
    r.step()
    assert filled[-2:] == [2, 3]


def test_a_cheap_round_is_done_in_one_step() -> None:
    filled: list[int] = []
    r = Refill(4, filled.append)
    r.start()
    r.step()
    assert filled == [0, 1, 2, 3] and not r.busy
