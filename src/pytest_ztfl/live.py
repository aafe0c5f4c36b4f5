"""Live progress lines of a matrix run: the callback every layer hands down (session, runner,
arm), and how verbose pytest must be for a line to show. The session's callback compares the
level with pytest's verbosity, so ``-q`` and ``-v`` behave as users expect."""

from __future__ import annotations

from typing import Protocol

BLOCK, MILESTONE, ROUND = -1, 0, 1  # shown with -q; by default; with -v


class Progress(Protocol):
    def __call__(self, line: str, level: int = BLOCK) -> None: ...


def silent(line: str, level: int = BLOCK) -> None:
    """A progress callback that shows nothing."""
