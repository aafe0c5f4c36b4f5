"""Live progress lines of a matrix run: the callback every layer hands down (session, runner,
arm), and how verbose pytest must be for a line to show. The session's callback compares the
level with pytest's verbosity, so ``-q`` and ``-v`` behave as users expect; every line is also a
record of the ``pytest_ztfl`` logger (blocks and milestones INFO, rounds DEBUG), so
``--log-cli-level`` shows them as live logs (then in place of the plain lines) and
``--log-file`` keeps them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

BLOCK, MILESTONE, ROUND = -1, 0, 1  # shown with -q; by default; with -v
LOGGER = logging.getLogger("pytest_ztfl")
LOG_LEVEL = {BLOCK: logging.INFO, MILESTONE: logging.INFO, ROUND: logging.DEBUG}


class Progress(Protocol):
    def __call__(self, line: str, level: int = BLOCK) -> None: ...


def silent(line: str, level: int = BLOCK) -> None:
    """A progress callback that shows nothing."""


@dataclass
class BlockCount:
    """``k/N`` of the blocks a session measures, and from the second on the time so far and an
    estimate of the rest (the mean block so far, times the blocks left)."""

    total: int = 0  # the planned blocks with a cell to measure
    started: int = 0
    begun: float | None = None  # when the first block started (monotonic)

    def next(self) -> tuple[str, str]:
        """A block starts: its ``k/N`` and the ETA text."""
        now = time.monotonic()
        self.begun = self.begun or now
        self.started += 1
        done = self.started - 1
        # a block no collected test announced runs too (ZtflSession._block): count it
        total = max(self.total, self.started)
        count = f"{self.started}/{total}"
        if not done:
            return count, ""
        spent = now - self.begun
        left = spent / done * (total - done)
        return count, f" ({spent / 60:.1f} min so far, about {left / 60:.1f} min left)"
