"""Turn server-measured round durations into pytest-benchmark samples, using public API only.

pytest-benchmark times each round of ``benchmark.pedantic`` by calling its timer before and
after the target. A :class:`ReplayClock` given as ``@pytest.mark.benchmark(timer=...)`` answers
those calls so that round *i* lasts exactly the *i*-th recorded duration; the target itself does
nothing. The statistics, JSON and ``pytest-benchmark compare`` then describe the FL rounds as
the server measured them, not the harness's own overhead.
"""

from __future__ import annotations

from collections.abc import Sequence


class ReplayClock:
    __name__ = "ztfl_replay_clock"  # shown by pytest-benchmark as the timer's name

    def __init__(self) -> None:
        self._durations: list[float] = []
        self._next = 0
        self._now = 0.0
        self._started = False

    def load(self, durations: Sequence[float]) -> int:
        """Queue the durations to replay; returns how many benchmark rounds to run."""
        if not durations:
            raise ValueError("replay clock: no durations to replay")
        if any(d < 0 for d in durations):
            raise ValueError("replay clock: negative duration")
        self._durations = [float(d) for d in durations]
        self._next = 0
        self._started = False
        return len(self._durations)

    def __call__(self) -> float:
        if self._started:  # the call after the target: advance by one recorded round
            if self._next >= len(self._durations):
                raise RuntimeError("replay clock: more rounds timed than durations loaded")
            self._now += self._durations[self._next]
            self._next += 1
        self._started = not self._started
        return self._now

    def __repr__(self) -> str:
        return "ztfl_replay_clock"
