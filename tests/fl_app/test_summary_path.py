"""fl_app.summary.path_time: a participant's time outside its own training, averaged."""

from __future__ import annotations

import pytest

from fl_app.summary import path_time


def _update(t: float, train: float) -> dict[str, float]:
    return {"t": t, "train_seconds": train}


def test_path_time_is_the_mean_of_each_participants_arrival_minus_its_own_training() -> None:
    # arrivals 1.0 s and 1.5 s after a start at 10 s; trained 0.9 s and 1.2 s: 0.1 and 0.3 s
    assert path_time(10.0, [_update(11.0, 0.9), _update(11.5, 1.2)]) == pytest.approx(0.2)


def test_a_delay_before_the_tasks_shifts_every_path_by_itself() -> None:
    ups = [_update(11.0, 0.9), _update(11.5, 1.2), _update(11.2, 1.15)]
    later = [_update(u["t"] + 0.01, u["train_seconds"]) for u in ups]
    assert path_time(10.0, later) - path_time(10.0, ups) == pytest.approx(0.01)  # type: ignore[operator]


def test_no_start_or_no_update_has_no_path_time() -> None:
    assert path_time(None, [_update(1.0, 0.5)]) is None
    assert path_time(1.0, []) is None
