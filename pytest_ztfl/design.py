"""The measurement design: which cells run together, in which order, and why.

On a shared machine the speed of the workload drifts far more than a control costs, so arms
that are compared must see the same conditions (Randomized Multiple Interleaved Trials,
Abedi & Brecht, ICPE 2017). The cells that differ only in SEC level, mTLS mode and instrument
check form a *block* (same NET, data, seed, fault: ``Cell.block``); a comparison pairs arms of
one block. Two modes:

* ``round``: a block's arms are deployed together and their rounds interleaved: round r of
  every arm runs before round r+1 of any, one at a time, in an order drawn afresh for every r.
  Arms compared round by round saw the machine within seconds of each other.
* ``cell``: a block's arms run one after another, in a random order. Uses a block's worth of
  memory less, but a whole cell's drift sits between two arms. Blocks with a fault always run
  this way (a fault's clock-driven windows must not straddle other arms' rounds).

Blocks themselves run in a random order too, so no level of NET or data is confounded with the
machine's warm-up. Every order comes from one seed (``--ztfl-order-seed``), recorded with the
results and in every row: the same seed and cells give the same orders. Pure logic.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_ztfl.matrix import Cell

MODES = ("round", "cell")


def _rng(seed: int, *labels: object) -> random.Random:
    """A generator for one decision, derived from the design's seed and what is decided (so
    adding a block does not reshuffle the others)."""
    text = ":".join(str(x) for x in (seed, *labels))
    return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


@dataclass(frozen=True)
class Block:
    """The arms of one block, in the order their first round (``round``) or whole run
    (``cell``) takes."""

    key: str
    arms: tuple[Cell, ...]
    mode: str
    seed: int

    @property
    def why(self) -> str:
        if self.mode == "cell" and any(a.fault for a in self.arms):
            return "a fault's windows must not straddle other arms' rounds"
        return ""

    def round_order(self, r: int) -> list[Cell]:
        """The arms in the order their round ``r`` runs (a fresh draw per round)."""
        arms = sorted(self.arms, key=lambda c: c.id)
        _rng(self.seed, self.key, "round", r).shuffle(arms)
        return arms

    def to_dict(self, cell: Cell | None = None) -> dict[str, Any]:
        """What a row records of its block (``cell``: that row's position in it)."""
        d: dict[str, Any] = {
            "block": self.key,
            "mode": self.mode,
            "order_seed": self.seed,
            "arms": [a.id for a in self.arms],
        }
        if self.why:
            d["why"] = self.why
        if cell is not None:
            d["position"] = [a.id for a in self.arms].index(cell.id)
        return d


@dataclass(frozen=True)
class Design:
    mode: str
    seed: int
    blocks: tuple[Block, ...]  # in run order

    def block_of(self, cell: Cell) -> Block:
        for b in self.blocks:
            if any(a.id == cell.id for a in b.arms):
                return b
        raise KeyError(cell.id)

    def after(self, block: Block) -> Block | None:
        """The block the design runs after ``block`` (None after the last)."""
        keys = [b.key for b in self.blocks]
        i = keys.index(block.key) + 1 if block.key in keys else len(keys)
        return self.blocks[i] if i < len(keys) else None

    def cells(self) -> list[Cell]:
        """Every cell in the order the design runs them."""
        return [a for b in self.blocks for a in b.arms]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "order_seed": self.seed,
            "blocks": [b.to_dict() for b in self.blocks],
        }


def plan(cells: Sequence[Cell], mode: str, seed: int) -> Design:
    """Group ``cells`` into blocks and draw the orders: blocks shuffled, arms shuffled within
    each block. A block of one arm is still a block (it runs alone)."""
    if mode not in MODES:
        raise ValueError(f"design mode {mode!r}: expected one of {', '.join(MODES)}")
    by_key: dict[str, list[Cell]] = {}
    for c in cells:
        by_key.setdefault(c.block, []).append(c)
    keys = sorted(by_key)
    _rng(seed, "blocks").shuffle(keys)
    blocks = []
    for key in keys:
        arms = sorted(by_key[key], key=lambda c: c.id)
        _rng(seed, key, "arms").shuffle(arms)
        block_mode = "cell" if any(a.fault for a in arms) else mode
        blocks.append(Block(key, tuple(arms), block_mode, seed))
    return Design(mode, seed, tuple(blocks))


def new_seed() -> int:
    """A fresh order seed (recorded, so a run's orders can be drawn again)."""
    return random.SystemRandom().randrange(1 << 31)
