"""Local SGD training and evaluation, on in-memory tensors (no DataLoader: no worker processes,
no per-batch Python overhead beyond slicing).

The SGD step is written out here (:class:`MomentumSGD`) rather than taken from ``torch.optim``:
creating a process's first ``torch.optim`` optimizer imports ~900 modules (torch._dynamo,
sympy, ...), 1.3-2.8 s of start-up and ~50 MB of private memory in every client. The update is
the one ``torch.optim.SGD`` computes on CPU tensors (its single-tensor path, no dampening,
weight decay or Nesterov), operation for operation, so the weights are bit-identical
(``tests/fl_app/test_train_sgd.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fl_app.tensors import NDArrays, state_to_arrays


@dataclass(frozen=True)
class TrainResult:
    weights: NDArrays
    num_samples: int
    seconds: float
    loss: float


class MomentumSGD:
    """SGD with momentum (``torch.optim.SGD(params, lr, momentum)`` on CPU), without importing
    ``torch.optim``: buf = grad on the first step, then buf = momentum * buf + grad;
    param -= lr * buf."""

    def __init__(self, params: Iterable[nn.Parameter], *, lr: float, momentum: float) -> None:
        self.params = list(params)
        self.lr, self.momentum = lr, momentum
        self.bufs: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            if self.momentum != 0:
                buf = self.bufs[i]
                if buf is None:
                    buf = self.bufs[i] = torch.clone(grad).detach()
                else:
                    buf.mul_(self.momentum).add_(grad, alpha=1)
                grad = buf
            p.add_(grad, alpha=-self.lr)


def warm_up() -> None:
    """Pay torch's one-off lazy work (the first autograd pass and its kernels) now, not inside
    the first timed ``train_local``."""
    w = torch.zeros(2, requires_grad=True)
    opt = MomentumSGD([nn.Parameter(w)], lr=0.1, momentum=0.9)
    (opt.params[0] * 2.0).sum().backward()  # type: ignore[no-untyped-call]
    opt.step()


def load_arrays(model: nn.Module, arrays: NDArrays) -> None:
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})


def train_local(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    max_steps: int,
    seed: int,
) -> TrainResult:
    """Train ``model`` in place with SGD; the shuffle order is a function of ``seed``."""
    start = time.perf_counter()
    model.train()
    opt = MomentumSGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    steps, total_loss = 0, 0.0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total_loss += loss.item()
            steps += 1
            if max_steps and steps >= max_steps:
                break
        if max_steps and steps >= max_steps:
            break
    return TrainResult(
        weights=state_to_arrays(model.state_dict()),
        num_samples=len(x),
        seconds=time.perf_counter() - start,
        loss=total_loss / max(steps, 1),
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy loss) of ``model`` on the given set."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch])
        loss += float(F.cross_entropy(out, y[i : i + batch], reduction="sum"))
        correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return correct / len(x), loss / len(x)
